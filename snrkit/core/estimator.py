r"""The estimator base class: a law given a problem, and the real estimator computed with `jax.jvp`.

A family's estimator is a frozen dataclass of hyperparameters that implements two hooks:

- `_plan(problem)`: the [`ProbeSpec`][snrkit.core.spec.ProbeSpec] of one estimate and the
  structure arrays it needs (block ids, a factor), without the gradient;
- `_law(problem)`: its exact [`Law`][snrkit.core.law.Law].

Everything else is here, for every family: `given` (checks what the family `needs`
against what the problem provides), `estimate`, `value_and_estimate`, `estimates` (with
the guarantee that estimate `i` uses the probes of sample `i` of
`given(...).sample(key, num)`), `cost`, `describe` and `label`.

Examples:
    >>> import jax, jax.numpy as jnp, snrkit as sk
    >>> est = sk.ForwardGradient(probe="rademacher", directions=2)
    >>> (
    ...     isinstance(est, sk.Estimator),
    ...     est.given(jnp.array([3.0, 4.0])).var().tolist(),
    ... )
    (True, [8.0, 4.5])
    >>> est.cost()
    Cost(jvps=2, backward_per_estimate=0, backward_per_step=0, memory=3.0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from snrkit.core.law import Law
from snrkit.core.problem import Problem, ProblemBase, as_problem, bind_static
from snrkit.core.sharding import (
    AXIS,
    Devices,
    check_devices,
    replicate,
    sample_mesh,
    spread,
)
from snrkit.core.spec import ProbeSpec, Structure
from snrkit.core.streamed import StreamedForm, no_streamed_form
from snrkit.core.tree import PyTree, is_traced, ravel, sample_key
from snrkit.core.validation import check_int, check_key

LossFn = Callable[..., jax.Array]
"""`loss_fn(params, *args)`: a scalar loss, differentiated in `params` by JVPs."""

_MAX_JVP_BATCH = 16
"""JVPs of one estimate computed together (memory grows with it)."""


@dataclass(frozen=True)
class Cost:
    """What one estimate costs, in the units that matter for training.

    Attributes:
        jvps: Jacobian-vector products (forward-mode passes) per estimate.
        backward_per_estimate: backward passes (backprop) per estimate.
        backward_per_step: backward passes per training step, shared by its estimates
            (e.g. a gradient kept as a prior).
        memory: extra memory while estimating, in copies of the parameters (probes,
            tangents, the estimate).

    Examples:
        >>> import snrkit as sk
        >>> sk.Partitioned(blocks=4, directions=2).cost().jvps
        8
    """

    jvps: int
    backward_per_estimate: int = 0
    backward_per_step: int = 0
    memory: float = 1.0

    @classmethod
    def of_directions(cls, directions: int) -> Cost:
        """K JVPs holding K probes and the estimate: the cost of K averaged directions.

        Examples:
            >>> from snrkit.core.estimator import Cost
            >>> Cost.of_directions(4)
            Cost(jvps=4, backward_per_estimate=0, backward_per_step=0, memory=5.0)
        """
        return cls(jvps=directions, memory=directions + 1.0)


class Estimator(ABC):
    """A gradient estimator: its law given a problem, and the real computation with `jax.jvp`.

    Implementations are frozen dataclasses of hyperparameters, one module per family
    (see [`snrkit.families`][snrkit.families]).

    Attributes:
        family: the registry name of the estimator's family.
        needs: what the family's law needs of a problem (names of
            [`NEEDS`][snrkit.core.problem.NEEDS]).

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> sk.ForwardGradient().needs
        frozenset({'gradient'})
    """

    family: ClassVar[str] = ""
    """The registry name of the estimator's family."""
    needs: ClassVar[frozenset[str]] = frozenset({"gradient"})
    """What the family's law needs of a problem (names of [`NEEDS`][snrkit.core.problem.NEEDS])."""

    # -- what a family provides --------------------------------------------------------
    @abstractmethod
    def _plan(self, problem: ProblemBase) -> tuple[ProbeSpec, Structure]:
        """The spec of one estimate and its structure arrays, built without the gradient."""

    @abstractmethod
    def _law(self, problem: ProblemBase) -> Law:
        """The exact law given the problem (its needs are already checked)."""

    def streamed_form(self, sizes: tuple[int, ...]) -> StreamedForm:
        """The law's variance from block totals, for gradients streamed from disk ([`snrkit.ondisk`][snrkit.ondisk]).

        Families whose variance needs only additive block totals of the gradient declare
        it; the default says the family has none.

        Args:
            sizes: the number of coordinates of each leaf of the gradient, in ravel order.

        Raises:
            NoStreamedForm: the family declares no streamed form.
        """
        raise no_streamed_form(self, "its family declares no streamed form of its variance")

    @property
    def biased(self) -> bool:
        """Whether $\\mathbb E[g] \\ne \\nabla$ for some gradient (then `bias()` and `mse()` matter).

        Examples:
            >>> import snrkit as sk
            >>> sk.ForwardGradient().biased
            False
        """
        return False

    # -- the law ---------------------------------------------------------------------
    def given(self, problem: Any) -> Law:
        """The exact law of the estimate for a problem or a bare gradient.

        Args:
            problem: a [`Problem`][snrkit.core.problem.Problem], or the true gradient
                itself (any non-empty pytree of finite float arrays) for families that
                need only the gradient.

        Returns:
            The family's [`Law`][snrkit.core.law.Law].

        Raises:
            ValueError: the gradient is empty or not finite, the family needs more than the
                problem provides (the message says how to supply it), or the
                hyperparameters do not fit the gradient.
            TypeError: the gradient has non-floating leaves.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given({"w": jnp.array([3.0, 4.0])}).var()[
            ...     "w"
            ... ].tolist()
            [34.0, 41.0]
        """
        problem = as_problem(problem)
        problem.require(self.needs, type(self).__name__)
        return self._law(problem)

    def cost(self, problem: Any = None) -> Cost:
        """JVPs and backward passes per estimate, and extra memory in parameter copies.

        Args:
            problem: a problem or gradient; needed only where the cost depends on its
                shape (blocks per leaf, explicit block ids, a factor's rank).

        Returns:
            The [`Cost`][snrkit.core.estimator.Cost].

        Raises:
            ValueError: the cost depends on the gradient's shape and `problem` is `None`.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.Partitioned(blocks="leaves").cost(
            ...     {"a": jnp.ones(2), "b": jnp.ones(3)}
            ... ).jvps
            2
        """
        if problem is None:
            return self._shape_free_cost()
        problem = as_problem(problem)
        spec, _ = self._plan(problem)
        n = problem.num_coordinates
        return Cost(jvps=spec.num_jvps, memory=spec.probe_entries(n) / n + 1.0)

    def _shape_free_cost(self) -> Cost:
        raise ValueError(
            f"the cost of {self.label} depends on the gradient's shape; pass it: est.cost(grad) or est.cost(problem)"
        )

    # -- description -------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The hyperparameters as JSON-ready values (arrays and functions by a short fingerprint).

        Examples:
            >>> import snrkit as sk
            >>> sk.ForwardGradient(probe="rademacher", directions=4).params()
            {'probe': 'rademacher', 'directions': 4}
        """
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @property
    def label(self) -> str:
        """A short unique name of this setting, used as the key of sweep rows and in legends.

        Examples:
            >>> import snrkit as sk
            >>> sk.Partitioned(blocks=4, probe="rademacher").label
            'Partitioned(rademacher, K=1, blocks=4)'
        """
        inner = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({inner})"

    def describe(self) -> dict[str, str]:
        """Columns that identify the estimator in tidy frames: `label`, `family` and `params` (JSON).

        Sweeps, plots and reports use these columns by name, so a new family needs no change there.

        Examples:
            >>> import snrkit as sk
            >>> sk.ForwardGradient(directions=4).describe()
            {'label': 'ForwardGradient(gaussian, K=4)',
             'family': 'forward-gradient',
             'params': '{"directions": 4, "probe": "gaussian"}'}
        """
        return {"label": self.label, "family": self.family, "params": json.dumps(self.params(), sort_keys=True)}

    # -- the real estimator ----------------------------------------------------------------
    def value_and_estimate(
        self, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any, state: Mapping[str, Any] | None = None
    ) -> tuple[jax.Array, PyTree]:
        """`(loss_fn(params, *args), estimate)` computed with `jax.jvp` only, no backpropagation.

        Uses the probes of sample 0 of `self.given(grad).sample(key, 1)`.

        Args:
            key: a JAX key; it fixes the probes.
            loss_fn: `loss_fn(params, *args)` returns a scalar.
            params: the point to differentiate at, a pytree of float arrays.
            *args: further arguments of `loss_fn` (data, labels), not differentiated;
                those that are not arrays (a flag, a mode string) reach it untraced.
            state: values kept between training steps that the family reads (e.g. the
                `"stale_gradient"` of a prior built by a function of the problem).

        Returns:
            The loss and the estimate of its gradient, shaped like `params`.

        Raises:
            TypeError: `key` is not one JAX key, or `loss_fn` does not return a real scalar.

        Examples:
            >>> import jax, jax.numpy as jnp, snrkit as sk
            >>> def loss_fn(params, x):
            ...     return jnp.sum(params["w"] * x)
            >>> params = {"w": jnp.array([0.5, -1.0])}
            >>> value, g = sk.ForwardGradient().value_and_estimate(
            ...     jax.random.key(0), loss_fn, params, jnp.array([3.0, 4.0])
            ... )
            >>> float(value), g["w"].shape
            (-2.5, (2,))
        """
        key = check_key(key)
        plan = self._plan(Problem(loss_fn, params, *args, state=state))
        return self._value_and_estimate_at(plan, key, 0, loss_fn, params, args)

    def estimate(
        self, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any, state: Mapping[str, Any] | None = None
    ) -> PyTree:
        """The estimate of `grad(loss_fn)(params, *args)`, computed with `jax.jvp` only.

        Uses the same probes as sample 0 of `self.given(grad).sample(key, 1)` (for a pytree,
        `jax.tree.map(lambda a: a[0], ...)`), so the real estimator and the sampled law can
        be compared sample by sample.

        Args:
            key: a JAX key; it fixes the probes.
            loss_fn: `loss_fn(params, *args)` returns a scalar.
            params: the point to differentiate at, a pytree of float arrays.
            *args: further arguments of `loss_fn` (data, labels), not differentiated;
                those that are not arrays (a flag, a mode string) reach it untraced.
            state: values kept between training steps that the family reads.

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
        return self.value_and_estimate(key, loss_fn, params, *args, state=state)[1]

    def estimates(
        self, key: jax.Array, num: int, loss_fn: LossFn, params: PyTree, *args: Any, batch_size: int = 64,
        state: Mapping[str, Any] | None = None, devices: Devices = None,
    ) -> PyTree:
        r"""`num` independent estimates computed with `jax.jvp` only, paired with the law's samples.

        Estimate `i` uses the probes of sample `i` of `given(grad).sample(key, num)`, so the
        real estimator and the exact law can be compared sample by sample, and moments of the
        real estimator come from [`moments_from_samples`][snrkit.moments_from_samples].
        Each estimate costs `cost().jvps` JVPs; `batch_size` estimates are vectorised at a
        time (memory grows with it).

        On $D > 1$ devices ([Many devices](../howto/many-devices.md)) the blocks of
        `batch_size` consecutive estimates are handed out whole, $\lceil B/D\rceil$ to a
        device for $B$ blocks, and the last `num % batch_size` estimates are computed as
        on one device. Every estimate is thus computed in a batch of the same shape as on
        one device, and the result is bit for bit the same as one device's for the same
        `key` and `batch_size` (the test suite checks it on a real MLP). The result is
        split over the devices along the sample axis when $D$ divides `num`, else copied
        to each.

        Args:
            key: a JAX key; it fixes the probes of every estimate.
            num: number of estimates.
            loss_fn: `loss_fn(params, *args)` returns a scalar.
            params: the point to differentiate at, a pytree of float arrays.
            *args: further arguments of `loss_fn` (data, labels), not differentiated;
                those that are not arrays (a flag, a mode string) reach it untraced.
            batch_size: estimates computed together (`jax.lax.map`'s `batch_size`).
            state: values kept between training steps that the family reads.
            devices: the devices to spread the estimates over, e.g. `jax.devices()[:1]`;
                `None` (the default) for all of them, `jax.devices()`. With one device,
                fewer than two blocks, or inside a `jax.jit` of the caller, the estimates
                are computed by one `jax.lax.map`.

        Returns:
            A pytree shaped like `params` with a leading axis of size `num`.

        Raises:
            TypeError: `num` or `batch_size` is not an int, `key` is not one JAX key,
                `loss_fn` does not return a real scalar, or `devices` is not a sequence of
                `jax.Device`.
            ValueError: `num` or `batch_size` is less than 1, or `devices` is empty,
                repeats a device or mixes platforms.

        Examples:
            A linear loss has gradient `x`, so the real estimates are the law's samples:

            >>> import jax, jax.numpy as jnp, numpy as np, snrkit as sk
            >>> def loss_fn(params, x):
            ...     return jnp.sum(params["w"] * x)
            >>> params, x = {"w": jnp.array([0.5, -1.0])}, jnp.array([3.0, 4.0])
            >>> est, key = sk.ForwardGradient(), jax.random.key(0)
            >>> g = est.estimates(key, 5, loss_fn, params, x)
            >>> (
            ...     g["w"].shape,
            ...     bool(
            ...         np.allclose(
            ...             g["w"], est.given({"w": x}).sample(key, 5)["w"], rtol=1e-6
            ...         )
            ...     ),
            ... )
            ((5, 2), True)
        """
        key = check_key(key)
        num, batch_size = check_int(num, "num"), check_int(batch_size, "batch_size")
        devices = check_devices(devices)
        plan = self._plan(Problem(loss_fn, params, *args, state=state))
        loss_fn, args = bind_static(loss_fn, args)  # shard_map traces what it is passed: only the arrays
        width = min(batch_size, num)
        traced = is_traced((key, params, args))
        if len(devices) > 1 and num // width >= 2 and not traced:
            return self._sharded_estimates(plan, key, num, width, loss_fn, params, args, devices)
        # one device (or one block, or inside the caller's jit): one lax.map on that device
        place = jax.default_device(devices[0]) if len(devices) == 1 else contextlib.nullcontext()
        with place:
            return jax.lax.map(
                lambda i: self._value_and_estimate_at(plan, key, i, loss_fn, params, args)[1],
                jnp.arange(num, dtype=jnp.uint32),
                batch_size=width,
            )

    def _sharded_estimates(
        self, plan: tuple[ProbeSpec, Structure], key: jax.Array, num: int, width: int, loss_fn: LossFn,
        params: PyTree, args: tuple, devices: tuple[jax.Device, ...],
    ) -> PyTree:
        """`estimates` with its `lax.map` blocks of `width` estimates handed out whole to `devices`.

        One device computes `num // width` blocks of `width` estimates (`lax.map`'s scan) and
        the last `num % width` estimates as one vectorised remainder. Here device `d` runs the
        same scan over blocks `d * per, ..., (d + 1) * per - 1` (blocks past the last are
        computed and dropped), and the remainder is computed exactly as `lax.map` computes it:
        every estimate is computed in a batch of the same shape as on one device.
        """
        spec, structure = plan
        mesh, full = sample_mesh(devices), num // width
        per = -(-full // len(devices))

        def local(structure: Structure, key: jax.Array, params: PyTree, args: tuple, indices: jax.Array) -> PyTree:
            return jax.lax.map(
                lambda i: self._value_and_estimate_at((spec, structure), key, i, loss_fn, params, args)[1],
                indices,
                batch_size=width,
            )

        # each device computes alone (no collectives); JAX's check of varying axes refuses
        # some JVP rules of a loss (a varying tangent times an invariant value), so it is off
        sharded = jax.shard_map(
            local, mesh=mesh, in_specs=(P(), P(), P(), P(), P(AXIS)), out_specs=P(AXIS), check_vma=False
        )
        blocks = jax.jit(sharded)(
            *replicate((structure, key, params, args), mesh),
            spread(np.arange(len(devices) * per * width, dtype=np.uint32), mesh),
        )
        parts = [blocks]
        if num > full * width:  # lax.map's remainder, as lax.map computes it: vmapped, outside any jit
            rest = jax.vmap(lambda i: self._value_and_estimate_at(plan, key, i, loss_fn, params, args)[1])(
                jnp.arange(full * width, num, dtype=jnp.uint32)
            )
            parts.append(replicate(rest, mesh))
        # split over the devices when they divide num (JAX shards only evenly), else on each
        out_spec = P(AXIS) if num % len(devices) == 0 else P()
        return jax.jit(
            lambda parts: jax.tree_util.tree_map(lambda x, *rest: jnp.concatenate([x[: full * width], *rest]), *parts),
            out_shardings=NamedSharding(mesh, out_spec),
        )(parts)

    def _value_and_estimate_at(
        self, plan: tuple[ProbeSpec, Structure], key: jax.Array, index: jax.Array | int, loss_fn: LossFn,
        params: PyTree, args: tuple,
    ) -> tuple[jax.Array, PyTree]:
        """Loss and the estimate drawn with the probes of sample `index` of the law (callers built a `Problem`, which checked `params`)."""
        spec, structure = plan
        flat_params, unravel = ravel(params)
        probes = spec.draw(structure, sample_key(key, index), flat_params.size, flat_params.dtype)

        def tangent(j: jax.Array | int) -> PyTree:
            return unravel(spec.tangent(structure, probes, j))

        def loss_at(p: PyTree) -> jax.Array:
            return loss_fn(p, *args)

        if spec.num_jvps == 1:
            loss, deriv = jax.jvp(loss_at, (params,), (tangent(0),))
            derivs = deriv[None]
        else:
            # One primal pass shared by every tangent: linearize once, then push the tangents
            # through the linear map vectorised. Per dense layer that is one matmul for the
            # primal and two per tangent, (1 + 2J)/3 of a backprop step's three.
            loss, push = jax.linearize(loss_at, params)
            if spec.num_jvps <= _MAX_JVP_BATCH:
                derivs = jax.vmap(lambda t: push(unravel(t)))(spec.tangents(structure, probes))
            else:  # batches of tangents, so that memory does not grow with J
                derivs = jax.lax.map(lambda j: push(tangent(j)), jnp.arange(spec.num_jvps), batch_size=_MAX_JVP_BATCH)
        flat_estimate = spec.combine(structure, probes, derivs.astype(flat_params.dtype))
        return loss, unravel(flat_estimate)


def jsonable(value: Any) -> Any:
    """A hyperparameter as a JSON-ready value: numbers and strings as they are, named objects by name,
    arrays and functions by a short fingerprint.

    Examples:
        >>> import numpy as np
        >>> from snrkit.core.estimator import jsonable
        >>> jsonable(3), jsonable("leaves"), jsonable(np.ones((2, 3)))
        (3, 'leaves', 'array[2x3]:...')
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, np.ndarray | jax.Array):
        array = np.ascontiguousarray(np.asarray(value))
        digest = hashlib.sha1(array.tobytes() + str(array.dtype).encode()).hexdigest()[:12]
        return f"array[{'x'.join(map(str, array.shape))}]:{digest}"
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if callable(value):
        return f"function {getattr(value, '__qualname__', type(value).__name__)}"
    return str(value)


__all__ = ["Estimator", "Cost", "LossFn", "jsonable"]
