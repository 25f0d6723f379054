"""Real image-classification data: scikit-learn's 8x8 digits and the MNIST IDX files.

Both loaders return a [`Dataset`][snrkit.data.Dataset] of float32 images in $[0, 1]$ and
int32 labels, held as NumPy arrays on the host; the gradient code moves them to the device
once.

Nothing here downloads anything. The digits ship inside scikit-learn; MNIST is read from a
folder of IDX files that the caller points at (`load_mnist(path)`, `--mnist-dir` on the
command line, or the `SNRKIT_MNIST_DIR` environment variable). Malformed files raise
[`DataError`][snrkit.data.DataError], whose message names the file and says how to fix it.

Examples:
    >>> from snrkit import data
    >>> digits = data.load("digits")
    >>> digits.num_examples, digits.image_shape, digits.num_classes
    (1797, (8, 8), 10)
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from snrkit.core.validation import check_int

__all__ = [
    "DataError",
    "Dataset",
    "DATASETS",
    "default_mnist_dir",
    "load",
    "check_mnist_dir",
    "load_digits",
    "load_mnist",
]

DATASETS: tuple[str, ...] = ("digits", "mnist")
"""Names accepted by [`load`][snrkit.data.load]."""

_MNIST_SPLITS = ("train", "t10k")
_IDX_UBYTE = 0x08
_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_MNIST_ENV = "SNRKIT_MNIST_DIR"
_MNIST_SOURCES = (
    "http://yann.lecun.com/exdb/mnist/ or a mirror such as "
    "https://ossci-datasets.s3.amazonaws.com/mnist/"
)


class DataError(ValueError):
    """A data file or folder is missing or malformed.

    The message names the offending path and says what to do about it. It subclasses
    `ValueError` so callers that already handle bad input keep working.

    Examples:
        >>> import numpy as np
        >>> from snrkit.data import DataError, Dataset
        >>> Dataset(
        ...     np.full((1, 2, 2), 255.0), np.array([0]), num_classes=10, name="raw"
        ... )
        Traceback (most recent call last):
        ...
        snrkit.data.DataError: images must lie in [0, 1]; got ... [255.0, 255.0]...
        >>> issubclass(DataError, ValueError)
        True
    """


def _how_to_get_mnist(folder: Path | str, split: str = "t10k") -> str:
    return (
        f"Download {split}-images-idx3-ubyte.gz and {split}-labels-idx1-ubyte.gz from "
        f"{_MNIST_SOURCES} into {folder}, or point snrkit at a folder that has them "
        f"(mnist_dir=... in Python, --mnist-dir on the command line, or the {_MNIST_ENV} "
        "environment variable)."
    )


@dataclass(frozen=True, eq=False)
class Dataset:
    """An in-memory image-classification data set.

    The constructor checks shapes, dtypes and ranges (raising
    [`DataError`][snrkit.data.DataError]), converts images to float32 and labels to int32,
    and stores read-only views, so the frozen dataclass is also frozen in its contents.
    `eq=False` because element-wise array comparison has no single truth value; two
    datasets are equal only if they are the same object.

    Examples:
        >>> import numpy as np
        >>> from snrkit.data import Dataset
        >>> toy = Dataset(
        ...     np.zeros((4, 2, 3)),
        ...     np.array([0, 1, 1, 2]),
        ...     num_classes=3,
        ...     name="toy",
        ... )
        >>> toy
        Dataset(name='toy', images=float32[4,2,3], labels=int32[4], num_classes=3)
        >>> toy.images.flags.writeable
        False
    """

    images: np.ndarray
    """float32 array of shape `(N, H, W)` with values in $[0, 1]$ (a read-only view)."""
    labels: np.ndarray
    """int32 array of shape `(N,)` with values in `[0, num_classes)` (a read-only view)."""
    num_classes: int
    """Number of classes (the logits' width)."""
    name: str
    """Short name, e.g. `"digits"` or `"mnist"`."""

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.ndim != 3:
            raise DataError(
                f"images must have shape (N, H, W); got shape {images.shape}. "
                "Add or remove the channel axis before building a Dataset."
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"labels must have shape (N,) = ({images.shape[0]},) to match images; got "
                f"{labels.shape}. Pass one integer label per image."
            )
        if images.shape[0] == 0:
            raise DataError("a Dataset needs at least one example; got N = 0.")
        if int(self.num_classes) < 1:
            raise DataError(f"num_classes must be >= 1; got {self.num_classes}.")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"labels must be integers; got dtype {labels.dtype}.")
        images = images.astype(np.float32, copy=False)
        labels = labels.astype(np.int32, copy=False)
        # min/max propagate NaN, so one pass over the data checks both finiteness and range.
        lo, hi = float(images.min()), float(images.max())
        if not (0.0 <= lo and hi <= 1.0):
            raise DataError(
                f"images must lie in [0, 1]; got values in [{lo}, {hi}]. "
                "Scale raw pixels (e.g. divide uint8 MNIST pixels by 255)."
            )
        lab_lo, lab_hi = int(labels.min()), int(labels.max())
        if lab_lo < 0 or lab_hi >= int(self.num_classes):
            raise DataError(
                f"labels must lie in [0, {int(self.num_classes)}); got values in "
                f"[{lab_lo}, {lab_hi}]. Check num_classes or the label file."
            )
        # Read-only *views*: freezes the dataset without copying and without changing the
        # flags of an array the caller still owns.
        images, labels = images.view(), labels.view()
        images.flags.writeable = False
        labels.flags.writeable = False
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "num_classes", int(self.num_classes))
        object.__setattr__(self, "name", str(self.name))

    def __repr__(self) -> str:
        # The default repr would print every pixel.
        n, h, w = self.images.shape
        return (
            f"Dataset(name={self.name!r}, images=float32[{n},{h},{w}], labels=int32[{n}], "
            f"num_classes={self.num_classes})"
        )

    @property
    def num_examples(self) -> int:
        """Number of examples $N$.

        Examples:
            >>> import numpy as np
            >>> from snrkit.data import Dataset
            >>> Dataset(
            ...     np.zeros((4, 2, 3)), np.zeros(4, int), num_classes=3, name="toy"
            ... ).num_examples
            4
        """
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        """Image height and width `(H, W)`.

        Examples:
            >>> import numpy as np
            >>> from snrkit.data import Dataset
            >>> Dataset(
            ...     np.zeros((4, 2, 3)), np.zeros(4, int), num_classes=3, name="toy"
            ... ).image_shape
            (2, 3)
        """
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    @property
    def input_dim(self) -> int:
        """Number of pixels per image, $H W$ (the input width of an MLP).

        Examples:
            >>> import numpy as np
            >>> from snrkit.data import Dataset
            >>> Dataset(
            ...     np.zeros((4, 2, 3)), np.zeros(4, int), num_classes=3, name="toy"
            ... ).input_dim
            6
        """
        return int(self.images.shape[1] * self.images.shape[2])

    def flat(self) -> np.ndarray:
        """Images flattened row-major to shape `(N, H*W)`, float32 (a read-only view).

        Examples:
            >>> import numpy as np
            >>> from snrkit.data import Dataset
            >>> toy = Dataset(
            ...     np.zeros((4, 2, 3)), np.zeros(4, int), num_classes=3, name="toy"
            ... )
            >>> toy.flat().shape, toy.flat().dtype
            ((4, 6), dtype('float32'))
        """
        return self.images.reshape(self.num_examples, -1)

    def take(self, num: int) -> Dataset:
        """The first `num` examples, in file order (deterministic).

        Args:
            num: How many examples to keep, `1 <= num <= num_examples`.

        Returns:
            A new `Dataset` sharing memory with this one.

        Raises:
            ValueError: If `num` is out of range.
            TypeError: If `num` is not an integer.

        Examples:
            >>> import numpy as np
            >>> from snrkit.data import Dataset
            >>> toy = Dataset(
            ...     np.zeros((4, 2, 3)),
            ...     np.array([0, 1, 1, 2]),
            ...     num_classes=3,
            ...     name="toy",
            ... )
            >>> toy.take(2).labels.tolist()
            [0, 1]
            >>> toy.take(5)
            Traceback (most recent call last):
            ...
            ValueError: num must be at most 4 (examples to take, of the 4 available), got 5
        """
        num = _check_count(num, self.num_examples)
        return Dataset(self.images[:num], self.labels[:num], self.num_classes, self.name)

    def subset(self, key: jax.Array, num: int) -> Dataset:
        """`num` examples drawn uniformly without replacement, in random order.

        The key comes first, as for everything random in snrkit, so the subset is a
        function of `(key, num)` only.

        Args:
            key: A `jax.random.key`.
            num: How many examples to keep, `1 <= num <= num_examples`.

        Returns:
            A new `Dataset` (a copy of the selected rows).

        Raises:
            ValueError: If `num` is out of range.
            TypeError: If `num` is not an integer.

        Examples:
            >>> import jax, numpy as np
            >>> from snrkit.data import Dataset
            >>> toy = Dataset(
            ...     np.zeros((4, 2, 3)),
            ...     np.array([0, 1, 1, 2]),
            ...     num_classes=3,
            ...     name="toy",
            ... )
            >>> a, b = (
            ...     toy.subset(jax.random.key(0), 3),
            ...     toy.subset(jax.random.key(0), 3),
            ... )
            >>> a.num_examples, a.labels.tolist() == b.labels.tolist()
            (3, True)
        """
        num = _check_count(num, self.num_examples)
        index = np.asarray(jax.random.permutation(key, self.num_examples)[:num])
        return Dataset(self.images[index], self.labels[index], self.num_classes, self.name)

    def class_counts(self) -> np.ndarray:
        """Number of examples of each class, int64 array of shape `(num_classes,)`.

        Examples:
            >>> import numpy as np
            >>> from snrkit.data import Dataset
            >>> toy = Dataset(
            ...     np.zeros((4, 2, 3)),
            ...     np.array([0, 1, 1, 2]),
            ...     num_classes=3,
            ...     name="toy",
            ... )
            >>> toy.class_counts().tolist()
            [1, 2, 1]
        """
        return np.bincount(self.labels, minlength=self.num_classes)


