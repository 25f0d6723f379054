r"""Standard deviations and intervals shared by the comparisons, the sweeps and the verdicts.

Examples:
    >>> import numpy as np
    >>> from snrkit.stats.intervals import batch_variance_sd, t_half_width
    >>> round(
    ...     float(batch_variance_sd(3.0, 1.0, 100)), 6
    ... )  # Gaussian: μ4 = 3σ⁴, so sd ≈ σ²√(2/m)
    0.142134
    >>> round(
    ...     t_half_width(np.array([1.0, 2.0, 3.0, 4.0])), 4
    ... )  # t(0.975, 3) · 1.291 / 2
    2.0543
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

from snrkit.core.numerics import batch_variance_sd

__all__ = ["batch_variance_sd", "t_half_width", "batch_means_interval"]


def t_half_width(values: np.ndarray, confidence: float = 0.95) -> float:
    r"""Half-width of the Student-t interval of the mean of iid batch values: $t_{(1+c)/2,\,B-1}\,s/\sqrt B$.

    Args:
        values: one value per batch, at least 2.
        confidence: coverage $c$ of the interval.

    Returns:
        The half-width.

    Raises:
        ValueError: fewer than two values.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"the batch values need one value per batch and at least 2 batches; got shape {values.shape}")
    return float(scipy.stats.t.ppf((1 + confidence) / 2, values.size - 1)) * float(np.std(values, ddof=1)) / math.sqrt(values.size)


def batch_means_interval(estimate: float, batch_values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    r"""Batch-means interval for a statistic of all samples, from its value on each batch.

    The batches are disjoint sets of independent samples, so the batch values
    $\theta_1,\dots,\theta_B$ are iid and, to first order in the sampling noise, the
    all-sample statistic $\hat\theta$ behaves like their mean. The interval is

    $$
    \hat\theta \pm t_{(1+c)/2,\,B-1}\, \frac{s_\theta}{\sqrt B},
    $$

    with $s_\theta$ the standard deviation of the batch values. It is centred on the
    all-sample statistic rather than on $\bar\theta$: a ratio such as
    $\nabla_i^2/\hat\sigma_i^2$ is biased upwards by about $(\kappa_i-1)/m$
    when $\hat\sigma_i^2$ comes from $m$ samples of kurtosis $\kappa_i$
    (Jensen), which is ~25 % at $m=32$ and ~3 % at $m=256$ for a Gaussian
    forward gradient ($\kappa_i\approx 9$) but only $(\kappa_i-1)/N$ for all
    $N = Bm$ samples.

    Args:
        estimate: the statistic on all samples, $\hat\theta$.
        batch_values: the statistic on each batch, shape `(B,)`, `B >= 2`.
        confidence: coverage $c$ of the interval.

    Returns:
        `(lo, hi)`.

    Raises:
        ValueError: fewer than two batch values.

    Examples:
        >>> import numpy as np
        >>> from snrkit.stats import batch_means_interval
        >>> lo, hi = batch_means_interval(2.5, np.array([1.0, 2.0, 3.0, 4.0]))
        >>> round(lo, 4), round(hi, 4)  # 2.5 ± t(0.975, 3) · 1.291 / 2
        (0.4457, 4.5543)
    """
    half = t_half_width(batch_values, confidence)
    return estimate - half, estimate + half
