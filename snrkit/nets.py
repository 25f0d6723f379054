"""Small real networks in plain JAX: an MLP and a CNN, with their losses.

Parameters are plain pytrees (lists and dicts of arrays), so every snrkit estimator, which
works on arbitrary pytrees, applies to them unchanged, and `ravel_pytree` gives the flat
order used for covariances.

Layouts:

- MLP: `[{"w": (in, out), "b": (out,)}, ...]`, one dict per layer.
- CNN: `{"convs": [{"w": (3, 3, in, out), "b": (out,)}, ...], "dense": {"w", "b"}}`;
  images are NHWC, kernels HWIO.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from snrkit import nets
    >>> net = nets.mlp((4, 8, 3))
    >>> params = net.init(jax.random.key(0))
    >>> nets.num_params(params), net.apply(params, jnp.zeros((2, 4))).shape
    (67, (2, 3))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from snrkit.core.validation import is_positive_int

__all__ = [
    "Network",
    "accuracy",
    "check_widths",
    "cnn",
    "cnn_apply",
    "cnn_init",
    "cross_entropy",
    "mlp",
    "mlp_apply",
    "mlp_init",
    "mlp_layers",
    "mlp_num_params",
    "mlp_widths_for_params",
    "num_params",
]

Params = Any  # a pytree of arrays
"""A parameter pytree: lists and dicts of arrays (see the layouts above)."""
Array = jax.Array
"""A JAX array."""


# Normals are drawn in fixed-size blocks by one compiled sampler. Compiling a threefry
# sampler costs ~0.5 s on CPU, and one per network shape made every new width pay it again;
# with fixed blocks it is paid once per process, and each shape only compiles the cheap
# slicing in _dense_layers.
_NORMAL_BLOCK = 1 << 16


@jax.jit
def _normal_block(key: Array) -> Array:
    return jax.random.normal(key, (_NORMAL_BLOCK,), jnp.float32)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _dense_layers(
    blocks: tuple[Array, ...],
    shapes: tuple[tuple[int, ...], ...],
    variances: tuple[float, ...],
    dtype,
) -> list[dict[str, Array]]:
    flat = jnp.concatenate(blocks)
    layers, start = [], 0
    for shape, var in zip(shapes, variances):
        size = math.prod(shape)
        w = flat[start : start + size].reshape(shape) * math.sqrt(var)
        layers.append({"w": w.astype(dtype), "b": jnp.zeros((shape[-1],), dtype)})
        start += size
    return layers


def _init_layers(
    key: Array, shapes: Sequence[tuple[int, ...]], variances: Sequence[float], dtype
) -> list[dict[str, Array]]:
    """One `{"w", "b"}` dict per shape: `w ~ N(0, variance)` (untruncated), `b = 0`.

    Plain rather than truncated normals, so the variance is exactly the one the scaling
    argument asks for, with no truncation correction to get wrong. The normals are drawn
    in float32 and then cast, so a float64 network starts from float32-rounded values.
    """
    total = sum(math.prod(shape) for shape in shapes)
    count = -(-total // _NORMAL_BLOCK)
    blocks = tuple(_normal_block(jax.random.fold_in(key, i)) for i in range(count))
    return _dense_layers(blocks, tuple(map(tuple, shapes)), tuple(variances), jnp.dtype(dtype))


def check_widths(widths: Sequence[int] | int, name: str = "widths") -> tuple[int, ...]:
    """The layer widths of an MLP as ints, checked: at least two, each a positive integer.

    Args:
        widths: input width, hidden widths, number of classes.
        name: the argument's name in the error message.

    Returns:
        The widths as a tuple of ints.

    Raises:
        ValueError: fewer than two widths, a width that is not a positive integer, or
            `widths` not a sequence; the message names `name`.

    Examples:
        >>> from snrkit.nets import check_widths
        >>> check_widths([64, 32, 10])
        (64, 32, 10)
    """
    try:
        widths = tuple(widths)
    except TypeError:  # a lone number: reported below as one width
        widths = (widths,)
    if len(widths) < 2 or any(not is_positive_int(w) for w in widths):
        raise ValueError(
            f"{name} must list at least two positive integers (input width, ..., number of "
            f"classes), e.g. (64, 32, 10); got {widths!r}."
        )
    return tuple(int(w) for w in widths)


def mlp_init(key: Array, widths: Sequence[int], *, dtype: DTypeLike = jnp.float32) -> list[dict[str, Array]]:
    r"""Initialise a fully connected ReLU network.

    Hidden layers use He-normal weights (He et al., 2015),

    $$
    W_{jk} \sim \mathcal N\big(0,\ 2/\text{fan-in}\big),
    $$

    untruncated: ReLU zeroes half of its input on average, and the factor 2 makes up for
    it so activations keep their scale with depth instead of shrinking geometrically. The
    output layer feeds no ReLU, so it uses LeCun-normal, $\mathcal N(0, 1/\text{fan-in})$,
    which keeps the initial logits $O(1)$ and the initial loss near
    $\log(\text{classes})$. Biases start at zero. The normals are drawn in float32 and
    then cast to `dtype`.

    Args:
        key: A `jax.random.key`.
        widths: Layer widths including input and output, e.g. `(64, 32, 10)`.
        dtype: Parameter dtype.

    Returns:
        One `{"w": (in, out), "b": (out,)}` dict per layer.

    Raises:
        ValueError: If `widths` has fewer than two entries or a non-positive entry.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.nets import mlp_init
        >>> params = mlp_init(jax.random.key(0), (4, 8, 3))
        >>> jax.tree.map(jnp.shape, params)
        [{'b': (8,), 'w': (4, 8)}, {'b': (3,), 'w': (8, 3)}]
    """
    widths = check_widths(widths)
    shapes = list(zip(widths[:-1], widths[1:]))
    # He (2/fan_in) for every layer but the last, which is LeCun (1/fan_in).
    gains = [2.0] * (len(shapes) - 1) + [1.0]
    return _init_layers(key, shapes, [g / fan_in for g, (fan_in, _) in zip(gains, shapes)], dtype)


@jax.jit
def mlp_apply(params: Sequence[dict[str, Array]], x: Array) -> Array:
    r"""Logits of the MLP: ReLU hidden layers, linear output.

    With $h_0 = x$ and layers $(W_l, b_l)$, $l = 1, \dots, L$:

    $$
    h_l = \max(0,\ h_{l-1} W_l + b_l) \quad (l < L), \qquad z = h_{L-1} W_L + b_L.
    $$

    Args:
        params: As returned by [`mlp_init`][snrkit.nets.mlp_init].
        x: Inputs of shape `(B, in)`, or `(B, H, W)` images that are flattened
            row-major (`H * W` must equal `in`).

    Returns:
        Logits of shape `(B, num_classes)`.

    Raises:
        ValueError: If `x` has no batch axis or the wrong number of features.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.nets import mlp_apply, mlp_init
        >>> params = mlp_init(jax.random.key(0), (4, 8, 3))
        >>> mlp_apply(params, jnp.ones((5, 2, 2))).shape  # 2x2 images, flattened
        (5, 3)
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"x must be a batch of shape (B, in) or (B, H, W); got shape {x.shape}. "
            "Add a leading batch axis for a single example."
        )
    h = x.reshape(x.shape[0], -1).astype(params[0]["w"].dtype)
    if h.shape[1] != params[0]["w"].shape[0]:
        raise ValueError(
            f"x has {h.shape[1]} features per example but the MLP expects "
            f"{params[0]['w'].shape[0]}; build the MLP with widths[0] = {h.shape[1]}."
        )
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    return h @ params[-1]["w"] + params[-1]["b"]


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(image_shape)
    if len(shape) != 2 or any(int(s) != s or int(s) < 2 for s in shape):
        raise ValueError(
            f"image_shape must be (H, W) with H, W >= 2 (the 2x2 pool needs them); got {shape!r}."
        )
    return (int(shape[0]), int(shape[1]))


