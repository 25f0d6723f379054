r"""Streamed forms: what a family declares so that its variance can be computed chunk by chunk.

A family whose per-coordinate variance depends on the gradient only through $\nabla_i$
and a *block statistic* of $x = \nabla^2$ declares a
[`StreamedForm`][snrkit.core.streamed.StreamedForm] from its estimator's
`streamed_form(sizes)`:

$$
\operatorname{Var}[g_i] = c^2\,f\big(\nabla_i^2,\ T_i\big),\qquad
\mathbb E[g_i] = c\,m\,\nabla_i,
$$

with $T_i$ either $S_{B(i)} = \sum_{j\in B(i)}\nabla_j^2$ (`"sums"`) or
$O_i = \sum_{j\in B(i), j\ne i}\nabla_j^2$ (`"others"`, the form without cancellation
of [`sum_of_others`][snrkit.core.numerics.sum_of_others]), $c$ the law's scale and
$m$ a constant. The block totals are additive over chunks of coordinates, so a gradient
too big for memory takes two passes: one gathers the totals
([`BlockTotals`][snrkit.core.streamed.BlockTotals]), one evaluates $f$ chunk by chunk
([`snrkit.ondisk`][snrkit.ondisk]). The family's in-memory law calls the same
[`CoordinateVariance`][snrkit.core.streamed.CoordinateVariance], so the formula is
written once. A family whose variance is not of this kind raises
[`NoStreamedForm`][snrkit.core.streamed.NoStreamedForm] instead.

Blocks are described without an $n$-long array of ids
([`Blocks`][snrkit.core.streamed.Blocks]): one block, contiguous blocks
$\lfloor ib/n\rfloor$ computed from global indices, or explicit boundaries (one block
per leaf).

Examples:
    >>> import numpy as np, snrkit as sk
    >>> form = sk.ForwardGradient().streamed_form((2,))
    >>> form.variance.statistic, form.blocks.num_blocks
    ('sums', 1)
    >>> totals = BlockTotals(form.blocks, form.variance.statistic)
    >>> x = np.array([9.0, 16.0])  # ∇² of ∇ = (3, 4)
    >>> totals.add(x, 0).tolist()
    [25.0]
    >>> form.variance(x, totals.statistic(x, 0)).tolist()  # ‖∇‖² + ∇ᵢ²
    [34.0, 41.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jax
import numpy as np

from snrkit.core.numerics import block_sums, others_given_top, sum_of_others

Statistic = Literal["sums", "others"]
"""The block statistic of $\\nabla^2$ a coordinate variance takes: block sums or sums of the others."""

STATISTICS: tuple[str, ...] = ("sums", "others")
"""The values of [`CoordinateVariance.statistic`][snrkit.core.streamed.CoordinateVariance]."""

MAX_STREAMED_BLOCKS = 1 << 24
"""Most blocks a streamed form holds totals for (32 bytes each in memory: 512 MiB)."""


class NoStreamedForm(NotImplementedError):
    """An estimator's variance cannot be computed from additive block totals (it needs the gradient in memory)."""


def no_streamed_form(estimator: Any, why: str) -> NoStreamedForm:
    """The error a family raises from `streamed_form` when it has none.

    Args:
        estimator: the estimator (named in the message, with its family).
        why: what the variance needs that block totals do not give.

    Examples:
        >>> import snrkit as sk
        >>> err = no_streamed_form(sk.ForwardGradient(), "a test")
        >>> print(str(err).replace(": ", ":\\n"))
        ForwardGradient(gaussian, K=1) (family 'forward-gradient') has no streamed form:
        a test. Compute its law in memory with est.given(grad).
    """
    return NoStreamedForm(
        f"{estimator.label} (family {estimator.family!r}) has no streamed form: {why}. "
        f"Compute its law in memory with est.given(grad)."
    )


