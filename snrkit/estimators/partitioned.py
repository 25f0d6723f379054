r"""Yao's partitioned probe: one probe split into blocks, one JVP per block.

$$
g = \sum_B (\nabla_B\cdot v_B)\, v_B
$$

(Yao, "Studies on forward mode gradient descent", §III.C). Averaging `directions`
independent partitioned estimates is supported too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from snrkit._tree import PyTree, leaf_sizes
from snrkit.estimators.base import BlockProbeEstimator, check_directions
from snrkit.probes import Probe, get_probe


class BlockIds:
    """An explicit block id per coordinate (flat, in ravel order), hashable by value.

    [`Partitioned`][snrkit.estimators.Partitioned] wraps explicit `blocks` in it, so
    that the estimator stays a hashable frozen dataclass. Ids need not be contiguous:
    the law renumbers them `0..blocks-1` in sorted order.

    Args:
        ids: integer block ids, one per coordinate: a flat array in ravel order, or a
            pytree of int arrays shaped like the gradient (flattened in ravel order).

    Attributes:
        ids: the flat, read-only `int64` ids.

    Raises:
        ValueError: `ids` is empty.
        TypeError: the ids are not integers.

    Examples:
        >>> import numpy as np
        >>> from snrkit.estimators.partitioned import BlockIds
        >>> ids = BlockIds({"b": np.array([5]), "w": np.array([[0, 0], [5, 7]])})
        >>> ids, ids.ids.tolist()
        (BlockIds(n=5, blocks=3), [5, 0, 0, 5, 7])
        >>> ids == BlockIds(np.array([5, 0, 0, 5, 7]))
        True
    """

    __slots__ = ("ids",)

    def __init__(self, ids: Any):
        leaves = jax.tree_util.tree_leaves(ids)
        if not leaves:
            raise ValueError("blocks is an empty array; give one integer block id per coordinate")
        flat = np.concatenate([np.ravel(np.asarray(leaf)) for leaf in leaves])
        if not np.issubdtype(flat.dtype, np.integer):
            raise TypeError(
                f"explicit blocks must be integer block ids (one per coordinate), got dtype {flat.dtype}; "
                f"pass e.g. np.array([0, 0, 1, 1])"
            )
        flat = flat.astype(np.int64)
        flat.setflags(write=False)
        self.ids = flat

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockIds) and np.array_equal(self.ids, other.ids)

    def __hash__(self) -> int:
        return hash(hashlib.sha1(self.ids.tobytes()).hexdigest())

    def __repr__(self) -> str:
        return f"BlockIds(n={self.ids.size}, blocks={np.unique(self.ids).size})"


@dataclass(frozen=True)
class Partitioned(BlockProbeEstimator):
    r"""One probe partitioned into blocks; each block's forward gradient is computed with its own JVP and summed.

    Yao's partitioned probe (Yao, "Studies on forward mode gradient descent", §III.C),
    averaged over $K$ independent directions. Exact law, with $B(i)$ the block of
    coordinate $i$ and $\kappa$ the probe's kurtosis (derived in the docs:
    [Derivations](../derivations.md)):

    $$
    \mathbb E[g] = \nabla,\qquad
    \operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K},\qquad
    \operatorname{tr}\operatorname{Cov}[g] = \frac1K\Big(\sum_B |B|\,\|\nabla_B\|^2 + (\kappa-2)\|\nabla\|^2\Big).
    $$

    $\mathrm{SNR}_i = \nabla_i^2/\operatorname{Var}[g_i]$. Yao's eq. (9) states
    $(n-b)\sigma^2/b$ for $b$ equal blocks of homogeneous entries ($\nabla_j^2 = \sigma^2$);
    the Gaussian truth there is $(n/b+1)\sigma^2$.

    Args:
        blocks: an int $b$ (that many contiguous, near-equal blocks in ravel order:
            coordinate $i$ of $n$ is in block $\lfloor ib/n\rfloor$), `"leaves"` (one block
            per pytree leaf), or an integer block id per coordinate (a flat array in ravel
            order, or a pytree of int arrays shaped like the gradient; see
            [`BlockIds`][snrkit.estimators.partitioned.BlockIds]).
        probe: `"gaussian"`, `"rademacher"`, `"uniform"` or a [`Probe`][snrkit.probes.Probe].
        directions: $K$, the number of independent partitioned estimates averaged.

    Raises:
        ValueError: `blocks < 1` or an unknown string; unknown probe; `directions < 1`.
            (More blocks than coordinates is reported by `given`.)
        TypeError: `blocks`, `probe` or `directions` has the wrong type.

    Examples:
        >>> import jax.numpy as jnp, numpy as np, snrkit as sk
        >>> law = sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0]))
        >>> law.var().tolist()   # ‖∇_B‖² + ∇ᵢ²: blocks {1, 2} and {3, 4}
        [6.0, 9.0, 34.0, 41.0]
        >>> grad = {"b": jnp.array([1.0, 2.0]), "w": jnp.array([3.0, 4.0])}
        >>> sk.Partitioned(blocks="leaves").given(grad).num_blocks
        2
        >>> sk.Partitioned(blocks=np.array([0, 1, 0, 1])).given(jnp.array([1.0, 2.0, 3.0, 4.0])).var().tolist()
        [11.0, 24.0, 19.0, 36.0]
    """

    blocks: int | str | Any = 2
    probe: str | Probe = "gaussian"
    directions: int = 1

    def __post_init__(self) -> None:
        get_probe(self.probe)
        check_directions(self.directions)
        blocks = self.blocks
        if isinstance(blocks, str):
            if blocks != "leaves":
                raise ValueError(f"blocks={blocks!r} is not understood; pass an int, 'leaves' or one block id per coordinate")
        elif isinstance(blocks, bool):
            raise TypeError("blocks must be an int, 'leaves' or an array of block ids, not a bool")
        elif isinstance(blocks, int | np.integer):
            if blocks < 1:
                raise ValueError(f"blocks must be at least 1, got {blocks}")
            object.__setattr__(self, "blocks", int(blocks))
        elif not isinstance(blocks, BlockIds):
            object.__setattr__(self, "blocks", BlockIds(blocks))

    def block_assignment(self, tree: PyTree, n: int) -> tuple[np.ndarray | None, int]:
        r"""The block of each coordinate: contiguous ($\lfloor ib/n\rfloor$), per leaf, or explicit.

        Args:
            tree: the gradient or the parameters (its leaves define `"leaves"` blocks).
            n: their number of coordinates.

        Returns:
            Flat `int32` block ids `0..blocks-1` in ravel order and the number of blocks;
            `(None, 1)` when everything falls in one block.

        Raises:
            ValueError: more blocks than coordinates, or explicit ids of the wrong length.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> ids, num = sk.Partitioned(blocks=3).block_assignment(jnp.ones(7), 7)
            >>> ids.tolist(), num
            ([0, 0, 0, 1, 1, 2, 2], 3)
            >>> sk.Partitioned(blocks=8).block_assignment(jnp.ones(7), 7)
            Traceback (most recent call last):
            ...
            ValueError: blocks=8 is more than the 7 coordinates of the gradient; ...
        """
        blocks = self.blocks
        if isinstance(blocks, int):
            if blocks > n:
                raise ValueError(
                    f"blocks={blocks} is more than the {n} coordinates of the gradient; use at most "
                    f"{n} blocks (blocks={n} gives g_i = ∇_i v_i²: exact for Rademacher probes, not for Gaussian ones)."
                )
            ids = (np.arange(n, dtype=np.int64) * blocks) // n
        elif blocks == "leaves":
            sizes = [s for s in leaf_sizes(tree) if s > 0]
            ids = np.repeat(np.arange(len(sizes)), sizes)
        else:
            if blocks.ids.size != n:
                raise ValueError(
                    f"blocks gives {blocks.ids.size} block ids but the gradient has {n} coordinates; "
                    f"give exactly one id per coordinate, in ravel order."
                )
            _, ids = np.unique(blocks.ids, return_inverse=True)
        num_blocks = int(ids.max()) + 1
        if num_blocks == 1:
            return None, 1
        return ids.astype(np.int32), num_blocks
