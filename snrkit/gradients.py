r"""True gradients of real networks on real data, by backprop.

These are the references the estimators are judged against: the *full-batch* gradient of
the mean loss is the $\nabla$ of the design notes, computed exactly (up to float rounding)
by `jax.grad`; the minibatch and per-example gradients let the stochastic-gradient noise of
backprop itself be compared with the noise of forward gradients.

`data` arguments accept a [`Dataset`][snrkit.data.Dataset] (anything with `images` and
`labels`) or a pair `(x, y)` of arrays with a shared leading example axis. A loss is
either a [`Network`][snrkit.nets.Network] (its `loss` method is used) or a function
`loss(params, x, y) -> scalar` giving the *mean* loss of a batch. Compiled code is cached
on the loss function's identity, so pass the same function (or network) object to reuse it.

Examples:
    The true gradient of a softmax regression on digits, and the exact law of a forward
    gradient there:

    >>> import jax
    >>> import snrkit as sk
    >>> from snrkit import data, gradients, nets
    >>> digits = data.load_digits().take(256)
    >>> net = nets.mlp((64, 10))
    >>> grad = gradients.full_batch_gradient(
    ...     net, net.init(jax.random.key(0)), digits
    ... )
    >>> law = sk.ForwardGradient(probe="gaussian").given(grad)
    >>> law.num_coordinates
    650
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
import optax

from .core.validation import check_int
from .nets import Network, accuracy, cross_entropy

__all__ = [
    "Checkpoint",
    "evaluate",
    "full_batch_gradient",
    "gradient_at",
    "minibatch_gradient",
    "per_example_gradients",
    "train",
]

Params = Any
"""A parameter pytree."""
Array = jax.Array
"""A JAX array."""
LossFn = Callable[[Params, Array, Array], Array]
"""`loss(params, x, y) -> scalar`: the *mean* loss of the batch `(x, y)`."""
Data = Any  # Dataset-like (`.images`, `.labels`) or an `(x, y)` pair
"""A [`Dataset`][snrkit.data.Dataset] (anything with `.images` and `.labels`) or an
`(x, y)` pair of arrays with a shared leading example axis."""

DEFAULT_CHUNK_SIZE = 1024
"""Examples per chunk of the full-data passes: memory is bounded by one chunk's activations."""


def _loss_fn(net_or_loss: Network | LossFn) -> LossFn:
    if isinstance(net_or_loss, Network):
        return net_or_loss.loss
    if callable(net_or_loss):
        return net_or_loss
    raise TypeError(
        "expected a snrkit.nets.Network or a function loss(params, x, y) -> scalar; "
        f"got {type(net_or_loss).__name__}."
    )


def _arrays(data: Data) -> tuple[Array, Array]:
    if hasattr(data, "images") and hasattr(data, "labels"):
        x, y = data.images, data.labels
    elif isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(
            "data must be a snrkit.data.Dataset or a pair (x, y) of arrays; "
            f"got {type(data).__name__}."
        )
    x, y = _on_device(x), _on_device(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            "data needs x and y with the same, non-zero number of examples on axis 0; got "
            f"x of shape {x.shape} and y of shape {y.shape}."
        )
    return x, y


def _on_device(a: Any) -> Array:
    # device_put is a plain transfer (dtype canonicalised as jnp.asarray would), whereas
    # jnp.asarray compiles a small identity program per new shape.
    return a if isinstance(a, jax.Array) else jax.device_put(np.asarray(a))


def _check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", hint="examples per chunk, or None for one chunk")


def _chunked_mean(fn: Callable, params: Params, x: Array, y: Array, chunk_size: int | None):
    """Mean over examples of a per-batch *mean* `fn`, one chunk in memory at a time.

    The mean over N examples is the size-weighted average of chunk means, which is exact,
    so the result does not depend on `chunk_size` beyond float rounding.

    The chunks are looped over in Python, each through one compiled call, rather than with
    `lax.scan`: on XLA:CPU a convolution's gradient inside a scan body ran ~60x slower
    than the same gradient as its own computation (MNIST CNN, jax 0.10), turning a 10 s
    full-batch gradient into minutes. At most two chunk shapes occur, so at most two
    compilations, and the Python overhead is one dispatch per chunk.
    """
    n = x.shape[0]
    size = n if chunk_size is None else min(int(chunk_size), n)
    chunk = [jax.ShapeDtypeStruct((size, *a.shape[1:]), a.dtype) for a in (x, y)]
    shapes = jax.eval_shape(fn, params, *chunk)
    # NumPy zeros are plain inputs to the compiled call; jnp.zeros would compile one small
    # program per leaf shape when run eagerly.
    total = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    for start in range(0, n, size):
        this = min(size, n - start)
        total = _accumulate(fn, this, total, this / n, params, x, y, start)
    return total