@dataclass(frozen=True)
class CoordinateVariance:
    r"""$\operatorname{Var}[g_i] = f(x_i, T_i)$ at scale 1, with $x = \nabla^2$ and $T$ a block statistic of $x$.

    The one formula of a family's variance: its in-memory law calls
    [`in_memory`][snrkit.core.streamed.CoordinateVariance.in_memory], the streamed one
    calls the instance on each chunk.

    Attributes:
        statistic: `"sums"` ($T_i = \sum_{j\in B(i)} x_j$) or `"others"`
            ($T_i = \sum_{j\in B(i), j\ne i} x_j$, without cancellation).
        formula: `formula(x, t)`, elementwise arithmetic valid for NumPy and JAX
            arrays (float64).

    Examples:
        >>> import numpy as np
        >>> from snrkit.core.streamed import CoordinateVariance
        >>> gaussian = CoordinateVariance("sums", lambda x, t: t + x)
        >>> gaussian(np.array([9.0, 16.0]), 25.0).tolist()
        [34.0, 41.0]
    """

    statistic: Statistic
    formula: Callable[[Any, Any], Any]

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, got {self.statistic!r}")

    def __call__(self, x: Any, t: Any) -> Any:
        """$f(x_i, T_i)$, elementwise."""
        return self.formula(x, t)

    def in_memory(self, g: jax.Array, ids: jax.Array | None = None, num_blocks: int = 1) -> jax.Array:
        """The variance of every coordinate of a flat float64 gradient held in memory (JAX).

        Args:
            g: the flat gradient, float64 (under `jax.enable_x64`).
            ids: the block of each coordinate, `0..num_blocks-1`; `None` for one block.
            num_blocks: number of blocks.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from snrkit.core.streamed import CoordinateVariance
            >>> rademacher = CoordinateVariance("others", lambda x, t: t)
            >>> with jax.enable_x64(True):
            ...     v = rademacher.in_memory(jnp.array([3.0, 4.0]))
            >>> v.tolist()  # Σ_{j≠i} ∇_j²
            [16.0, 9.0]
        """
        x = g**2
        t = sum_of_others(x, ids, num_blocks) if self.statistic == "others" else block_sums(x, ids, num_blocks)
        return self.formula(x, t)


