"""The contract every family must pass, run on every row of tests/families/cases.py.

- closed forms agree with each other: var = diag(cov), projected_variance = wᵀ cov w, and the
  quantities every law derives (bias, MSE, totals, SNR, floor, efficiency) from mean and var;
- the law against Monte Carlo of its own samples (distribution-free test, exact noise where
  the law has a fourth moment);
- the real estimator (`jax.jvp` on an MLP with a real digits gradient) draws the law's
  samples with the same key, and its moments hold against the law, while a covariance 4×
  too large is refuted (negative control, with its power asserted first);
- samplers are hashable and jit once per shape; bad hyperparameters are refused; the
  description is JSON and the cost matches the law.

False-failure budget: TEST_ALPHA per test function and case, split over its comparisons.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit import data, nets
from snrkit.core.law import draw_samples
from snrkit.core.tree import ravel_host
from snrkit.families import FAMILIES
from tests.conftest import TEST_ALPHA, pinned_key
from tests.families.cases import CASES, SMALL

BATCHES = 32
IDS = [case.id for case in CASES]


def _flat(tree) -> np.ndarray:
    return ravel_host(tree)


@pytest.fixture(scope="module", params=["digits", pytest.param("mnist", marks=pytest.mark.slow)])
def real_problem(request):
    """An MLP at initialisation with a real full-batch gradient: 64-8-10 on 256 digits, or 784-4-10 on 256 MNIST images."""
    if request.param == "mnist":
        folder = data.default_mnist_dir()
        if folder is None:
            pytest.skip("MNIST IDX files not found (set SNRKIT_MNIST_DIR)")
        dataset, widths = data.load_mnist(folder).take(256), (784, 4, 10)
    else:
        dataset, widths = data.load_digits().take(256), (64, 8, 10)
    net = nets.mlp(widths)
    params = net.init(pinned_key(3))
    return sk.Problem.from_network(net, params, dataset.flat(), dataset.labels)


def test_every_registered_family_has_a_case():
    covered = {case.make(SMALL).family for case in CASES}
    assert covered == set(FAMILIES), f"families without a row in tests/families/cases.py: {set(FAMILIES) - covered}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_closed_forms_agree(case):
    law = case.make(SMALL).given(SMALL)
    grad, mean, var = _flat(SMALL), _flat(law.mean()), _flat(law.var())
    n = grad.size
    if law.has("cov"):
        cov = np.asarray(law.cov(), np.float64)
        np.testing.assert_allclose(np.diag(cov), var, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(cov, cov.T, rtol=1e-6, atol=1e-7)
        assert np.linalg.eigvalsh(cov).min() >= -1e-5 * np.abs(cov).max()
        if law.has("projected_variance"):
            for w in np.random.default_rng(0).normal(size=(3, n)):
                assert law.projected_variance(w) == pytest.approx(w @ cov @ w, rel=1e-5, abs=1e-7)
    if law.has("fourth_central_moment"):
        assert np.all(_flat(law.fourth_central_moment()) >= var**2 * (1 - 1e-5))  # Jensen: μ4 ≥ σ⁴
    bias = mean - grad
    mse = bias**2 + var
    np.testing.assert_allclose(_flat(law.bias()), bias, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_flat(law.mse()), mse, rtol=1e-5, atol=1e-6)
    assert float(law.total_variance()) == pytest.approx(var.sum(), rel=1e-5)
    assert float(law.total_mse()) == pytest.approx(mse.sum(), rel=1e-5)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_allclose(_flat(law.snr()), mean**2 / var, rtol=1e-5)
    assert float(law.aggregate_snr()) == pytest.approx(mean @ mean / var.sum(), rel=1e-5)
    floor = max(0.0, n / law.num_jvps - 1) * grad @ grad
    assert float(law.floor()) == pytest.approx(floor, rel=1e-6)
    assert float(law.efficiency()) == pytest.approx(floor / mse.sum(), rel=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_law_matches_monte_carlo_of_its_own_samples(case):
    """Mean and per-entry variance hold against 32 × 512 of the law's samples."""
    law = case.make(SMALL).given(SMALL)
    m = sk.monte_carlo(law, pinned_key(100 + IDS.index(case.id)), BATCHES * 512, batches=BATCHES)
    var = sk.stats.compare_variance(m, law, alpha=TEST_ALPHA / 2)
    mean = sk.stats.compare_mean(m, law, alpha=TEST_ALPHA / 2)
    assert var.holds, str(var)
    assert mean.holds, str(mean)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_law_holds_for_a_bfloat16_gradient(case):
    """Half precision: probes are drawn wide and rounded, factorisations run wide, moments come back where they
    fit; the law still holds against 32 × 512 of its samples (rounding is far below the sampling noise)."""
    grad = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), SMALL)
    law = case.make(grad).given(grad)
    assert law.dtype == jnp.bfloat16 and law.sample_flat(pinned_key(0), 2).dtype == jnp.bfloat16
    m = sk.monte_carlo(law, pinned_key(200 + IDS.index(case.id)), BATCHES * 512, batches=BATCHES)
    assert sk.stats.compare_variance(m, law, alpha=TEST_ALPHA / 2).holds
    assert sk.stats.compare_mean(m, law, alpha=TEST_ALPHA / 2).holds


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_real_estimates_are_the_law_samples(case, real_problem):
    """Same key, same probes: estimates(key, N)[i] equals law.sample(key, N)[i] to float32 rounding.

    Both combine the same probes; they differ only in how ∇·t is summed (the network's
    forward-mode arithmetic vs one dot product), a few float32 ulps of the largest term,
    bounded here by 1e-5 × max|g| + 1e-6. A remainder batch (4 does not divide 6) is included.
    """
    problem = real_problem
    est = case.make(problem.params)
    key, num = pinned_key(8), 6
    real = est.estimates(key, num, problem.loss_fn, problem.params, *problem.args, batch_size=4)
    sampled = est.given(problem).sample(key, num)
    flat = jax.vmap(lambda t: jax.flatten_util.ravel_pytree(t)[0])
    fr, fs = np.asarray(flat(real)), np.asarray(flat(sampled))
    assert fr.shape == fs.shape == (num, problem.num_coordinates)
    for i in range(num):
        np.testing.assert_allclose(fr[i], fs[i], rtol=0, atol=1e-5 * float(np.max(np.abs(fs[i]))) + 1e-6, err_msg=f"sample {i}")
    assert not np.allclose(fr[0], fr[1])  # distinct probes per sample
    value, first = est.value_and_estimate(key, problem.loss_fn, problem.params, *problem.args)
    np.testing.assert_allclose(np.asarray(jax.flatten_util.ravel_pytree(first)[0]), fr[0], rtol=0,
                               atol=1e-5 * float(np.max(np.abs(fr[0]))) + 1e-6)
    assert float(value) == pytest.approx(float(problem.value()), rel=1e-6)
    assert jax.tree_util.tree_structure(first) == jax.tree_util.tree_structure(problem.params)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_real_estimator_matches_the_law(case, real_problem):
    """Moments of 32 × 512 real jax.jvp estimates hold against the law; a covariance 4× too large
    (and a mean off by half) are refuted by the same samples."""
    problem = real_problem
    est = case.make(problem.params)
    law = est.given(problem)
    num = BATCHES * 512
    alpha = TEST_ALPHA / 4  # truth and wrong, for the variance and the mean
    wrong_var = 4 * np.asarray(law.flat_var(), np.float64)
    if law.has("fourth_central_moment"):
        power = sk.stats.detection_margin(law, wrong_var, num_samples=num, batches=BATCHES, alpha=alpha, beta=TEST_ALPHA)
        assert power >= 1, f"design too weak to catch a covariance 4× too large: {power:.2f}"
    real = est.estimates(pinned_key(30 + IDS.index(case.id)), num, problem.loss_fn, problem.params, *problem.args,
                         batch_size=256)
    m = sk.moments_from_samples(real, batches=BATCHES)
    truth = sk.stats.compare_variance(m, law, alpha=alpha)
    assert truth.holds, str(truth)
    assert not sk.stats.compare_variance(m, wrong_var, law=law, alpha=alpha).holds
    mean = sk.stats.compare_mean(m, law, alpha=alpha)
    assert mean.holds, str(mean)
    assert mean.resolution < 0.5, f"design too weak to catch a mean off by half: resolution {mean.resolution:.2f}"
    half = sk.stats.compare_mean(m, 0.5 * np.asarray(law.flat_mean(), np.float64), law=law, alpha=alpha)
    assert not half.holds, str(half)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sampler_is_hashable_and_compiles_once_per_shape(case):
    est = case.make(SMALL)
    law = est.given(SMALL)
    other = est.given(jax.tree_util.tree_map(lambda x: 2.0 * x + 0.1, SMALL))
    assert law.sampler == other.sampler and hash(law.sampler) == hash(other.sampler)
    key, indices = pinned_key(5), jnp.array([4, 1], dtype=jnp.uint32)
    some = np.asarray(jax.jit(law.sampler)(law.sampling_args, key, indices))
    # Another batch shape may sum ∇·t in another order: float32 rounding of the largest term.
    expected = np.asarray(law.sample_flat(key, 5))[[4, 1]]
    np.testing.assert_allclose(some, expected, rtol=0, atol=2e-6 * float(np.max(np.abs(expected))))
    other.sample_flat(key, 5)
    compiled = draw_samples._cache_size()
    est.given(jax.tree_util.tree_map(lambda x: x - 0.3, SMALL)).sample_flat(key, 5)
    assert draw_samples._cache_size() == compiled, "a new gradient of the same shape recompiled the sampler"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_hyperparameters_are_refused(case):
    for construct, error, message in case.bad:
        with pytest.raises(error, match=message):
            construct()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_description_and_cost(case):
    est = case.make(SMALL)
    law = est.given(SMALL)
    described = est.describe()
    assert set(described) == {"label", "family", "params"} and described["family"] in FAMILIES
    assert isinstance(json.loads(described["params"]), dict)
    assert law.describe() == described and described["label"] == est.label
    cost = est.cost(SMALL)
    assert cost.jvps == law.num_jvps >= 1 and cost.memory > 0
    assert est.biased == (float(np.max(np.abs(_flat(law.bias())))) > 1e-6 * float(np.max(np.abs(_flat(SMALL)))))


@pytest.mark.parametrize("case", [c for c in CASES if c.unbiased_invariant], ids=lambda c: c.id)
def test_efficiency_of_an_unbiased_invariant_estimator_is_at_most_one(case):
    """The floor bounds the total variance of an unbiased, rotation-invariant estimator on every gradient."""
    rng = np.random.default_rng(1)
    for scale in (1e-3, 1.0, 30.0):
        grad = jnp.asarray(scale * rng.standard_normal(12) * rng.exponential(size=12), jnp.float32)
        efficiency = float(case.make(grad).given(grad).efficiency())
        assert 0 < efficiency <= 1 + 1e-6 and not math.isnan(efficiency)
