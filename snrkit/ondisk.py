r"""Exact variance, total variance and SNR of a gradient too big for memory, streamed from disk.

A gradient held on disk (a folder of `.npy` files opened as `np.memmap`, or any
array-like with `.shape`, `.dtype` and slicing, such as zarr or tensorstore arrays) is
read leaf by leaf, in chunks of at most `chunk_elements` coordinates, in two passes and
in float64:

1. the block totals of $x = \nabla^2$ the family's variance needs
   ($S_B = \sum_{j\in B}\nabla_j^2$, or for $O_i = \sum_{j\in B(i), j\ne i}\nabla_j^2$
   also each block's first largest entry and its sum without it);
2. per coordinate, from $\nabla_i$ and those totals, the family's formula, e.g. for the
   forward gradient with $K$ directions of kurtosis $\kappa$ and blocks $B(i)$
   ([`BlockProbeLaw.coordinate_variance`][snrkit.families.iid.BlockProbeLaw.coordinate_variance]):

$$
\operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K},
\qquad
\mathrm{SNR}_i = \frac{\mathbb E[g_i]^2}{\operatorname{Var}[g_i]}.
$$

Time is $O(n)$ and memory is bounded by the chunk (and a few floats per block), not by
$n$. The formula is the one the in-memory law uses (the family's
[`StreamedForm`][snrkit.core.streamed.StreamedForm]), so the results equal
`est.given(grad).var()`, `.total_variance()` and `.snr()` up to rounding: float64's
when JAX runs in float64 (`jax_enable_x64`), else that of the law's float32 results.
`var` and `snr` are written to folders of `.npy` files, one per leaf, written atomically
(to a temporary folder renamed when complete: on any error nothing is left behind).

Examples:
    >>> import tempfile, numpy as np, snrkit as sk
    >>> from snrkit import ondisk
    >>> tmp = tempfile.mkdtemp()
    >>> grad = ondisk.save_gradient(
    ...     {"b": np.array([3.0]), "w": np.array([[4.0, 0.0]])}, f"{tmp}/grad"
    ... )
    >>> est = sk.ForwardGradient()
    >>> ondisk.total_variance(est, grad)  # (n + κ − 2)‖∇‖² = 4 · 25
    100.0
    >>> var = ondisk.var(est, grad, f"{tmp}/var")  # ‖∇‖² + ∇ᵢ²
    >>> var["b"].tolist(), var["w"].tolist()
    ([34.0], [[41.0, 25.0]])
    >>> var["w"].tolist() == est.given(grad).var()["w"].tolist()
    True
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.estimator import Estimator
from snrkit.core.io import AtomicFolder, check_output_folder
from snrkit.core.streamed import BlockTotals, StreamedForm
from snrkit.core.tree import PyTree
from snrkit.core.validation import check_callback, check_int

DEFAULT_CHUNK_ELEMENTS = 1 << 18
"""Coordinates read at a time by default (256 Ki: 2 MiB per float64 work array).

