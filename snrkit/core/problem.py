r"""What a law is computed from: a *problem* knows the loss, the parameters and the data.

A family's law may need more than the gradient: Hessian-vector products, per-example
gradients, or each dense layer's inputs, pre-activations and weights. A problem computes
them lazily, on first use, and says what it can provide; a family declares what it needs
([`Estimator.needs`][snrkit.core.estimator.Estimator.needs]) and `est.given(problem)`
checks the two before any work.

- [`Problem`][snrkit.core.problem.Problem]`(loss_fn, params, *args)`: the gradient,
  Hessian-vector products, and per-example gradients when `args` have a leading example
  axis. [`Problem.from_network`][snrkit.core.problem.Problem.from_network] adds each dense
  layer for networks that expose them (the MLPs of [`snrkit.nets`][snrkit.nets]).
- [`GradientProblem`][snrkit.core.problem.GradientProblem]`(grad)`: the gradient only;
  `est.given(grad)` wraps a bare gradient in one.

Examples:
    >>> import jax, jax.numpy as jnp, snrkit as sk
    >>> def loss_fn(params, x):
    ...     return jnp.sum((x @ params["w"]) ** 2)
    >>> problem = sk.Problem(
    ...     loss_fn,
    ...     {"w": jnp.array([1.0, -1.0])},
    ...     jnp.array([[1.0, 2.0], [3.0, 0.0]]),
    ... )
    >>> sorted(problem.provides)
    ['gradient', 'hvp', 'loss', 'per_example_gradients']
    >>> problem.gradient()["w"].tolist()  # 2 Σ_b (x_b·w) x_b
    [16.0, -4.0]
    >>> sk.ForwardGradient().given(problem).var()["w"].tolist()
    [528.0, 288.0]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.tree import PyTree
from snrkit.core.validation import validate_float_tree

NEEDS = ("gradient", "loss", "hvp", "per_example_gradients", "layers", "state")
"""Everything a problem can provide, by name (what a family may declare it needs). `"loss"`
means the problem holds the loss, its parameters and data, so the real estimator can run on it;
`"state"` that it carries values kept between training steps (e.g. a stale gradient)."""

_HOW = {
    "gradient": "pass the gradient itself, or sk.Problem(loss_fn, params, *args)",
    "loss": "pass sk.Problem(loss_fn, params, *args)",
    "hvp": "pass sk.Problem(loss_fn, params, *args), which differentiates the loss twice",
    "per_example_gradients": "pass sk.Problem(loss_fn, params, x, y) with data that have a leading example axis",
    "layers": "pass sk.Problem.from_network(network, params, x, y) with a network that exposes its dense "
    "layers (the MLPs of snrkit.nets do)",
    "state": "pass the values kept between steps as state={...} to sk.Problem or sk.GradientProblem",
}


@dataclass(frozen=True)
class DenseLayer:
    r"""One dense layer $z = h W + b$ of a network, at the problem's parameters and data.

    Attributes:
        index: position of the layer (0 is the first).
        inputs: $h$, the layer's inputs, shape `(batch, fan_in)`.
        preactivations: $z$, shape `(batch, fan_out)`.
        weights: $W$, shape `(fan_in, fan_out)`.
    """

    index: int
    inputs: jax.Array
    preactivations: jax.Array
    weights: jax.Array


class ProblemBase(ABC):
    """What every problem offers: what it provides, the template of the gradient, and `require`."""

    provides: frozenset[str]
    """The names in [`NEEDS`][snrkit.core.problem.NEEDS] this problem can compute."""

    @property
    @abstractmethod
    def tree(self) -> PyTree:
        """A pytree shaped like the gradient (the parameters, or the gradient itself); its values are not used."""

    @property
    def num_coordinates(self) -> int:
        """Number of coordinates $n$ of the gradient."""
        return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(self.tree)))

    @property
    def dtype(self) -> jnp.dtype:
        """Dtype of the flat gradient: the leaves' promoted type, as `ravel` gives it (without raveling)."""
        return jnp.result_type(*jax.tree_util.tree_leaves(self.tree))

    @abstractmethod
    def gradient(self) -> PyTree:
        """The true gradient $\\nabla$ (computed on first use, then kept)."""

    def hvp(self, tangent: PyTree) -> PyTree:
        """The Hessian-vector product $H t$ at the problem's parameters."""
        raise self._cannot("hvp")

    def per_example_gradients(self) -> PyTree:
        """The gradient of each example's loss, with a leading example axis."""
        raise self._cannot("per_example_gradients")

    def layers(self) -> tuple[DenseLayer, ...]:
        """Each dense layer's inputs, pre-activations and weights."""
        raise self._cannot("layers")

    state: Mapping[str, Any] = MappingProxyType({})
    """Values kept between training steps (e.g. `"stale_gradient"`), read-only."""

    def state_value(self, name: str) -> Any:
        """One value of the state, or a clear error naming what is missing and how to supply it.

        Examples:
            >>> import jax.numpy as jnp
            >>> from snrkit.core.problem import GradientProblem
            >>> GradientProblem(jnp.ones(2)).state_value("stale_gradient")
            Traceback (most recent call last):
            ...
            ValueError: this problem carries no state 'stale_gradient' ...
        """
        if name not in self.state:
            have = ", ".join(sorted(self.state)) or "nothing"
            raise ValueError(
                f"this problem carries no state {name!r} (its state has: {have}); pass state={{{name!r}: ...}} to "
                f"sk.Problem or sk.GradientProblem"
            )
        return self.state[name]

    def require(self, needs: Iterable[str], who: str) -> None:
        """Raise a clear error, before any work, when the problem cannot provide all of `needs`.

        Args:
            needs: names from [`NEEDS`][snrkit.core.problem.NEEDS].
            who: what needs them (an estimator's name), for the message.

        Raises:
            ValueError: something is missing; the message names it and how to supply it.

        Examples:
            >>> import jax.numpy as jnp
            >>> from snrkit.core.problem import GradientProblem
            >>> GradientProblem(jnp.ones(2)).require(["gradient", "layers"], "MyFamily")
            Traceback (most recent call last):
            ...
            ValueError: MyFamily needs layers of the problem, ...
        """
        missing = [need for need in needs if need not in self.provides]
        if missing:
            how = "; ".join(f"for {need}, {_HOW[need]}" for need in missing)
            raise ValueError(
                f"{who} needs {', '.join(missing)} of the problem, but this problem provides only "
                f"{', '.join(sorted(self.provides))}. {how}."
            )

    def _cannot(self, need: str) -> ValueError:
        return ValueError(f"this problem cannot compute {need} (it provides {', '.join(sorted(self.provides))}); {_HOW[need]}")


