"""Exact laws against references that share no formula with snrkit.

* Enumeration: for finite-support probes (Rademacher, a three-point probe of kurtosis 4)
  every probe vector is enumerated, so mean, covariance and fourth moment are exact.
* Gaussian: the DESIGN's decomposition g_i = λ₊χ²₁ + λ₋χ²₁' with λ± = (∇_i ± ‖∇‖)/2 gives
  the cumulants κ_r = 2^{r-1}(r-1)!(λ₊^r + λ₋^r), an independent route to var and μ₄.
* Closed-form identities from DESIGN.md and hand-computed values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit._tree import ravel_host
from tests.reference import exact_moments, support, three_point_probe

GRAD = np.array([1.5, -0.5, 0.25, 2.0, -1.0], np.float32)


def _flat(tree) -> np.ndarray:
    return ravel_host(tree)


@pytest.mark.parametrize("probe_name", ["rademacher", "three-point"])
@pytest.mark.parametrize(
    ("directions", "blocks"),
    [(1, None), (2, None), (1, 2), (1, np.array([0, 1, 0, 2, 1])), (2, 3)],
)
def test_law_equals_enumeration(probe_name, directions, blocks):
    """Mean, covariance and fourth central moment equal exact enumeration of all probes."""
    p = 0.25  # three-point probe with kurtosis 1/p = 4, heavier-tailed than the Gaussian
    probe = "rademacher" if probe_name == "rademacher" else three_point_probe(p)
    values, probs = support(probe_name, p)
    grad = GRAD if directions == 1 else GRAD[:4]  # K=2 enumerates 3^(2n) probe pairs: keep n small
    n = grad.size
    if blocks is None:
        est, ids = sk.ForwardGradient(probe=probe, directions=directions), np.zeros(n, int)
    else:
        ids = blocks[:n] if isinstance(blocks, np.ndarray) else (np.arange(n) * blocks) // n
        est = sk.Partitioned(blocks=blocks[:n] if isinstance(blocks, np.ndarray) else blocks, probe=probe, directions=directions)
    mean, cov, fourth = exact_moments(grad, directions, ids, values, probs)
    law = est.given(jnp.asarray(grad))
    np.testing.assert_allclose(_flat(law.mean()), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(law.cov()), cov, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_flat(law.var()), np.diag(cov), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_flat(law.fourth_central_moment()), fourth, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("directions", [1, 3])
def test_gaussian_matches_chi_square_decomposition(directions):
    """Var and μ₄ of the Gaussian forward gradient from the cumulants of λ₊χ²₁ + λ₋χ²₁'."""
    grad = np.array([3.0, -1.0, 0.5, 0.2, 2.0])
    norm = np.linalg.norm(grad)
    lam = np.stack([(grad + norm) / 2, (grad - norm) / 2])
    k2 = 2 * (lam**2).sum(0) / directions
    k4 = 48 * (lam**4).sum(0) / directions**3
    law = sk.ForwardGradient("gaussian", directions).given(jnp.asarray(grad, jnp.float32))
    np.testing.assert_allclose(_flat(law.var()), k2, rtol=1e-6)
    np.testing.assert_allclose(_flat(law.fourth_central_moment()), k4 + 3 * k2**2, rtol=1e-6)


def test_hand_computed_values():
    """∇ = (3, 4): Gaussian ‖∇‖²+∇_i² = (34, 41); Rademacher Σ_{j≠i}∇_j² = (16, 9); K=2 halves them."""
    g = jnp.array([3.0, 4.0])
    np.testing.assert_allclose(sk.ForwardGradient("gaussian").given(g).var(), [34.0, 41.0])
    np.testing.assert_allclose(sk.ForwardGradient("rademacher").given(g).var(), [16.0, 9.0])
    np.testing.assert_allclose(sk.ForwardGradient("gaussian", 2).given(g).var(), [17.0, 20.5])
    # Blocks {3,4} alone: ‖∇_B‖² + ∇_i² with ‖∇_B‖² = 25 in one block; two blocks of one entry: 2∇_i².
    np.testing.assert_allclose(sk.Partitioned(blocks=2).given(g).var(), [18.0, 32.0])
    np.testing.assert_allclose(sk.Partitioned(blocks=2, probe="rademacher").given(g).var(), [0.0, 0.0])


@pytest.mark.parametrize("probe", ["gaussian", "rademacher", "uniform"])
@pytest.mark.parametrize("directions", [1, 4])
def test_closed_form_identities(probe, directions):
    """tr Cov = Σ var = (n+κ−2)‖∇‖²/K; cov diagonal = var; aggregate SNR = K/(n+κ−2); snr = ∇²/var."""
    rng = np.random.default_rng(0)
    grad = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=5), jnp.float32)}
    law = sk.ForwardGradient(probe, directions).given(grad)
    flat = _flat(grad)
    n, kappa = flat.size, sk.probes.get_probe(probe).kurtosis
    expected_trace = (n + kappa - 2) * (flat @ flat) / directions
    np.testing.assert_allclose(float(law.total_variance()), expected_trace, rtol=1e-6)
    np.testing.assert_allclose(float(law.total_variance()), _flat(law.var()).sum(), rtol=1e-6)
    np.testing.assert_allclose(np.diag(np.asarray(law.cov())), _flat(law.var()), rtol=1e-6)
    np.testing.assert_allclose(float(law.aggregate_snr()), directions / (n + kappa - 2), rtol=1e-6)
    np.testing.assert_allclose(_flat(law.snr()), flat**2 / _flat(law.var()), rtol=1e-5)


