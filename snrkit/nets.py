"""Small real networks in plain JAX: an MLP and a CNN, with their losses.

Parameters are plain pytrees (lists and dicts of arrays), so every snrkit estimator, which
works on arbitrary pytrees, applies to them unchanged, and ``ravel_pytree`` gives the flat
order used for covariances.

Layouts:

* MLP: ``[{"w": (in, out), "b": (out,)}, ...]``, one dict per layer.
* CNN: ``{"convs": [{"w": (3, 3, in, out), "b": (out,)}, ...], "dense": {"w", "b"}}``;
  images are NHWC, kernels HWIO.
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

__all__ = [
    "Network",
    "accuracy",
    "cnn",
    "cnn_apply",
    "cnn_init",
    "cross_entropy",
    "mlp",
    "mlp_apply",
    "mlp_init",
    "mlp_num_params",
    "mlp_widths_for_params",
    "num_params",
]

Params = Any  # a pytree of arrays
Array = jax.Array


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
    """One ``{"w", "b"}`` dict per shape: ``w ~ N(0, variance)`` (untruncated), ``b = 0``.

    Plain rather than truncated normals, so the variance is exactly the one the scaling
    argument asks for, with no truncation correction to get wrong. The normals are drawn
    in float32 and then cast, so a float64 network starts from float32-rounded values.
    """
    total = sum(math.prod(shape) for shape in shapes)
    count = -(-total // _NORMAL_BLOCK)
    blocks = tuple(_normal_block(jax.random.fold_in(key, i)) for i in range(count))
    return _dense_layers(blocks, tuple(map(tuple, shapes)), tuple(variances), jnp.dtype(dtype))


def _check_widths(widths: Sequence[int], name: str = "widths") -> tuple[int, ...]:
    widths = tuple(widths)
    if len(widths) < 2 or any(_bad_positive_int(w) for w in widths):
        raise ValueError(
            f"{name} must list at least two positive integers (input width, ..., number of "
            f"classes), e.g. (64, 32, 10); got {widths!r}."
        )
    return tuple(int(w) for w in widths)


def mlp_init(key: Array, widths: Sequence[int], *, dtype=jnp.float32) -> list[dict[str, Array]]:
    """Initialise a fully connected ReLU network.

    Hidden layers use He-normal weights, :math:`W \\sim \\mathcal N(0, 2/\\text{fan\\_in})`
    (He et al., 2015): ReLU zeroes half of its input on average, and the factor 2 makes up
    for it so activations keep their scale with depth instead of shrinking geometrically.
    The output layer feeds no ReLU, so it uses LeCun-normal, :math:`\\mathcal N(0,
    1/\\text{fan\\_in})`, which keeps the initial logits O(1) and the initial loss near
    :math:`\\log(\\text{classes})`. Biases start at zero.

    Args:
        key: A ``jax.random.key``.
        widths: Layer widths including input and output, e.g. ``(64, 32, 10)``.
        dtype: Parameter dtype.

    Returns:
        One ``{"w": (in, out), "b": (out,)}`` dict per layer.

    Raises:
        ValueError: If ``widths`` has fewer than two entries or a non-positive entry.
    """
    widths = _check_widths(widths)
    shapes = list(zip(widths[:-1], widths[1:]))
    # He (2/fan_in) for every layer but the last, which is LeCun (1/fan_in).
    gains = [2.0] * (len(shapes) - 1) + [1.0]
    return _init_layers(key, shapes, [g / fan_in for g, (fan_in, _) in zip(gains, shapes)], dtype)


@jax.jit
def mlp_apply(params: Sequence[dict[str, Array]], x: Array) -> Array:
    """Logits of the MLP: ReLU hidden layers, linear output.

    Args:
        params: As returned by :func:`mlp_init`.
        x: Inputs of shape ``(B, in)``, or ``(B, H, W)`` images that are flattened
            row-major (``H * W`` must equal ``in``).

    Returns:
        Logits of shape ``(B, num_classes)``.
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
    dtype=jnp.float32,
) -> dict[str, Any]:
    """Initialise a small CNN: 3x3 convs with ReLU, one 2x2 average pool, a dense layer.

    Convolutions use He-normal weights (fan-in ``3 * 3 * in_channels``) because each feeds
    a ReLU; the dense output layer uses LeCun-normal so the initial logits are O(1).
    Biases start at zero. See :func:`mlp_init` for why.

    Args:
        key: A ``jax.random.key``.
        image_shape: ``(H, W)`` of the single-channel input images, e.g. ``(8, 8)`` for
            digits or ``(28, 28)`` for MNIST.
        num_classes: Width of the output logits.
        channels: Output channels of each 3x3 convolution (two by default).
        dtype: Parameter dtype.

    Returns:
        ``{"convs": [{"w": (3, 3, in, out), "b": (out,)}, ...], "dense": {"w", "b"}}``.

    Raises:
        ValueError: For an image smaller than 2x2, or non-positive channels or classes.
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
    if not channels or any(_bad_positive_int(c) for c in channels):
        raise ValueError(
            f"channels must list one positive integer per convolution, e.g. (8, 16); "
            f"got {channels!r}."
        )
    if _bad_positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
    return image_shape, int(num_classes), tuple(int(c) for c in channels)


def _bad_positive_int(value: Any) -> bool:
    return isinstance(value, bool) or int(value) != value or int(value) < 1


@jax.jit
def cnn_apply(params: dict[str, Any], x: Array) -> Array:
    """Logits of the CNN from :func:`cnn_init`.

    The pool is an *average* pool: it is linear, so its derivative is defined everywhere.
    A max pool is not differentiable at ties, which are common after ReLU (whole windows
    of zeros), so the "true gradient" there would rest on a tie-breaking convention.

    Args:
        params: As returned by :func:`cnn_init`.
        x: Images of shape ``(B, H, W)`` or ``(B, H, W, 1)``.

    Returns:
        Logits of shape ``(B, num_classes)``.
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
    """Mean softmax cross-entropy.

    .. math:: \\ell = -\\frac1B \\sum_b \\log \\operatorname{softmax}(z_b)_{y_b}

    ``log_softmax`` subtracts the max logit first, so large logits do not overflow.

    Args:
        logits: Shape ``(B, C)``.
        labels: Integer class indices of shape ``(B,)``.

    Returns:
        A scalar in the logits' dtype.
    """
    log_p = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_p, jnp.asarray(labels)[:, None].astype(jnp.int32), axis=-1)
    return -jnp.mean(picked)


