"""The Monte Carlo engine: same samples whatever the chunking, float64-exact accumulation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit.core.tree import ravel_host
from tests.conftest import pinned_key

GRAD = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.1, -0.7, 2.0])}


def _reference(samples: np.ndarray, batches: int) -> dict[str, np.ndarray]:
    """Moments of the same samples computed directly in float64 (the naive reference)."""
    x = samples.astype(np.float64)
    num = x.shape[0]
    mean, var = x.mean(0), x.var(0, ddof=1)
    m4 = ((x - mean) ** 4).mean(0)
    bounds = [(b * num) // batches for b in range(batches + 1)]
    parts = [x[bounds[b] : bounds[b + 1]] for b in range(batches)]
    return {
        "mean": mean,
        "var": var,
        "fourth_moment": m4,
        "var_stderr": np.sqrt(m4 / num - var**2 * (num - 3) / (num * (num - 1))),
        "batch_means": np.stack([p.mean(0) for p in parts]),
        "batch_vars": np.stack([p.var(0, ddof=1) for p in parts]),
    }


@pytest.mark.parametrize(
    "estimator",
    [sk.ForwardGradient(), sk.ForwardGradient("rademacher", 3), sk.Partitioned(3, "uniform"), sk.Partitioned("leaves")],
)
def test_moments_are_those_of_law_sample(estimator):
    """monte_carlo draws exactly law.sample(key, N) and reports their float64 moments."""
    law = estimator.given(GRAD)
    key = pinned_key(11)
    m = sk.monte_carlo(law, key, 1000, chunk_size=96, batches=7)
    ref = _reference(np.asarray(law.sample_flat(key, 1000)), 7)
    for name, expected in ref.items():
        np.testing.assert_allclose(m.flat(name), expected, rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(m.batch_sizes, np.diff([(b * 1000) // 7 for b in range(8)]))
    np.testing.assert_allclose(ravel_host(m.mean_stderr), np.sqrt(ref["var"] / 1000), rtol=1e-9)


def test_result_does_not_depend_on_chunk_size():
    """Same key and N: chunk sizes 1, 7, 64, 1000 and the default draw the same samples. At n = 2000 a
    sample's float32 value may differ in its last bits between batch shapes (the order of the sum ∇·v), so
    the moments agree to float32 rounding: a millionth of their standard errors, not bit for bit."""
    grad = jnp.asarray(np.random.default_rng(0).standard_normal(2000), jnp.float32)
    law = sk.ForwardGradient(directions=2).given(grad)
    key = pinned_key(5)
    results = [sk.monte_carlo(law, key, 1000, chunk_size=c, batches=4) for c in (1, 7, 64, 1000, None)]
    base = results[0]
    for other in results[1:]:
        assert np.max(np.abs(other.flat("mean") - base.flat("mean")) / ravel_host(base.mean_stderr)) < 1e-5
        assert np.max(np.abs(other.flat("var") - base.flat("var")) / base.flat("var_stderr")) < 1e-5
        np.testing.assert_array_equal(other.batch_sizes, base.batch_sizes)


def test_batches_do_not_change_overall_moments():
    law = sk.ForwardGradient().given(GRAD)
    a = sk.monte_carlo(law, pinned_key(2), 999, batches=1)
    b = sk.monte_carlo(law, pinned_key(2), 999, batches=9)
    for name in ("mean", "var", "fourth_moment"):
        np.testing.assert_allclose(a.flat(name), b.flat(name), rtol=1e-12, atol=1e-13)


def test_memory_is_bounded_by_chunk():
    """Progress arrives chunk by chunk: no step ever holds more than chunk_size samples."""
    law = sk.ForwardGradient().given(GRAD)
    done = []
    sk.monte_carlo(law, pinned_key(0), 1000, chunk_size=64, on_progress=lambda d, total: done.append((d, total)))
    steps = np.diff([0] + [d for d, _ in done])
    assert steps.max() <= 64 and done[-1] == (1000, 1000)


@pytest.mark.slow
def test_accumulation_precision_at_ten_million_samples():
    """10⁷ samples: mean and variance agree with float64 sums of the same samples to 1e-9 relative.

    The requirement is 1e-6; a float32 running sum misses it by orders of magnitude.
    """
    law = sk.ForwardGradient().given(jnp.array([3.0, -1.0, 0.5]))
    key, num, part = pinned_key(9), 10_000_000, 1_000_000
    m = sk.monte_carlo(law, key, num, chunk_size=1 << 16)
    s1 = np.zeros(3)
    s2 = np.zeros(3)
    shift = np.array([3.0, -1.0, 0.5])
    for start in range(0, num, part):
        idx = jnp.arange(start, start + part, dtype=jnp.uint32)
        x = np.asarray(law.sampler(law.sampling_args, key, idx), np.float64) - shift
        s1 += x.sum(0)
        s2 += (x**2).sum(0)
    mean = s1 / num
    var = (s2 - num * mean**2) / (num - 1)
    np.testing.assert_allclose(m.flat("mean"), shift + mean, rtol=1e-9)
    np.testing.assert_allclose(m.flat("var"), var, rtol=1e-9)


def test_bad_arguments():
    law = sk.ForwardGradient().given(GRAD)
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        sk.monte_carlo(law, pinned_key(0), 0)
    with pytest.raises(ValueError, match="batches=5 is more than num_samples=4"):
        sk.monte_carlo(law, pinned_key(0), 4, batches=5)
    with pytest.raises(TypeError, match="law must be a snrkit Law"):
        sk.monte_carlo(GRAD, pinned_key(0), 4)
    with pytest.raises(TypeError, match="key must be a JAX random key"):
        sk.monte_carlo(law, 0, 4)
    with pytest.raises(TypeError, match="chunk_size must be a positive int"):
        sk.monte_carlo(law, pinned_key(0), 4, chunk_size=2.5)
    with pytest.raises(TypeError, match=r"on_progress must be a function on_progress\(samples_done, num_samples\)"):
        sk.monte_carlo(law, pinned_key(0), 4, on_progress=1)


def test_moments_from_samples_matches_streaming():
    """Samples you already hold (e.g. real JVP estimates) give the same moments as the stream."""
    law = sk.Partitioned(2).given(GRAD)
    key = pinned_key(4)
    streamed = sk.monte_carlo(law, key, 640, batches=5)
    held = sk.moments_from_samples(law.sample(key, 640), batches=5)
    for name in ("mean", "var", "var_stderr", "fourth_moment", "batch_means", "batch_vars"):
        np.testing.assert_allclose(held.flat(name), streamed.flat(name), rtol=1e-9, atol=1e-12, err_msg=name)


def test_block_fold_gives_the_moments_of_the_row_fold(monkeypatch):
    """The fold a GPU gets ("block": the chunk reduced at once, samples past the last masked out),
    run here on the CPU: the same float64 moments of law.sample as the row fold, to float64 rounding
    of another order of addition, with a ragged last chunk and batches that cut chunks."""
    law = sk.ForwardGradient("rademacher", 2).given(GRAD)
    key = pinned_key(13)
    rows = sk.monte_carlo(law, key, 1000, chunk_size=96, batches=7)
    plan = sk.montecarlo.chunk_plan(law)
    assert plan.fold == "rows"  # a CPU
    monkeypatch.setattr(sk.montecarlo, "chunk_plan", lambda law, device=None: dataclasses.replace(plan, fold="block"))
    block = sk.monte_carlo(law, key, 1000, chunk_size=96, batches=7)
    ref = _reference(np.asarray(law.sample_flat(key, 1000)), 7)
    for name, expected in ref.items():
        np.testing.assert_allclose(block.flat(name), expected, rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(block.flat(name), rows.flat(name), rtol=1e-12, atol=1e-14, err_msg=name)


class _Accelerator:
    """A device as chunk_plan sees one: its platform and memory (the plan is about the code around a device)."""

    def __init__(self, bytes_limit: int | None):
        self.platform, self._limit = "gpu", bytes_limit

    def memory_stats(self):
        return None if self._limit is None else {"bytes_limit": self._limit}


def test_chunk_plan_follows_the_device():
    """CPU: chunks of at most 16 MiB and 1/16 of the machine's memory, folded row by row. An
    accelerator: an eighth of its memory (4 GiB assumed when it does not say), folded as blocks;
    at most 2^20 samples, at least one."""
    law = sk.ForwardGradient().given(jnp.ones(100_000))
    cpu = sk.montecarlo.chunk_plan(law, jax.devices("cpu")[0])
    assert (cpu.fold, cpu.budget) == ("rows", min(16 << 20, sk.montecarlo.physical_memory() // 16))
    assert sk.montecarlo.chunk_plan(law, _Accelerator(80 << 30)).fold == "block"
    assert sk.montecarlo.chunk_plan(law, _Accelerator(None)).budget == (4 << 30) // 8
    assert sk.montecarlo.chunk_plan(sk.ForwardGradient().given(jnp.ones(2)), _Accelerator(80 << 30)).samples == 1 << 20
    assert sk.montecarlo.chunk_plan(law, _Accelerator(1 << 20)).samples == 1


@pytest.mark.parametrize(
    "estimator",
    [sk.ForwardGradient(), sk.ForwardGradient("rademacher", 4), sk.Partitioned(8), sk.OrthogonalFrames(3),
     sk.MultiTangent(3)],
    ids=lambda e: e.label,
)
@pytest.mark.parametrize("fold", ["rows", "block"])
def test_a_chunk_holds_what_the_budget_allows(estimator, fold, monkeypatch):
    """The chunk's step, compiled, needs at most the budget in XLA's temporary memory, and is not
    needlessly small: one more sample would not fit. With a 16 MiB budget and n = 20,000 the
    chunk is tens of samples, so both bounds bite; the guess alone is off by up to 2x (orthogonal
    frames), which the first bound would catch."""
    monkeypatch.setattr(sk.montecarlo, "CPU_CHUNK_BYTES", 16 << 20)
    device = jax.devices("cpu")[0] if fold == "rows" else _Accelerator(128 << 20)
    law = estimator.given(jnp.ones(20_000))
    plan = sk.montecarlo.chunk_plan(law, device)
    assert (plan.fold, plan.budget) == (fold, 16 << 20)
    assert 1 < plan.samples < sk.montecarlo.MAX_CHUNK_SAMPLES[fold]
    assert sk.montecarlo._step_bytes(law, fold, plan.samples) <= plan.budget
    assert sk.montecarlo._step_bytes(law, fold, plan.samples + 1) > plan.budget


def test_a_steps_fixed_memory_is_not_charged_to_every_sample():
    """At n = 10^6 one Rademacher sample's step holds 30 MiB (XLA lays out a chunk of one apart)
    but each further sample adds about 4: a 16 MiB budget holds 3 samples, which a rule charging
    T_c / c per sample from a one-sample measurement would cut to one."""
    law = sk.ForwardGradient("rademacher").given(jnp.ones(1_000_000))
    plan = sk.montecarlo.chunk_plan(law, jax.devices("cpu")[0])
    if plan.budget != 16 << 20:
        pytest.skip("a machine with under 256 MiB of memory gets a smaller budget")
    assert plan.samples > 1
    assert sk.montecarlo._step_bytes(law, "rows", plan.samples) <= plan.budget
    assert sk.montecarlo._step_bytes(law, "rows", plan.samples + 1) > plan.budget