@dataclass(frozen=True)
class Blocks:
    r"""Which block each coordinate is in, computed from global indices (no $n$-long array).

    Attributes:
        n: number of coordinates.
        num_blocks: number of blocks $b$.
        bounds: the first coordinate of each block and then $n$ (explicit blocks), or
            `None` for contiguous blocks $\lfloor ib/n\rfloor$ (those of
            [`Partitioned`][snrkit.families.iid.Partitioned] with an int).

    Examples:
        >>> from snrkit.core.streamed import Blocks
        >>> blocks = Blocks.contiguous(3, 7)  # ids 0 0 0 1 1 2 2
        >>> [a.tolist() for a in blocks.segments(2, 6)]  # starts, ids
        [[0, 1, 3], [0, 1, 2]]
        >>> Blocks.leaves((2, 0, 3)).bounds
        (0, 2, 5)
    """

    n: int
    num_blocks: int
    bounds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_blocks > MAX_STREAMED_BLOCKS:
            raise ValueError(
                f"{self.num_blocks} blocks are more than a streamed form holds totals for "
                f"({MAX_STREAMED_BLOCKS}, 32 bytes each in memory); use fewer, larger blocks"
            )

    @classmethod
    def one(cls, n: int) -> Blocks:
        """Every coordinate in one block."""
        return cls(n, 1, (0, n))

    @classmethod
    def contiguous(cls, num_blocks: int, n: int) -> Blocks:
        r"""$b$ contiguous, near-equal blocks: coordinate $i$ is in block $\lfloor ib/n\rfloor$."""
        return cls.one(n) if num_blocks == 1 else cls(n, num_blocks, None)

    @classmethod
    def leaves(cls, sizes: Sequence[int]) -> Blocks:
        """One block per non-empty leaf, in ravel order."""
        bounds = tuple(int(b) for b in np.cumsum([0, *[s for s in sizes if s > 0]]))
        return cls(bounds[-1], len(bounds) - 1, bounds)

    def segments(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The runs of one block in coordinates `start..stop-1` (a non-empty range).

        Returns:
            `(starts, ids)`: where each run begins, relative to `start` (the first is
            0), and its block, both `int64` and increasing.
        """
        if self.bounds is None:
            b, n = self.num_blocks, self.n
            first, last = start * b // n, (stop - 1) * b // n
            ids = np.arange(first, last + 1, dtype=np.int64)
            # Block k begins at the first i with i·b >= k·n: ceil(k·n / b).
            starts = np.maximum((ids * n + b - 1) // b - start, 0)
            return starts, ids
        bounds = np.asarray(self.bounds, np.int64)
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        last = int(np.searchsorted(bounds, stop - 1, side="right")) - 1
        ids = np.arange(first, last + 1, dtype=np.int64)
        return np.maximum(bounds[ids] - start, 0), ids


@dataclass(frozen=True)
class StreamedForm:
    r"""What a family declares so that its variance can be streamed: blocks, the coordinate variance, mean and scale.

    With $c$ = `scale` and $m$ = `mean_factor`:
    $\operatorname{Var}[g_i] = c^2 f(\nabla_i^2, T_i)$ and
    $\mathbb E[g_i] = c\,m\,\nabla_i$, so $\mathrm{SNR}_i = (c\,m\,\nabla_i)^2 /
    \operatorname{Var}[g_i]$, as the in-memory law computes them.

    Attributes:
        family: the family's registry name (for messages).
        blocks: the [`Blocks`][snrkit.core.streamed.Blocks] of $T_i$.
        variance: the [`CoordinateVariance`][snrkit.core.streamed.CoordinateVariance] $f$.
        mean_factor: $m$.
        scale: $c$, the law's scale.

    Examples:
        >>> import snrkit as sk
        >>> form = sk.OrthogonalFrames(directions=2).streamed_form((3, 5))
        >>> form.variance.statistic, form.mean_factor, form.scale  # K/n, n/K
        ('others', 0.25, 4.0)
    """

    family: str
    blocks: Blocks
    variance: CoordinateVariance
    mean_factor: float = 1.0
    scale: float = 1.0


class BlockTotals:
    r"""The block totals of $x = \nabla^2$, gathered chunk by chunk in coordinate order.

    For `"sums"`: $S_B = \sum_{j\in B} x_j$. For `"others"` also each block's first
    largest entry (value and global index) and its sum without that entry, so that
    $O_i$ is computed as [`sum_of_others`][snrkit.core.numerics.sum_of_others] computes
    it, without cancellation at a dominant entry. Memory: a few floats per block.

    Args:
        blocks: the blocks.
        statistic: `"sums"` or `"others"`.

    Examples:
        >>> import numpy as np
        >>> from snrkit.core.streamed import Blocks, BlockTotals
        >>> totals = BlockTotals(Blocks.one(3), "others")
        >>> x = np.array([1e-20, 1.0, 2.0])
        >>> sums = totals.add(x[:2], 0), totals.add(x[2:], 2)  # chunks in order
        >>> totals.statistic(x[:2], 0).tolist(), totals.statistic(x[2:], 2).tolist()
        ([3.0, 2.0], [1.0])
    """

    def __init__(self, blocks: Blocks, statistic: Statistic):
        self.blocks = blocks
        self.statistic_name = statistic
        self.sums = np.zeros(blocks.num_blocks)
        self.tops = statistic == "others"
        if self.tops:
            self.top = np.full(blocks.num_blocks, -1.0)
            self.top_index = np.full(blocks.num_blocks, -1, np.int64)
            self.without_top = np.zeros(blocks.num_blocks)

    def add(self, x: np.ndarray, start: int) -> np.ndarray:
        """Add the chunk `x` (float64, coordinates `start..start+len(x)-1`); chunks come in order.

        Returns:
            The chunk's sum in each block it touches (non-finite if `x` is).
        """
        starts, ids = self.blocks.segments(start, start + x.size)
        if starts.size == 1:
            sums = np.array([np.sum(x)])
            if self.tops:
                first = int(np.argmax(x))
                top, index = x[first:first + 1], np.array([start + first])
                without = np.array([np.sum(x[:first]) + np.sum(x[first + 1:])])
        else:
            sums = np.add.reduceat(x, starts)
            if self.tops:
                top = np.maximum.reduceat(x, starts)
                lengths = np.diff(np.append(starts, x.size))
                position = np.where(x == np.repeat(top, lengths), np.arange(x.size), x.size)
                first = np.minimum.reduceat(position, starts)
                masked = x.copy()
                masked[first] = 0.0
                index, without = start + first, np.add.reduceat(masked, starts)
        if self.tops:
            # A later chunk takes the top only when strictly larger: the first largest entry wins.
            newer = top > self.top[ids]
            self.without_top[ids] = np.where(newer, self.sums[ids] + without, self.without_top[ids] + sums)
            self.top_index[ids] = np.where(newer, index, self.top_index[ids])
            self.top[ids] = np.where(newer, top, self.top[ids])
        self.sums[ids] += sums
        return sums

    def statistic(self, x: np.ndarray, start: int) -> np.ndarray | float:
        """$T_i$ for the chunk `x` starting at coordinate `start`, once every chunk was added."""
        starts, ids = self.blocks.segments(start, start + x.size)
        lengths = np.diff(np.append(starts, x.size))

        def spread(per_block: np.ndarray) -> np.ndarray | float:
            return float(per_block[ids[0]]) if ids.size == 1 else np.repeat(per_block[ids], lengths)

        total = spread(self.sums)
        if not self.tops:
            return total
        local = self.top_index[ids] - start
        is_top = np.zeros(x.size, bool)
        is_top[local[(local >= 0) & (local < x.size)]] = True
        return others_given_top(x, is_top, total, spread(self.without_top))


__all__ = [
    "MAX_STREAMED_BLOCKS",
    "STATISTICS",
    "BlockTotals",
    "Blocks",
    "CoordinateVariance",
    "NoStreamedForm",
    "StreamedForm",
    "no_streamed_form",
]
