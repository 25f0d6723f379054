"""Orthogonal frames: closed forms against quadrature over the frames, the floor, and negative controls.

For n = 2 and n = 3 a Haar frame is a uniform point of the circle or the sphere (K = 1), or
its orthogonal complement (n = 3, K = 2), so every moment of g = c QQᵀ∇ is an integral of a
polynomial over the circle or the sphere: trapezoid rules on the angle and Gauss–Legendre in
cos θ integrate them exactly. That reference shares no formula with snrkit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit import data, nets
from snrkit.core.tree import ravel_host
from snrkit.families.orthogonal import beta_moments, haar_frame
from tests.conftest import TEST_ALPHA, pinned_key


def _sphere_points(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights integrating polynomials of degree ≤ 15 exactly against the uniform law on S^{n-1} (n = 2, 3)."""
    phi = 2 * np.pi * np.arange(32) / 32
    if n == 2:
        return np.stack([np.cos(phi), np.sin(phi)], axis=1), np.full(32, 1 / 32)
    z, w = np.polynomial.legendre.leggauss(16)
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    r = np.sqrt(1 - zz**2)
    points = np.stack([r * np.cos(pp), r * np.sin(pp), zz], axis=-1).reshape(-1, 3)
    weights = (np.repeat(w, 32) / 2) / 32
    return points, weights


