"""Probe distributions: the sampler must agree with the stated moments, checked at construction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from snrkit.probes import PROBES, Probe
from tests.conftest import TEST_ALPHA, pinned_key
from tests.reference import three_point_probe


def _signs(key, shape, dtype):
    return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0).astype(dtype)


@pytest.mark.parametrize(
    ("sampler", "message"),
    [
        (lambda key, shape, dtype: 2 * _signs(key, shape, dtype), "draws entries of variance 4, but the stated moments say 1"),
        (lambda key, shape, dtype: 1 + _signs(key, shape, dtype), "draws entries of mean 1"),
        (lambda key, shape, dtype: jnp.zeros(shape[:0], dtype), r"returned shape \(\)"),
    ],
)
def test_a_sampler_that_contradicts_its_moments_is_refused(sampler, message):
    with pytest.raises(ValueError, match=message):
        Probe("mine", 1.0, 1.0, 1.0, sampler)


def test_a_sampler_of_the_wrong_fourth_moment_is_refused():
    """Gaussian draws declared with the uniform's moments: variance right, fourth moment 3 vs 9/5."""
    with pytest.raises(ValueError, match="draws entries of fourth moment 3.0.*stated moments say 1.8"):
        Probe("mine", 9 / 5, 27 / 7, 9.0, lambda key, shape, dtype: jax.random.normal(key, shape, dtype))


def test_no_sampler_is_refused():
    with pytest.raises(TypeError, match=r"sampler must be a function sampler\(key, shape, dtype\)"):
        Probe("mine", 1.0, 1.0, 1.0, None)


def test_correct_samplers_pass_the_check():
    Probe("signs", 1.0, 1.0, 1.0, _signs)
    three_point_probe(0.25)  # kurtosis 4: a heavy tail within tolerance
    for probe in PROBES.values():  # the built-ins skip the check at import; they would pass it
        Probe(probe.name, probe.m4, probe.m6, probe.m8, probe.sampler)


def test_impossible_probe_moments():
    with pytest.raises(ValueError, match="not those of a distribution with variance 1"):
        Probe("bad", 0.5, 1.0, 1.0, lambda key, shape, dtype: jnp.zeros(shape, dtype))


def test_rademacher_takes_32_signs_from_each_random_word():
    """Entry j (C order) is 1 - 2 × bit (j mod 32) of word j div 32 of jax.random.bits: 1/32 of the words."""
    key = pinned_key(4)
    for shape in [(3, 70), (5,), (32,), (2, 2, 9)]:
        size = int(np.prod(shape))
        words = np.asarray(jax.random.bits(key, (-(-size // 32),), jnp.uint32))
        bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
        expected = (1 - 2 * bits.reshape(-1)[:size].astype(np.float32)).reshape(shape)
        for dtype in (jnp.float32, jnp.bfloat16, jnp.float64):
            with jax.enable_x64(dtype == jnp.float64):  # the same signs with x64 on (Monte Carlo) or off
                signs = PROBES["rademacher"].sample(key, shape, dtype)
            assert signs.shape == shape and signs.dtype == dtype
            np.testing.assert_array_equal(np.asarray(signs, np.float32), expected)


def _lag_correlations(signs: np.ndarray, lags: range) -> np.ndarray:
    return np.array([np.mean(signs[:-lag] * signs[lag:]) for lag in lags])


def test_packed_signs_are_pairwise_uncorrelated():
    """Signs that share a word, or sit at the ends of two words, are uncorrelated: the mean and every
    lag 1..64 within z standard errors (1/√N) of 0, z the two-sided normal quantile of TEST_ALPHA split
    over the 65 comparisons (z ≈ 5.9; each statistic is a mean of 2^20 independent ±1 products).
    Negative control: 16 bits reused twice per word (entry j and j + 16 equal) is caught at lag 16."""
    num = 1 << 20
    signs = np.asarray(PROBES["rademacher"].sample(pinned_key(6), (num,), jnp.float32), np.float64)
    bound = scipy.stats.norm.isf(TEST_ALPHA / (2 * 65)) / np.sqrt(num)
    assert abs(signs.mean()) < bound
    assert np.all(np.abs(_lag_correlations(signs, range(1, 65))) < bound)
    halves = signs.reshape(-1, 32)[:, :16]
    reused = np.concatenate([halves, halves], axis=1).reshape(-1)
    assert abs(_lag_correlations(reused, range(16, 17))[0]) > bound