Chunks this small keep the work arrays in cache; chunks of $2^{22}$ were about 3× slower
on a 2-core CPU (each work array a fresh 32 MiB allocation), smaller ones pay Python's
overhead per chunk."""

MANIFEST = "snrkit-tree.json"
"""The file of a gradient folder that names its leaves and the pytree they form."""

ProgressFn = Callable[[int, int], None]
"""`on_progress(done, total)`, called after each chunk: coordinates processed so far, over
both passes (`total` is $2n$; $n$ for `save_gradient`)."""

_FORMAT = "snrkit-gradient/1"
_QUANTITIES = ("var", "snr")


@dataclass(frozen=True)
class OnDiskMoments:
    """What [`moments`][snrkit.ondisk.moments] computed.

    Attributes:
        total_variance: $\\sum_i \\operatorname{Var}[g_i]$, a float.
        var: the variance, read-only memmaps shaped like the gradient (`None` if not asked).
        snr: the SNR, likewise.
    """

    total_variance: float
    var: PyTree | None = None
    snr: PyTree | None = None


@dataclass(frozen=True)
class _Leaf:
    path: str
    array: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    file: Path | None = None  # an .npy file of a gradient folder, read with plain file reads

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# ----------------------------------------------------------------------------------------
# Gradient folders
# ----------------------------------------------------------------------------------------


def save_gradient(grad: PyTree, folder: str | os.PathLike, *, overwrite: bool = False,
                  chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> PyTree:
    """Write a pytree of arrays to a folder of `.npy` files (one per leaf) and open it.

    The leaves are copied chunk by chunk, so a gradient that is itself on disk (memmap,
    zarr, tensorstore) is copied in bounded memory. The folder also holds
    [`MANIFEST`][snrkit.ondisk.MANIFEST], which names the leaves and the pytree of
    dicts, lists and tuples they form. Float types NumPy cannot save (bfloat16) are
    saved as float32, exactly. Written atomically.

    Args:
        grad: a pytree of floating arrays.
        folder: the folder to create.
        overwrite: replace `folder` if it exists and snrkit wrote it (or it is empty);
            a folder that holds anything else, or the gradient being read, is refused.
        chunk_elements: coordinates copied at a time.

    Returns:
        The gradient as [`open_gradient`][snrkit.ondisk.open_gradient] opens it.

    Raises:
        TypeError: a leaf is not a floating array.
        ValueError: `grad` is empty; `folder` exists and `overwrite` is false, or
            overwriting it would delete what snrkit did not write or the gradient itself.

    Examples:
        >>> import tempfile, numpy as np
        >>> from snrkit.ondisk import save_gradient
        >>> tmp = tempfile.mkdtemp()
        >>> g = save_gradient({"w": np.ones((2, 3), np.float32)}, f"{tmp}/g")
        >>> type(g["w"]).__name__, g["w"].shape, str(g["w"].dtype)
        ('memmap', (2, 3), 'float32')
    """
    leaves, treedef = _gradient(grad, "grad")
    chunk = _check_chunk(chunk_elements)
    target = _check_out(folder, _check_bool(overwrite, "overwrite"), "folder", _sources(leaves))
    with AtomicFolder(target) as tmp:
        _write_manifest(tmp, treedef, leaves, _saved_dtype)
        for i, leaf in enumerate(leaves):
            with _NpyWriter(tmp / _leaf_file(i), leaf.shape, _saved_dtype(leaf.dtype)) as out:
                for _, values in _chunks(leaf, chunk, dtype=None):
                    out.write(values)
        tmp.commit()
    return open_gradient(target)


def open_gradient(folder: str | os.PathLike) -> PyTree:
    """Open a folder written by [`save_gradient`][snrkit.ondisk.save_gradient] (or by `var`/`snr`) as read-only memmaps.

    Args:
        folder: the folder.

    Returns:
        The pytree of `np.memmap` leaves (a list in ravel order when the pytree was not
        made of dicts, lists and tuples).

    Raises:
        ValueError: `folder` is not such a folder, or it is damaged: its manifest does not
            parse, or a leaf's file is missing, truncated, or not of the shape and dtype
            the manifest says (the message names the leaf).

    Examples:
        >>> import tempfile, numpy as np
        >>> from snrkit.ondisk import open_gradient, save_gradient
        >>> tmp = tempfile.mkdtemp()
        >>> _ = save_gradient([np.zeros(2), (np.ones(1),)], f"{tmp}/g")
        >>> open_gradient(f"{tmp}/g")[1][0].tolist()
        [1.0]
    """
    folder = Path(folder)
    return _opened(folder, _read_manifest(folder))


def _opened(folder: Path, info: Mapping[str, Any]) -> PyTree:
    """The leaves a manifest names, mapped and checked, in its pytree."""
    arrays = [_open_leaf(folder, entry) for entry in info["leaves"]]
    if info["structure"] is None:
        return arrays
    return _decode(info["structure"], arrays)


_REWRITE = ("write the folder again: save_gradient(grad, folder, overwrite=True) for a gradient, var or snr "
            "with overwrite=True for their results")


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a gradient folder, or a clear error saying what is wrong with it."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ValueError(
            f"{folder} is not a gradient folder: it has no {MANIFEST}. Write one with "
            f"snrkit.ondisk.save_gradient(grad, folder)."
        )
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{manifest} is damaged ({error}); {_REWRITE}") from None
    if not isinstance(info, dict) or info.get("format") != _FORMAT:
        found = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise ValueError(f"{manifest} is not a {_FORMAT} manifest (format {found!r})")
    leaves = info.get("leaves")
    if not isinstance(leaves, list) or "structure" not in info or not all(
        isinstance(entry, dict) and {"file", "path", "shape", "dtype"} <= set(entry) for entry in leaves
    ):
        raise ValueError(f"{manifest} is damaged (its leaves or structure are missing); {_REWRITE}")
    return info


def _open_leaf(folder: Path, entry: Mapping[str, Any]) -> np.memmap:
    """One leaf of a gradient folder, mapped read-only, checked against what the manifest says it is."""
    path, name = folder / entry["file"], entry["path"]
    if not path.is_file():
        raise ValueError(f"{name}: its file {path} is missing from the gradient folder; {_REWRITE}")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{name}: its file {path} cannot be read ({error}): it is damaged or truncated; "
                         f"{_REWRITE}") from None
    shape, dtype = tuple(entry["shape"]), np.dtype(entry["dtype"])
    if array.shape != shape or array.dtype != dtype:
        raise ValueError(
            f"{name}: its file {path} holds {array.dtype} of shape {array.shape}, but {MANIFEST} says {dtype} of "
            f"shape {shape}; the file was replaced after the folder was written. {_REWRITE[0].upper()}{_REWRITE[1:]}."
        )
    return array


# ----------------------------------------------------------------------------------------
# The moments
# ----------------------------------------------------------------------------------------


def total_variance(estimator: Estimator, grad: PyTree | str | os.PathLike, *,
                   chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, on_progress: ProgressFn | None = None) -> float:
    r"""$\operatorname{tr}\operatorname{Cov}[g] = \sum_i\operatorname{Var}[g_i]$ of a gradient on disk, in float64.

    Two passes over the gradient; nothing is written.

    Args:
        estimator: an estimator whose family declares a streamed form (see the module docs).
        grad: a pytree of arrays on disk (memmaps, zarr or tensorstore arrays, or
            in-memory arrays), or the path of a folder written by
            [`save_gradient`][snrkit.ondisk.save_gradient].
        chunk_elements: coordinates read at a time (memory is a few float64 arrays of
            this size).
        on_progress: called as `on_progress(done, 2 * n)` after each chunk.

    Returns:
        The total variance, a float.

    Raises:
        TypeError: `estimator` is not an estimator; a leaf is not a floating array.
        ValueError: `grad` is empty or has a non-finite value (the message names the leaf
            and the first bad index); the hyperparameters do not fit its size.
        NoStreamedForm: the family has no streamed form.

    Examples:
        >>> import numpy as np, snrkit as sk
        >>> from snrkit import ondisk
        >>> grad = {"w": np.array([3.0, 4.0])}
        >>> est = sk.ForwardGradient("rademacher")
        >>> ondisk.total_variance(est, grad)  # (n − 1)‖∇‖²
        25.0
    """
    return _stream(estimator, grad, {}, np.float64, False, chunk_elements, on_progress).total_variance


def var(estimator: Estimator, grad: PyTree | str | os.PathLike, out: str | os.PathLike, *,
        dtype: Any = np.float64, overwrite: bool = False, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        on_progress: ProgressFn | None = None) -> PyTree:
    r"""$\operatorname{Var}[g_i]$ of a gradient on disk, written to the folder `out` (one `.npy` per leaf).

    Args:
        estimator: an estimator whose family declares a streamed form.
        grad: as for [`total_variance`][snrkit.ondisk.total_variance].
        out: the folder to write (created atomically).
        dtype: the dtype of the files; values are computed in float64 and an error is
            raised if one does not fit `dtype` (overflow, or below its normal range).
        overwrite: replace `out` if it exists and snrkit wrote it (or it is empty); a
            folder that holds anything else, or the gradient being read, is refused.
        chunk_elements: coordinates read at a time.
        on_progress: called as `on_progress(done, 2 * n)` after each chunk.

    Returns:
        The variance as read-only memmaps, shaped like the gradient.

    Raises:
        TypeError: a wrong type of argument.
        ValueError: as for `total_variance`; `out` exists and `overwrite` is false (or
            it holds files snrkit did not write, or the gradient); a value does not fit
            `dtype`.
        NoStreamedForm: the family has no streamed form.

    Examples:
        >>> import tempfile, numpy as np, snrkit as sk
        >>> from snrkit import ondisk
        >>> out = f"{tempfile.mkdtemp()}/var"
        >>> est = sk.Partitioned(blocks=2)
        >>> v = ondisk.var(est, np.array([1.0, 2.0, 3.0, 4.0]), out)
        >>> v.tolist()  # blocks {1, 2} and {3, 4}: ‖∇_B‖² + ∇ᵢ²
        [6.0, 9.0, 34.0, 41.0]
        >>> ondisk.var(est, np.ones(4), out)
        Traceback (most recent call last):
        ...
        FileExistsError: out=... exists; pass overwrite=True to replace it, ...
    """
    return _stream(estimator, grad, {"var": ("out", out)}, dtype, overwrite, chunk_elements, on_progress).var


def snr(estimator: Estimator, grad: PyTree | str | os.PathLike, out: str | os.PathLike, *,
        dtype: Any = np.float64, overwrite: bool = False, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        on_progress: ProgressFn | None = None) -> PyTree:
    r"""$\mathrm{SNR}_i = \mathbb E[g_i]^2/\operatorname{Var}[g_i]$ of a gradient on disk, written to the folder `out`.

    As in [`Law.snr`][snrkit.core.law.Law.snr]: `inf` where only the variance is zero,
    NaN where the mean is zero too. Arguments, result and errors as for
    [`var`][snrkit.ondisk.var].

    Examples:
        >>> import tempfile, numpy as np, snrkit as sk
        >>> from snrkit import ondisk
        >>> out = f"{tempfile.mkdtemp()}/snr"
        >>> s = ondisk.snr(sk.ForwardGradient(), np.array([3.0, 4.0]), out)
        >>> [round(x, 4) for x in s.tolist()]  # 9/34, 16/41
        [0.2647, 0.3902]
    """
    return _stream(estimator, grad, {"snr": ("out", out)}, dtype, overwrite, chunk_elements, on_progress).snr


def moments(estimator: Estimator, grad: PyTree | str | os.PathLike, *, var_out: str | os.PathLike | None = None,
            snr_out: str | os.PathLike | None = None, dtype: Any = np.float64, overwrite: bool = False,
            chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, on_progress: ProgressFn | None = None) -> OnDiskMoments:
    """The total variance, and the variance and SNR where asked, in the same two passes.

    Every argument is checked before the gradient is read; the gradient's values (a NaN
    or inf) during the first pass, before anything is written.

    Args:
        estimator: an estimator whose family declares a streamed form.
        grad: as for [`total_variance`][snrkit.ondisk.total_variance].
        var_out: the folder to write the variance to, or `None`.
        snr_out: the folder to write the SNR to, or `None`.
        dtype: as for [`var`][snrkit.ondisk.var].
        overwrite: as for [`var`][snrkit.ondisk.var].
        chunk_elements: as for [`var`][snrkit.ondisk.var].
        on_progress: as for [`var`][snrkit.ondisk.var].

    Returns:
        An [`OnDiskMoments`][snrkit.ondisk.OnDiskMoments].

    Examples:
        >>> import tempfile, numpy as np, snrkit as sk
        >>> from snrkit import ondisk
        >>> tmp, seen = tempfile.mkdtemp(), []
        >>> m = ondisk.moments(
        ...     sk.OrthogonalFrames(directions=1),
        ...     {"w": np.array([3.0, 4.0])},
        ...     var_out=f"{tmp}/var",
        ...     snr_out=f"{tmp}/snr",
        ...     on_progress=lambda done, total: seen.append((done, total)),
        ... )
        >>> m.total_variance, m.var["w"].tolist(), seen
        (25.0, [12.5, 12.5], [(2, 4), (4, 4)])
    """
    outputs = {name: (f"{name}_out", path) for name, path in (("var", var_out), ("snr", snr_out)) if path is not None}
    return _stream(estimator, grad, outputs, dtype, overwrite, chunk_elements, on_progress)


def _stream(estimator: Estimator, grad: Any, outputs: dict[str, tuple[str, Any]], dtype: Any, overwrite: Any,
            chunk_elements: Any, on_progress: Any) -> OnDiskMoments:
    """The two passes: block totals, then per coordinate (every argument checked first)."""
    _check_estimator(estimator)
    leaves, treedef = _gradient(grad, "grad")
    form = estimator.streamed_form(tuple(leaf.size for leaf in leaves))
    chunk = _check_chunk(chunk_elements)
    out_dtype = _check_dtype(dtype)
    overwrite = _check_bool(overwrite, "overwrite")
    sources = _sources(leaves)
    targets = {name: _check_out(path, overwrite, arg, sources) for name, (arg, path) in outputs.items()}
    if len({target.resolve() for target in targets.values()}) < len(targets):
        raise ValueError("var_out and snr_out are the same folder; give each its own folder")
    check_callback(on_progress, "on_progress", "on_progress(done, total)")
    progress = _Progress(on_progress, 2 * sum(leaf.size for leaf in leaves))

    # ∇² may overflow float64 for finite ∇ (as in memory: the variance is then inf).
    with np.errstate(over="ignore"):
        totals = BlockTotals(form.blocks, form.variance.statistic)
        for leaf in leaves:
            for start, g in _chunks(leaf, chunk):
                x = g * g
                if not np.all(np.isfinite(totals.add(x, leaf.offset + start))):
                    _check_finite(leaf, g, start)
                progress(g.size)

        with contextlib.ExitStack() as stack:
            folders = {name: stack.enter_context(AtomicFolder(target)) for name, target in targets.items()}
            for folder in folders.values():
                _write_manifest(folder, treedef, leaves, lambda _: out_dtype)
            total = 0.0
            for i, leaf in enumerate(leaves):
                with contextlib.ExitStack() as files:
                    outs = {name: files.enter_context(_NpyWriter(folder / _leaf_file(i), leaf.shape, out_dtype))
                            for name, folder in folders.items()}
                    for start, g in _chunks(leaf, chunk):
                        values = _coordinate_moments(form, totals, g, leaf.offset + start, with_snr="snr" in outs)
                        total += float(np.sum(values["var"]))
                        for name, out in outs.items():
                            _store(out, values[name], leaf, start, name)
                        progress(g.size)
            for folder in folders.values():
                folder.commit()
    opened = {name: jax.tree_util.tree_unflatten(treedef, _decode_leaves(target, len(leaves)))
              for name, target in targets.items()}
    return OnDiskMoments(total, opened.get("var"), opened.get("snr"))


def _coordinate_moments(form: StreamedForm, totals: BlockTotals, g: np.ndarray, start: int, *,
                        with_snr: bool) -> dict[str, np.ndarray]:
    """Var and SNR of one chunk, as the in-memory law computes them (scale applied last)."""
    x = g * g
    variance = form.variance(x, totals.statistic(x, start)) * form.scale**2
    if not with_snr:
        return {"var": variance}
    mean = g * form.mean_factor * form.scale
    with np.errstate(divide="ignore", invalid="ignore"):
        # IEEE division: x/0 = inf and 0/0 = NaN, the documented SNR.
        return {"var": variance, "snr": mean * mean / variance}


# ----------------------------------------------------------------------------------------
# Checks (before any work)
# ----------------------------------------------------------------------------------------


def _check_estimator(estimator: Any) -> None:
    if not isinstance(estimator, Estimator):
        raise TypeError(
            f"estimator must be an snrkit estimator such as sk.ForwardGradient() or sk.Partitioned(blocks=8), "
            f"got {type(estimator).__name__}"
        )


def _check_chunk(chunk_elements: Any) -> int:
    return check_int(chunk_elements, "chunk_elements", hint="coordinates read at a time, e.g. 1 << 18")


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy float dtype such as 'float64' or 'float32', got {dtype!r}") from None
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float16, float32 or float64 (a type .npy files hold), got {dtype}")
    return dtype


def _check_out(path: Any, overwrite: bool, name: str, sources: set[Path]) -> Path:
    """The folder to write, refused before any work where writing it would lose data.

    `overwrite=True` replaces a folder snrkit wrote (it holds a manifest) or an empty one,
    never another folder, nor one that holds a file the gradient is read from.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be the path of a folder to write, got {type(path).__name__}")
    target = Path(path)
    resolved = target.resolve()
    inside = sorted(str(source) for source in sources if source == resolved or resolved in source.parents)
    if inside:
        raise ValueError(
            f"{name}={str(target)!r} holds the gradient being read ({inside[0]}); writing there would replace "
            f"it. Choose a folder outside the gradient's."
        )
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"{name}={str(target)!r} is a file; name a folder to write the results into")
        if not overwrite:
            raise FileExistsError(
                f"{name}={str(target)!r} exists; pass overwrite=True to replace it, or choose another folder"
            )
        if not (target / MANIFEST).is_file() and any(target.iterdir()):
            raise ValueError(
                f"{name}={str(target)!r} is a folder snrkit did not write (it has no {MANIFEST}), and "
                f"overwrite=True would delete everything in it; choose a new folder, or empty this one first"
            )
    check_output_folder(target.parent, name)
    return target