def test_partition_total_variance():
    """Partitioned: tr Cov = Σ_B (|B| + κ − 2)‖∇_B‖² (sum of independent per-block forward gradients)."""
    grad = jnp.arange(1.0, 11.0)
    law = sk.Partitioned(blocks=3).given(grad)
    blocks = [grad[0:4], grad[4:7], grad[7:10]]  # floor(i*3/10): sizes 4, 3, 3
    expected = sum((b.size + 1) * float(b @ b) for b in blocks)
    np.testing.assert_allclose(float(law.total_variance()), expected, rtol=1e-6)
    np.testing.assert_array_equal(law.block_sizes, [4, 3, 3])


def test_pytree_structures_round_trip():
    """Nested dicts/lists/tuples of mixed shapes come back in the same structure and dtypes."""
    grad = {"a": [jnp.ones((2, 3)), (jnp.full((4,), 2.0), jnp.array(3.0))], "z": {"k": jnp.zeros((1, 1, 2))}}
    law = sk.ForwardGradient().given(grad)
    for out in (law.mean(), law.var(), law.snr(), law.std(), law.fourth_central_moment()):
        assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(grad)
        assert jax.tree_util.tree_map(jnp.shape, out) == jax.tree_util.tree_map(jnp.shape, grad)
    samples = law.sample(jax.random.key(0), 3)
    assert jax.tree_util.tree_map(jnp.shape, samples) == jax.tree_util.tree_map(lambda x: (3, *x.shape), grad)


def test_flat_array_and_pytree_give_same_law_and_samples():
    """A pytree and its ravelled array are the same coordinates: same variances, same samples."""
    tree = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5, 3.0]])}
    flat, _ = jax.flatten_util.ravel_pytree(tree)
    a, b = sk.ForwardGradient().given(tree), sk.ForwardGradient().given(flat)
    np.testing.assert_array_equal(_flat(a.var()), np.asarray(b.var()))
    np.testing.assert_array_equal(np.asarray(a.sample_flat(jax.random.key(3), 4)), np.asarray(b.sample(jax.random.key(3), 4)))


def test_zero_gradient_is_defined():
    """A zero gradient: variance 0, SNR NaN (0/0, documented), samples exactly 0."""
    law = sk.Partitioned(blocks=2).given({"w": jnp.zeros((2, 2))})
    assert np.all(_flat(law.var()) == 0.0)
    assert np.all(np.isnan(_flat(law.snr())))
    assert np.isnan(float(law.aggregate_snr()))
    assert np.all(np.asarray(law.sample_flat(jax.random.key(0), 3)) == 0.0)


def test_deterministic_coordinate_has_infinite_snr():
    """Rademacher with one coordinate: g = ∇ v² = ∇ exactly, so var 0 and SNR inf."""
    law = sk.ForwardGradient("rademacher").given(jnp.array([2.0]))
    assert float(law.var()[0]) == 0.0
    assert np.isinf(float(law.snr()[0]))


def test_var_keeps_precision_at_large_n():
    """‖∇‖² is summed in float64: 10⁶ equal entries of 1e-3 give exactly 1 + (κ−2)·1e-6."""
    n = 1_000_000
    law = sk.ForwardGradient().given(jnp.full((n,), 1e-3, jnp.float32))
    expected = np.float32(np.float32(1e-3) ** 2 * n + 1e-6)
    np.testing.assert_allclose(np.asarray(law.var()[:3]), expected, rtol=2e-7)


def test_dominant_coordinate_keeps_its_digits():
    """Rademacher, ∇ = (1, 1e-6): Var = Σ_{j≠i}∇_j² = (1e-12, 1), μ₄ = 3R₂² − 2R₄ = (1e-24, 1); no cancellation."""
    law = sk.ForwardGradient("rademacher").given(jnp.array([1.0, 1e-6]))
    np.testing.assert_allclose(_flat(law.var()), [1e-12, 1.0], rtol=1e-6)
    np.testing.assert_allclose(_flat(law.fourth_central_moment()), [1e-24, 1.0], rtol=1e-5)


@pytest.mark.parametrize(
    "estimator", [sk.ForwardGradient("gaussian", 3), sk.Partitioned(2, "rademacher"), sk.Partitioned("leaves", "uniform", 2)]
)
def test_projected_variance_equals_quadratic_form_of_cov(estimator):
    law = estimator.given({"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([3.0, 0.1])})
    w = np.random.default_rng(0).normal(size=5)
    cov = np.asarray(law.cov(), np.float64)
    assert law.projected_variance(w) == pytest.approx(w @ cov @ w, rel=1e-5)


def test_probes_with_other_samplers_are_different():
    """A probe keys compiled samplers: same name and moments but another sampler must not compare equal."""
    other = sk.probes.Probe("gaussian", 3.0, 15.0, 105.0, lambda key, shape, dtype: jnp.ones(shape, dtype))
    assert other != sk.probes.get_probe("gaussian")
    samples = np.asarray(sk.ForwardGradient(other).given(jnp.array([1.0, 2.0])).sample_flat(jax.random.key(0), 2))
    np.testing.assert_array_equal(samples, [[3.0, 3.0], [3.0, 3.0]])  # v = 1: g = (∇·1)·1


def test_impossible_probe_moments():
    with pytest.raises(ValueError, match="not those of a distribution with variance 1"):
        sk.probes.Probe("bad", 0.5, 1.0, 1.0, lambda key, shape, dtype: jnp.zeros(shape, dtype))