def cnn_init(
    key: Array,
    image_shape: Sequence[int] = (8, 8),
    num_classes: int = 10,
    channels: Sequence[int] = (8, 16),
    *,
    dtype: DTypeLike = jnp.float32,
) -> dict[str, Any]:
    r"""Initialise a small CNN: 3x3 convs with ReLU, one 2x2 average pool, a dense layer.

    Convolutions use He-normal weights, $\mathcal N(0, 2/(9\,c_\text{in}))$ with fan-in
    $3 \cdot 3 \cdot c_\text{in}$ (He et al., 2015), because each feeds a ReLU; the dense
    output layer uses LeCun-normal, $\mathcal N(0, 1/\text{fan-in})$, so the initial logits
    are $O(1)$. Biases start at zero. See [`mlp_init`][snrkit.nets.mlp_init] for why.

    Args:
        key: A `jax.random.key`.
        image_shape: `(H, W)` of the single-channel input images, e.g. `(8, 8)` for
            digits or `(28, 28)` for MNIST.
        num_classes: Width of the output logits.
        channels: Output channels of each 3x3 convolution (two by default).
        dtype: Parameter dtype.

    Returns:
        `{"convs": [{"w": (3, 3, in, out), "b": (out,)}, ...], "dense": {"w", "b"}}`.

    Raises:
        ValueError: For an image smaller than 2x2, or non-positive channels or classes.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.nets import cnn_init
        >>> params = cnn_init(
        ...     jax.random.key(0), (8, 8), num_classes=10, channels=(2,)
        ... )
        >>> jax.tree.map(jnp.shape, params)
        {'convs': [{'b': (2,), 'w': (3, 3, 1, 2)}],
         'dense': {'b': (10,), 'w': (32, 10)}}
    """
    image_shape, num_classes, channels = _check_cnn_args(image_shape, num_classes, channels)
    (h, w), ins = image_shape, (1, *channels[:-1])
    # VALID 2x2 pooling with stride 2 floors odd sizes, as reduce_window does in cnn_apply.
    dense_in = (h // 2) * (w // 2) * channels[-1]
    shapes = [(3, 3, c_in, c_out) for c_in, c_out in zip(ins, channels)]
    shapes.append((dense_in, num_classes))
    # He for the convolutions (fan-in 3*3*in_channels), LeCun for the dense output layer.
    variances = [2.0 / (9 * c_in) for c_in in ins] + [1.0 / dense_in]
    *convs, dense = _init_layers(key, shapes, variances, dtype)
    return {"convs": convs, "dense": dense}


def _check_cnn_args(
    image_shape: Sequence[int], num_classes: int, channels: Sequence[int]
) -> tuple[tuple[int, int], int, tuple[int, ...]]:
    image_shape = _check_image_shape(image_shape)
    channels = tuple(channels)
    if not channels or any(not is_positive_int(c) for c in channels):
        raise ValueError(
            f"channels must list one positive integer per convolution, e.g. (8, 16); "
            f"got {channels!r}."
        )
    if not is_positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    return image_shape, int(num_classes), tuple(int(c) for c in channels)


@jax.jit
def cnn_apply(params: dict[str, Any], x: Array) -> Array:
    """Logits of the CNN from [`cnn_init`][snrkit.nets.cnn_init].

    Each 3x3 convolution (SAME padding, stride 1) is followed by a ReLU; then one 2x2
    average pool with stride 2 (odd sizes are floored), a flatten and the dense layer.
    The pool is an *average* pool: it is linear, so its derivative is defined everywhere.
    A max pool is not differentiable at ties, which are common after ReLU (whole windows
    of zeros), so the "true gradient" there would rest on a tie-breaking convention.

    Args:
        params: As returned by [`cnn_init`][snrkit.nets.cnn_init].
        x: Images of shape `(B, H, W)` or `(B, H, W, 1)`.

    Returns:
        Logits of shape `(B, num_classes)`.

    Raises:
        ValueError: If `x` is not a batch of single-channel images of the size the CNN
            was built for.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.nets import cnn_apply, cnn_init
        >>> params = cnn_init(
        ...     jax.random.key(0), (8, 8), num_classes=10, channels=(2,)
        ... )
        >>> cnn_apply(params, jnp.zeros((5, 8, 8))).shape
        (5, 10)
    """
    x = jnp.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(
            f"x must be images of shape (B, H, W) or (B, H, W, 1); got shape {x.shape}. "
            "Reshape flat inputs to images first (the CNN cannot guess H and W)."
        )
    h = x.astype(params["dense"]["w"].dtype)
    for layer in params["convs"]:
        h = jax.lax.conv_general_dilated(
            h,
            layer["w"],
            window_strides=(1, 1),
            padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        h = jax.nn.relu(h + layer["b"])
    # A concrete NumPy zero (not a traced jnp one) lets JAX recognise a windowed *sum*,
    # which it can differentiate; a generic reduce_window it cannot.
    zero = np.zeros((), h.dtype)
    h = jax.lax.reduce_window(h, zero, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
    h = h.reshape(h.shape[0], -1)
    if h.shape[1] != params["dense"]["w"].shape[0]:
        raise ValueError(
            f"images of shape {x.shape[1:3]} do not match this CNN's dense layer "
            f"({params['dense']['w'].shape[0]} inputs); build it with "
            f"cnn_init(..., image_shape={tuple(x.shape[1:3])})."
        )
    return h @ params["dense"]["w"] + params["dense"]["b"]


@jax.jit
def cross_entropy(logits: Array, labels: Array) -> Array:
    r"""Mean softmax cross-entropy.

    $$
    \ell = -\frac1B \sum_{b=1}^B \log \operatorname{softmax}(z_b)_{y_b}
    $$

    `log_softmax` subtracts the max logit first, so large logits do not overflow.

    Args:
        logits: Shape `(B, C)`.
        labels: Integer class indices of shape `(B,)`.

    Returns:
        A scalar in the logits' dtype.

    Examples:
        Equal logits over 3 classes give $\log 3$:

        >>> import jax.numpy as jnp
        >>> from snrkit.nets import cross_entropy
        >>> round(float(cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 2]))), 4)
        1.0986
        >>> float(cross_entropy(jnp.array([[1000.0, 0.0]]), jnp.array([1])))
        1000.0
    """
    log_p = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_p, jnp.asarray(labels)[:, None].astype(jnp.int32), axis=-1)
    return -jnp.mean(picked)


@jax.jit
def accuracy(logits: Array, labels: Array) -> Array:
    r"""Fraction of examples whose largest logit is the true class (float32 scalar).

    $$
    \text{accuracy} = \frac1B \sum_{b=1}^B \mathbb 1\big[\arg\max_c z_{bc} = y_b\big]
    $$

    Ties go to the first largest logit (`jnp.argmax`).

    Args:
        logits: Shape `(B, C)`.
        labels: Integer class indices of shape `(B,)`.

    Returns:
        A float32 scalar in $[0, 1]$.

    Examples:
        >>> import jax.numpy as jnp
        >>> from snrkit.nets import accuracy
        >>> float(accuracy(jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([0, 0])))
        0.5
    """
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


@dataclass(frozen=True)
class Network:
    """A network as three pure pieces: how to initialise, how to apply, what it is called.

    Frozen and hashable, so it can be a static argument of `jax.jit`; the factories
    [`mlp`][snrkit.nets.mlp] and [`cnn`][snrkit.nets.cnn] return the same object for the
    same configuration, so compiled code is reused across calls.

    Examples:
        >>> from snrkit.nets import mlp
        >>> net = mlp((64, 32, 10))
        >>> net.name
        'mlp-64-32-10'
        >>> net is mlp([64, 32, 10])  # cached: compiled code is shared
        True
    """

    name: str
    """Human-readable description, used in tables and plots."""
    init: Callable[[Array], Params]
    """`init(key) -> params`."""
    apply: Callable[[Params, Array], Array]
    """`apply(params, x) -> logits` for a batch `x`."""
    layers: Callable[[Params, Array], list[tuple[Array, Array, Array]]] | None = None
    """`layers(params, x)`: `(inputs, pre-activations, weights)` of each dense layer for the
    batch `x`, for estimators whose law needs them (see [snrkit.core.problem.Problem.layers][]);
    `None` when the network does not expose them."""

    def loss(self, params: Params, x: Array, y: Array) -> Array:
        r"""Mean softmax cross-entropy of the batch `(x, y)`: `cross_entropy(apply(params, x), y)`.

        This is the $\ell$ whose gradient snrkit's estimators estimate (see
        [`cross_entropy`][snrkit.nets.cross_entropy]).

        Args:
            params: The network's parameters.
            x: A batch of inputs.
            y: Integer labels of shape `(B,)`.

        Returns:
            A scalar.

        Examples:
            Zero inputs give zero logits (the biases start at zero), so the loss is
            $\log 3$ for 3 classes:

            >>> import jax, jax.numpy as jnp
            >>> from snrkit.nets import mlp
            >>> net = mlp((4, 3))
            >>> params = net.init(jax.random.key(0))
            >>> round(float(net.loss(params, jnp.zeros((2, 4)), jnp.array([0, 1]))), 4)
            1.0986
        """
        return cross_entropy(self.apply(params, x), y)

    def accuracy(self, params: Params, x: Array, y: Array) -> Array:
        """Classification accuracy on the batch `(x, y)` (see [`accuracy`][snrkit.nets.accuracy]).

        Args:
            params: The network's parameters.
            x: A batch of inputs.
            y: Integer labels of shape `(B,)`.

        Returns:
            A float32 scalar in $[0, 1]$.

        Examples:
            Zero logits tie, and ties go to class 0:

            >>> import jax, jax.numpy as jnp
            >>> from snrkit.nets import mlp
            >>> net = mlp((4, 3))
            >>> params = net.init(jax.random.key(0))
            >>> float(net.accuracy(params, jnp.zeros((2, 4)), jnp.array([0, 1])))
            0.5
        """
        return accuracy(self.apply(params, x), y)


def mlp_layers(params: Sequence[dict[str, Array]], x: Array) -> list[tuple[Array, Array, Array]]:
    r"""Each dense layer of the MLP on the batch `x`: its inputs $h_{l-1}$, pre-activations $z_l$ and weights $W_l$.

    With $h_0 = x$ (flattened), $z_l = h_{l-1} W_l + b_l$ and $h_l = \max(0, z_l)$ for
    hidden layers, as in [`mlp_apply`][snrkit.nets.mlp_apply].

    Args:
        params: As returned by [`mlp_init`][snrkit.nets.mlp_init].
        x: Inputs of shape `(B, in)` or `(B, H, W)`.

    Returns:
        One `(inputs, preactivations, weights)` triple per layer, of shapes `(B, in_l)`,
        `(B, out_l)` and `(in_l, out_l)`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.nets import mlp_init, mlp_layers
        >>> params = mlp_init(jax.random.key(0), (4, 8, 3))
        >>> [
        ...     tuple(a.shape for a in layer)
        ...     for layer in mlp_layers(params, jnp.ones((5, 4)))
        ... ]
        [((5, 4), (5, 8), (4, 8)), ((5, 8), (5, 3), (8, 3))]
    """
    h = jnp.asarray(x).reshape(jnp.shape(x)[0], -1).astype(params[0]["w"].dtype)
    out = []
    for index, layer in enumerate(params):
        z = h @ layer["w"] + layer["b"]
        out.append((h, z, layer["w"]))
        if index < len(params) - 1:
            h = jax.nn.relu(z)
    return out


@functools.lru_cache(maxsize=None)
def _mlp(widths: tuple[int, ...], dtype) -> Network:
    return Network(
        name="mlp-" + "-".join(map(str, widths)),
        init=functools.partial(mlp_init, widths=widths, dtype=dtype),
        apply=mlp_apply,
        layers=mlp_layers,
    )


def mlp(widths: Sequence[int], *, dtype: DTypeLike = jnp.float32) -> Network:
    """An MLP [`Network`][snrkit.nets.Network] with the given layer widths (input and output included).

    Initialised by [`mlp_init`][snrkit.nets.mlp_init] and applied by
    [`mlp_apply`][snrkit.nets.mlp_apply]. The same configuration returns the same object.

    Args:
        widths: E.g. `(64, 32, 10)` for 8x8 digits with one hidden layer of 32.
        dtype: Parameter dtype.

    Returns:
        A `Network` named like `"mlp-64-32-10"`.

    Raises:
        ValueError: If `widths` has fewer than two entries or a non-positive entry.

    Examples:
        >>> import jax
        >>> from snrkit.nets import mlp, num_params
        >>> net = mlp((64, 32, 10))
        >>> net.name, num_params(net.init(jax.random.key(0)))
        ('mlp-64-32-10', 2410)
    """
    return _mlp(check_widths(widths), jnp.dtype(dtype))


@functools.lru_cache(maxsize=None)
def _cnn(
    image_shape: tuple[int, int], num_classes: int, channels: tuple[int, ...], dtype
) -> Network:
    sizes = "-".join(map(str, (*channels, num_classes)))
    return Network(
        name=f"cnn-{image_shape[0]}x{image_shape[1]}-{sizes}",
        init=functools.partial(
            cnn_init,
            image_shape=image_shape,
            num_classes=num_classes,
            channels=channels,
            dtype=dtype,
        ),
        apply=cnn_apply,
    )


def cnn(
    image_shape: Sequence[int] = (8, 8),
    num_classes: int = 10,
    channels: Sequence[int] = (8, 16),
    *,
    dtype: DTypeLike = jnp.float32,
) -> Network:
    """A CNN [`Network`][snrkit.nets.Network]; arguments as for [`cnn_init`][snrkit.nets.cnn_init].

    Initialised by [`cnn_init`][snrkit.nets.cnn_init] and applied by
    [`cnn_apply`][snrkit.nets.cnn_apply]. The same configuration returns the same object.

    Args:
        image_shape: `(H, W)` of the single-channel input images.
        num_classes: Width of the output logits.
        channels: Output channels of each 3x3 convolution.
        dtype: Parameter dtype.

    Returns:
        A `Network` named like `"cnn-8x8-8-16-10"`.

    Raises:
        ValueError: For an image smaller than 2x2, or non-positive channels or classes.

    Examples:
        >>> from snrkit.nets import cnn
        >>> cnn().name, cnn((28, 28), channels=(4,)).name
        ('cnn-8x8-8-16-10', 'cnn-28x28-4-10')
    """
    return _cnn(*_check_cnn_args(image_shape, num_classes, channels), jnp.dtype(dtype))


def num_params(params: Params) -> int:
    r"""Total number of scalar entries in a parameter pytree, $n = \sum_\text{leaves} \text{size}$.

    Args:
        params: Any pytree of arrays.

    Returns:
        The number $n$ of coordinates of the flattened parameters.

    Examples:
        >>> import numpy as np
        >>> from snrkit.nets import num_params
        >>> num_params({"w": np.zeros((3, 2)), "b": np.zeros(2)})
        8
    """
    return int(sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)))