def _check_count(num: int, available: int) -> int:
    return check_int(num, "num", maximum=available, hint=f"examples to take, of the {available} available")


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes).

    The data are `sklearn.datasets.load_digits` (a copy of the test set of the UCI optical
    recognition of handwritten digits data). Pixels are integers 0..16 in the source, so
    dividing by 16 maps them exactly onto $[0, 1]$. Nothing is downloaded: the data ship
    inside scikit-learn.

    Returns:
        A `Dataset` named `"digits"` with images of shape `(1797, 8, 8)`.

    Examples:
        >>> from snrkit.data import load_digits
        >>> digits = load_digits()
        >>> digits
        Dataset(name='digits', images=float32[1797,8,8], labels=int32[1797],
                num_classes=10)
        >>> float(digits.images.max()), digits.class_counts().tolist()[:3]
        (1.0, [178, 182, 177])
    """
    # Imported here so that importing snrkit.data does not pay for scikit-learn.
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int32)
    return Dataset(images, labels, num_classes=10, name="digits")


_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path, fix: str) -> bytes:
    raw = path.read_bytes()
    if path.suffix != ".gz":
        if raw[:2] == _GZIP_MAGIC:
            raise DataError(
                f"{path} is gzip-compressed although its name has no .gz suffix: gunzip it "
                f"(e.g. `mv {path.name} {path.name}.gz && gunzip {path.name}.gz` in {path.parent}), or add the .gz "
                f"suffix so that snrkit decompresses it."
            )
        return raw
    try:
        return gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        # EOFError is what a download cut short looks like; BadGzipFile a non-gzip file.
        raise DataError(
            f"{path} is not a valid gzip file ({type(err).__name__}: {err}); the download "
            f"is probably corrupted or incomplete. Delete it and download it again. {fix}"
        ) from err


def _read_idx(path: Path, *, magic: int, ndim: int, what: str, fix: str) -> np.ndarray:
    """Parse an unsigned-byte IDX file, checking its header against its size."""
    data = _read_bytes(path, fix)
    if len(data) < 4:
        raise DataError(
            f"{path} is truncated: {len(data)} bytes, too short for an IDX header. "
            f"Download it again. {fix}"
        )
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        other = {_IMAGES_MAGIC: "an IDX images file", _LABELS_MAGIC: "an IDX labels file"}
        hint = ""
        if found in other:
            hint = f" It looks like {other[found]}: are the images and labels files swapped?"
        elif struct.unpack("<i", data[:4])[0] == magic:
            hint = " It looks byte-swapped (little-endian); IDX headers are big-endian."
        raise DataError(
            f"{path} is not an MNIST IDX {what} file: magic number {found} "
            f"(0x{found & 0xFFFFFFFF:08x}), expected {magic} (0x{magic:08x}).{hint} "
            f"Check that the right file is in place. {fix}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path} is truncated: {len(data)} bytes, but its header needs {header}. "
            f"Download it again. {fix}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims)
    actual = len(data) - header
    if actual != expected:
        shape = " x ".join(map(str, dims))
        problem = "is truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{path} {problem}: its header declares {shape} = {expected} bytes of data but "
            f"the file holds {actual}. Download it again. {fix}"
        )
    if dims[0] == 0:
        raise DataError(f"{path} holds no {what}. Download it again. {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str, fix: str) -> Path:
    # The raw file is preferred when both exist: it is what the .gz decompresses to and it
    # loads without the decompression step.
    candidates = [folder / stem, folder / f"{stem}.gz"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked_for = " or ".join(c.name for c in candidates)
    raise DataError(f"no {looked_for} in {folder}. {fix}")


def load_mnist(path: str | os.PathLike[str], *, split: str = "t10k") -> Dataset:
    """Read MNIST from a folder of IDX files.

    Looks for `{split}-images-idx3-ubyte` and `{split}-labels-idx1-ubyte` in `path`,
    each either raw or gzipped (`.gz` suffix); when both forms exist the raw one is read.
    The IDX headers (the format described at http://yann.lecun.com/exdb/mnist/) are parsed
    and checked here: magic numbers 2051 and 2049, big-endian dimensions, sizes that match
    the declared dimensions.

    Args:
        path: Folder holding the IDX files.
        split: `"t10k"` (the 10,000-image test set) or `"train"` (60,000 images).

    Returns:
        A `Dataset` named `"mnist"` with images of shape `(N, 28, 28)` scaled by
        1/255 into $[0, 1]$.

    Raises:
        DataError: If the folder or a file is missing, a file is not a valid (gzipped) IDX
            file of the expected kind (or is gzipped under the raw name), a file is
            truncated, the image and label counts differ, or a label is outside 0..9. The
            message says how to fix it.
        ValueError: If `split` is not `"t10k"` or `"train"`.
        TypeError: If `path` is not a str or path.

    Examples:
        Two hand-made images in a temporary folder, in the IDX format:

        >>> import shutil, struct, tempfile
        >>> import numpy as np
        >>> from pathlib import Path
        >>> from snrkit.data import load_mnist
        >>> folder = Path(tempfile.mkdtemp())
        >>> images = np.full((2, 28, 28), 255, np.uint8)
        >>> _ = (folder / "t10k-images-idx3-ubyte").write_bytes(
        ...     struct.pack(">iIII", 2051, 2, 28, 28) + images.tobytes()
        ... )
        >>> _ = (folder / "t10k-labels-idx1-ubyte").write_bytes(
        ...     struct.pack(">iI", 2049, 2) + bytes([7, 3])
        ... )
        >>> mnist = load_mnist(folder)
        >>> mnist, mnist.labels.tolist(), float(mnist.images.max())
        (Dataset(name='mnist', images=float32[2,28,28], labels=int32[2],
                 num_classes=10), [7, 3], 1.0)
        >>> shutil.rmtree(folder)
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"path must be the folder holding the MNIST IDX files (a str or pathlib.Path), got {path!r}. "
            f"{_how_to_get_mnist('a folder of your choice', split if isinstance(split, str) else 't10k')}"
        )
    if split not in _MNIST_SPLITS:
        hint = ' (the MNIST test split is called "t10k")' if split == "test" else ""
        raise ValueError(f"split must be one of {_MNIST_SPLITS}; got {split!r}{hint}.")
    folder = Path(path).expanduser()
    fix = _how_to_get_mnist(folder, split)
    if not folder.exists():
        raise DataError(f"MNIST folder {folder} does not exist. {fix}")
    if not folder.is_dir():
        raise DataError(f"MNIST path {folder} is a file, not a folder. {fix}")

    images_path = _find_idx(folder, f"{split}-images-idx3-ubyte", fix)
    labels_path = _find_idx(folder, f"{split}-labels-idx1-ubyte", fix)
    images = _read_idx(images_path, magic=_IMAGES_MAGIC, ndim=3, what="images", fix=fix)
    labels = _read_idx(labels_path, magic=_LABELS_MAGIC, ndim=1, what="labels", fix=fix)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; the two files come from different splits or "
            f"downloads. Replace both with a matching pair. {fix}"
        )
    if int(labels.max()) > 9:
        raise DataError(
            f"{labels_path} holds label {int(labels.max())}; MNIST labels are 0..9. "
            f"The file is corrupted or is not MNIST. {fix}"
        )
    scaled = images.astype(np.float32) / np.float32(255.0)
    return Dataset(scaled, labels.astype(np.int32), num_classes=10, name="mnist")


