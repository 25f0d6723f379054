"""The distribution-free median-of-batches comparisons of a prediction with sampled moments (see [`snrkit.stats`][snrkit.stats])."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.stats

from snrkit.core.law import Law
from snrkit.core.tree import PyTree, ravel_host
from snrkit.core.validation import check_alpha
from snrkit.montecarlo import Moments
from snrkit.stats.intervals import batch_variance_sd, t_half_width

DEFAULT_ALPHA = 1e-6
"""Default false-failure rate of one comparison."""

# Relative deviations below this are float32 rounding of the samples, not disagreement;
# it only matters where the predicted noise is exactly zero (a deterministic coordinate).
_ROUNDING = 1e-5


@dataclass(frozen=True)
class Comparison:
    r"""Outcome of a theory-vs-Monte-Carlo comparison.

    Returned by [`compare_variance`][snrkit.stats.compare_variance] and
    [`compare_mean`][snrkit.stats.compare_mean]; `str()` gives a one-line summary. The
    decision rests on the median-of-batches p-value (see the module
    [`snrkit.stats`][snrkit.stats]):
    $p = \min(1, 2\min(m\,p_{\min}, p_{\text{pooled}}))$.

    Attributes:
        quantity: `"mean"` or `"var"`.
        holds: `p_value > alpha`: the prediction is consistent with the samples.
        p_value: family-wise p-value (per-coordinate Bonferroni and pooled gate combined).
        alpha: the false-failure rate the decision was taken at.
        ratio: measured / predicted, pooled over coordinates (mean of per-coordinate ratios).
        ratio_ci: 95 % interval of `ratio` (batch means, Student t).
        pooled_p: p-value of the pooled gate alone.
        coordinate_p: unadjusted p-value of each coordinate (flat, ravel order).
        rejected: coordinates rejected by Holm's procedure at `alpha / 2` (flat).
        deviation: median standardised deviation of each coordinate (flat).
        predicted: the prediction (flat).
        measured: the Monte Carlo estimate over all samples (flat).
        noise: `"exact"` (from a law) or `"empirical"` (from the samples).
        num_samples: samples behind the measurement.
        num_batches: batches in the median-of-batches test.
        resolution: relative error of the pooled ratio that the pooled gate detects with
            probability at least $1 - \alpha$, $(t_{\mathrm{gate}} + t_\alpha)\,\sigma_R$ with
            $t$ the [`critical_deviation`][snrkit.stats.critical_deviation] (the gate decides
            at $\alpha/2$, or at $\alpha$ for a pooled-only test) and $\sigma_R$ the standard
            deviation of a batch ratio: a prediction that holds is right to within about this much.

    Examples:
        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
        >>> m = sk.monte_carlo(law, jax.random.key(0), 8192, batches=32)
        >>> c = sk.stats.compare_variance(m, law)
        >>> c.quantity, c.holds, c.noise, c.num_batches
        ('var', True, 'exact', 32)
        >>> str(c).startswith("var: holds")
        True
    """

    quantity: Literal["mean", "var"]
    holds: bool
    p_value: float
    alpha: float
    ratio: float
    ratio_ci: tuple[float, float]
    pooled_p: float
    coordinate_p: np.ndarray = field(repr=False)
    rejected: np.ndarray = field(repr=False)
    deviation: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)
    measured: np.ndarray = field(repr=False)
    noise: str = "exact"
    num_samples: int = 0
    num_batches: int = 0
    resolution: float = math.nan

    @property
    def worst(self) -> int:
        """Flat index of the coordinate with the smallest p-value.

        Examples:
            >>> import jax, jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
            >>> m = sk.monte_carlo(law, jax.random.key(0), 8192, batches=32)
            >>> c = sk.stats.compare_mean(
            ...     m, jnp.array([3.0, 0.0]), law=law
            ... )  # coordinate 1 is wrong
            >>> c.holds, c.worst
            (False, 1)
        """
        return int(np.argmin(self.coordinate_p))

    def __str__(self) -> str:
        verdict = "holds" if self.holds else "REFUTED"
        lo, hi = self.ratio_ci
        i = self.worst
        return (
            f"{self.quantity}: {verdict} (p = {self.p_value:.3g}, alpha = {self.alpha:g}); "
            f"measured/predicted = {self.ratio:.4g} [95 % CI {lo:.4g}, {hi:.4g}]; "
            f"{int(self.rejected.sum())}/{self.rejected.size} coordinates rejected; worst #{i}: "
            f"measured {self.measured[i]:.4g} vs predicted {self.predicted[i]:.4g}; "
            f"{self.num_samples} samples in {self.num_batches} batches, {self.noise} noise"
        )


def median_pvalue(deviation: np.ndarray | float, num_batches: int) -> np.ndarray:
    r"""P-value of a median standardised deviation `u` over `num_batches` batches.

    $$
    p(u) = P\big(\mathrm{Bin}(k, \min(1, u^{-2})) \ge \lceil k/2\rceil\big):
    $$

    Chebyshev per batch, then the binomial tail of the number of batches beyond $|u|$ (see
    the module [`snrkit.stats`][snrkit.stats]). Valid for any distribution with the
    stated standard deviation per batch.

    Args:
        deviation: the median standardised deviation(s) $u$; the sign is ignored.
        num_batches: $k$, the number of batches.

    Returns:
        The p-value(s), shaped like `deviation`.

    Examples:
        >>> from snrkit.stats import median_pvalue
        >>> float(
        ...     median_pvalue(0.5, 32)
        ... )  # within one standard deviation: no evidence
        1.0
        >>> f"{float(median_pvalue(10.0, 32)):.2e}"  # P(Bin(32, 0.01) >= 16)
        '5.17e-24'
    """
    u = np.abs(np.asarray(deviation, dtype=np.float64))
    with np.errstate(divide="ignore"):
        q = np.minimum(1.0, 1.0 / u**2)
    return scipy.stats.binom.sf(math.ceil(num_batches / 2) - 1, num_batches, q)


def critical_deviation(num_batches: int, alpha: float) -> float:
    r"""Smallest `u` whose [`median_pvalue`][snrkit.stats.median_pvalue] is at most `alpha` (`inf` if none is).

    Found by bisection on a log scale; the median of $k$ standardised batch deviations
    must exceed it for a rejection at level `alpha`.

    Args:
        num_batches: $k$, the number of batches.
        alpha: the significance level.

    Returns:
        The critical deviation $t_\alpha$, or `inf` when no deviation up to $10^{12}$
        reaches `alpha`.

    Examples:
        >>> from snrkit.stats import critical_deviation, median_pvalue
        >>> t = critical_deviation(32, 1e-6)
        >>> (
        ...     round(t, 3),
        ...     bool(median_pvalue(t, 32) <= 1e-6 < median_pvalue(0.99 * t, 32)),
        ... )
        (2.704, True)
    """
    if median_pvalue(1e12, num_batches) > alpha:
        return math.inf
    lo, hi = 1.0, 1e12
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if median_pvalue(mid, num_batches) > alpha else (lo, mid)
    return hi


def compare_variance(
    moments: Moments,
    predicted: PyTree | Law,
    *,
    law: Law | None = None,
    alpha: float = DEFAULT_ALPHA,
    pooled_only: bool = False,
) -> Comparison:
    r"""Test a predicted per-coordinate variance against sampled moments.

    Each batch variance $X_{b,i}$ is standardised by its standard deviation
    $\sigma_{b,i} = \sqrt{\mu_{4,i}/m_b - \sigma_i^4(m_b-3)/(m_b(m_b-1))}$ (the exact
    $\sigma_i^2$ and fourth central moment $\mu_{4,i}$ of `law` when given), and the
    median-of-batches p-values of the coordinates and of the pooled ratio decide (see the
    module [`snrkit.stats`][snrkit.stats]). The false-failure rate is at most `alpha`.

    Args:
        moments: from [`monte_carlo`][snrkit.montecarlo.monte_carlo] with `batches` ≥ 8
            (32 is a good default).
        predicted: the predicted variance, shaped like the gradient (or flat), or a law
            whose `var()` is the prediction.
        law: the law the samples came from; its exact variance and fourth moment set the
            noise level. Defaults to `predicted` when that is a law; without a law, or for a
            law with no closed-form fourth moment, the noise is estimated from the samples
            (`noise="empirical"`: the false-failure rate then holds asymptotically).
        alpha: false-failure rate of the decision.
        pooled_only: decide on the pooled ratio alone, for claims about the average over
            coordinates (e.g. "the mean entry variance equals $\|\nabla\|^2$") rather than
            each entry.

    Returns:
        The comparison; `.holds` is the decision.

    Raises:
        ValueError: fewer than 2 batches, a batch with fewer than 2 samples, a prediction
            of the wrong size or with NaN or inf, non-finite sampled moments, or `alpha`
            not strictly between 0 and 1.

    Examples:
        The exact law holds; a variance 4 times too large is refuted:

        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
        >>> m = sk.monte_carlo(law, jax.random.key(0), 8192, batches=32)
        >>> sk.stats.compare_variance(m, law).holds
        True
        >>> wrong = sk.stats.compare_variance(m, 4 * law.flat_var(), law=law)
        >>> wrong.holds, round(wrong.ratio, 1)  # measured / predicted ≈ 1/4
        (False, 0.2)
    """
    alpha = check_alpha(alpha)
    pred, law, sizes = _prediction(moments, predicted, law, "flat_var")
    if law is not None and law.has("fourth_central_moment"):
        sigma2 = np.asarray(law.flat_var(), dtype=np.float64)
        mu4 = np.asarray(law.flat_fourth_central_moment(), dtype=np.float64)
        noise = "exact"
    else:
        # Without a closed-form fourth moment the noise comes from the samples: the
        # false-failure guarantee then holds asymptotically, not at every N.
        sigma2, mu4, noise = moments.flat("var"), moments.flat("fourth_moment"), "empirical"
    batch_sd = batch_variance_sd(mu4, sigma2, sizes)
    return _compare(
        "var", moments.flat("batch_vars"), batch_sd, pred, moments.flat("var"), moments, noise, alpha, pooled_only
    )


def compare_mean(
    moments: Moments, predicted: PyTree | Law, *, law: Law | None = None, alpha: float = DEFAULT_ALPHA
) -> Comparison:
    r"""Test a predicted mean against sampled moments (see [`compare_variance`][snrkit.stats.compare_variance]).

    Each batch mean is standardised by $\sigma_i/\sqrt{m_b}$ and tested by the median of
    batches. The pooled gate projects the bias on the predicted mean: the ratio is
    $\langle \bar g, \theta\rangle / \|\theta\|^2$, so an estimate of $c\,\nabla$ shows up
    as ratio $c$; with a law, its noise is the exact
    $\sqrt{w^\top\operatorname{Cov}[g]\,w/m_b}$, $w = \theta/\|\theta\|^2$.

    Args:
        moments: from [`monte_carlo`][snrkit.montecarlo.monte_carlo] with `batches` ≥ 8.
        predicted: the predicted mean, shaped like the gradient (or flat), or a law whose
            `mean()` is the prediction.
        law: the law the samples came from; its exact variance sets the noise level.
            Defaults to `predicted` when that is a law; otherwise the noise is estimated
            from the samples.
        alpha: false-failure rate of the decision.

    Returns:
        The comparison; `.holds` is the decision.

    Raises:
        ValueError: fewer than 2 batches, a prediction of the wrong size or with NaN or
            inf, non-finite sampled moments, or `alpha` not strictly between 0 and 1.

    Examples:
        The forward gradient is unbiased (Baydin et al. 2022, Theorem 1); twice the
        gradient is refuted:

        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
        >>> m = sk.monte_carlo(law, jax.random.key(0), 8192, batches=32)
        >>> sk.stats.compare_mean(m, law).holds
        True
        >>> sk.stats.compare_mean(m, 2 * law.flat_mean(), law=law).holds
        False
    """
    alpha = check_alpha(alpha)
    pred, law, sizes = _prediction(moments, predicted, law, "flat_mean")
    sigma2 = np.asarray(law.flat_var(), dtype=np.float64) if law is not None else moments.flat("var")
    batch_sd = np.sqrt(sigma2 / sizes)
    noise = "exact" if law is not None else "empirical"
    pooled_sd = None
    norm2 = float(pred @ pred)
    if law is not None and norm2 > 0 and law.has("projected_variance"):
        # The projection on the prediction has an exact variance (w^T Cov w); the triangle
        # bound Σ|w_i|σ_i would be √n times too loose for a spread gradient.
        pooled_sd = np.sqrt(law.projected_variance(pred / norm2) / sizes[:, 0])
    return _compare(
        "mean", moments.flat("batch_means"), batch_sd, pred, moments.flat("mean"), moments, noise, alpha,
        pooled_sd=pooled_sd,
    )


def _prediction(moments: Moments, predicted: PyTree | Law, law: Law | None, moment: str) -> tuple[np.ndarray, Law | None, np.ndarray]:
    """The flat prediction (a law's `moment` when a law is given), the law setting the noise, and the batch sizes."""
    if isinstance(predicted, Law):
        law = law if law is not None else predicted
        predicted = getattr(predicted, moment)()
    return _flat(predicted, moments), law, moments.batch_sizes.astype(np.float64)[:, None]


def _flat(predicted: PyTree, moments: Moments) -> np.ndarray:
    pred = ravel_host(predicted)
    n = ravel_host(moments.mean).size
    if pred.size != n:
        raise ValueError(f"the prediction has {pred.size} coordinates but the samples have {n}; predict every coordinate")
    if not np.all(np.isfinite(pred)):
        raise ValueError("the prediction has NaN or inf entries; a formula must give a finite value for every coordinate")
    return pred


def _standardise(estimates: np.ndarray, theta: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """`(estimates - theta) / sd` with zero-noise coordinates judged up to float32 rounding."""
    diff = estimates - theta
    scale = np.abs(theta) + np.abs(estimates)
    exact = np.abs(diff) <= _ROUNDING * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        z = diff / sd
    return np.where(sd > 0, z, np.where(exact, 0.0, np.copysign(np.inf, diff)))


def _compare(
    quantity: Literal["mean", "var"],
    batch_estimates: np.ndarray,
    batch_sd: np.ndarray,
    pred: np.ndarray,
    measured: np.ndarray,
    moments: Moments,
    noise: str,
    alpha: float,
    pooled_only: bool = False,
    pooled_sd: np.ndarray | None = None,
) -> Comparison:
    k = moments.num_batches
    if k < 2:
        raise ValueError(
            "the comparison needs the samples in batches: call monte_carlo(..., batches=32) "
            "(at least 8 batches give a test with power)"
        )
    if quantity == "var" and int(moments.batch_sizes.min()) < 2:
        raise ValueError(
            f"a batch has {int(moments.batch_sizes.min())} sample: a batch variance needs at least 2. "
            f"Use more samples or fewer batches (num_samples >= 2 * batches)."
        )
    if not (np.all(np.isfinite(batch_estimates)) and np.all(np.isfinite(batch_sd))):
        raise ValueError(
            "the sampled moments have NaN or inf entries (overflowing samples?); a comparison "
            "needs finite samples: check the gradient's scale and the probe"
        )
    z = _standardise(batch_estimates, pred[None, :], batch_sd)
    deviation = np.median(z, axis=0)
    coordinate_p = median_pvalue(deviation, k)
    m = coordinate_p.size
    family_p = min(1.0, m * float(coordinate_p.min()))
    rejected = _holm(coordinate_p, alpha / 2)

    # Pooled gate: one ratio per batch, with a bound on its standard deviation.
    if quantity == "var":
        use = pred > 0
        weights = np.where(use, 1.0 / np.where(use, pred, 1.0), 0.0) / max(int(use.sum()), 1)
        ratios = (batch_estimates * weights).sum(axis=1)
        expected = 1.0 if use.any() else 0.0
    else:
        norm2 = float(pred @ pred)
        weights = pred / norm2 if norm2 > 0 else np.zeros_like(pred)
        ratios = (batch_estimates * weights).sum(axis=1)
        expected = 1.0 if norm2 > 0 else 0.0
    if pooled_sd is not None:
        ratio_sd = pooled_sd
    elif pooled_only:
        # An average claim is decided on the pooled ratio alone, whose exact noise would need
        # every cross fourth moment; the batch-to-batch spread estimates it (asymptotic).
        ratio_sd = np.full_like(ratios, np.std(ratios, ddof=1))
        noise = "empirical (batch spread)"
    else:
        ratio_sd = (batch_sd * np.abs(weights)).sum(axis=1)
    if expected == 0.0:
        pooled_p = 1.0
    else:
        pooled_z = _standardise(ratios, np.full_like(ratios, expected), ratio_sd)
        pooled_p = float(median_pvalue(np.median(pooled_z), k))
    if pooled_only:
        p_value, rejected = pooled_p, np.zeros_like(rejected)
    else:
        p_value = min(1.0, 2.0 * min(family_p, pooled_p))
    ratio = float(np.mean(ratios)) if expected else math.nan
    # The pooled gate decides at alpha (pooled only) or alpha/2 (combined with the family): an error of
    # (t_gate + t_alpha) sigma_R is then rejected with probability at least 1 - alpha.
    gate = critical_deviation(k, alpha if pooled_only else alpha / 2)
    resolution = (gate + critical_deviation(k, alpha)) * float(np.median(ratio_sd)) if expected else math.nan
    half = t_half_width(ratios)
    return Comparison(
        quantity=quantity,
        holds=bool(p_value > alpha),
        p_value=p_value,
        alpha=alpha,
        ratio=ratio,
        ratio_ci=(ratio - half, ratio + half),
        pooled_p=pooled_p,
        coordinate_p=coordinate_p,
        rejected=rejected,
        deviation=deviation,
        predicted=pred,
        measured=measured,
        noise=noise,
        num_samples=moments.num_samples,
        num_batches=k,
        resolution=resolution,
    )


def _holm(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down rejections (family-wise error ≤ alpha under any dependence)."""
    order = np.argsort(p)
    m = p.size
    thresholds = alpha / (m - np.arange(m))
    passed = p[order] <= thresholds
    stop = m if passed.all() else int(np.argmin(passed))
    rejected = np.zeros(m, bool)
    rejected[order[:stop]] = True
    return rejected