def mlp_num_params(widths: Sequence[int]) -> int:
    r"""Parameter count of an MLP with these widths, without building it.

    $$
    P = \sum_{l} (w_l + 1)\, w_{l+1}
    $$

    Args:
        widths: Layer widths $w_0, \dots, w_L$, input and output included.

    Returns:
        The count $P$ (weights and biases).

    Raises:
        ValueError: If `widths` has fewer than two entries or a non-positive entry.

    Examples:
        >>> from snrkit.nets import mlp_num_params
        >>> mlp_num_params((64, 32, 10))  # 65 * 32 + 33 * 10
        2410
    """
    widths = check_widths(widths)
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))


def mlp_widths_for_params(
    input_dim: int, num_classes: int, target_params: int, depth: int = 2
) -> tuple[int, ...]:
    r"""MLP widths whose parameter count is closest to a target.

    All `depth` hidden layers share one width $h$, so the count is

    $$
    P(h) = (d_\text{in}+1)h + (\text{depth}-1)(h+1)h + (h+1)C,
    $$

    increasing in $h$. The real root of $P(h) = \text{target}$ is found in closed form
    and the better of its floor and ceiling (at least 1) is returned, so
    $|P(h) - \text{target}|$ is at most half the step $P(h+1) - P(h)$ whenever
    $\text{target} \ge P(1)$.

    Args:
        input_dim: Input features $d_\text{in}$ (64 for digits, 784 for MNIST).
        num_classes: Output width $C$.
        target_params: Desired parameter count.
        depth: Number of hidden layers, >= 1.

    Returns:
        `(input_dim, h, ..., h, num_classes)` with `depth` copies of `h`.

    Raises:
        ValueError: For non-positive arguments.

    Examples:
        >>> from snrkit.nets import mlp_num_params, mlp_widths_for_params
        >>> widths = mlp_widths_for_params(64, 10, 6000)
        >>> widths, mlp_num_params(widths)
        ((64, 48, 48, 10), 5962)
    """
    for name, value in (
        ("input_dim", input_dim),
        ("num_classes", num_classes),
        ("target_params", target_params),
        ("depth", depth),
    ):
        if not is_positive_int(value):
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    d, c, t, k = int(input_dim), int(num_classes), int(target_params), int(depth)
    # P(h) = a h^2 + b h + c with:
    a = k - 1
    b = d + 1 + (k - 1) + c
    if a == 0:
        root = (t - c) / b
    else:
        root = (-b + math.sqrt(b * b + 4 * a * (t - c))) / (2 * a) if t > c else 0.0
    base = max(1, math.floor(root))

    def count(h: int) -> int:
        return mlp_num_params((d, *([h] * k), c))

    # Check a neighbourhood rather than trusting float rounding of the root at the boundary.
    best = min(range(max(1, base - 1), base + 3), key=lambda h: (abs(count(h) - t), h))
    return (d, *([best] * k), c)
