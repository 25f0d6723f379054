r"""Theory against Monte Carlo: does a predicted mean or variance hold?

The test is distribution-free, so its false-failure rate holds at finite $N$ for the
heavy, skewed tails of forward-gradient samples (where a Gaussian z-test at $10^{-6}$ fails
far more often than $10^{-6}$: a studentized z-test at $N = 2000$ had 85 times the
nominal tail rate at $4.5\sigma$ in the project's simulation).

**Median of batches.** The samples are split into $k$ batches. Batch $b$ gives an unbiased
estimate $X_b$ (its mean, or its unbiased variance) with known standard deviation
$\sigma_b$: $\sigma/\sqrt{m_b}$ for a mean, and
$\sqrt{\mu_4/m_b - \sigma^4(m_b-3)/(m_b(m_b-1))}$ for a variance. Chebyshev gives
$P(|X_b-\theta|\ge t\sigma_b)\le 1/t^2$; the median of the standardised deviations
$z_b=(X_b-\theta)/\sigma_b$ exceeds $t$ in absolute value only if at least
$\lceil k/2\rceil$ batches do, so

$$
P\big(|\operatorname{median}_b z_b| \ge t\big) \le P\big(\mathrm{Bin}(k, \min(1, t^{-2})) \ge \lceil k/2\rceil\big),
$$

which is the p-value of one coordinate ([`median_pvalue`][snrkit.stats.median_pvalue]).
No normality, no independence across coordinates.

**Family.** Coordinates are dependent (they share $\nabla\cdot v$), so per-coordinate
p-values are combined by Bonferroni/Holm, valid under any dependence. A pooled statistic
over all coordinates, the mean ratio $R_b = \frac1m\sum_i X_{b,i}/\theta_i$, has standard
deviation at most $\frac1m\sum_i\sigma_{b,i}/\theta_i$ (triangle inequality, any
dependence) and is tested the same way. The family p-value is
$\min(1, 2\min(m\,p_{\min}, p_{\text{pooled}}))$.

**Noise level.** $\sigma$ and $\mu_4$ are exact when a law with those closed forms is
passed (then the false-failure rate is at most `alpha` by construction, up to float32
rounding of the samples); otherwise they are the sample moments, and the guarantee is
asymptotic (the comparison says so: `noise="empirical"`). The
pooled gate of a mean uses the exact variance $w^\top\operatorname{Cov}[g]\,w$ of the
projection; a pooled-only variance test (claims about the average entry) estimates its
noise from the spread of the batch ratios, so its guarantee is asymptotic too.

**Ratio.** The measured ratio of truth to prediction is the mean over batches of $R_b$;
its 95 % interval is the Student-t interval of the batch ratios (batch means method). It
describes precision; the p-value is the decision.

Examples:
    >>> import jax, jax.numpy as jnp, snrkit as sk
    >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
    >>> m = sk.monte_carlo(law, jax.random.key(0), 8192, batches=32)
    >>> sk.stats.compare_variance(m, law).holds  # ‖∇‖² + ∇ᵢ²
    True
    >>> sk.stats.compare_variance(
    ...     m, 4 * law.flat_var(), law=law
    ... ).holds  # 4 times too large
    False
"""

from snrkit.stats.comparisons import (
    DEFAULT_ALPHA,
    Comparison,
    compare_mean,
    compare_variance,
    critical_deviation,
    median_pvalue,
)
from snrkit.stats.design import detection_margin
from snrkit.stats.intervals import batch_means_interval, batch_variance_sd, t_half_width

__all__ = [
    "DEFAULT_ALPHA",
    "Comparison",
    "compare_mean",
    "compare_variance",
    "critical_deviation",
    "median_pvalue",
    "detection_margin",
    "batch_means_interval",
    "batch_variance_sd",
    "t_half_width",
]


def __getattr__(name: str) -> object:
    # The old name read as a probability ("guaranteed power 1.05"); say where it went.
    if name == "guaranteed_power":
        raise AttributeError(
            "snrkit.stats.guaranteed_power was renamed detection_margin (the same number: at least 1 means the "
            "wrong formula is rejected with probability at least 1 - beta); use sk.stats.detection_margin"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
