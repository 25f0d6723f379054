"""Probe distributions: the sampler must agree with the stated moments, checked at construction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from snrkit.probes import PROBES, Probe
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