def _sources(leaves: list[_Leaf]) -> set[Path]:
    """The files the gradient is read from: its folder's leaf files, and the files of memmap leaves."""
    files = [leaf.file if leaf.file is not None else getattr(leaf.array, "filename", None) for leaf in leaves]
    return {Path(file).resolve() for file in files if file is not None}


def _gradient(grad: Any, name: str) -> tuple[list[_Leaf], Any]:
    """The validated leaves of a gradient on disk (or a folder path) and its tree structure."""
    files: list[Path | None] = []
    if isinstance(grad, str | os.PathLike):
        folder = Path(grad)
        info = _read_manifest(folder)
        grad = _opened(folder, info)  # maps nothing until read: the leaves are read from their files
        files = [folder / entry["file"] for entry in info["leaves"]]
    flat, treedef = jax.tree_util.tree_flatten_with_path(grad)
    if not flat:
        raise ValueError(
            f"{name} is an empty pytree: there is no coordinate. Pass the gradient's arrays (np.memmap, "
            f"zarr or tensorstore arrays), or the folder save_gradient wrote."
        )
    leaves, offset = [], 0
    for i, (key_path, array) in enumerate(flat):
        path = f"{name}{jax.tree_util.keystr(key_path)}"
        shape, dtype = getattr(array, "shape", None), getattr(array, "dtype", None)
        if shape is None or dtype is None or not callable(getattr(array, "__getitem__", None)):
            raise TypeError(
                f"{path} is a {type(array).__name__}, not an array: pass np.memmap or np.ndarray leaves, or "
                f"array-likes with .shape, .dtype and slicing (zarr, tensorstore)"
            )
        dtype = np.dtype(getattr(dtype, "numpy_dtype", dtype))
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{path} has dtype {dtype}; a gradient has floating entries. Save it as float32 or float64, "
                f"e.g. np.asarray(x, np.float32)."
            )
        leaf = _Leaf(path, array, tuple(int(d) for d in shape), dtype, offset, files[i] if files else None)
        leaves.append(leaf)
        offset += leaf.size
    if offset == 0:
        raise ValueError(f"{name} has no coordinates (all its arrays are empty); pass a non-empty gradient")
    return leaves, treedef


