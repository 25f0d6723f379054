"""The distribution-free comparison: its p-values, Holm's procedure, its calibration."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import snrkit as sk
from snrkit import stats
from snrkit.stats import comparisons
from tests.conftest import pinned_key


@pytest.mark.parametrize("k", [1, 4, 7, 32])
@pytest.mark.parametrize("u", [0.5, 1.0, 1.7, 3.0, 10.0])
def test_median_pvalue_is_binomial_tail(k, u):
    """p(u) = P(at least ceil(k/2) of k batches beyond u) with per-batch probability min(1, 1/u²), by enumeration."""
    q = min(1.0, 1 / u**2)
    need = math.ceil(k / 2)
    if k <= 7:
        expected = sum(
            q ** sum(c) * (1 - q) ** (k - sum(c)) for c in itertools.product([0, 1], repeat=k) if sum(c) >= need
        )
    else:
        expected = sum(math.comb(k, j) * q**j * (1 - q) ** (k - j) for j in range(need, k + 1))
    assert stats.median_pvalue(u, k) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("k", [8, 32])
@pytest.mark.parametrize("alpha", [0.05, 1e-6])
def test_critical_deviation_inverts_pvalue(k, alpha):
    t = stats.critical_deviation(k, alpha)
    assert stats.median_pvalue(t, k) <= alpha < stats.median_pvalue(t * (1 - 1e-6), k)


def test_critical_deviation_impossible_with_one_batch():
    """One batch is plain Chebyshev: 1e-6 needs u = 1000."""
    assert stats.critical_deviation(1, 1e-6) == pytest.approx(1000.0, rel=1e-6)


def test_holm_matches_definition():
    """Holm: sort p, reject while p_(j) ≤ α/(m−j+1); compared with a direct loop."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = rng.uniform(0, 0.05, size=rng.integers(1, 12)) ** rng.uniform(1, 4)
        alpha = 0.05
        expected = np.zeros(p.size, bool)
        for j, idx in enumerate(np.argsort(p)):
            if p[idx] > alpha / (p.size - j):
                break
            expected[idx] = True
        np.testing.assert_array_equal(comparisons._holm(p, alpha), expected)


def test_comparison_reports_ratio_and_worst_coordinate():
    law = sk.ForwardGradient().given(jnp.array([2.0, 0.5, -1.0]))
    m = sk.monte_carlo(law, pinned_key(1), 32 * 512, batches=32)
    c = stats.compare_variance(m, 2 * np.asarray(law.flat_var()), law=law)
    assert not c.holds
    lo, hi = c.ratio_ci
    assert lo < c.ratio < hi and hi < 0.6  # truth / claim = 1/2
    assert "REFUTED" in str(c) and f"worst #{c.worst}" in str(c)


@pytest.mark.slow
def test_false_failure_rate_is_below_nominal():
    """Calibration: at alpha = 0.05 the right formula is refuted in at most 5 % of 200 independent keys.

    The median-of-batches test is conservative by construction (Chebyshev); this measures
    it. The failure count allowed is the smallest c with P(Bin(200, 0.05) > c) ≤ 1e-6, so a
    correct bound fails this test with probability ≤ 1e-6. The observed rate is printed.
    """
    law = sk.ForwardGradient().given(jnp.array([3.0, -1.0, 0.5, 0.2]))
    failures = 0
    for seed in range(200):
        m = sk.monte_carlo(law, pinned_key(1000 + seed), 32 * 64, batches=32)
        failures += not stats.compare_variance(m, law, alpha=0.05).holds
    print(f"observed false-failure rate at alpha=0.05: {failures / 200:.3f}")
    allowed = int(scipy.stats.binom.isf(1e-6, 200, 0.05))
    assert failures <= allowed


def test_batch_means_interval_is_centred_on_the_estimate():
    values = np.array([1.0, 2.0, 3.0, 6.0])
    lo, hi = stats.batch_means_interval(10.0, values)
    half = scipy.stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert (lo, hi) == pytest.approx((10 - half, 10 + half))
    with pytest.raises(ValueError, match="at least 2 batches"):
        stats.batch_means_interval(1.0, np.array([1.0]))


@pytest.mark.parametrize("alpha", [0, 0.0, 1, 1.5, -0.1, float("nan")])
def test_alpha_outside_zero_one_is_refused(alpha):
    """alpha = 0 would let any formula hold, alpha ≥ 1 refutes the truth: both are refused."""
    law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
    m = sk.monte_carlo(law, pinned_key(0), 256, batches=8)
    for compare in (sk.stats.compare_variance, sk.stats.compare_mean):
        with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
            compare(m, law, alpha=alpha)
    with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
        sk.stats.detection_margin(law, 4 * law.flat_var(), num_samples=256, batches=8, alpha=alpha)


def test_detection_margin_needs_two_samples_per_batch():
    """One sample per batch has no variance: a clear error, not a power of 0 with a warning."""
    law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
    with pytest.raises(ValueError, match="1 sample per batch.*at least 2"):
        sk.stats.detection_margin(law, 4 * law.flat_var(), num_samples=32, batches=32)
    with pytest.raises(ValueError, match="wrong has 3 coordinates but the law has 2"):
        sk.stats.detection_margin(law, np.ones(3), num_samples=64, batches=32)


def test_detection_margin_is_a_ratio_of_errors_not_a_probability():
    """The margin is the wrong formula's largest error over the detectable one: twice the error, twice the margin.

    So it exceeds 1 freely (a variance 4 times too large at 8192 samples is detectable many times
    over), and the old name, which read as a probability, points to the new one.
    """
    law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
    var = np.asarray(law.flat_var())
    one = sk.stats.detection_margin(law, var * 1.5, num_samples=8192, batches=32)
    two = sk.stats.detection_margin(law, var * 2.0, num_samples=8192, batches=32)
    assert two == pytest.approx(2 * one, rel=1e-12)
    assert sk.stats.detection_margin(law, var, num_samples=8192, batches=32) == 0.0
    assert sk.stats.detection_margin(law, 4 * var, num_samples=8192, batches=32) > 1
    with pytest.raises(AttributeError, match="renamed detection_margin"):
        sk.stats.guaranteed_power  # noqa: B018 (the attribute access is the test)
