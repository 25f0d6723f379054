"""The core: problems and what they provide, the law base class, precision, and input checks.

Problems are checked against jax.grad / jax.jvp on a real MLP; the checks for bad input
assert both the error type and the part of the message that says how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit import data, nets
from snrkit.core.estimator import Estimator
from snrkit.core.law import MissingClosedForm
from snrkit.core.problem import GradientProblem, Problem, check_loss
from snrkit.core.tree import ravel_host
from snrkit.families.iid import BlockProbeSpec
from snrkit.probes import get_probe
from tests.conftest import pinned_key


@pytest.fixture(scope="module")
def mlp_problem():
    digits = data.load_digits().take(64)
    net = nets.mlp((64, 6, 10))
    params = net.init(pinned_key(2))
    return Problem.from_network(net, params, digits.flat(), digits.labels), net, params, digits


# -- problems ---------------------------------------------------------------------------------


def test_problem_provides_what_it_can_compute(mlp_problem):
    problem, net, params, digits = mlp_problem
    assert problem.provides == {"gradient", "loss", "hvp", "per_example_gradients", "layers"}
    x, y = jnp.asarray(digits.flat()), jnp.asarray(digits.labels)
    np.testing.assert_allclose(ravel_host(problem.gradient()), ravel_host(jax.grad(net.loss)(params, x, y)), rtol=1e-6)
    # Per-example gradients of a mean loss average to the gradient.
    per_example = problem.per_example_gradients()
    mean = jax.tree_util.tree_map(lambda g: g.mean(0), per_example)
    np.testing.assert_allclose(ravel_host(mean), ravel_host(problem.gradient()), rtol=1e-4, atol=1e-7)
    # A Hessian-vector product equals the dense Hessian (reverse over reverse) times the tangent.
    smooth = Problem(lambda w, a: jnp.sum(jnp.tanh(a @ w) ** 2), jnp.array([0.3, -0.2, 0.5]), x[:5, :3])
    tangent = jnp.array([1.0, -2.0, 0.5])
    hessian = jax.hessian(smooth.loss_fn)(smooth.params, *smooth.args)
    np.testing.assert_allclose(np.asarray(smooth.hvp(tangent)), np.asarray(hessian @ tangent), rtol=1e-5, atol=1e-6)
    # Each dense layer: pre-activations are inputs @ W + b, and the next layer's inputs are their ReLU.
    layers = problem.layers()
    assert [layer.weights.shape for layer in layers] == [(64, 6), (6, 10)]
    for layer, p in zip(layers, params):
        np.testing.assert_allclose(layer.preactivations, layer.inputs @ p["w"] + p["b"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers[1].inputs, jax.nn.relu(layers[0].preactivations), rtol=1e-6)


def _flagged_loss(w: jax.Array, x: jax.Array, y: jax.Array, train: bool, mode: str) -> jax.Array:
    """A loss that branches in Python on a flag and a mode string, as training code does."""
    h = jnp.tanh(x @ w)
    if train:
        h = 0.5 * h
    error = h - y
    return jnp.mean(jnp.abs(error)) if mode == "l1" else jnp.mean(error**2)


@pytest.mark.parametrize("train, mode", [(True, "l2"), (False, "l1")])
def test_a_loss_may_branch_on_python_arguments(train, mode):
    """Arguments that are not arrays reach the loss untraced, in every path that traces it, and are not ignored."""
    w = jnp.array([0.3, -0.2, 0.5])
    x = jnp.asarray(np.random.default_rng(0).standard_normal((6, 3)), jnp.float32)
    y = jnp.linspace(-0.5, 0.5, 6)
    problem = Problem(_flagged_loss, w, x, y, train, mode)
    expected = jax.grad(lambda w: _flagged_loss(w, x, y, train, mode))(w)
    np.testing.assert_allclose(problem.gradient(), expected, rtol=1e-6)
    other = jax.grad(lambda w: _flagged_loss(w, x, y, not train, mode))(w)
    assert not np.allclose(expected, other)  # the flag matters, so a dropped flag would fail above
    # per-example gradients over the array arguments; the flags are the same for every example
    per_example = problem.per_example_gradients()
    assert per_example.shape == (6, 3)
    np.testing.assert_allclose(
        per_example[2], jax.grad(lambda w: _flagged_loss(w, x[2:3], y[2:3], train, mode))(w), rtol=1e-6
    )
    # the real estimator, one estimate and a vectorised batch, is the law's sample for the same key
    est, key = sk.ForwardGradient(directions=2), pinned_key(5)
    samples = est.given(expected).sample(key, 3)
    np.testing.assert_allclose(est.estimate(key, _flagged_loss, w, x, y, train, mode), samples[0], rtol=1e-5)
    real = est.estimates(key, 3, _flagged_loss, w, x, y, train, mode, batch_size=2)
    np.testing.assert_allclose(real, samples, rtol=1e-5, atol=1e-7)
    # a list of Python numbers may hold one value per example: no example axis is read then
    listed = Problem(lambda w, x, y: _flagged_loss(w, x, jnp.asarray(y), train, mode), w, x, y.tolist())
    assert "per_example_gradients" not in listed.provides
    np.testing.assert_allclose(listed.gradient(), expected, rtol=1e-6)
    import pandas as pd  # an array-like that is not an array (nor a single value): no example axis either

    series = Problem(lambda w, x, y: _flagged_loss(w, x, jnp.asarray(y.to_numpy()), train, mode), w, x,
                     pd.Series(np.asarray(y)))
    assert "per_example_gradients" not in series.provides


def test_a_gradient_only_problem_provides_only_the_gradient():
    problem = GradientProblem({"w": jnp.array([3.0, 4.0])}, state={"stale_gradient": {"w": jnp.ones(2)}})
    assert problem.provides == {"gradient", "state"}
    assert problem.num_coordinates == 2
    np.testing.assert_array_equal(problem.state_value("stale_gradient")["w"], [1.0, 1.0])
    with pytest.raises(ValueError, match="carries no state 'momentum' .*stale_gradient.*state="):
        problem.state_value("momentum")
    with pytest.raises(ValueError, match=r"cannot compute hvp .*sk.Problem\(loss_fn, params, \*args\)"):
        problem.hvp(jnp.ones(2))


@dataclass(frozen=True)
class _NeedsLayers(Estimator):
    """A family whose law needs the network's layers (only its `needs` matter here)."""

    family: ClassVar[str] = "test-only"
    needs: ClassVar[frozenset[str]] = frozenset({"gradient", "layers"})

    def _plan(self, problem):
        return BlockProbeSpec(get_probe("gaussian"), 1, 1), {}

    def _law(self, problem):
        return sk.ForwardGradient().given(problem.gradient())