def _check_finite(leaf: _Leaf, g: np.ndarray, start: int) -> None:
    bad = np.flatnonzero(~np.isfinite(g))
    if bad.size:
        flat = start + int(bad[0])
        index = tuple(int(i) for i in np.unravel_index(flat, leaf.shape)) if leaf.shape else ()
        raise ValueError(
            f"{leaf.path} has a non-finite value ({g[bad[0]]}) at index {index} (flat index {flat} of the "
            f"leaf); the law is only defined for a finite gradient. Nothing was written. Check the loss for "
            f"overflow (e.g. log of 0) before saving its gradient."
        )


# ----------------------------------------------------------------------------------------
# Reading and writing
# ----------------------------------------------------------------------------------------


def _pieces(shape: tuple[int, ...], chunk: int) -> Iterator[tuple[tuple, int, int]]:
    """Index tuples that read an array in C order, each of at most `chunk` entries: `(index, start, size)`.

    The index fixes the leading axes and slices one axis, whole trailing axes after it:
    a contiguous run of the flat array, read with plain slicing (memmap, zarr, tensorstore).
    """
    if math.prod(shape) == 0:
        return
    if not shape:
        yield (), 0, 1
        return
    tails = [math.prod(shape[axis + 1:]) for axis in range(len(shape))]
    axis = next(a for a, tail in enumerate(tails) if tail <= chunk)
    step = chunk // tails[axis]
    start = 0
    for prefix in itertools.product(*(range(d) for d in shape[:axis])):
        for lo in range(0, shape[axis], step):
            hi = min(lo + step, shape[axis])
            size = (hi - lo) * tails[axis]
            yield (*prefix, slice(lo, hi)), start, size
            start += size


