"""The real estimator (jax.jvp only) and the law's sampler draw the same estimate.

On an MLP with a real full-batch gradient of scikit-learn's digits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit import data, gradients, nets
from tests.conftest import pinned_key

ESTIMATORS = [
    sk.ForwardGradient("gaussian"),
    sk.ForwardGradient("rademacher", directions=4),
    sk.Partitioned(blocks=3),
    sk.Partitioned(blocks="leaves", probe="uniform", directions=2),
]


@pytest.fixture(scope="module")
def digits_problem():
    digits = data.load_digits().take(512)
    net = nets.mlp((64, 24, 10))
    params = net.init(pinned_key(1))
    x, y = jnp.asarray(digits.flat()), jnp.asarray(digits.labels)
    return net.loss, params, x, y


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=str)
def test_jvp_estimate_equals_law_sample(digits_problem, estimator):
    """Same key, same probes: the JVP estimate equals law.sample(key, 1)[0] to float32 rounding.

    Both compute Σ_k v_k (∇_B·v_kB)/K; they differ only in how ∇·v is summed (the network's
    forward-mode arithmetic vs one dot product), an error of a few float32 ulps of the
    largest term, bounded here by 1e-5 × max|g| + 1e-6.
    """
    loss, params, x, y = digits_problem
    grad = gradients.full_batch_gradient(loss, params, (x, y))
    key = pinned_key(7)
    value, estimate = estimator.value_and_estimate(key, loss, params, x, y)
    sampled = jax.tree_util.tree_map(lambda s: s[0], estimator.given(grad).sample(key, 1))
    fe, fs = jax.flatten_util.ravel_pytree(estimate)[0], jax.flatten_util.ravel_pytree(sampled)[0]
    np.testing.assert_allclose(np.asarray(fe), np.asarray(fs), rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(fs))) + 1e-6)
    np.testing.assert_allclose(float(value), float(loss(params, x, y)), rtol=1e-6)
    assert jax.tree_util.tree_structure(estimate) == jax.tree_util.tree_structure(params)


@pytest.mark.parametrize("estimator", ESTIMATORS[1:3], ids=str)
def test_estimates_pair_with_law_samples(digits_problem, estimator):
    """estimates(key, N)[i] equals law.sample(key, N)[i] for every i (same bound as above), and sample 0 is estimate(key)."""
    loss, params, x, y = digits_problem
    grad = gradients.full_batch_gradient(loss, params, (x, y))
    key, num = pinned_key(8), 6
    real = estimator.estimates(key, num, loss, params, x, y, batch_size=4)  # 4 does not divide 6: a remainder batch
    sampled = estimator.given(grad).sample(key, num)
    flat = jax.vmap(lambda t: jax.flatten_util.ravel_pytree(t)[0])
    fr, fs = np.asarray(flat(real)), np.asarray(flat(sampled))
    assert fr.shape == fs.shape == (num, sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))
    for i in range(num):
        np.testing.assert_allclose(fr[i], fs[i], rtol=0, atol=1e-5 * float(np.max(np.abs(fs[i]))) + 1e-6, err_msg=f"sample {i}")
    assert not np.allclose(fr[0], fr[1])  # distinct probes per sample
    single = jax.flatten_util.ravel_pytree(estimator.estimate(key, loss, params, x, y))[0]
    np.testing.assert_allclose(fr[0], np.asarray(single), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [(0, ValueError, "num must be at least 1"), (-1, ValueError, "num must be at least 1"),
     (2.0, TypeError, "num must be a positive int"), (True, TypeError, "num must be a positive int")],
)
def test_estimates_rejects_bad_counts(digits_problem, bad, error, message):
    """Bad counts are refused with the same errors as law.sample."""
    loss, params, x, y = digits_problem
    with pytest.raises(error, match=message):
        sk.ForwardGradient().estimates(pinned_key(0), bad, loss, params, x, y)


def test_estimate_is_jittable_and_key_dependent(digits_problem):
    loss, params, x, y = digits_problem
    est = sk.Partitioned(blocks=2, directions=2)
    fn = jax.jit(lambda k, p: est.estimate(k, loss, p, x, y))
    a, b = fn(pinned_key(1), params), fn(pinned_key(2), params)
    eager = est.estimate(pinned_key(1), loss, params, x, y)
    flat = lambda t: np.asarray(jax.flatten_util.ravel_pytree(t)[0])  # noqa: E731
    np.testing.assert_allclose(flat(a), flat(eager), rtol=1e-5, atol=1e-7)
    assert not np.allclose(flat(a), flat(b))


@jax.custom_jvp
def _forward_only_square_norm(w):
    return jnp.sum(w**2)


@_forward_only_square_norm.defjvp
def _forward_only_rule(primals, tangents):
    (w,), (t,) = primals, tangents
    # A while_loop with a data-dependent trip count has no transpose: reverse mode
    # (jax.grad / vjp) through this rule fails, forward mode works.
    steps = jnp.where(w[0] > jnp.inf, 2, 1)  # always 1, but only known at run time
    out = jax.lax.while_loop(lambda c: c[0] < steps, lambda c: (c[0] + 1, c[1] + jnp.sum(2 * w * t)), (0, 0.0))[1]
    return jnp.sum(w**2), out


def test_estimate_uses_forward_mode_only():
    """A loss whose derivative exists only in forward mode: jax.grad fails, estimate works."""
    w = jnp.array([1.0, -2.0, 0.5])
    with pytest.raises(Exception, match="(?i)reverse-mode|transpose|while_loop"):
        jax.grad(_forward_only_square_norm)(w)
    key = pinned_key(3)
    est = sk.ForwardGradient(directions=2)
    g = est.estimate(key, _forward_only_square_norm, w)
    np.testing.assert_allclose(np.asarray(g), np.asarray(est.given(2 * w).sample(key, 1)[0]), rtol=1e-6)
