"""Gaussian probes with a covariance: closed forms against Gauss–Hermite quadrature, constructors, bad input.

The estimate is a polynomial of degree 2 in the standard normals ε behind the probes, so its
moments up to the fourth are integrals of polynomials of degree ≤ 8: a product Gauss–Hermite
rule with 5 nodes per dimension integrates them exactly. Σ⁻¹ is taken with a dense inverse,
not the Woodbury form the code uses. That reference shares no formula with snrkit.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit.core.tree import ravel_host
from tests.conftest import TEST_ALPHA, pinned_key

GRAD3 = np.array([1.5, -0.5, 2.0])
GRAD2 = np.array([0.8, -1.7])


def _hermite(dim: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(5)
    weights = weights / weights.sum()
    points = np.array(list(itertools.product(nodes, repeat=dim)))
    return points, np.prod(np.array(list(itertools.product(weights, repeat=dim))), axis=1)


def _reference(grad, factor, s, k, whiten):
    """Mean, covariance and fourth central moment of the estimate by exact quadrature over ε."""
    n, r = factor.shape
    width = r + (n if s > 0 else 0)
    points, w = _hermite(width * k)
    sigma = s * s * np.eye(n) + factor @ factor.T
    read = np.linalg.inv(sigma) if whiten else np.eye(n)
    g = np.zeros((points.shape[0], n))
    for j in range(k):
        eps = points[:, j * width:(j + 1) * width]
        v = (s * eps[:, :n] if s > 0 else 0.0) + eps[:, -r:] @ factor.T
        g += (v @ grad)[:, None] * (v @ read.T) / k
    mean = w @ g
    d = g - mean
    return mean, (d * w[:, None]).T @ d, w @ d**4


CASES = {
    "rank-1": (GRAD3, np.array([[1.0], [0.5], [-0.3]]), 0.0, 1, False),
    "isotropic-plus-rank-1": (GRAD2, np.array([[0.6], [-1.1]]), 0.7, 1, False),
    "two-directions": (GRAD2, np.array([[0.6], [-1.1]]), 0.0, 2, False),
    "whitened-isotropic": (GRAD2, np.array([[0.6], [-1.1]]), 0.7, 1, True),
    "whitened-full-rank": (GRAD2, np.array([[1.0, 0.3], [-0.4, 0.9]]), 0.0, 1, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_law_equals_quadrature_over_the_normals(case):
    grad, factor, s, k, whiten = CASES[case]
    est = sk.CovarianceProbe(factor=factor.astype(np.float32), directions=k, isotropic=s * s, whiten=whiten)
    law = est.given(jnp.asarray(grad, jnp.float32))
    mean, cov, fourth = _reference(grad, factor, s, k, whiten)
    np.testing.assert_allclose(ravel_host(law.mean()), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(law.cov(), np.float64), cov, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ravel_host(law.var()), np.diag(cov), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ravel_host(law.fourth_central_moment()), fourth, rtol=1e-4, atol=1e-4)
    if whiten:
        np.testing.assert_allclose(mean, grad, rtol=1e-6)  # the whitened probe is unbiased


def test_identity_covariance_is_the_forward_gradient():
    grad = jnp.array([3.0, -1.0, 0.5, 2.0])
    fg = sk.ForwardGradient("gaussian", directions=3).given(grad)
    for est in (sk.CovarianceProbe(factor=np.eye(4), directions=3), sk.CovarianceProbe(factor=np.zeros((4, 1)),
                                                                                           isotropic=1.0, directions=3)):
        law = est.given(grad)
        np.testing.assert_allclose(np.asarray(law.var()), np.asarray(fg.var()), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(law.fourth_central_moment()), np.asarray(fg.fourth_central_moment()), rtol=1e-6)


def test_prior_and_subspace_constructors():
    grad = np.array([3.0, 4.0, 0.0, 1.0])
    n = grad.size
    # A prior along ∇ itself, ρ = 0.5: Σ = 0.5 I + 0.5 ∇̂∇̂ᵀ, so Σ∇ = ∇ (unbiased), and
    # tr Cov = (∇ᵀΣ∇) tr Σ + ‖Σ∇‖² = ‖∇‖² (0.5 (n − 1) + 1) + ‖∇‖².
    law = sk.CovarianceProbe.prior(jnp.asarray(grad), confidence=0.5).given(jnp.asarray(grad))
    np.testing.assert_allclose(ravel_host(law.mean()), grad, rtol=1e-6)
    assert float(law.total_variance()) == pytest.approx((0.5 * (n - 1) + 2) * 26.0, rel=1e-6)
    # A belief off ∇ shrinks the missed part: E[g] = (1 − ρ)∇ + ρ (b̂·∇) b̂.
    belief = np.array([1.0, 0.0, 0.0, 0.0])
    off = sk.CovarianceProbe.prior(jnp.asarray(belief), confidence=0.5).given(jnp.asarray(grad))
    np.testing.assert_allclose(ravel_host(off.mean()), 0.5 * grad + 0.5 * grad[0] * belief, rtol=1e-6)
    # Whitened it is unbiased, and ρ = 0 is the isotropic forward gradient.
    whitened = sk.CovarianceProbe.prior(jnp.asarray(grad), confidence=0.5, whiten=True).given(jnp.asarray(grad))
    np.testing.assert_allclose(ravel_host(whitened.mean()), grad, rtol=1e-5)
    isotropic = sk.CovarianceProbe.prior(jnp.ones(n), confidence=0.0).given(jnp.asarray(grad))
    np.testing.assert_allclose(ravel_host(isotropic.var()), ravel_host(sk.ForwardGradient().given(jnp.asarray(grad)).var()), rtol=1e-6)
    # A subspace: the mean is the projection of ∇ on it, and the law is the forward gradient in R^r.
    basis = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    sub = sk.CovarianceProbe.subspace(basis).given(jnp.asarray(grad))
    np.testing.assert_allclose(ravel_host(sub.mean()), [3.0, 4.0, 0.0, 0.0], atol=1e-6)
    assert float(sub.total_variance()) == pytest.approx((2 + 1) * 25.0, rel=1e-6)


def test_a_factor_built_from_the_problem_reads_its_stale_gradient():
    grad, stale = jnp.array([3.0, 4.0, 0.5]), jnp.array([2.5, 4.5, 0.0])
    problem = sk.GradientProblem(grad, state={"stale_gradient": stale})
    from_state = sk.CovarianceProbe.prior(lambda p: p.state_value("stale_gradient"), confidence=0.7).given(problem)
    fixed = sk.CovarianceProbe.prior(stale, confidence=0.7).given(grad)
    np.testing.assert_allclose(np.asarray(from_state.var()), np.asarray(fixed.var()), rtol=1e-6)
    with pytest.raises(ValueError, match="carries no state 'stale_gradient'"):
        sk.CovarianceProbe.prior(lambda p: p.state_value("stale_gradient")).given(grad)


def test_a_correct_belief_cuts_the_variance_and_a_wrong_one_shrinks_the_mean():
    """Along ∇ the prior stays unbiased with total variance ((1−ρ)(n−1) + 2)‖∇‖² < (n+1)‖∇‖²; orthogonal to ∇
    its mean shrinks to (1−ρ)∇ (a bias the MSE counts, and whitening removes)."""
    grad = jnp.asarray(np.random.default_rng(5).standard_normal(20), jnp.float32)
    g = np.asarray(grad, np.float64)
    n, norm2, rho = g.size, float(g @ g), 0.6
    right = sk.CovarianceProbe.prior(grad, confidence=rho).given(grad)
    np.testing.assert_allclose(ravel_host(right.bias()), 0.0, atol=1e-5)
    assert float(right.total_variance()) == pytest.approx(((1 - rho) * (n - 1) + 2) * norm2, rel=1e-5)
    assert float(right.total_variance()) < float(sk.ForwardGradient().given(grad).total_variance())
    orthogonal = g[::-1] - (g[::-1] @ g) / norm2 * g
    wrong = sk.CovarianceProbe.prior(jnp.asarray(orthogonal), confidence=rho)
    np.testing.assert_allclose(ravel_host(wrong.given(grad).mean()), (1 - rho) * g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ravel_host(sk.CovarianceProbe.prior(jnp.asarray(orthogonal), confidence=rho,
                                                                   whiten=True).given(grad).mean()), g, rtol=1e-4)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: sk.CovarianceProbe(factor=np.ones((5, 2))).given(jnp.ones(4)), ValueError,
         r"factor has 5 rows but the gradient has 4 coordinates; give one row per coordinate \(shape \(4, r\)"),
        (lambda: sk.CovarianceProbe(factor=lambda p: np.ones((3, 1))).given(jnp.ones(4)), ValueError,
         "the factor built by function .*has 3 rows but the gradient has 4"),
        (lambda: sk.CovarianceProbe(factor=lambda p: np.full((4, 1), np.inf)).given(jnp.ones(4)), ValueError,
         "factor has 4 non-finite"),
        (lambda: sk.CovarianceProbe(factor=np.ones((4, 2)), whiten=True).given(jnp.ones(4)), ValueError,
         r"whiten=True needs an invertible Σ, but Σ = UUᵀ has rank 1 < n = 4.*isotropic > 0"),
        (lambda: sk.CovarianceProbe.prior(jnp.zeros(3)), ValueError, "finite, non-zero vector"),
        (lambda: sk.CovarianceProbe.subspace(np.zeros((3, 2))), ValueError, "spans no direction"),
        (lambda: sk.CovarianceProbe(factor=np.ones((4, 2)), isotropic=float("nan")), ValueError, "finite s²"),
        (lambda: sk.CovarianceProbe(factor=np.ones((4, 2)), whiten="yes"), TypeError, "whiten must be True or False"),
    ],
)
def test_bad_factors_are_refused_with_the_fix(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_covariance_off_by_a_factor_is_refuted():
    """Negative control: the same samples confirm the law and refute Σ scaled by 1.5 (variance × 2.25)."""
    grad = jnp.array([3.0, -1.0, 0.5, 2.0, 0.1])
    factor = np.random.default_rng(6).standard_normal((5, 2)).astype(np.float32)
    law = sk.CovarianceProbe(factor=factor, isotropic=0.3).given(grad)
    wrong = sk.CovarianceProbe(factor=1.5**0.5 * factor, isotropic=0.3 * 1.5).given(grad)
    num = 32 * 2048
    assert sk.stats.detection_margin(law, wrong.flat_var(), num_samples=num, batches=32, alpha=TEST_ALPHA / 2) >= 1
    m = sk.monte_carlo(law, pinned_key(50), num, batches=32)
    assert sk.stats.compare_variance(m, law, alpha=TEST_ALPHA / 2).holds
    assert not sk.stats.compare_variance(m, wrong.flat_var(), law=law, alpha=TEST_ALPHA / 2).holds


def test_the_real_estimator_reads_the_state_a_factor_needs():
    """A prior built by a function of the problem: the jax.jvp estimator gets the state as a keyword."""
    def loss_fn(w, x):
        return jnp.sum((x @ w) ** 2)

    w, x = jnp.array([0.5, -1.0, 0.2]), jnp.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    stale = jnp.array([1.0, -3.0, 2.0])
    est = sk.CovarianceProbe.prior(lambda problem: problem.state_value("stale_gradient"), confidence=0.7)
    real = est.estimates(pinned_key(70), 4, loss_fn, w, x, state={"stale_gradient": stale})
    problem = sk.Problem(loss_fn, w, x, state={"stale_gradient": stale})
    sampled = np.asarray(est.given(problem).sample(pinned_key(70), 4))
    # ∇·t from jax.jvp or a dot product: float32 rounding of the largest term, as in the contract.
    np.testing.assert_allclose(np.asarray(real), sampled, rtol=0, atol=1e-5 * float(np.abs(sampled).max()) + 1e-6)
    with pytest.raises(ValueError, match="carries no state 'stale_gradient'"):
        est.estimate(pinned_key(70), loss_fn, w, x)


@pytest.mark.parametrize("whiten", [False, True])
def test_a_prior_from_the_state_works_inside_a_jitted_training_step(whiten):
    """Under the caller's jax.jit the stale gradient is traced: the estimate is the law's sample all the same
    (the prior's direction and, whitened, (s²I + UᵀU)⁻¹ computed by JAX instead of NumPy), and the
    step really trains: one SGD step along the estimate lowers a convex loss."""
    def loss_fn(w, x):
        return jnp.sum((x @ w) ** 2)

    w, x = jnp.array([0.5, -1.0, 0.2]), jnp.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    stale = jnp.array([1.0, -3.0, 2.0])
    est = sk.CovarianceProbe.prior(lambda problem: problem.state_value("stale_gradient"), confidence=0.7,
                                   whiten=whiten)

    @jax.jit
    def step(key, w, stale):
        return est.estimate(key, loss_fn, w, x, state={"stale_gradient": stale})

    problem = sk.Problem(loss_fn, w, x, state={"stale_gradient": stale})
    sampled = np.asarray(est.given(problem).sample(pinned_key(71), 1)[0])
    jitted = np.asarray(step(pinned_key(71), w, stale))
    np.testing.assert_allclose(jitted, sampled, rtol=0, atol=1e-5 * float(np.abs(sampled).max()) + 1e-6)
    other = np.asarray(step(pinned_key(71), w, stale[::-1]))  # the traced state is read, not baked in
    assert not np.allclose(other, jitted)


def test_a_half_precision_belief_traced_under_jit_keeps_its_direction():
    """The sum of squares of this float16 stale gradient, 4·10⁵, overflows float16 (largest 65504); taken in
    float32, the prior's factor is the one NumPy builds outside jit."""
    from snrkit.families.covariance import _PriorFactor

    belief = jnp.full(100_000, 2.0, jnp.float16)
    traced = jax.jit(_PriorFactor(lambda problem: belief * problem, 0.5))(jnp.float16(1.0))
    np.testing.assert_allclose(np.asarray(traced, np.float64), _PriorFactor(np.asarray(belief), 0.5)(None), rtol=1e-3)


def test_a_factor_traced_under_jit_is_checked_for_what_can_be_checked():
    """Shapes are static under jit, so a wrong shape still gets the clear error; whitening a Σ = UUᵀ cannot
    be checked for rank there, so it is refused with the fix."""
    def loss_fn(w):
        return jnp.sum(w**2)

    wrong_rows = sk.CovarianceProbe(factor=lambda problem: jnp.ones((3, 1)) * problem.state_value("scale"))
    with pytest.raises(ValueError, match="has 3 rows but the gradient has 4"):
        jax.jit(lambda s: wrong_rows.estimate(pinned_key(1), loss_fn, jnp.ones(4), state={"scale": s}))(1.0)
    full_rank = sk.CovarianceProbe(factor=lambda problem: jnp.eye(4) * problem.state_value("scale"), whiten=True)
    with pytest.raises(ValueError, match="whiten=True with isotropic=0 .*jax.jit"):
        jax.jit(lambda s: full_rank.estimate(pinned_key(1), loss_fn, jnp.ones(4), state={"scale": s}))(1.0)
    # outside jit the same factor is concrete, checked, and whitened
    assert full_rank.estimate(pinned_key(1), loss_fn, jnp.ones(4), state={"scale": 1.0}).shape == (4,)
