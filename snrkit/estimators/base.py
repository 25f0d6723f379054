"""The estimator interface and the machinery shared by iid-probe estimators."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snrkit._tree import PyTree, check_key, ravel, validate_float_tree
from snrkit.laws import BlockProbeLaw, BlockProbeSpec, Law
from snrkit.probes import Probe, get_probe

LossFn = Callable[..., jax.Array]


class Estimator(ABC):
    """A gradient estimator: a law given the true gradient, and a real computation.

    Implementations are frozen dataclasses of hyperparameters.
    """

    @abstractmethod
    def given(self, grad: PyTree) -> Law:
        """The exact law of the estimate when the true gradient is ``grad``."""

    @abstractmethod
    def value_and_estimate(self, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any) -> tuple[jax.Array, PyTree]:
        """``(loss_fn(params, *args), estimate)`` computed without backpropagation."""

    def estimate(self, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any) -> PyTree:
        """The estimate of ``grad(loss_fn)(params, *args)``, computed with ``jax.jvp`` only.

        Uses the same probes as ``self.given(grad).sample(key, 1)[0]``.
        """
        return self.value_and_estimate(key, loss_fn, params, *args)[1]


def check_directions(directions: Any) -> int:
    if isinstance(directions, bool) or not isinstance(directions, int | np.integer):
        raise TypeError(f"directions must be a positive int (the number K of probes averaged), got {directions!r}")
    if directions < 1:
        raise ValueError(f"directions must be at least 1 (the number K of probes averaged), got {directions}")
    return int(directions)


class BlockProbeEstimator(Estimator):
    """Shared implementation for estimators with iid probe entries split into blocks.

    Subclasses define :meth:`block_assignment`; everything else (law, JVP estimate) is here.
    """

    probe: str | Probe
    directions: int

    @abstractmethod
    def block_assignment(self, tree: PyTree, n: int) -> tuple[np.ndarray | None, int]:
        """``(block id of each coordinate or None for one block, number of blocks)``."""

    @property
    def probe_distribution(self) -> Probe:
        """The :class:`~snrkit.probes.Probe` behind ``probe``."""
        return get_probe(self.probe)

    def given(self, grad: PyTree) -> BlockProbeLaw:
        validate_float_tree(grad, "grad")
        n = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(grad))
        ids, num_blocks = self.block_assignment(grad, n)
        return BlockProbeLaw(
            grad, probe=self.probe_distribution, directions=self.directions, block_ids=ids, num_blocks=num_blocks
        )

    def value_and_estimate(self, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any) -> tuple[jax.Array, PyTree]:
        """Loss and estimate from ``K × blocks`` JVPs, mapped in batches to bound memory.

        Each JVP pushes forward one direction restricted to one block; its directional
        derivative multiplies that block of the probe, and the K directions are averaged.
        """
        key = check_key(key)
        validate_float_tree(params, "params", check_finite=False)
        flat_params, unravel = ravel(params)
        n = flat_params.size
        ids, num_blocks = self.block_assignment(params, n)
        spec = BlockProbeSpec(self.probe_distribution, self.directions, num_blocks, block_matrix=False)
        probes = spec.draw_probes(key, 0, n, flat_params.dtype)
        ids_arr = None if ids is None else jnp.asarray(ids, dtype=jnp.int32)

        def push_forward(job: jax.Array) -> tuple[jax.Array, jax.Array]:
            direction, block = job // num_blocks, job % num_blocks
            tangent = probes[direction]
            if ids_arr is not None:
                tangent = jnp.where(ids_arr == block, tangent, 0)
            value, deriv = jax.jvp(lambda p: loss_fn(p, *args), (params,), (unravel(tangent),))
            if jnp.ndim(value) != 0:
                raise TypeError(
                    f"loss_fn must return a scalar (the loss to differentiate), got shape {jnp.shape(value)}; "
                    f"reduce it, e.g. with jnp.mean"
                )
            return value, deriv

        jobs = jnp.arange(self.directions * num_blocks)
        losses, derivs = jax.lax.map(push_forward, jobs, batch_size=min(int(jobs.size), 16))
        derivs = derivs.reshape(self.directions, num_blocks).astype(flat_params.dtype)
        args_ = {"grad": flat_params} if ids_arr is None else {"grad": flat_params, "block_ids": ids_arr}
        flat_estimate = spec.combine(args_, probes, derivs)
        return losses[0], unravel(flat_estimate)