def test_a_family_that_needs_more_than_the_problem_gives_a_clear_error(mlp_problem):
    with pytest.raises(ValueError, match=r"_NeedsLayers needs layers of the problem, but this problem provides only "
                                         r"gradient\. .*Problem\.from_network\(network, params, x, y\)"):
        _NeedsLayers().given(jnp.array([1.0, 2.0]))
    problem = mlp_problem[0]
    assert _NeedsLayers().given(problem).num_coordinates == problem.num_coordinates


@pytest.mark.parametrize(
    ("loss", "error", "message"),
    [
        (lambda p: (jnp.sum(p), {"aux": 1.0}), TypeError, r"returns a tuple, e.g. \(loss, aux\).*\[0\]"),
        (lambda p: None, TypeError, "returned None"),
        (lambda p: jnp.sum(p).astype(jnp.int32), TypeError, "must return a floating scalar, got dtype int32"),
        (lambda p: p * 2.0, TypeError, r"must return a scalar .*got shape \(3,\).*jnp.mean"),
        ("not a function", TypeError, "loss_fn must be a function"),
    ],
)
def test_bad_losses_are_refused_before_any_work(loss, error, message):
    with pytest.raises(error, match=message):
        check_loss(loss, jnp.ones(3), ())
    with pytest.raises(error, match=message):
        sk.ForwardGradient().estimate(pinned_key(0), loss, jnp.ones(3))
    with pytest.raises(error, match=message):
        sk.Partitioned(blocks=2).estimates(pinned_key(0), 4, loss, jnp.ones(3))


def test_a_batch_of_keys_is_refused_with_the_fix():
    keys = jax.random.split(pinned_key(0), 5)
    law = sk.ForwardGradient().given(jnp.ones(3))
    with pytest.raises(TypeError, match=r"one JAX random key, got a batch of keys of shape \(5,\).*key\[0\]"):
        law.sample(keys, 2)
    with pytest.raises(TypeError, match="one JAX random key"):
        sk.ForwardGradient().estimate(keys, lambda w: jnp.sum(w**2), jnp.ones(3))
    with pytest.raises(TypeError, match="one JAX random key"):
        law.sample(jax.random.key_data(keys), 2)


# -- the law base class -------------------------------------------------------------------------