def _chunks(leaf: _Leaf, chunk: int, dtype: Any = np.float64) -> Iterator[tuple[int, np.ndarray]]:
    """`(start, values)` for each piece of a leaf in C order: flat values (float64 by default), `start` within the leaf.

    A leaf of a gradient folder is read with plain file reads into a buffer of the chunk's
    size (no pages of the file are mapped into the process); any other array by slicing.
    """
    dtype = dtype if dtype is not None else _saved_dtype(leaf.dtype)
    with contextlib.ExitStack() as stack:
        source = None if leaf.file is None else stack.enter_context(_NpyReader(leaf.file))
        for index, start, size in _pieces(leaf.shape, chunk):
            raw = np.asarray(leaf.array[index]) if source is None else source.read(start, size)
            yield start, raw.astype(dtype, copy=False).reshape(-1)


def _saved_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a leaf is saved in: its own where .npy holds it, else float32 (bfloat16 is exact there)."""
    native = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
    return dtype if dtype in native else np.dtype(np.float32)


class _NpyReader:
    """Reads flat runs of an `.npy` file (C order) with plain file reads."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Self:
        self.file = open(self.path, "rb", buffering=0)
        version = np.lib.format.read_magic(self.file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, self.dtype = read_header(self.file)
        if fortran and len(shape) > 1:
            raise ValueError(f"{self.path} holds a Fortran-order array; save it in C order (np.ascontiguousarray)")
        self.offset = self.file.tell()
        return self

    def read(self, start: int, size: int) -> np.ndarray:
        out = np.empty(size, self.dtype)
        self.file.seek(self.offset + start * self.dtype.itemsize)
        if self.file.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise ValueError(f"{self.path} is shorter than its header says; it was truncated")
        return out

    def __exit__(self, *exc: object) -> None:
        self.file.close()


class _NpyWriter:
    """Writes an `.npy` file (created by `open_memmap`) sequentially, in C order, with plain file writes."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)

    def __enter__(self) -> Self:
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
        offset = header.offset
        del header
        self.file = open(self.path, "r+b")
        self.file.seek(offset)
        return self

    def write(self, values: np.ndarray) -> None:
        self.file.write(memoryview(np.ascontiguousarray(values, self.dtype)).cast("B"))

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _store(out: _NpyWriter, values: np.ndarray, leaf: _Leaf, start: int, name: str) -> None:
    if out.dtype != np.float64:
        info = np.finfo(out.dtype)
        magnitude = np.abs(values)
        lost = np.isfinite(values) & ((magnitude > info.max) | ((magnitude < info.tiny) & (values != 0)))
        if lost.any():
            at = start + int(np.flatnonzero(lost)[0])
            raise ValueError(
                f"{name} of {leaf.path} has a value ({values[lost][0]:g}, flat index {at}) outside the normal range "
                f"of {out.dtype}; pass dtype='float64'. Nothing was written."
            )
    out.write(values)


def _leaf_file(i: int) -> str:
    return f"leaf-{i:05d}.npy"


def _decode_leaves(folder: Path, count: int) -> list[np.memmap]:
    return [np.load(folder / _leaf_file(i), mmap_mode="r") for i in range(count)]


class _Progress:
    def __init__(self, callback: ProgressFn | None, total: int):
        self.callback, self.total, self.done = callback, total, 0

    def __call__(self, count: int) -> None:
        self.done += count
        if self.callback is not None:
            self.callback(self.done, self.total)


# -- the manifest: leaves in ravel order and the pytree of dicts, lists and tuples -----------


class _Marker:
    def __init__(self, index: int):
        self.index = index


def _write_manifest(folder: Any, treedef: Any, leaves: list[_Leaf], dtype_of: Callable[[np.dtype], np.dtype]) -> None:
    markers = jax.tree_util.tree_unflatten(treedef, [_Marker(i) for i in range(len(leaves))])
    try:
        structure = _encode(markers)
    except TypeError:
        structure = None
    info = {
        "format": _FORMAT,
        "leaves": [{"file": _leaf_file(i), "path": leaf.path, "shape": list(leaf.shape),
                    "dtype": str(dtype_of(leaf.dtype))} for i, leaf in enumerate(leaves)],
        "structure": structure,
    }
    (folder / MANIFEST).write_text(json.dumps(info, indent=1), encoding="utf-8")


def _encode(node: Any) -> Any:
    if type(node) is _Marker:
        return {"leaf": node.index}
    if node is None:
        return {"none": None}
    if type(node) is dict and all(isinstance(k, str) for k in node):
        return {"dict": {k: _encode(v) for k, v in node.items()}}
    if type(node) in (list, tuple):
        return {type(node).__name__: [_encode(v) for v in node]}
    raise TypeError(f"{type(node).__name__} is not saved as a structure")


def _decode(node: Mapping[str, Any], arrays: list[np.ndarray]) -> Any:
    (kind, value), = node.items()
    if kind == "leaf":
        return arrays[value]
    if kind == "none":
        return None
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in value.items()}
    items = [_decode(v, arrays) for v in value]
    return items if kind == "list" else tuple(items)


__all__ = [
    "DEFAULT_CHUNK_ELEMENTS",
    "MANIFEST",
    "OnDiskMoments",
    "moments",
    "open_gradient",
    "save_gradient",
    "snr",
    "total_variance",
    "var",
]
