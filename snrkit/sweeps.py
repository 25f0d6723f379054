"""Experiments that return tidy pandas DataFrames (one row per measurement)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
import pandas as pd

from snrkit._tree import PyTree
from snrkit.estimators import Estimator
from snrkit.montecarlo import ProgressFn, monte_carlo
from snrkit.stats import DEFAULT_ALPHA, compare_mean, compare_variance


def describe(estimator: Estimator) -> dict[str, object]:
    """Columns that identify an estimator in a tidy frame."""
    blocks = getattr(estimator, "blocks", 1)
    probe = estimator.probe_distribution.name if hasattr(estimator, "probe_distribution") else ""
    name = type(estimator).__name__
    directions = getattr(estimator, "directions", 1)
    label_blocks = blocks if isinstance(blocks, int | str) else "explicit"
    label = f"{name}({probe}, K={directions}" + (f", blocks={label_blocks})" if name == "Partitioned" else ")")
    return {
        "label": label,
        "estimator": name,
        "probe": probe,
        "directions": getattr(estimator, "directions", 1),
        "blocks": blocks if isinstance(blocks, int | str) else "explicit",
    }


def law_check(
    grad: PyTree,
    estimators: Sequence[Estimator],
    *,
    key: jax.Array,
    num_samples: int,
    batches: int = 32,
    alpha: float = DEFAULT_ALPHA,
    on_progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Exact law against Monte Carlo for each estimator on one gradient.

    One row per estimator: exact and sampled total variance, the pooled ratio with its
    95 % interval, and the decisions of :func:`snrkit.stats.compare_variance` and
    :func:`snrkit.stats.compare_mean` at false-failure rate ``alpha``.
    """
    rows = []
    for index, estimator in enumerate(estimators):
        law = estimator.given(grad)
        moments = monte_carlo(law, jax.random.fold_in(key, index), num_samples, batches=batches, on_progress=on_progress)
        var = compare_variance(moments, law, alpha=alpha)
        mean = compare_mean(moments, law, alpha=alpha)
        rows.append(
            {
                **describe(estimator),
                "n": law.num_coordinates,
                "num_samples": num_samples,
                "exact_total_variance": float(law.total_variance()),
                "mc_total_variance": float(np.sum(moments.flat("var"))),
                "var_ratio": var.ratio,
                "var_ratio_lo": var.ratio_ci[0],
                "var_ratio_hi": var.ratio_ci[1],
                "var_p_value": var.p_value,
                "var_holds": var.holds,
                "mean_p_value": mean.p_value,
                "mean_holds": mean.holds,
                "exact_aggregate_snr": float(law.aggregate_snr()),
            }
        )
    return pd.DataFrame(rows)