def default_mnist_dir() -> Path | None:
    """Where MNIST is found without being told.

    Checks, in order, the `SNRKIT_MNIST_DIR` environment variable and
    `../shared/data/mnist` relative to the repository root (the parent of the `snrkit`
    package folder), where every developer checkout and CI runner keeps it.

    Returns:
        The first of those that is an existing folder, or `None` (as on a user's fresh
        machine, where MNIST must be downloaded first).

    Raises:
        DataError: `SNRKIT_MNIST_DIR` is set to something that is not an existing folder.

    Examples:
        >>> import os, tempfile
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> from snrkit.data import default_mnist_dir
        >>> folder = tempfile.mkdtemp()
        >>> with mock.patch.dict(os.environ, {"SNRKIT_MNIST_DIR": folder}):
        ...     default_mnist_dir() == Path(folder)
        True
        >>> os.rmdir(folder)
    """
    candidates: list[Path] = []
    env = os.environ.get(_MNIST_ENV)
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            # A variable set by hand is an instruction: ignoring it would read other data silently.
            raise DataError(
                f"{_MNIST_ENV}={env} is not an existing folder; fix it or unset it. {_how_to_get_mnist(folder)}"
            )
        candidates.append(folder)
    repo_root = Path(__file__).resolve().parent.parent
    candidates.append(repo_root.parent / "shared" / "data" / "mnist")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def check_mnist_dir(path: str | os.PathLike[str], *, split: str = "t10k") -> None:
    """Check, before any long work, that `path` holds readable MNIST IDX files (see [`load_mnist`][snrkit.data.load_mnist]).

    Reads and validates the files (a fraction of a second for the test split), so a
    mistyped folder fails at once rather than after a sweep.

    Raises:
        DataError, TypeError, ValueError: as [`load_mnist`][snrkit.data.load_mnist].

    Examples:
        >>> from snrkit.data import check_mnist_dir
        >>> check_mnist_dir("/no/such/folder")
        Traceback (most recent call last):
        ...
        snrkit.data.DataError: MNIST folder /no/such/folder does not exist. ...
    """
    load_mnist(path, split=split)