class GradientProblem(ProblemBase):
    """A problem that knows only the gradient: what `est.given(grad)` builds from a bare gradient.

    Args:
        grad: the true gradient, any non-empty pytree of finite float arrays.
        state: values kept between training steps (e.g. `{"stale_gradient": ...}`).

    Raises:
        ValueError: `grad` is empty or has NaN or inf entries.
        TypeError: `grad` has non-floating leaves.

    Examples:
        >>> import jax.numpy as jnp
        >>> from snrkit.core.problem import GradientProblem
        >>> problem = GradientProblem({"w": jnp.array([3.0, 4.0])})
        >>> sorted(problem.provides), problem.num_coordinates
        (['gradient'], 2)
    """

    def __init__(self, grad: PyTree, *, state: Mapping[str, Any] | None = None):
        validate_float_tree(grad, "grad")
        self._grad = grad
        self.state = MappingProxyType(dict(state or {}))
        self.provides = frozenset({"gradient"} | ({"state"} if self.state else set()))

    @property
    def tree(self) -> PyTree:
        return self._grad

    def gradient(self) -> PyTree:
        return self._grad


class Problem(ProblemBase):
    r"""A loss, its parameters and its data: everything a family's law can ask for, computed lazily.

    Args:
        loss_fn: `loss_fn(params, *args)` returns a scalar (the mean loss of a batch).
        params: the point to differentiate at, a pytree of float arrays.
        *args: further arguments of `loss_fn` (data, labels), not differentiated. Those
            that are not arrays (a Python flag such as `train=True`, a mode string) reach
            `loss_fn` as they are, never traced, so it may branch on them. When every
            array argument has the same leading axis, and the others are single values
            (not lists, which may hold a value per example), it is read as the example
            axis and per-example gradients are available (each example as a batch of one).
        network: a [`Network`][snrkit.nets.Network] whose `loss` is `loss_fn`; when it
            exposes its dense layers, `layers()` is available (its first argument is the input).
        gradient: the true gradient when it is already known (e.g. computed in chunks over a
            large data set); by default `jax.grad` of the loss on first use.
        state: values kept between training steps (e.g. `{"stale_gradient": ...}`).

    Raises:
        ValueError, TypeError: `params` is not a non-empty pytree of float arrays, or
            `loss_fn` does not return a real scalar (see
            [`check_loss`][snrkit.core.problem.check_loss]).

    Examples:
        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> from snrkit import data, nets
        >>> digits = data.load_digits().take(64)
        >>> net = nets.mlp((64, 8, 10))
        >>> problem = sk.Problem.from_network(
        ...     net, net.init(jax.random.key(0)), digits.flat(), digits.labels
        ... )
        >>> sorted(problem.provides)
        ['gradient', 'hvp', 'layers', 'loss', 'per_example_gradients']
        >>> [layer.inputs.shape for layer in problem.layers()]
        [(64, 64), (64, 8)]
        >>> jax.tree.map(jnp.shape, problem.per_example_gradients())[0]["w"]
        (64, 64, 8)
    """

    def __init__(
        self, loss_fn: Callable[..., jax.Array], params: PyTree, *args: Any, network: Any = None, gradient: PyTree = None,
        state: Mapping[str, Any] | None = None,
    ):
        validate_float_tree(params, "params", check_finite=False)
        check_loss(loss_fn, params, args)
        self.loss_fn = loss_fn
        self.params = params
        self.args = tuple(args)
        self.network = network
        self._cache: dict[str, Any] = {}
        if gradient is not None:
            validate_float_tree(gradient, "gradient")
            same = jax.tree_util.tree_structure(gradient) == jax.tree_util.tree_structure(params) and all(
                np.shape(g) == np.shape(p) and jnp.result_type(g) == jnp.result_type(p)
                for g, p in zip(jax.tree_util.tree_leaves(gradient), jax.tree_util.tree_leaves(params), strict=True)
            )
            if not same:
                raise ValueError(
                    "gradient must be shaped like params: the same pytree structure, and each leaf the same shape "
                    "and dtype (it is the gradient of the loss at params)"
                )
            self._cache["gradient"] = gradient
        provides = {"gradient", "loss", "hvp"}
        if _has_example_axis(self.args):
            provides.add("per_example_gradients")
        if network is not None and network.layers is not None and self.args:
            provides.add("layers")
        self.state = MappingProxyType(dict(state or {}))
        if self.state:
            provides.add("state")
        self.provides = frozenset(provides)

    @classmethod
    def from_network(cls, network: Any, params: PyTree, x: Any, y: Any) -> Problem:
        """The problem of a [`Network`][snrkit.nets.Network]'s mean loss on the batch `(x, y)`.

        Args:
            network: a `Network` (its `loss(params, x, y)` is differentiated).
            params: its parameters.
            x: inputs, with a leading example axis.
            y: integer labels, one per example.

        Returns:
            The problem, with `layers()` when the network exposes its dense layers.

        Examples:
            >>> import jax, jax.numpy as jnp, snrkit as sk
            >>> from snrkit import nets
            >>> net = nets.mlp((3, 2))
            >>> problem = sk.Problem.from_network(
            ...     net,
            ...     net.init(jax.random.key(0)),
            ...     jnp.ones((4, 3)),
            ...     jnp.zeros(4, int),
            ... )
            >>> problem.layers()[0].weights.shape
            (3, 2)
        """
        return cls(network.loss, params, jnp.asarray(x), jnp.asarray(y), network=network)

    @property
    def tree(self) -> PyTree:
        return self.params

    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    def value(self) -> jax.Array:
        """The loss at the problem's parameters."""
        return self._cached("value", lambda: self.loss_fn(self.params, *self.args))

    def gradient(self) -> PyTree:
        """The true gradient $\\nabla$ by `jax.grad` (computed once).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.Problem(
            ...     lambda w: jnp.sum(w**2), jnp.array([1.0, 2.0])
            ... ).gradient().tolist()
            [2.0, 4.0]

        Raises:
            ValueError: the gradient has NaN or inf entries (a loss at log 0, say).
        """
        return self._cached("gradient", self._compute_gradient)

    def _compute_gradient(self) -> PyTree:
        gradient = jax.grad(self.loss_fn)(self.params, *self.args)
        validate_float_tree(gradient, "gradient")
        return gradient

    def hvp(self, tangent: PyTree) -> PyTree:
        """Hessian-vector product $H t$ by forward-over-reverse differentiation.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> problem = sk.Problem(lambda w: jnp.sum(w**3), jnp.array([1.0, 2.0]))
            >>> problem.hvp(jnp.array([1.0, 1.0])).tolist()  # 6 w ⊙ t
            [6.0, 12.0]
        """
        grad = jax.grad(self.loss_fn)
        return jax.jvp(lambda p: grad(p, *self.args), (self.params,), (tangent,))[1]

    def per_example_gradients(self) -> PyTree:
        """Gradients of each example's loss (each example a batch of one), leading axis = examples."""
        if "per_example_gradients" not in self.provides:
            raise self._cannot("per_example_gradients")

        loss, data = bind_static(self.loss_fn, self.args)  # vmap maps the array arguments only

        def one(*example: Any) -> PyTree:
            return jax.grad(loss)(self.params, *(e[None] for e in example))

        return self._cached("per_example_gradients", lambda: jax.vmap(one)(*data))

    def layers(self) -> tuple[DenseLayer, ...]:
        """Each dense layer's inputs, pre-activations and weights, from the network's forward pass."""
        if "layers" not in self.provides:
            raise self._cannot("layers")

        def compute() -> tuple[DenseLayer, ...]:
            found = self.network.layers(self.params, self.args[0])
            return tuple(DenseLayer(i, *layer) for i, layer in enumerate(found))

        return self._cached("layers", compute)