@functools.partial(jax.jit, static_argnames=("fn", "size"))
def _accumulate(fn, size, total, weight, params, x, y, start):
    # The chunk is sliced inside the compiled call (start is traced), so neither the slice
    # nor a new start offset compiles anything; only the chunk size is static. weight is
    # traced too (a weak-typed scalar), so it never promotes float32 results to float64.
    xs = jax.lax.dynamic_slice_in_dim(x, start, size)
    ys = jax.lax.dynamic_slice_in_dim(y, start, size)
    return jax.tree.map(lambda t, v: t + weight * v, total, fn(params, xs, ys))


@functools.lru_cache(maxsize=128)
def _grad_of(loss: LossFn) -> Callable:
    # One grad function per loss, so the jit cache (keyed on the function) is reused.
    # Bounded, because a caller passing a fresh lambda each time would otherwise grow it.
    return jax.grad(loss)


@functools.lru_cache(maxsize=128)
def _metrics_of(network: Network) -> Callable:
    def metrics(params, x, y):
        logits = network.apply(params, x)
        return cross_entropy(logits, y), accuracy(logits, y)

    return metrics


def full_batch_gradient(
    net_or_loss: Network | LossFn,
    params: Params,
    data: Data,
    *,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> Params:
    r"""Gradient of the mean loss over *all* examples: the true gradient $\nabla$.

    $$
    \nabla = \nabla_\theta \frac1N \sum_{i=1}^N \ell(\theta; x_i, y_i)
    $$

    Computed as the size-weighted average of chunk gradients, so memory is bounded by one
    chunk's activations (MNIST's 10,000 examples never go through the network at once).

    Args:
        net_or_loss: A `Network` or a mean-loss function `loss(params, x, y)`.
        params: Parameter pytree.
        data: A `Dataset` or an `(x, y)` pair.
        chunk_size: Examples per chunk; `None` processes everything at once.

    Returns:
        A pytree shaped like `params`.

    Raises:
        TypeError: If `net_or_loss` is neither a `Network` nor callable, or `data` is
            neither a `Dataset` nor an `(x, y)` pair.
        ValueError: For a bad `chunk_size`, or `x` and `y` of different lengths.

    Examples:
        Least squares, $\ell = (x^\top w - y)^2$, whose gradient at $w = 0$ is
        $-\frac2N\sum_i y_i x_i$:

        >>> import jax.numpy as jnp, numpy as np
        >>> from snrkit.gradients import full_batch_gradient
        >>> def loss(w, x, y):
        ...     return jnp.mean((x @ w - y) ** 2)
        >>> x, y = (
        ...     np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        ...     np.array([1.0, 0.0, 2.0]),
        ... )
        >>> grad = full_batch_gradient(loss, np.zeros(2), (x, y), chunk_size=2)
        >>> np.asarray(grad, float).round(4).tolist()
        [-7.3333, -9.3333]
    """
    _check_chunk_size(chunk_size)
    x, y = _arrays(data)
    return _chunked_mean(_grad_of(_loss_fn(net_or_loss)), params, x, y, chunk_size)


@functools.partial(jax.jit, static_argnames=("loss", "batch_size"))
def _minibatch_gradient(key, loss, params, x, y, batch_size):
    index = jax.random.choice(key, x.shape[0], (batch_size,), replace=False)
    return jax.grad(loss)(params, x[index], y[index])


def minibatch_gradient(
    key: Array,
    loss: Network | LossFn,
    params: Params,
    data: Data,
    batch_size: int,
) -> Params:
    r"""Backprop gradient of the mean loss of one random minibatch.

    $$
    g_B = \nabla_\theta \frac1{|B|} \sum_{i \in B} \ell(\theta; x_i, y_i),
    \qquad \mathbb{E}[g_B] = \nabla,
    $$

    where the batch $B$ is `batch_size` distinct examples drawn uniformly (without
    replacement), so the result is an unbiased estimate of
    [`full_batch_gradient`][snrkit.gradients.full_batch_gradient].

    Args:
        key: A `jax.random.key`; the batch is a function of it only.
        loss: A `Network` or a mean-loss function `loss(params, x, y)`.
        params: Parameter pytree.
        data: A `Dataset` or an `(x, y)` pair.
        batch_size: Examples per batch, `1 <= batch_size <= N`.

    Returns:
        A pytree shaped like `params`.

    Raises:
        ValueError: If `batch_size` is out of range.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from snrkit.gradients import minibatch_gradient
        >>> def loss(w, x, y):
        ...     return jnp.mean((x @ w - y) ** 2)
        >>> x, y = (
        ...     np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        ...     np.array([1.0, 0.0, 2.0]),
        ... )
        >>> grad = minibatch_gradient(
        ...     jax.random.key(0), loss, np.zeros(2), (x, y), batch_size=2
        ... )
        >>> grad.shape
        (2,)
    """
    x, y = _arrays(data)
    batch_size = _check_batch_size(batch_size, x.shape[0])
    return _minibatch_gradient(key, _loss_fn(loss), params, x, y, batch_size)


def _check_batch_size(batch_size: int, n: int) -> int:
    return check_int(batch_size, "batch_size", maximum=n, hint=f"examples per batch, of the {n} available")


@functools.partial(jax.jit, static_argnames=("loss",))
def _per_example_gradients(loss, params, x, y):
    def one(p, xi, yi):
        # The loss takes batches, so each example is a batch of one.
        return jax.grad(loss)(p, xi[None], yi[None])

    return jax.vmap(one, in_axes=(None, 0, 0))(params, x, y)


def per_example_gradients(loss: Network | LossFn, params: Params, x: Array, y: Array) -> Params:
    r"""Gradient of the loss of each example separately (`vmap` of `grad`).

    Entry $b$ is $\nabla_\theta\, \ell(\theta; x_b, y_b)$; their mean is the gradient of
    the batch's mean loss. Memory is $B$ times the parameter count, so keep $B$ modest for
    big networks.

    Args:
        loss: A `Network` or a mean-loss function `loss(params, x, y)`.
        params: Parameter pytree.
        x: Inputs with a leading example axis of size `B`.
        y: Labels of shape `(B,)`.

    Returns:
        A pytree shaped like `params` with a leading axis of size `B`.

    Examples:
        >>> import jax.numpy as jnp, numpy as np
        >>> from snrkit.gradients import per_example_gradients
        >>> def loss(w, x, y):
        ...     return jnp.mean((x @ w - y) ** 2)
        >>> x, y = (
        ...     np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        ...     np.array([1.0, 0.0, 2.0]),
        ... )
        >>> grads = per_example_gradients(
        ...     loss, np.zeros(2), x, y
        ... )  # -2 y_b x_b at w = 0
        >>> np.asarray(grads, float).tolist()
        [[-2.0, -4.0], [0.0, 0.0], [-20.0, -24.0]]
    """
    x, y = _arrays((x, y))
    return _per_example_gradients(_loss_fn(loss), params, x, y)


def evaluate(
    network: Network,
    params: Params,
    data: Data,
    *,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> tuple[float, float]:
    r"""Mean cross-entropy and accuracy of `network` on all of `data`.

    The means over all $N$ examples of [snrkit.nets.cross_entropy][] and
    [snrkit.nets.accuracy][], computed chunk by chunk.

    Args:
        network: The `Network`.
        params: Its parameters.
        data: A `Dataset` or an `(x, y)` pair.
        chunk_size: Examples per forward pass; `None` for one pass.

    Returns:
        `(loss, accuracy)` as Python floats.

    Examples:
        Zero inputs give equal logits: loss $\log 3$, and every tie goes to class 0.

        >>> import jax, numpy as np
        >>> from snrkit import nets
        >>> from snrkit.gradients import evaluate
        >>> net = nets.mlp((2, 3))
        >>> loss, acc = evaluate(
        ...     net,
        ...     net.init(jax.random.key(0)),
        ...     (np.zeros((3, 2)), np.array([0, 1, 2])),
        ... )
        >>> round(loss, 4), round(acc, 4)
        (1.0986, 0.3333)
    """
    _check_chunk_size(chunk_size)
    x, y = _arrays(data)
    loss, acc = _chunked_mean(_metrics_of(network), params, x, y, chunk_size)
    return float(loss), float(acc)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Parameters saved during [`train`][snrkit.gradients.train], with their full-data loss and accuracy.

    `eq=False` because parameters are arrays, which have no single truth value.

    Examples:
        >>> import jax, numpy as np
        >>> from snrkit import nets
        >>> from snrkit.gradients import train
        >>> x, y = (
        ...     np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        ...     np.array([0, 1, 2]),
        ... )
        >>> first, last = train(
        ...     jax.random.key(0),
        ...     nets.mlp((2, 3)),
        ...     (x, y),
        ...     steps=20,
        ...     batch_size=3,
        ...     learning_rate=0.1,
        ...     optimizer="sgd",
        ... )
        >>> first.step, last.step, last.loss < first.loss
        (0, 20, True)
    """

    step: int
    """Number of optimiser updates applied (0 is the initialisation)."""
    params: Params = field(repr=False)
    """Parameter pytree after `step` updates."""
    loss: float
    """Mean cross-entropy over the whole training data at these parameters (NaN if
    [`train`][snrkit.gradients.train] was asked not to compute metrics)."""
    accuracy: float
    """Accuracy over the whole training data at these parameters (or NaN)."""


_OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "adam": optax.adam,
    "sgd": optax.sgd,
}


@functools.partial(jax.jit, static_argnames=("optimizer",))
def _opt_init(optimizer, learning_rate, params):
    # Compiled: eagerly, the optimiser's zeros_like would compile one program per leaf.
    return _OPTIMIZERS[optimizer](learning_rate).init(params)


@functools.partial(jax.jit, static_argnames=("config",))
def _update(config, learning_rate, params, opt_state, order, position, x, y):
    # A module-level jit keyed on the (hashable) configuration, so repeated train() calls
    # with the same network, optimiser and batch size reuse one compilation; the learning
    # rate is traced for the same reason. x and y are arguments, not closed-over
    # constants, which would be baked into the program (31 MB for MNIST).
    network, optimizer, batch_size = config
    tx = _OPTIMIZERS[optimizer](learning_rate)
    index = jax.lax.dynamic_slice(order, (position * batch_size,), (batch_size,))
    grads = jax.grad(network.loss)(params, x[index], y[index])
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def train(
    key: Array,
    network: Network,
    data: Data,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    checkpoints: Sequence[int] | None = None,
    optimizer: str = "adam",
    params: Params | None = None,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    metrics: bool = True,
) -> list[Checkpoint]:
    r"""Short minibatch backprop training, saving parameters at chosen steps.

    Each step applies the optimiser to the minibatch gradient $g_{B_t}$ (see
    [`minibatch_gradient`][snrkit.gradients.minibatch_gradient]); for `"sgd"` that is
    $\theta_{t+1} = \theta_t - \eta\, g_{B_t}$, for `"adam"` the update of Kingma and Ba
    (2015) as implemented by `optax.adam`.

    The point is not a good model but realistic gradients: $\nabla$ at initialisation is
    unlike $\nabla$ after some training (smaller, more concentrated), and estimator noise
    depends on that. Batches are drawn epoch by epoch: epoch `e` visits the examples in
    the order `permutation(fold_in(batch_key, e), N)`, cut into `N // batch_size`
    batches (the last `N mod batch_size` of that order sit the epoch out). The trajectory
    is a function of `key` only, not of which checkpoints are requested.

    Args:
        key: A `jax.random.key`. Split into an initialisation key and a batch key;
            [`gradient_at`][snrkit.gradients.gradient_at] with the same key starts from
            the same parameters.
        network: The `Network` to train.
        data: A `Dataset` or an `(x, y)` pair.
        steps: Number of optimiser updates, >= 0.
        batch_size: Examples per update, `1 <= batch_size <= N`.
        learning_rate: Optimiser step size $\eta$, > 0.
        checkpoints: Steps at which to save, each in `[0, steps]`; 0 means the
            initial parameters. Defaults to `(0, steps)`.
        optimizer: `"adam"` or `"sgd"` (`optax.adam` / `optax.sgd`).
        params: Starting parameters; by default `network.init` of the init key.
        chunk_size: Chunk size of the full-data evaluation at each checkpoint.
        metrics: Whether to evaluate loss and accuracy on all of `data` at each
            checkpoint; if False they are NaN and no evaluation pass is run.

    Returns:
        One [`Checkpoint`][snrkit.gradients.Checkpoint] per distinct requested step, in
        increasing step order.

    Raises:
        ValueError: For negative `steps`, a bad `batch_size`, a non-positive
            `learning_rate`, an unknown `optimizer` or a checkpoint outside
            `[0, steps]`.

    Examples:
        >>> import jax, numpy as np
        >>> from snrkit import nets
        >>> from snrkit.gradients import train
        >>> x, y = (
        ...     np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        ...     np.array([0, 1, 2]),
        ... )
        >>> saved = train(
        ...     jax.random.key(0),
        ...     nets.mlp((2, 3)),
        ...     (x, y),
        ...     steps=20,
        ...     batch_size=3,
        ...     learning_rate=0.1,
        ...     checkpoints=(0, 10, 20),
        ...     optimizer="sgd",
        ... )
        >>> [c.step for c in saved], saved[-1].loss < saved[0].loss
        ([0, 10, 20], True)
    """
    steps = check_int(steps, "steps", minimum=0, hint="training updates")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}.")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(_OPTIMIZERS)}; got {optimizer!r}.")
    _check_chunk_size(chunk_size)
    wanted = sorted({int(s) for s in ((0, steps) if checkpoints is None else checkpoints)})
    if not wanted or wanted[0] < 0 or wanted[-1] > steps:
        raise ValueError(
            f"checkpoints must be a non-empty list of steps in [0, {steps}]; "
            f"got {checkpoints!r}."
        )
    x, y = _arrays(data)
    batch_size = _check_batch_size(batch_size, x.shape[0])

    init_key, batch_key = jax.random.split(key)
    if params is None:
        params = network.init(init_key)
    learning_rate = float(learning_rate)
    opt_state = _opt_init(optimizer, learning_rate, params)
    config = (network, optimizer, batch_size)

    # One shuffle per epoch, not per step: a permutation costs ~1.7 ms on CPU for 1797
    # examples, more than a small network's whole update.
    per_epoch = x.shape[0] // batch_size
    saved = []
    step, epoch, order = 0, -1, None
    for target in wanted:
        while step < target:
            this_epoch, position = divmod(step, per_epoch)
            if this_epoch != epoch:
                epoch = this_epoch
                order = jax.random.permutation(jax.random.fold_in(batch_key, epoch), x.shape[0])
            params, opt_state = _update(
                config, learning_rate, params, opt_state, order, position, x, y
            )
            step += 1
        loss_value, acc = float("nan"), float("nan")
        if metrics:
            loss_value, acc = evaluate(network, params, (x, y), chunk_size=chunk_size)
        saved.append(Checkpoint(step=step, params=params, loss=loss_value, accuracy=acc))
    return saved


def gradient_at(
    key: Array,
    network: Network,
    data: Data,
    *,
    step: int = 0,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> tuple[Params, Params]:
    r"""Parameters after `step` training updates, and the full-batch gradient there.

    [`train`][snrkit.gradients.train] (without metrics) followed by
    [`full_batch_gradient`][snrkit.gradients.full_batch_gradient]: the $\nabla$ that
    snrkit's claims and sweeps are verified on.

    Args:
        key: A `jax.random.key`, used as in [`train`][snrkit.gradients.train].
        network: The `Network`.
        data: A `Dataset` or an `(x, y)` pair; both training and the gradient use it.
        step: Training updates before taking the gradient; 0 is the initialisation.
        batch_size: Training batch size (clipped to the number of examples).
        learning_rate: Training step size.
        optimizer: `"adam"` or `"sgd"`.
        chunk_size: Chunk size of the full-batch gradient.

    Returns:
        `(params, grad)`, two pytrees of the same structure.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from snrkit import nets
        >>> from snrkit.gradients import gradient_at
        >>> x, y = (
        ...     np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        ...     np.array([0, 1, 2]),
        ... )
        >>> params, grad = gradient_at(
        ...     jax.random.key(0),
        ...     nets.mlp((2, 3)),
        ...     (x, y),
        ...     step=5,
        ...     learning_rate=0.1,
        ...     optimizer="sgd",
        ... )
        >>> jax.tree.map(jnp.shape, grad)
        [{'b': (3,), 'w': (2, 3)}]
    """
    x, y = _arrays(data)
    (checkpoint,) = train(
        key,
        network,
        (x, y),
        steps=step,
        batch_size=min(batch_size, x.shape[0]),
        learning_rate=learning_rate,
        checkpoints=(step,),
        optimizer=optimizer,
        metrics=False,
    )
    params = checkpoint.params
    return params, full_batch_gradient(network, params, (x, y), chunk_size=chunk_size)