def _reference(grad: np.ndarray, k: int, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, covariance and fourth central moment of c QQᵀ∇ by quadrature over the uniform u."""
    n = grad.size
    u, w = _sphere_points(n)
    if k == 1:
        g = c * (u @ grad)[:, None] * u            # Q = u
    else:
        g = c * (grad[None, :] - (u @ grad)[:, None] * u)  # n = 3, K = 2: P = I − uuᵀ
    mean = w @ g
    d = g - mean
    return mean, (d * w[:, None]).T @ d, w @ d**4


@pytest.mark.parametrize(("grad", "k"), [([1.5, -0.5], 1), ([3.0, -1.0, 0.5], 1), ([3.0, -1.0, 0.5], 2)])
@pytest.mark.parametrize("scale", ["unbiased", "projection"])
def test_law_equals_quadrature_over_the_frames(grad, k, scale):
    grad = np.asarray(grad)
    law = sk.OrthogonalFrames(directions=k, scale=scale).given(jnp.asarray(grad, jnp.float32))
    c = grad.size / k if scale == "unbiased" else 1.0
    mean, cov, fourth = _reference(grad, k, c)
    np.testing.assert_allclose(ravel_host(law.mean()), mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(law.cov(), np.float64), cov, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ravel_host(law.var()), np.diag(cov), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ravel_host(law.fourth_central_moment()), fourth, rtol=1e-5, atol=1e-6)


def test_beta_moments_against_numerical_integration():
    """The closed Beta moments (no cancellation) against scipy's quadrature of the Beta density."""
    import scipy.integrate
    import scipy.stats

    for n, k in [(4, 1), (10, 3), (50, 7), (12, 11)]:
        a, b, m = k / 2, (n - k) / 2, k / n
        pdf = scipy.stats.beta(a, b).pdf
        expect = [
            scipy.integrate.quad(lambda x, f=f: f(x) * pdf(x), 0, 1, limit=200)[0]
            for f in (lambda x: (x - m) ** 4, lambda x: (x - m) ** 2 * x * (1 - x), lambda x: x**2 * (1 - x) ** 2)
        ]
        np.testing.assert_allclose(beta_moments(n, k), expect, rtol=1e-6)


@pytest.mark.parametrize(("n", "k"), [(5, 1), (7, 3), (8, 8)])
def test_haar_frames_are_orthonormal(n, k):
    frame = np.asarray(haar_frame(pinned_key(n), n, k, jnp.float32))
    np.testing.assert_allclose(frame @ frame.T, np.eye(k), atol=2e-6)


def test_unbiased_frames_reach_the_floor_on_every_gradient():
    """tr Cov = (n/K − 1)‖∇‖² whatever the gradient: efficiency exactly 1; the projection's MSE is (1 − K/n)‖∇‖²."""
    rng = np.random.default_rng(3)
    for n, k in [(9, 1), (9, 4), (50, 7)]:
        grad = jnp.asarray(rng.standard_normal(n) * rng.exponential(size=n), jnp.float32)
        norm2 = float(np.sum(np.asarray(grad, np.float64) ** 2))
        law = sk.OrthogonalFrames(directions=k).given(grad)
        assert float(law.total_variance()) == pytest.approx((n / k - 1) * norm2, rel=1e-5)
        assert float(law.efficiency()) == pytest.approx(1.0, rel=1e-5)
        projection = sk.OrthogonalFrames(directions=k, scale="projection").given(grad)
        assert float(projection.total_mse()) == pytest.approx((1 - k / n) * norm2, rel=1e-5)


def test_other_unbiased_estimators_against_the_floor():
    """iid Gaussian K directions: efficiency (n − K)/(n + 1); Rademacher K = 1 and Rademacher blocks of equal size
    reach the floor (efficiency 1); all with K = their number of JVPs."""
    grad = jnp.asarray(np.random.default_rng(4).standard_normal(12), jnp.float32)
    assert float(sk.ForwardGradient("gaussian", 3).given(grad).efficiency()) == pytest.approx(9 / 13, rel=1e-5)
    assert float(sk.ForwardGradient("rademacher").given(grad).efficiency()) == pytest.approx(1.0, rel=1e-5)
    assert float(sk.Partitioned(blocks=4, probe="rademacher").given(grad).efficiency()) == pytest.approx(1.0, rel=1e-5)


def test_as_many_directions_as_coordinates_is_exact_and_more_is_refused():
    grad = jnp.array([1.0, -2.0, 0.5])
    samples = np.asarray(sk.OrthogonalFrames(directions=3).given(grad).sample_flat(pinned_key(1), 4))
    np.testing.assert_allclose(samples, np.tile(np.asarray(grad), (4, 1)), atol=1e-5)
    with pytest.raises(ValueError, match="directions=4 is more than the 3 coordinates.*at most 3 orthonormal"):
        sk.OrthogonalFrames(directions=4).given(grad)


def test_wrong_scale_is_refuted_on_real_estimates():
    """Negative control on the real jax.jvp estimator (MLP on digits): a wrong n/K, namely n/(K+1) — a mean of
    K/(K+1)∇ — is refuted by the same estimates that confirm the law; so is the variance of that scale."""
    digits = data.load_digits().take(256)
    net = nets.mlp((64, 8, 10))
    problem = sk.Problem.from_network(net, net.init(pinned_key(3)), digits.flat(), digits.labels)
    k = 4
    est = sk.OrthogonalFrames(directions=k)
    law = est.given(problem)
    estimates = est.estimates(pinned_key(40), 32 * 512, problem.loss_fn, problem.params, *problem.args, batch_size=256)
    m = sk.moments_from_samples(estimates, batches=32)
    alpha = TEST_ALPHA / 4
    mean = np.asarray(law.flat_mean(), np.float64)
    assert sk.stats.compare_mean(m, law, alpha=alpha).holds
    wrong_mean = sk.stats.compare_mean(m, mean * k / (k + 1), law=law, alpha=alpha)
    assert not wrong_mean.holds and wrong_mean.ratio == pytest.approx((k + 1) / k, rel=0.05), str(wrong_mean)
    assert sk.stats.compare_variance(m, law, alpha=alpha).holds
    wrong_var = np.asarray(law.flat_var(), np.float64) * (k / (k + 1)) ** 2
    assert not sk.stats.compare_variance(m, wrong_var, law=law, alpha=alpha).holds


def test_orthogonal_frames_sample_the_haar_law():
    """The mean of QQᵀ over frames is (K/n) I (rotation invariance): E[g] = c(K/n)∇ for every ∇, by Monte Carlo."""
    grad = jnp.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # all weight on one axis: a biased frame would show it
    law = sk.OrthogonalFrames(directions=2, scale="projection").given(grad)
    m = sk.monte_carlo(law, pinned_key(41), 32 * 1024, batches=32)
    assert sk.stats.compare_mean(m, law, alpha=TEST_ALPHA).holds
    assert sk.stats.compare_variance(m, law, alpha=TEST_ALPHA).holds
    assert jax.tree_util.tree_structure(law.sample(pinned_key(0), 2)) == jax.tree_util.tree_structure(grad)
