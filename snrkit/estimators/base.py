"""The estimator interface and the machinery shared by iid-probe estimators."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snrkit._tree import PyTree, check_key, ravel, validate_float_tree
from snrkit.laws import BlockProbeLaw, BlockProbeSpec, Law, _check_num
from snrkit.probes import Probe, get_probe

LossFn = Callable[..., jax.Array]
"""`loss_fn(params, *args)`: a scalar loss, differentiated in `params` by JVPs."""


class Estimator(ABC):
    """A gradient estimator: a law given the true gradient, and a real computation.

    Implementations are frozen dataclasses of hyperparameters:
    [`ForwardGradient`][snrkit.estimators.ForwardGradient] and
    [`Partitioned`][snrkit.estimators.Partitioned]. `given(grad)` is the exact law of the
    estimate; `estimate(key, loss_fn, params, *args)` computes one with `jax.jvp`, and with
    the same key uses the same probes as `given(grad).sample(key, 1)`.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> est = sk.ForwardGradient(probe="rademacher", directions=2)
        >>> isinstance(est, sk.Estimator), est.given(jnp.array([3.0, 4.0])).var().tolist()
        (True, [8.0, 4.5])
    """

    @abstractmethod
    def given(self, grad: PyTree) -> Law:
        """The exact law of the estimate when the true gradient is `grad`.

        Args:
            grad: the true gradient, any non-empty pytree of finite float arrays.

        Returns:
            A [`Law`][snrkit.laws.Law] with exact moments and a sampler.

        Raises:
            ValueError: `grad` is empty or has NaN or inf entries.
            TypeError: `grad` has non-floating leaves.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given({"w": jnp.array([3.0, 4.0])}).var()["w"].tolist()
            [34.0, 41.0]
        """

    @abstractmethod
    def value_and_estimate(self, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any) -> tuple[jax.Array, PyTree]:
        """`(loss_fn(params, *args), estimate)` computed without backpropagation.

        Args:
            key: a JAX key; it fixes the probes.
            loss_fn: `loss_fn(params, *args)` returns a scalar.
            params: the point to differentiate at, a pytree of float arrays.
            *args: further arguments of `loss_fn` (data, labels), not differentiated.

        Returns:
            The loss and the estimate of its gradient, shaped like `params`.

        Examples:
            >>> import jax, jax.numpy as jnp, snrkit as sk
            >>> def loss_fn(params, x):
            ...     return jnp.sum(params["w"] * x)
            >>> params = {"w": jnp.array([0.5, -1.0])}
            >>> value, g = sk.ForwardGradient().value_and_estimate(jax.random.key(0), loss_fn, params, jnp.array([3.0, 4.0]))
            >>> float(value), g["w"].shape
            (-2.5, (2,))
        """

    def estimate(self, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any) -> PyTree:
        """The estimate of `grad(loss_fn)(params, *args)`, computed with `jax.jvp` only.

        Uses the same probes as sample 0 of `self.given(grad).sample(key, 1)` (for a pytree,
        `jax.tree.map(lambda a: a[0], ...)`), so the real estimator
        and the sampled law can be compared sample by sample.

        Args:
            key: a JAX key; it fixes the probes.
            loss_fn: `loss_fn(params, *args)` returns a scalar.
            params: the point to differentiate at, a pytree of float arrays.
            *args: further arguments of `loss_fn` (data, labels), not differentiated.

        Returns:
            The estimate, shaped like `params`.

        Examples:
            A linear loss has gradient `x`, so its estimate equals the law's first sample:

            >>> import jax, jax.numpy as jnp, numpy as np, snrkit as sk
            >>> def loss_fn(params, x):
            ...     return jnp.sum(params["w"] * x)
            >>> params, x = {"w": jnp.array([0.5, -1.0])}, jnp.array([3.0, 4.0])
            >>> est, key = sk.ForwardGradient(), jax.random.key(0)
            >>> g = est.estimate(key, loss_fn, params, x)
            >>> bool(np.allclose(g["w"], est.given({"w": x}).sample(key, 1)["w"][0]))
            True
        """
        return self.value_and_estimate(key, loss_fn, params, *args)[1]


def check_directions(directions: Any) -> int:
    r"""Return `directions` as an int if it is a valid number $K \ge 1$ of directions.

    Args:
        directions: the value to check.

    Returns:
        `int(directions)`.

    Raises:
        TypeError: not an int (bools are refused).
        ValueError: less than 1.

    Examples:
        >>> from snrkit.estimators.base import check_directions
        >>> check_directions(4)
        4
        >>> check_directions(0)
        Traceback (most recent call last):
        ...
        ValueError: directions must be at least 1 (the number K of probes averaged), got 0
    """
    if isinstance(directions, bool) or not isinstance(directions, int | np.integer):
        raise TypeError(f"directions must be a positive int (the number K of probes averaged), got {directions!r}")
    if directions < 1:
        raise ValueError(f"directions must be at least 1 (the number K of probes averaged), got {directions}")
    return int(directions)


class BlockProbeEstimator(Estimator):
    """Shared implementation for estimators with iid probe entries split into blocks.

    Subclasses define `block_assignment`; everything else (law, JVP estimate) is here.
    The law is a [`BlockProbeLaw`][snrkit.laws.BlockProbeLaw].

    Examples:
        >>> import snrkit as sk
        >>> from snrkit.estimators.base import BlockProbeEstimator
        >>> issubclass(sk.ForwardGradient, BlockProbeEstimator), issubclass(sk.Partitioned, BlockProbeEstimator)
        (True, True)
    """

    probe: str | Probe
    directions: int

    @abstractmethod
    def block_assignment(self, tree: PyTree, n: int) -> tuple[np.ndarray | None, int]:
        """`(block id of each coordinate or None for one block, number of blocks)`.

        Args:
            tree: the gradient or the parameters (for block layouts that follow leaves).
            n: their number of coordinates.

        Returns:
            Flat block ids in ravel order (`None` for a single block) and the number of blocks.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> ids, num = sk.Partitioned(blocks=2).block_assignment(jnp.ones(4), 4)
            >>> ids.tolist(), num
            ([0, 0, 1, 1], 2)
        """

    @property
    def probe_distribution(self) -> Probe:
        """The [`Probe`][snrkit.probes.Probe] behind `probe`.

        Examples:
            >>> import snrkit as sk
            >>> sk.ForwardGradient(probe="uniform").probe_distribution.m4
            1.8
        """
        return get_probe(self.probe)

    def given(self, grad: PyTree) -> BlockProbeLaw:
        r"""The exact law of the estimate when the true gradient is `grad`.

        $\operatorname{Var}[g_i] = (\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K$; see
        [`BlockProbeLaw`][snrkit.laws.BlockProbeLaw].

        Args:
            grad: the true gradient, any non-empty pytree of finite float arrays.

        Returns:
            The law, with exact moments and a sampler.

        Raises:
            ValueError: `grad` is empty or has NaN or inf entries, or the blocks do not fit it.
            TypeError: `grad` has non-floating leaves.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0])).var().tolist()
            [6.0, 9.0, 34.0, 41.0]
        """
        validate_float_tree(grad, "grad")
        n = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(grad))
        ids, num_blocks = self.block_assignment(grad, n)
        return BlockProbeLaw(
            grad, probe=self.probe_distribution, directions=self.directions, block_ids=ids, num_blocks=num_blocks
        )

    def value_and_estimate(self, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any) -> tuple[jax.Array, PyTree]:
        r"""Loss and estimate from `K × blocks` JVPs, mapped in batches to bound memory.

        Each JVP pushes forward one direction restricted to one block; its directional
        derivative $\nabla_B\cdot v^{(k)}_B$ multiplies that block of the probe, and the $K$
        directions are averaged:
        $g = \frac1K\sum_k\sum_B(\nabla_B\cdot v^{(k)}_B)\,v^{(k)}_B$.

        Args:
            key: a JAX key; it fixes the probes (the same as `given(grad).sample(key, 1)`).
            loss_fn: `loss_fn(params, *args)` returns a scalar.
            params: the point to differentiate at, a pytree of float arrays.
            *args: further arguments of `loss_fn` (data, labels), not differentiated.

        Returns:
            The loss and the estimate of its gradient, shaped like `params`.

        Raises:
            TypeError: `key` is not a JAX key, or `loss_fn` does not return a scalar.

        Examples:
            With one coordinate per block, $g_i = \nabla_i v_i^2$: a Rademacher probe
            ($v_i^2 = 1$) gives the exact gradient.

            >>> import jax, jax.numpy as jnp, snrkit as sk
            >>> def loss_fn(w):
            ...     return jnp.sum(w**2)
            >>> est = sk.Partitioned(blocks=3, probe="rademacher")
            >>> value, g = est.value_and_estimate(jax.random.key(0), loss_fn, jnp.array([1.0, 2.0, 3.0]))
            >>> float(value), [round(x, 4) for x in g.tolist()]
            (14.0, [2.0, 4.0, 6.0])
        """
        key = check_key(key)
        validate_float_tree(params, "params", check_finite=False)
        return self._value_and_estimate_at(key, 0, loss_fn, params, args)

    def estimates(
        self, key: jax.Array, num: int, loss_fn: LossFn, params: PyTree, *args: Any, batch_size: int = 64
    ) -> PyTree:
        r"""`num` independent estimates computed with `jax.jvp` only, paired with the law's samples.

        Estimate `i` uses the probes of sample `i` of `given(grad).sample(key, num)`, so the
        real estimator and the exact law can be compared sample by sample, and moments of the
        real estimator come from [`moments_from_samples`][snrkit.moments_from_samples].
        Each estimate costs $K 	imes$ blocks JVPs; `batch_size` estimates are vectorised at a
        time (memory grows with it).

        Args:
            key: a JAX key; it fixes the probes of every estimate.
            num: number of estimates.
            loss_fn: `loss_fn(params, *args)` returns a scalar.
            params: the point to differentiate at, a pytree of float arrays.
            *args: further arguments of `loss_fn` (data, labels), not differentiated.
            batch_size: estimates computed together (`jax.lax.map`'s `batch_size`).

        Returns:
            A pytree shaped like `params` with a leading axis of size `num`.

        Raises:
            TypeError: `num` or `batch_size` is not an int.
            ValueError: `num` or `batch_size` is less than 1.

        Examples:
            A linear loss has gradient `x`, so the real estimates are the law's samples:

            >>> import jax, jax.numpy as jnp, numpy as np, snrkit as sk
            >>> def loss_fn(params, x):
            ...     return jnp.sum(params["w"] * x)
            >>> params, x = {"w": jnp.array([0.5, -1.0])}, jnp.array([3.0, 4.0])
            >>> est, key = sk.ForwardGradient(), jax.random.key(0)
            >>> g = est.estimates(key, 5, loss_fn, params, x)
            >>> g["w"].shape, bool(np.allclose(g["w"], est.given({"w": x}).sample(key, 5)["w"], rtol=1e-6))
            ((5, 2), True)
        """
        key = check_key(key)
        num, batch_size = _check_num(num, "num"), _check_num(batch_size, "batch_size")
        validate_float_tree(params, "params", check_finite=False)
        return jax.lax.map(
            lambda i: self._value_and_estimate_at(key, i, loss_fn, params, args)[1],
            jnp.arange(num),
            batch_size=min(batch_size, num),
        )

    def _value_and_estimate_at(
        self, key: jax.Array, index: jax.Array | int, loss_fn: LossFn, params: PyTree, args: tuple
    ) -> tuple[jax.Array, PyTree]:
        """Loss and the estimate drawn with the probes of sample `index` of the law."""
        flat_params, unravel = ravel(params)
        n = flat_params.size
        ids, num_blocks = self.block_assignment(params, n)
        spec = BlockProbeSpec(self.probe_distribution, self.directions, num_blocks, block_matrix=False)
        probes = spec.draw_probes(key, index, n, flat_params.dtype)
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
