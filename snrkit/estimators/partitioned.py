r"""Yao's partitioned probe: one probe split into blocks, one JVP per block.

.. math:: g = \sum_B (\nabla_B\cdot v_B)\, v_B

(Yao, "Studies on forward mode gradient descent", §III.C). Averaging ``directions``
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
    """An explicit block id per coordinate (flat, in ravel order), hashable by value."""

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

    Exact law, with :math:`B(i)` the block of coordinate :math:`i` (derivation in the docs):

    .. math::

        \mathbb E[g] = \nabla,\qquad
        \operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K},\qquad
        \operatorname{tr}\operatorname{Cov}[g] = \frac1K\Big(\sum_B |B|\,\|\nabla_B\|^2 + (\kappa-2)\|\nabla\|^2\Big).

    Yao's eq. (9) states :math:`(n-K)\sigma^2/K` for K blocks of homogeneous entries; the
    Gaussian truth there is :math:`(n/K+1)\sigma^2`.

    Args:
        blocks: an int (that many contiguous, near-equal blocks in ravel order: coordinate
            :math:`i` of :math:`n` is in block :math:`\lfloor iB/n\rfloor`), ``"leaves"``
            (one block per pytree leaf), or an integer block id per coordinate (a flat array
            in ravel order, or a pytree of int arrays shaped like the gradient).
        probe: ``"gaussian"``, ``"rademacher"``, ``"uniform"`` or a :class:`~snrkit.probes.Probe`.
        directions: :math:`K`, the number of independent partitioned estimates averaged.

    Example:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0]))
        >>> law.var()   # ||∇_B||² + ∇_i²: blocks {1,2} and {3,4}
        Array([ 6.,  9., 34., 41.], dtype=float32)
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
        blocks = self.blocks
        if isinstance(blocks, int):
            if blocks > n:
                raise ValueError(
                    f"blocks={blocks} is more than the {n} coordinates of the gradient; use at most "
                    f"{n} blocks (blocks={n} gives the exact gradient with {n} JVPs)."
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
