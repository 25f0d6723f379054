"""Pieces of predictions several papers share, computed in float64 without cancellation.

Examples:
    >>> import numpy as np
    >>> from snrkit.claims.predictions import homogeneous, sum_of_other_squares
    >>> sum_of_other_squares(np.array([3.0, 1.0, 2.0])).tolist()
    [5.0, 13.0, 10.0]
    >>> homogeneous.unmet(np.array([0.3, -0.3])) is None
    True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.claims.records import Condition
from snrkit.core.numerics import sum_of_others


def sum_of_other_squares(grad: np.ndarray) -> np.ndarray:
    r"""$\sum_{j\ne i}\nabla_j^2$: the Rademacher truth, stated by Daprato and Yao for Gaussian probes."""
    with jax.enable_x64(True):
        return np.asarray(sum_of_others(jnp.asarray(np.asarray(grad, np.float64) ** 2)))


def homogeneous_sigma2(grad: np.ndarray) -> float:
    """σ² of 'homogeneous entries' (Yao eqs. 8-9), read as the mean squared entry."""
    return float(np.mean(np.asarray(grad, np.float64) ** 2))


# Entries whose squares agree to float32 rounding are homogeneous.
_HOMOGENEOUS_SPREAD = 1e-5


def _unmet_homogeneous(grad: np.ndarray) -> str | None:
    squares = np.asarray(grad, np.float64) ** 2
    low, high = float(squares.min()), float(squares.max())
    if high <= low * (1 + _HOMOGENEOUS_SPREAD):
        return None
    ratio = high / low if low > 0 else float("inf")
    return f"∇_i² ranges from {low:.3g} to {high:.3g} (ratio {ratio:.3g}), not one common σ²"


homogeneous = Condition("homogeneous entries: ∇_i² = σ² for every i", _unmet_homogeneous)
"""The condition of Yao's eqs. (8) and (9)."""
