"""Numerically careful sums and the noise of a sample variance, shared by laws, Monte Carlo, statistics and claims.

Examples:
    >>> import jax.numpy as jnp
    >>> from snrkit.core.numerics import sum_of_others
    >>> sum_of_others(jnp.array([1.0, 2.0, 4.0])).tolist()  # Σ_{j≠i} x_j
    [6.0, 5.0, 3.0]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def block_sums(x: jax.Array, ids: jax.Array | None = None, num_blocks: int = 1) -> jax.Array:
    r"""$\sum_{j\in B(i)} x_j$ broadcast back to every entry; one scalar for one block.

    Args:
        x: values, flat.
        ids: the block of each entry, `0..num_blocks-1`; `None` for one block.
        num_blocks: number of blocks.

    Examples:
        >>> import jax.numpy as jnp
        >>> from snrkit.core.numerics import block_sums
        >>> x = jnp.array([1.0, 2.0, 3.0])
        >>> block_sums(x).tolist(), block_sums(x, jnp.array([0, 1, 0]), 2).tolist()
        (6.0, [4.0, 2.0, 4.0])
    """
    if ids is None:
        return jnp.sum(x)
    return jax.ops.segment_sum(x, ids, num_segments=num_blocks)[ids]


def sum_of_others(x: jax.Array, ids: jax.Array | None = None, num_blocks: int = 1) -> jax.Array:
    r"""$\sum_{j\in B(i), j\ne i} x_j$ for non-negative `x`, without cancellation.

    `Σ_B − x_i` loses every digit at a block's dominant entry (e.g. ∇² = (1, 1e-12)), so
    there the sum is taken over the other entries directly; elsewhere `x_i` is at most the
    block's largest entry, which stays in the sum, so the subtraction loses at most one bit.
    Computed in `x`'s dtype (pass float64 under `jax.enable_x64` for full precision).

    Args:
        x: non-negative values, flat.
        ids: the block of each entry, `0..num_blocks-1`; `None` for one block.
        num_blocks: number of blocks.

    Returns:
        The sums, shaped like `x`.
    """
    n = x.shape[0]
    block = jnp.zeros(n, jnp.int32) if ids is None else ids
    segments = 1 if ids is None else num_blocks
    top = jax.ops.segment_max(x, block, num_segments=segments)[block]
    index = jnp.arange(n)
    first_top = jax.ops.segment_min(jnp.where(x == top, index, n), block, num_segments=segments)[block]
    is_top = index == first_top
    total = jax.ops.segment_sum(x, block, num_segments=segments)[block]
    without_top = jax.ops.segment_sum(jnp.where(is_top, 0.0, x), block, num_segments=segments)[block]
    return others_given_top(x, is_top, total, without_top)


def others_given_top(x: Any, is_top: Any, total: Any, without_top: Any) -> Any:
    r"""$\sum_{j\in B(i), j\ne i} x_j$ from block totals: the sum without the top, or total $- x_i$.

    The one formula of [`sum_of_others`][snrkit.core.numerics.sum_of_others], shared with
    the streamed laws of [`snrkit.ondisk`][snrkit.ondisk], which gather the block totals
    chunk by chunk: at the block's first largest entry (`is_top`) the block's sum without
    that entry, elsewhere `total - x_i` (which loses at most one bit there).

    Args:
        x: non-negative values (NumPy or JAX).
        is_top: whether each entry is its block's first largest entry.
        total: its block's sum, per entry (or a scalar).
        without_top: its block's sum without the top entry, per entry (or a scalar).

    Returns:
        The sums of the other entries of each block, shaped like `x`.

    Examples:
        >>> import numpy as np
        >>> from snrkit.core.numerics import others_given_top
        >>> x = np.array([1.0, 1e-20, 3.0])
        >>> others_given_top(x, x == 3.0, 4.0 + 1e-20, 1.0 + 1e-20).tolist()
        [3.0, 4.0, 1.0]
    """
    where = np.where if isinstance(x, np.ndarray) else jnp.where
    return where(is_top, without_top, total - x)


def batch_variance_sd(mu4: np.ndarray | float, sigma2: np.ndarray | float, sizes: np.ndarray | float) -> np.ndarray:
    r"""Standard deviation of an unbiased sample variance over $m$ iid draws.

    $$
    \operatorname{sd}(s^2) = \sqrt{\frac{\mu_4}{m} - \frac{\sigma^4 (m-3)}{m(m-1)}},
    $$

    with $\sigma^2$ the variance and $\mu_4$ the fourth central moment of one draw (the
    classical variance of the sample variance; no Gaussian assumption).

    Args:
        mu4: fourth central moment $\mu_4$ (per coordinate).
        sigma2: variance $\sigma^2$ (per coordinate).
        sizes: batch sizes $m \ge 2$, broadcast against the moments (e.g. shape `(batches, 1)`).

    Returns:
        The standard deviations, broadcast; rounding below zero is clipped to 0.
    """
    mu4, sigma2 = np.asarray(mu4, np.float64), np.asarray(sigma2, np.float64)
    m = np.asarray(sizes, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.maximum(mu4 / m - sigma2**2 * (m - 3) / (m * (m - 1)), 0.0))