@jax.jit
def accuracy(logits: Array, labels: Array) -> Array:
    """Fraction of examples whose largest logit is the true class (float32 scalar)."""
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


@dataclass(frozen=True)
class Network:
    """A network as three pure pieces: how to initialise, how to apply, what it is called.

    Frozen and hashable, so it can be a static argument of ``jax.jit``; the factories
    :func:`mlp` and :func:`cnn` return the same object for the same configuration, so
    compiled code is reused across calls.

    Attributes:
        name: Human-readable description, used in tables and plots.
        init: ``init(key) -> params``.
        apply: ``apply(params, x) -> logits`` for a batch ``x``.
    """

    name: str
    init: Callable[[Array], Params]
    apply: Callable[[Params, Array], Array]

    def loss(self, params: Params, x: Array, y: Array) -> Array:
        """Mean softmax cross-entropy of the batch ``(x, y)``."""
        return cross_entropy(self.apply(params, x), y)

    def accuracy(self, params: Params, x: Array, y: Array) -> Array:
        """Classification accuracy on the batch ``(x, y)``."""
        return accuracy(self.apply(params, x), y)


@functools.lru_cache(maxsize=None)
def _mlp(widths: tuple[int, ...], dtype) -> Network:
    return Network(
        name="mlp-" + "-".join(map(str, widths)),
        init=functools.partial(mlp_init, widths=widths, dtype=dtype),
        apply=mlp_apply,
    )


def mlp(widths: Sequence[int], *, dtype=jnp.float32) -> Network:
    """An MLP :class:`Network` with the given layer widths (input and output included).

    Args:
        widths: E.g. ``(64, 32, 10)`` for 8x8 digits with one hidden layer of 32.
        dtype: Parameter dtype.

    Returns:
        A ``Network`` named like ``"mlp-64-32-10"``.
    """
    return _mlp(_check_widths(widths), jnp.dtype(dtype))


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
    dtype=jnp.float32,
) -> Network:
    """A CNN :class:`Network`; arguments as for :func:`cnn_init`.

    Returns:
        A ``Network`` named like ``"cnn-8x8-8-16-10"``.
    """
    return _cnn(*_check_cnn_args(image_shape, num_classes, channels), jnp.dtype(dtype))


def num_params(params: Params) -> int:
    """Total number of scalar entries in a parameter pytree."""
    return int(sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)))


def mlp_num_params(widths: Sequence[int]) -> int:
    """Parameter count of an MLP with these widths, without building it.

    .. math:: P = \\sum_l (w_l + 1)\\, w_{l+1}
    """
    widths = _check_widths(widths)
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))


def mlp_widths_for_params(
    input_dim: int, num_classes: int, target_params: int, depth: int = 2
) -> tuple[int, ...]:
    """MLP widths whose parameter count is closest to a target.

    All ``depth`` hidden layers share one width ``h``, so the count is

    .. math:: P(h) = (d_\\text{in}+1)h + (\\text{depth}-1)(h+1)h + (h+1)C,

    increasing in ``h``. The real root of ``P(h) = \\text{target}`` is found in closed form
    and the better of its floor and ceiling (at least 1) is returned, so ``|P(h) - target|``
    is at most half the step ``P(h+1) - P(h)`` whenever ``target >= P(1)``.

    Args:
        input_dim: Input features (64 for digits, 784 for MNIST).
        num_classes: Output width.
        target_params: Desired parameter count.
        depth: Number of hidden layers, >= 1.

    Returns:
        ``(input_dim, h, ..., h, num_classes)`` with ``depth`` copies of ``h``.

    Raises:
        ValueError: For non-positive arguments.
    """
    for name, value in (
        ("input_dim", input_dim),
        ("num_classes", num_classes),
        ("target_params", target_params),
        ("depth", depth),
    ):
        if _bad_positive_int(value):
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