def load(name: str, *, mnist_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a data set by name.

    Args:
        name: `"digits"` or `"mnist"` (one of [`DATASETS`][snrkit.data.DATASETS]).
        mnist_dir: Folder of MNIST IDX files; required for `"mnist"` and ignored for
            `"digits"`. It is never guessed here, so a library call reads only what it is
            told to; use [`default_mnist_dir`][snrkit.data.default_mnist_dir] to look in
            the usual places.

    Returns:
        The `Dataset` ([`load_digits`][snrkit.data.load_digits], or for MNIST the `t10k`
        test split read by [`load_mnist`][snrkit.data.load_mnist]).

    Raises:
        ValueError: For an unknown name, or `"mnist"` without `mnist_dir`.
        DataError: If the MNIST files are missing or malformed.

    Examples:
        >>> from snrkit.data import load
        >>> load("digits").name
        'digits'
        >>> load("cifar")
        Traceback (most recent call last):
        ...
        ValueError: unknown dataset 'cifar'; choose one of ('digits', 'mnist').
        >>> load("mnist")
        Traceback (most recent call last):
        ...
        ValueError: load('mnist') needs mnist_dir, the folder holding ...
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "digits":
        return load_digits()
    if key == "mnist":
        if mnist_dir is None:
            found = default_mnist_dir()
            hint = (
                f" MNIST was found at {found}: pass mnist_dir=snrkit.data.default_mnist_dir()."
                if found is not None
                else " " + _how_to_get_mnist("a folder of your choice")
            )
            raise ValueError(
                "load('mnist') needs mnist_dir, the folder holding the MNIST IDX files "
                f"(--mnist-dir on the command line).{hint}"
            )
        return load_mnist(mnist_dir)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}.")