def check_loss(loss_fn: Any, params: PyTree, args: tuple) -> None:
    """Raise a clear error unless `loss_fn(params, *args)` returns a real scalar (checked by shape only).

    Runs `jax.eval_shape`, so nothing is computed.

    Args:
        loss_fn: the loss function.
        params: its parameters.
        args: its further arguments.

    Raises:
        TypeError: `loss_fn` is not callable, or returns a tuple (such as `(loss, aux)`), `None`,
            a non-floating value or an array that is not a scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from snrkit.core.problem import check_loss
        >>> check_loss(lambda p: (jnp.sum(p), {"aux": 1}), jnp.ones(2), ())
        Traceback (most recent call last):
        ...
        TypeError: loss_fn returns a tuple, e.g. (loss, aux); ...
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function loss_fn(params, *args) -> scalar, got {type(loss_fn).__name__}")
    loss, arrays = bind_static(loss_fn, args)
    out = jax.eval_shape(loss, params, *arrays)
    if out is None:
        raise TypeError("loss_fn returned None; it must return the loss, a real scalar (did you forget `return`?)")
    if isinstance(out, tuple | list | dict):
        raise TypeError(
            f"loss_fn returns a {type(out).__name__}, e.g. (loss, aux); snrkit differentiates a scalar loss: "
            f"pass lambda params, *args: loss_fn(params, *args)[0]"
        )
    dtype = getattr(out, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"loss_fn must return a floating scalar, got dtype {dtype}; an integer loss has no derivative "
            f"(cast it, e.g. jnp.asarray(loss, jnp.float32))"
        )
    if out.shape != ():
        raise TypeError(
            f"loss_fn must return a scalar (the loss to differentiate), got shape {out.shape}; reduce it, e.g. with jnp.mean"
        )


def _is_array(value: Any) -> bool:
    """A JAX or NumPy array: what JAX may trace; anything else reaches the loss as it is."""
    return isinstance(value, jax.Array | np.ndarray)


def _has_example_axis(args: tuple) -> bool:
    """Whether `args` have an example axis: arrays of one leading length, besides single Python values.

    A container of Python values (a list of labels, say) may hold one value per example,
    which a map over the arrays would not split: no example axis is read then.
    """
    arrays = [a for a in args if _is_array(a)]
    others = [a for a in args if not _is_array(a)]
    if not arrays or any(np.ndim(a) == 0 for a in arrays) or len({np.shape(a)[0] for a in arrays}) != 1:
        return False
    # a Python value, not an array-like (a pandas Series of labels holds one per example)
    return all((a is None or jax.tree_util.all_leaves([a])) and np.ndim(a) == 0 for a in others)


def bind_static(loss_fn: Callable[..., Any], args: tuple) -> tuple[Callable[..., Any], tuple]:
    """`(loss, arrays)`: `loss_fn` with the arguments that are not arrays held fixed, and the array ones.

    JAX traces what it compiles, maps or shards, and a traced value cannot steer Python:
    a loss that branches on a flag (`if train:`), a mode string or a Python number must
    see that value itself. So every leaf of `args` that is not a JAX or NumPy array (a
    Python `bool`, `int`, `float`, `str`, a NumPy scalar, ...) is bound into the returned
    loss, and only the arrays are passed on; `loss(params, *arrays)` equals
    `loss_fn(params, *args)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from snrkit.core.problem import bind_static
        >>> def loss_fn(w, x, train):
        ...     return jnp.sum(w * x) * (0.5 if train else 1.0)
        >>> loss, arrays = bind_static(loss_fn, (jnp.ones(2), True))
        >>> len(arrays), float(loss(jnp.ones(2), *arrays))
        (1, 1.0)
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    is_array = [_is_array(leaf) for leaf in leaves]
    if all(is_array):
        return loss_fn, tuple(args)

    def loss(params: PyTree, *arrays: Any) -> Any:
        given = iter(arrays)
        full = [next(given) if array else leaf for leaf, array in zip(leaves, is_array, strict=True)]
        return loss_fn(params, *jax.tree_util.tree_unflatten(treedef, full))

    return loss, tuple(leaf for leaf, array in zip(leaves, is_array, strict=True) if array)


def as_problem(problem_or_grad: Any) -> ProblemBase:
    """A problem as given, or a [`GradientProblem`][snrkit.core.problem.GradientProblem] around a bare gradient.

    Examples:
        >>> import jax.numpy as jnp
        >>> from snrkit.core.problem import as_problem
        >>> type(as_problem(jnp.ones(3))).__name__
        'GradientProblem'
    """
    if isinstance(problem_or_grad, ProblemBase):
        return problem_or_grad
    return GradientProblem(problem_or_grad)


__all__ = ["NEEDS", "DenseLayer", "ProblemBase", "Problem", "GradientProblem", "as_problem", "check_loss"]
