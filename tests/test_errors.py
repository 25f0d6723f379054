"""Bad input raises a clear error naming the argument and the fix; degenerate input works."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from tests.conftest import pinned_key


@pytest.mark.parametrize(
    ("grad", "error", "message"),
    [
        (jnp.array([1.0, jnp.nan]), ValueError, r"grad has 1 non-finite value.*NaN or inf"),
        ({"w": jnp.array([jnp.inf, 1.0])}, ValueError, r"grad\['w'\] has 1 non-finite"),
        ({}, ValueError, "grad is an empty pytree"),
        ([], ValueError, "grad is an empty pytree"),
        (jnp.zeros((0,)), ValueError, "no coordinates"),
        (jnp.array([1, 2]), TypeError, r"dtype int32.*Cast it"),
        ({"a": np.array([1, 2], np.int64)}, TypeError, r"grad\['a'\] has dtype int64"),
    ],
)
def test_bad_gradients(grad, error, message):
    with pytest.raises(error, match=message):
        sk.ForwardGradient().given(grad)


def test_cov_too_large():
    law = sk.ForwardGradient().given(jnp.ones(100_000))
    with pytest.raises(ValueError, match=r"100000 x 100000 matrix.*Use var\(\).*max_bytes"):
        law.cov()


def test_bad_keys_and_counts():
    law = sk.ForwardGradient().given(jnp.ones(3))
    with pytest.raises(TypeError, match="key must be a JAX random key, e.g. jax.random.key"):
        law.sample(42, 2)
    with pytest.raises(ValueError, match="num must be at least 1"):
        law.sample(pinned_key(0), 0)


def test_prediction_of_wrong_size():
    law = sk.ForwardGradient().given(jnp.ones(3))
    m = sk.monte_carlo(law, pinned_key(0), 64, batches=8)
    with pytest.raises(ValueError, match="prediction has 2 coordinates but the samples have 3"):
        sk.stats.compare_variance(m, np.ones(2))
    with pytest.raises(ValueError, match="NaN or inf"):
        sk.stats.compare_variance(m, np.array([1.0, np.nan, 1.0]))
    one_batch = sk.monte_carlo(law, pinned_key(0), 64)
    with pytest.raises(ValueError, match=r"batches=32"):
        sk.stats.compare_variance(one_batch, law)


def test_zero_gradient_compares_cleanly():
    """Degenerate but valid: every sample is 0, variance 0 holds, a non-zero prediction is refuted."""
    law = sk.ForwardGradient().given(jnp.zeros(4))
    m = sk.monte_carlo(law, pinned_key(0), 256, batches=8)
    assert sk.stats.compare_variance(m, law).holds
    assert sk.stats.compare_mean(m, law).holds
    assert not sk.stats.compare_variance(m, np.ones(4), law=law).holds


def test_unusable_moments():
    """Batches of one sample have no variance; NaN samples cannot be compared: both are errors, never a pass."""
    law = sk.ForwardGradient().given(jnp.ones(3))
    m = sk.monte_carlo(law, pinned_key(0), 40, batches=32)
    with pytest.raises(ValueError, match="a batch has 1 sample"):
        sk.stats.compare_variance(m, 1000 * np.asarray(law.flat_var()), law=law)


def test_loss_must_be_scalar():
    with pytest.raises(TypeError, match="loss_fn must return a scalar"):
        sk.ForwardGradient().estimate(pinned_key(0), lambda w: w * 2.0, jnp.ones(3))