def test_float16_moments_are_computed_wide_and_returned_where_they_fit():
    """Var of 300 entries of 20 is 120400, beyond float16's 65504: it comes back in float32, exact.
    SNR of (1e-4, 2e-4) is computed in float64: the tiny variances do not round to 0 first."""
    law = sk.ForwardGradient().given(jnp.full(300, 20.0, jnp.float16))
    var = law.var()
    assert var.dtype == jnp.float32 and float(var[0]) == 120400.0
    assert float(law.total_variance()) == pytest.approx(300 * 120400.0, rel=1e-6)
    snr = law.snr()
    assert snr.dtype == jnp.float16 and float(snr[0]) == pytest.approx(400 / 120400, rel=1e-3)
    small = sk.ForwardGradient().given(jnp.array([1e-4, 2e-4], jnp.float16))
    g = np.array([1e-4, 2e-4], np.float16).astype(np.float64)
    expected = g**2 / (g @ g + g**2)
    np.testing.assert_allclose(np.asarray(small.snr(), np.float64), expected, rtol=2e-3)
    assert np.all(np.asarray(small.var(), np.float64) > 0)


def test_bias_mse_and_efficiency_edge_cases():
    """A zero gradient has no signal (efficiency NaN); with J = n JVPs an exact estimator (Rademacher, one entry
    per block) meets the zero floor (efficiency 1), and a noisy one (Gaussian) does not (efficiency 0)."""
    assert np.isnan(float(sk.ForwardGradient().given(jnp.zeros(3)).efficiency()))
    grad = jnp.array([1.0, -2.0, 0.5])
    exact = sk.Partitioned(blocks=3, probe="rademacher").given(grad)
    assert float(exact.total_mse()) == 0.0 and float(exact.floor()) == 0.0 and float(exact.efficiency()) == 1.0
    assert float(sk.Partitioned(blocks=3).given(grad).efficiency()) == 0.0


def test_optional_closed_forms_are_declared_and_checked():
    law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
    assert all(law.has(name) for name in ("cov", "fourth_central_moment", "projected_variance"))
    with pytest.raises(ValueError, match="unknown closed form 'kurtosis'"):
        law.has("kurtosis")
    with pytest.raises(TypeError, match=r"max_bytes must be a positive int .*1 << 30"):
        law.cov(max_bytes="big")
    with pytest.raises(ValueError, match=r"weights must be flat with one entry per coordinate, shape \(2,\)"):
        law.projected_variance(np.ones(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        law.projected_variance(np.array([1.0, np.nan]))

    class NoClosedForms(type(law)):
        closed_forms = frozenset()

    bare = NoClosedForms(law.grad, spec=law.sampler, structure={}, probe=law.probe, directions=1)
    assert not bare.has("cov")
    with pytest.raises(MissingClosedForm, match="has no closed-form cov.*law.has"):
        bare.cov()
    for undeclared in (bare.flat_cov, bare.fourth_central_moment, lambda: bare.projected_variance(np.ones(2))):
        with pytest.raises(MissingClosedForm):
            undeclared()
    # Without a fourth moment the comparison falls back to the sampled noise, and says so.
    m = sk.monte_carlo(bare, pinned_key(3), 32 * 64, batches=32)
    assert sk.stats.compare_variance(m, bare).noise == "empirical"


def test_moments_from_samples_refuses_a_scalar_leaf():
    with pytest.raises(ValueError, match=r"samples\['b'\] is a scalar; every leaf needs a leading sample axis"):
        sk.moments_from_samples({"a": np.ones((4, 2)), "b": np.float32(1.0)})


def test_a_non_finite_gradient_from_a_loss_is_refused():
    """jax.grad of a loss at log 0 is inf: the law refuses it instead of returning infinite variances."""
    problem = Problem(lambda w: -jnp.sum(jnp.log(w)), jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"gradient has 1 non-finite value\(s\)"):
        sk.ForwardGradient().given(problem)
    with pytest.raises(ValueError, match="each leaf the same shape and dtype"):
        Problem(lambda w: jnp.sum(w**2), jnp.ones(3), gradient=jnp.ones(4))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_probes_keep_their_moments(dtype):
    """Probes are drawn at least in float32 and rounded: a bfloat16 normal drawn directly is clipped at 2.9,
    and its variance law would fail. The law holds against 32 × 4096 samples of a half-precision gradient."""
    law = sk.ForwardGradient().given(jnp.asarray([1.5, -0.5, 0.25, 2.0], dtype))
    m = sk.monte_carlo(law, pinned_key(12), 32 * 4096, batches=32)
    assert sk.stats.compare_variance(m, law).holds and sk.stats.compare_mean(m, law).holds
    probes = np.asarray(get_probe("gaussian").sample(pinned_key(13), (1 << 16,), dtype), np.float64)
    assert np.abs(probes).max() > 3.5 and abs(np.mean(probes**4) - 3.0) < 8 * np.sqrt(96 / probes.size)


def test_keep_freed_memory_sets_glibcs_thresholds_and_leaves_other_libcs_alone(monkeypatch):
    import platform

    from snrkit.core import allocator

    if platform.libc_ver()[0] == "glibc":
        assert allocator.keep_freed_memory() is True  # mallopt accepted both settings
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator.keep_freed_memory.__wrapped__() is False
