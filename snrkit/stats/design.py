"""Sample-size design: how surely a planned comparison rejects a wrong formula."""

from __future__ import annotations

import numpy as np

from snrkit.core.law import Law
from snrkit.core.tree import PyTree, ravel_host
from snrkit.core.validation import check_alpha, check_int
from snrkit.stats.comparisons import DEFAULT_ALPHA, critical_deviation
from snrkit.stats.intervals import batch_variance_sd


def detection_margin(
    law: Law, wrong: PyTree, *, num_samples: int, batches: int, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_ALPHA
) -> float:
    r"""How many times over a planned comparison can detect a wrong variance formula (≥ 1: surely).

    Not a probability: the ratio of the wrong formula's largest error to the error that
    [`compare_variance`][snrkit.stats.compare_variance] is sure to detect. With batches of
    equal size, the median standardised deviation from the truth is below $t_\beta$ with
    probability at least $1-\beta$; the wrong formula is then rejected whenever some
    coordinate has $|\sigma^2_i - w_i|/\sigma_{b,i} \ge t_\beta + t_{\alpha/(2n)}$
    ($n$ coordinates, $t$ the [`critical_deviation`][snrkit.stats.critical_deviation]). The
    margin is

    $$
    \max_i \frac{|\sigma^2_i - w_i|}{\sigma_{b,i}\,(t_\beta + t_{\alpha/(2n)})},
    $$

    so a margin of at least 1 means the power (the probability of rejecting $w$) is at least
    $1-\beta$; a margin of 2 means an error half as large would still be detected. Below 1
    the bound says nothing: the test may still reject, but is not guaranteed to.

    Args:
        law: the true law; its exact variance and fourth moment give $\sigma_{b,i}$.
        wrong: the wrong variance formula $w$, shaped like the gradient (or flat).
        num_samples: samples of the planned comparison, a multiple of `batches`.
        batches: batches of the planned comparison.
        alpha: false-failure rate of the comparison.
        beta: allowed probability of missing the wrong formula.

    Returns:
        The margin above, a non-negative number: at least 1 means the wrong formula is
        rejected with probability at least $1-\beta$.

    Raises:
        ValueError: `num_samples` is not a multiple of `batches`, leaves fewer than 2
            samples per batch, `wrong` has the wrong size, `alpha` or `beta` is not in
            (0, 1), or the law has no closed-form fourth moment.

    Examples:
        8192 samples in 32 batches surely reject a variance 4 times too large, but not
        one that misses the $2\nabla_i^2$ term:

        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
        >>> var = law.flat_var()
        >>> sk.stats.detection_margin(
        ...     law, 4 * var, num_samples=8192, batches=32
        ... ) >= 1
        True
        >>> missing = var - 2 * law.flat_mean() ** 2
        >>> sk.stats.detection_margin(
        ...     law, missing, num_samples=8192, batches=32
        ... ) >= 1
        False
    """
    alpha, beta = check_alpha(alpha), check_alpha(beta, "beta")
    num_samples, batches = check_int(num_samples, "num_samples"), check_int(batches, "batches", minimum=2)
    if num_samples % batches:
        raise ValueError("detection_margin assumes equal batches: make num_samples a multiple of batches")
    m = num_samples // batches
    if m < 2:
        raise ValueError(
            f"num_samples={num_samples} in {batches} batches leaves {m} sample per batch, and a batch variance needs "
            f"at least 2: use num_samples >= 2 * batches"
        )
    if not law.has("fourth_central_moment"):
        raise ValueError(
            f"{type(law).__name__} has no closed-form fourth moment, so the noise of a sampled variance is not known "
            f"in advance; size the test by a pilot run instead"
        )
    sigma2 = np.asarray(law.flat_var(), dtype=np.float64)
    mu4 = np.asarray(law.flat_fourth_central_moment(), dtype=np.float64)
    sd = batch_variance_sd(mu4, sigma2, m)
    n = sigma2.size
    wrong = ravel_host(wrong)
    if wrong.size != n:
        raise ValueError(f"wrong has {wrong.size} coordinates but the law has {n}; give one value per coordinate")
    margin = critical_deviation(batches, beta) + critical_deviation(batches, alpha / (2 * n))
    gap = np.abs(sigma2 - wrong)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(gap > 0, gap / (sd * margin), 0.0)  # a noiseless, exactly right entry detects nothing
    return float(np.max(ratio))
