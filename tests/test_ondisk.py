"""Streamed moments of gradients on disk (snrkit.ondisk) equal the in-memory law's, to float64 rounding.

* Every family row of the contract table either declares a streamed form, whose var,
  total variance and SNR equal `est.given(grad)`'s on a pytree of several leaves with
  chunks that split leaves and blocks mid-way, or refuses with NoStreamedForm.
* Negative controls: a per-coordinate formula off by 1e-9, a block layout off by one and
  the cancelling form of the variance at a dominant entry are all caught.
* Errors are raised before any work, name the argument and the fix; outputs are atomic.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snrkit as sk
from snrkit import ondisk
from snrkit.core.streamed import Blocks, BlockTotals, CoordinateVariance, NoStreamedForm
from snrkit.core.tree import ravel_host
from tests.families.cases import CASES

RTOL = 1e-12  # float64 rounding of sums over at most a few hundred terms

# Leaves of different shapes, a 0-d one and an empty one; one dominant entry, ties and a zero.
SHAPES = {"a": (3, 4), "b": (5,), "c": (2, 3, 2), "d": (), "e": (0, 2)}
CHUNKS = (1, 5, 7, 64)


def _tree(seed: int = 0, dominant: float = 40.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tree = {name: rng.normal(size=shape) for name, shape in SHAPES.items()}
    tree["a"][1, 2] = dominant
    tree["b"][1] = tree["b"][3] = -2.5  # a tie in the same leaf
    tree["c"][0, 1, 1] = 0.0
    return tree


def _in_memory(est: sk.Estimator, tree: dict) -> tuple[np.ndarray, float, np.ndarray]:
    with jax.enable_x64(True):
        law = est.given(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree))
        return ravel_host(law.var()), float(law.total_variance()), ravel_host(law.snr())


def _streamed(est: sk.Estimator, grad, tmp: Path, chunk: int) -> tuple[np.ndarray, float, np.ndarray]:
    m = ondisk.moments(est, grad, var_out=tmp / "var", snr_out=tmp / "snr", chunk_elements=chunk, overwrite=True)
    return ravel_host(m.var), m.total_variance, ravel_host(m.snr)


def _assert_agrees(streamed: tuple, memory: tuple) -> None:
    for got, want in zip(streamed, memory, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=0, equal_nan=True)


def _declares(est: sk.Estimator) -> bool:
    try:
        est.streamed_form(tuple(math.prod(s) for s in SHAPES.values()))
    except NoStreamedForm:
        return False
    return True


# -- agreement with the in-memory law ----------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_every_family_streams_its_law_or_refuses(case, tmp_path):
    """A family's streamed var, total variance and SNR are its in-memory law's, for chunks that split leaves and blocks."""
    tree = _tree()
    est = case.make(tree)
    if not _declares(est):
        with pytest.raises(NoStreamedForm, match=r"has no streamed form: .*est\.given\(grad\)"):
            ondisk.var(est, tree, tmp_path / "var")
        assert not (tmp_path / "var").exists()
        return
    memory = _in_memory(est, tree)
    grad = ondisk.save_gradient(tree, tmp_path / "grad")
    for chunk in CHUNKS:
        _assert_agrees(_streamed(est, grad, tmp_path, chunk), memory)


def test_the_families_expected_to_stream_do():
    declaring = {case.make(_tree()).family for case in CASES if _declares(case.make(_tree()))}
    assert declaring == {"forward-gradient", "partitioned", "orthogonal-frames", "multi-tangent"}


@pytest.mark.parametrize(
    "est",
    [
        sk.ForwardGradient("uniform", directions=3),
        sk.Partitioned(blocks=7, probe="rademacher", directions=2),
        sk.Partitioned(blocks=30, probe="gaussian"),  # one coordinate per block
        sk.OrthogonalFrames(directions=30),  # K = n: exact, zero variance
        sk.MultiTangent(directions=2, aggregation="mean"),
        sk.MultiTangent(directions=3, aggregation="mean", tangents="unit", scale="peer"),
    ],
    ids=repr,
)
def test_more_settings_agree(est, tmp_path):
    tree = _tree(seed=3)
    memory = _in_memory(est, tree)
    for chunk in (2, 11):
        _assert_agrees(_streamed(est, tree, tmp_path, chunk), memory)


@settings(max_examples=25)
@given(
    shapes=st.lists(st.lists(st.integers(0, 4), max_size=3).map(tuple), min_size=1, max_size=4),
    chunk=st.integers(1, 40),
    blocks=st.integers(1, 9),
    probe=st.sampled_from(["rademacher", "gaussian"]),
    seed=st.integers(0, 2**16),
)
def test_random_pytrees_and_chunks_agree(shapes, chunk, blocks, probe, seed, tmp_path_factory):
    sizes = [math.prod(shape) for shape in shapes]
    n = sum(sizes)
    if n == 0:
        return
    rng = np.random.default_rng(seed)
    tree = [rng.normal(size=shape) * rng.choice([1e-3, 1.0, 1e3], size=shape) for shape in shapes]
    est = sk.Partitioned(blocks=min(blocks, n), probe=probe)
    tmp = tmp_path_factory.mktemp("random")
    _assert_agrees(_streamed(est, tree, tmp, chunk), _in_memory(est, tree))


def test_leaves_blocks_skip_empty_leaves(tmp_path):
    tree = _tree()
    est = sk.Partitioned(blocks="leaves", probe="rademacher")
    assert est.streamed_form(tuple(math.prod(s) for s in SHAPES.values())).blocks.num_blocks == 4
    _assert_agrees(_streamed(est, tree, tmp_path, 3), _in_memory(est, tree))


def test_a_dominant_entry_keeps_its_digits(tmp_path):
    """Rademacher: Var[g_i] = Σ_{j≠i}∇_j²; at a dominant ∇_i only the cancellation-free form has any digits."""
    tree = {"w": np.array([1e9, 1e-3, 2e-3, 3e-3]), "b": np.array([4e-3])}
    flat = np.concatenate([tree["b"], tree["w"]])  # ravel order: sorted keys
    exact = np.array([math.fsum(np.delete(flat, i) ** 2) for i in range(flat.size)])
    est = sk.ForwardGradient("rademacher")
    streamed = ravel_host(ondisk.var(est, tree, tmp_path / "var", chunk_elements=2))
    np.testing.assert_allclose(streamed, exact, rtol=RTOL)
    np.testing.assert_allclose(_in_memory(est, tree)[0], exact, rtol=RTOL)
    # Negative control: ‖∇‖² − ∇_i² (the "sums" statistic) loses every digit there.
    cancelling = CoordinateVariance("sums", lambda x, total: total - x)
    totals = BlockTotals(Blocks.one(flat.size), "sums")
    totals.add(flat**2, 0)
    wrong = cancelling(flat**2, totals.statistic(flat**2, 0))
    top = int(np.argmax(flat))
    assert abs(wrong[top] - exact[top]) > 0.5 * exact[top]


# -- negative controls: the comparison catches wrong streamed forms ------------------------


class _OffByRounding(sk.ForwardGradient):
    """A forward gradient whose streamed formula is off by a relative 1e-9."""

    def streamed_form(self, sizes):
        form = super().streamed_form(sizes)
        right = form.variance
        return dataclasses.replace(form, variance=CoordinateVariance(right.statistic, lambda x, t: right(x, t) * (1 + 1e-9)))


class _ShiftedBlocks(sk.Partitioned):
    """Partitioned, streamed with one block too many."""

    def streamed_form(self, sizes):
        form = super().streamed_form(sizes)
        return dataclasses.replace(form, blocks=Blocks.contiguous(form.blocks.num_blocks + 1, form.blocks.n))


@pytest.mark.parametrize("est", [_OffByRounding("rademacher"), _ShiftedBlocks(blocks=3)], ids=lambda e: type(e).__name__)
def test_wrong_streamed_forms_are_caught(est, tmp_path):
    tree = _tree()
    memory = _in_memory(est, tree)
    with pytest.raises(AssertionError):
        _assert_agrees(_streamed(est, tree, tmp_path, 5), memory)


# -- errors before any work ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda g, out: ondisk.var("forward", g, out), TypeError, "estimator must be an snrkit estimator"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), {}, out), ValueError, "grad is an empty pytree"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), {"w": np.zeros((0, 3))}, out), ValueError,
         "has no coordinates"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), {"w": np.arange(3)}, out), TypeError,
         r"grad\['w'\] has dtype int64; .* float32"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), {"w": [1.0, 2.0]}, out), TypeError,
         r"grad\['w'\]\[0\] is a float, not an array"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), g, out, chunk_elements=0), ValueError,
         "chunk_elements must be at least 1"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), g, out, dtype=np.int32), TypeError,
         "dtype must be float16, float32 or float64"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), g, out, overwrite="yes"), TypeError,
         "overwrite must be True or False"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), g, 3), TypeError, "out must be the path of a folder"),
        (lambda g, out: ondisk.var(sk.ForwardGradient(), g, out, on_progress=1), TypeError,
         r"on_progress must be a function"),
        (lambda g, out: ondisk.var(sk.Partitioned(blocks=99), g, out), ValueError,
         "blocks=99 is more than the 30 coordinates"),
        (lambda g, out: ondisk.var(sk.OrthogonalFrames(directions=31), g, out), ValueError,
         "directions=31 is more than the 30 coordinates"),
        (lambda g, out: ondisk.var(sk.Partitioned(blocks=np.arange(30) % 2), g, out), NoStreamedForm,
         "explicit block ids hold one id per coordinate in memory; .* blocks='leaves'"),
        (lambda g, out: ondisk.var(sk.CovarianceProbe(factor=np.ones((30, 1))), g, out), NoStreamedForm,
         r"CovarianceProbe\(.*\) \(family 'covariance-probe'\) has no streamed form"),
        (lambda g, out: ondisk.moments(sk.ForwardGradient(), g, var_out=out, snr_out=out), ValueError,
         "var_out and snr_out are the same folder"),
        (lambda g, out: ondisk.open_gradient(out.parent), ValueError, "is not a gradient folder"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(call, error, message, tmp_path):
    grad = ondisk.save_gradient(_tree(), tmp_path / "grad")
    out = tmp_path / "out"
    with pytest.raises(error, match=message):
        call(grad, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grad"]


def test_an_existing_output_is_kept_unless_overwrite(tmp_path):
    grad, out = np.array([3.0, 4.0]), tmp_path / "var"
    ondisk.var(sk.ForwardGradient(), grad, out)
    with pytest.raises(FileExistsError, match=r"out=.* exists; pass overwrite=True"):
        ondisk.var(sk.ForwardGradient(), 2 * grad, out)
    assert np.load(out / "leaf-00000.npy").tolist() == [34.0, 41.0]
    ondisk.var(sk.ForwardGradient(), 2 * grad, out, overwrite=True)
    assert np.load(out / "leaf-00000.npy").tolist() == [136.0, 164.0]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; name a folder"):
        ondisk.var(sk.ForwardGradient(), grad, tmp_path / "file", overwrite=True)


def test_overwrite_never_deletes_the_gradient_or_a_folder_snrkit_did_not_write(tmp_path):
    """The gradient's folder, a folder above it, the folder of memmap leaves, and a user's folder are refused
    before any work, and left as they were."""
    grad = np.array([3.0, 4.0])
    parent = tmp_path / "parent"
    ondisk.save_gradient({"w": grad}, parent / "g")
    (parent / "notes.txt").write_text("keep me")
    user = tmp_path / "user"
    user.mkdir()
    (user / "data.csv").write_text("1,2")
    np.save(tmp_path / "mapped.npy", grad)
    mapped = np.load(tmp_path / "mapped.npy", mmap_mode="r")
    for source, out, message in [
        (parent / "g", parent / "g", "holds the gradient being read"),
        (parent / "g", parent, "holds the gradient being read"),
        ({"w": mapped}, tmp_path, "holds the gradient being read"),
        (grad, user, "a folder snrkit did not write .* would delete everything in it"),
    ]:
        with pytest.raises(ValueError, match=message):
            ondisk.var(sk.ForwardGradient(), source, out, overwrite=True)
    with pytest.raises(ValueError, match="a folder snrkit did not write"):
        ondisk.save_gradient({"w": grad}, user, overwrite=True)
    assert (parent / "notes.txt").read_text() == "keep me" and (user / "data.csv").read_text() == "1,2"
    assert ondisk.open_gradient(parent / "g")["w"].tolist() == [3.0, 4.0]
    # an empty folder, and a folder snrkit wrote, are replaced
    (tmp_path / "empty").mkdir()
    assert ondisk.var(sk.ForwardGradient(), grad, tmp_path / "empty", overwrite=True).tolist() == [34.0, 41.0]
    assert ondisk.save_gradient({"w": 2 * grad}, parent / "g", overwrite=True)["w"].tolist() == [6.0, 8.0]


def _damage(folder: Path, how: str) -> None:
    leaf = folder / "leaf-00000.npy"  # grad['b'], the first leaf in key order
    if how == "missing":
        leaf.unlink()
    elif how == "truncated":
        leaf.write_bytes(leaf.read_bytes()[:-8])
    elif how == "reshaped":
        np.save(leaf, np.ones((7, 3), np.float32))
    elif how == "retyped":
        np.save(leaf, np.ones(4, np.float64))
    else:
        (folder / ondisk.MANIFEST).write_text("{leaves: ")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", r"grad\['b'\]: its file .*leaf-00000.npy is missing"),
        ("truncated", r"grad\['b'\]: its file .* cannot be read .*damaged or truncated"),
        ("reshaped", r"grad\['b'\]: its file .* holds float32 of shape \(7, 3\), but snrkit-tree.json says float32 "
                     r"of shape \(4,\)"),
        ("retyped", r"grad\['b'\]: its file .* holds float64 of shape \(4,\), but snrkit-tree.json says float32"),
        ("manifest", r"snrkit-tree.json is damaged"),
    ],
)
def test_a_damaged_gradient_folder_is_refused_with_the_leaf_and_the_fix(how, message, tmp_path):
    folder = tmp_path / "grad"
    ondisk.save_gradient({"w": np.ones((3, 2), np.float32), "b": np.ones(4, np.float32)}, folder)
    _damage(folder, how)
    for call in (lambda: ondisk.open_gradient(folder), lambda: ondisk.total_variance(sk.ForwardGradient(), folder)):
        with pytest.raises(ValueError, match=message) as caught:
            call()
        assert "save_gradient" in str(caught.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_value_names_its_leaf_and_index_and_leaves_nothing(bad, tmp_path):
    tree = _tree()
    tree["c"][1, 2, 0] = bad
    tree["c"][1, 2, 1] = bad
    grad = ondisk.save_gradient(tree, tmp_path / "grad")
    with pytest.raises(ValueError, match=r"grad\['c'\] has a non-finite value .* at index \(1, 2, 0\) \(flat index 10"):
        ondisk.moments(sk.ForwardGradient(), grad, var_out=tmp_path / "var", snr_out=tmp_path / "snr",
                       chunk_elements=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grad"]


def test_huge_finite_entries_are_not_mistaken_for_non_finite(tmp_path):
    """∇² overflows float64 at 1e200, as in memory: the variance is inf, not an error."""
    grad = np.array([1e200, 1.0])
    assert math.isinf(ondisk.total_variance(sk.ForwardGradient(), grad))


def test_values_outside_the_output_dtype_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"var of grad has a value .* outside the normal range of float32; pass dtype"):
        ondisk.var(sk.ForwardGradient(), np.array([1e30, 1.0]), tmp_path / "var", dtype="float32")
    assert not (tmp_path / "var").exists()
    small = ondisk.var(sk.ForwardGradient(), np.array([3.0, 4.0]), tmp_path / "var", dtype="float32")
    assert small.dtype == np.float32 and small.tolist() == [34.0, 41.0]


# -- atomic output, progress, folders and array-likes -------------------------------------------


def test_a_failure_while_writing_leaves_no_output(tmp_path, monkeypatch):
    calls = []
    real = ondisk._store

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        real(*args, **kwargs)

    monkeypatch.setattr(ondisk, "_store", failing)
    with pytest.raises(OSError, match="simulated"):
        ondisk.moments(sk.ForwardGradient(), _tree(), var_out=tmp_path / "var", snr_out=tmp_path / "snr",
                       chunk_elements=4)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_old_output(tmp_path, monkeypatch):
    out = tmp_path / "var"
    ondisk.var(sk.ForwardGradient(), np.array([3.0, 4.0]), out)
    monkeypatch.setattr(ondisk, "_store", lambda *args: (_ for _ in ()).throw(OSError("simulated")))
    with pytest.raises(OSError, match="simulated"):
        ondisk.var(sk.ForwardGradient(), np.array([1.0, 1.0]), out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["var"]
    assert np.load(out / "leaf-00000.npy").tolist() == [34.0, 41.0]


def test_progress_counts_both_passes(tmp_path):
    seen = []
    ondisk.total_variance(sk.ForwardGradient(), _tree(), chunk_elements=4, on_progress=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1] == (60, 60) and {t for _, t in seen} == {60}


def test_folders_keep_the_pytree(tmp_path):
    tree = {"layers": [{"w": np.ones((2, 2), np.float32)}, (np.zeros(3, np.float16), None)], "b": np.float64(2.0)}
    ondisk.save_gradient(tree, tmp_path / "g")
    opened = ondisk.open_gradient(tmp_path / "g")
    assert jax.tree_util.tree_structure(opened) == jax.tree_util.tree_structure(tree)
    for got, want in zip(jax.tree_util.tree_leaves(opened), jax.tree_util.tree_leaves(tree), strict=True):
        assert isinstance(got, np.memmap) and got.dtype == want.dtype and np.array_equal(got, want)
    var = ondisk.var(sk.ForwardGradient(), tmp_path / "g", tmp_path / "var")
    assert jax.tree_util.tree_structure(var) == jax.tree_util.tree_structure(tree)
    assert jax.tree_util.tree_structure(ondisk.open_gradient(tmp_path / "var")) == jax.tree_util.tree_structure(tree)


def test_bfloat16_is_saved_as_float32_and_custom_pytrees_as_lists(tmp_path):
    from collections import namedtuple

    pair = namedtuple("Pair", "w b")
    g = ondisk.save_gradient(pair(jnp.ones(2, jnp.bfloat16), jnp.zeros(1)), tmp_path / "g")
    assert isinstance(g, list) and g[0].dtype == np.float32 and g[0].tolist() == [1.0, 1.0]


def test_tensorstore_arrays_stream_like_memmaps(tmp_path):
    ts = pytest.importorskip("tensorstore")
    tree = _tree()
    stores = {}
    for name, array in tree.items():
        spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(tmp_path / "zarr" / name)}}
        store = ts.open(spec, dtype=ts.float64, shape=list(array.shape), create=True).result()
        store[...] = array
        stores[name] = store
    est = sk.Partitioned(blocks=4, probe="rademacher")
    _assert_agrees(_streamed(est, stores, tmp_path, 5), _in_memory(est, tree))


def test_blocks_never_hold_n_ids():
    """Contiguous blocks of 10¹² coordinates: the runs of a chunk come from global indices alone."""
    n = 10**12
    starts, ids = Blocks.contiguous(7, n).segments(n - 5, n)
    assert starts.tolist() == [0] and ids.tolist() == [6]
    first = -(-n // 7)  # block 1 begins at ceil(n / 7)
    starts, ids = Blocks.contiguous(7, n).segments(first - 2, first + 1)
    assert ids.tolist() == [0, 1] and starts.tolist() == [0, 2]
    assert (first - 1) * 7 // n == 0 and first * 7 // n == 1  # Partitioned's ⌊ib/n⌋


def test_an_estimator_that_declares_no_streamed_form_is_refused():
    """An estimator from outside snrkit that does not declare streamed_form gets the base class's
    answer, NoStreamedForm naming it, not an AttributeError."""

    @dataclasses.dataclass(frozen=True)
    class Outside(sk.Estimator):
        family = "outside"

        def _plan(self, problem):
            return sk.ForwardGradient()._plan(problem)

        def _law(self, problem):
            return sk.ForwardGradient()._law(problem)

    grad = np.array([3.0, 4.0])
    assert Outside().given(grad).var().tolist() == [34.0, 41.0]
    with pytest.raises(NoStreamedForm, match=r"family 'outside'\) has no streamed form"):
        ondisk.total_variance(Outside(), {"w": grad})
