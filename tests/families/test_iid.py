"""The iid-probe family (ForwardGradient, Partitioned): its closed forms against references that share no formula with snrkit.

* Enumeration: for finite-support probes (Rademacher, a three-point probe of kurtosis 4)
  every probe vector is enumerated, so mean, covariance and fourth moment are exact.
* Gaussian: the decomposition g_i = λ₊χ²₁ + λ₋χ²₁' with λ± = (∇_i ± ‖∇‖)/2
  (docs/derivations.md, Proposition 3) gives the cumulants
  κ_r = 2^{r-1}(r-1)!(λ₊^r + λ₋^r), an independent route to var and μ₄.
* Closed-form identities from docs/derivations.md and hand-computed values.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snrkit as sk
from snrkit.core.tree import ravel_host
from tests.conftest import TEST_ALPHA, pinned_key
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


def test_probes_with_other_samplers_are_different():
    """A probe keys compiled samplers: same name and moments but another sampler must not compare equal."""
    other = sk.probes.Probe("gaussian", 3.0, 15.0, 105.0, lambda key, shape, dtype: -jax.random.normal(key, shape, dtype))
    assert other != sk.probes.get_probe("gaussian")
    key = jax.random.key(0)
    mine = np.asarray(sk.ForwardGradient(other).given(jnp.array([1.0, 2.0])).sample_flat(key, 2))
    builtin = np.asarray(sk.ForwardGradient("gaussian").given(jnp.array([1.0, 2.0])).sample_flat(key, 2))
    np.testing.assert_allclose(mine, builtin, rtol=1e-6)  # (∇·(−v))(−v) = (∇·v)v: same estimate from its own sampler
    assert other.sampler is not sk.probes.get_probe("gaussian").sampler


def test_more_blocks_than_coordinates():
    with pytest.raises(ValueError, match="blocks=5 is more than the 3 coordinates.*use at most 3 blocks"):
        sk.Partitioned(blocks=5).given(jnp.ones(3))


def test_block_ids_of_wrong_length():
    with pytest.raises(ValueError, match="4 block ids but the gradient has 3 coordinates"):
        sk.Partitioned(blocks=np.array([0, 0, 1, 1])).given(jnp.ones(3))


# -- property test: random structures, probes and blocks against Monte Carlo of the law ------
#
# Budget (tests/conftest.py): false failure ≤ 1e-6 per test function, split evenly over its
# examples and over the two comparisons (mean, variance) of each. Keys are derived from the
# example, never drawn by hypothesis.

MAX_EXAMPLES = 16
ALPHA = TEST_ALPHA / (2 * MAX_EXAMPLES)
BATCHES, BATCH_SIZE = 32, 512

# A few fixed structures (each new shape is a compile): flat, dict of mixed shapes, nested list/tuple.
STRUCTURES = {
    "flat": lambda x: jnp.asarray(x[:6]),
    "dict": lambda x: {"w": jnp.asarray(x[:6]).reshape(2, 3), "b": jnp.asarray(x[6:8])},
    "nested": lambda x: [jnp.asarray(x[:2]), (jnp.asarray(x[2:6]).reshape(2, 2, 1), {"s": jnp.asarray(x[6])})],
}
PROBES = {"gaussian": "gaussian", "rademacher": "rademacher", "uniform": "uniform", "three-point": three_point_probe(0.25)}

entry = st.one_of(
    st.just(0.0),
    st.floats(1e-2, 4.0).flatmap(lambda a: st.sampled_from([a, -a])),
)


@st.composite
def cases(draw):
    values = np.array(draw(st.lists(entry, min_size=8, max_size=8)), np.float32)
    structure = draw(st.sampled_from(sorted(STRUCTURES)))
    probe = draw(st.sampled_from(sorted(PROBES)))
    directions = draw(st.sampled_from([1, 3]))
    kind = draw(st.sampled_from(["forward", "blocks-int", "blocks-leaves", "blocks-explicit"]))
    grad = STRUCTURES[structure](values)
    n = int(sum(np.size(v) for v in jax.tree_util.tree_leaves(grad)))
    if kind == "forward":
        est = sk.ForwardGradient(PROBES[probe], directions)
    elif kind == "blocks-int":
        est = sk.Partitioned(draw(st.sampled_from([2, 3])), PROBES[probe], directions)
    elif kind == "blocks-leaves":
        est = sk.Partitioned("leaves", PROBES[probe], directions)
    else:
        ids = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
        est = sk.Partitioned(ids, PROBES[probe], directions)
    return grad, est, (structure, probe, directions, kind, values.tobytes())


@settings(max_examples=MAX_EXAMPLES)
@given(cases())
def test_exact_law_matches_monte_carlo(case):
    """Mean and per-coordinate variance of the law hold against 16384 of its samples."""
    grad, est, label = case
    law = est.given(grad)
    key = pinned_key(zlib.crc32(repr(label).encode()))
    m = sk.monte_carlo(law, key, BATCHES * BATCH_SIZE, batches=BATCHES)
    var = sk.stats.compare_variance(m, law, alpha=ALPHA)
    mean = sk.stats.compare_mean(m, law, alpha=ALPHA)
    assert var.holds, f"{est}: {var}"
    assert mean.holds, f"{est}: {mean}"


def test_more_jvps_than_one_vectorised_batch_still_give_the_law_samples():
    """Partitioned with 20 blocks and K = 2: 40 JVPs, pushed through the linearized loss in batches
    of 16 (memory bounded), not in one vectorised batch; the estimates are still the law's samples
    to float32 rounding, and differ between samples (each batch sees its own tangents)."""
    dataset = sk.data.load_digits().take(64)
    net = sk.nets.mlp((64, 4, 10))
    params = net.init(pinned_key(3))
    problem = sk.Problem.from_network(net, params, dataset.flat(), dataset.labels)
    est = sk.Partitioned(blocks=20, probe="rademacher", directions=2)
    assert est.cost(problem).jvps == 40
    real = est.estimates(pinned_key(12), 3, problem.loss_fn, problem.params, *problem.args, batch_size=2)
    sampled = est.given(problem).sample(pinned_key(12), 3)
    fr = np.stack([_flat(jax.tree_util.tree_map(lambda a, i=i: a[i], real)) for i in range(3)])
    fs = np.stack([_flat(jax.tree_util.tree_map(lambda a, i=i: a[i], sampled)) for i in range(3)])
    np.testing.assert_allclose(fr, fs, rtol=0, atol=1e-5 * float(np.max(np.abs(fs))) + 1e-6)
    assert not np.allclose(fr[0], fr[1])
