"""snrkit.nets: the networks compute what a naive float64 NumPy reference computes.

Float tolerances come from the standard inner-product rounding bound (Higham, *Accuracy
and Stability of Numerical Algorithms*, 2nd ed., §3.1): a float32 dot product of n terms is
off by at most ``n * u * sum(|terms|)`` to first order, with ``u = eps/2``; ``eps`` is used
below, a factor-2 margin. Propagated through the layers, the logits are off by
at most ``(sum of fan-ins + a few) * eps * A``, where ``A`` is the same network evaluated on
absolute values (|x|, |W|, |b|, no ReLU), which bounds every ``sum(|terms|)`` on the way.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from snrkit import data as sd
from snrkit import nets

EPS32 = float(np.finfo(np.float32).eps)
ALPHA = 1e-6  # false-failure budget of a statistical test function (tests/conftest.py)


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="threefry2x32")


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# ---------------------------------------------------------------- NumPy references


def mlp_reference(params, x, *, absolute=False):
    """float64 MLP; with absolute=True, the |.|-network bounding every sum of |terms|."""
    f = np.abs if absolute else (lambda a: a)
    h = f(np.asarray(x, np.float64).reshape(len(x), -1))
    for i, layer in enumerate(_np(params)):
        h = h @ f(layer["w"]) + f(layer["b"])
        if i < len(params) - 1 and not absolute:
            h = np.maximum(h, 0.0)
    return h


def conv_same_reference(x, w):
    """Naive 3x3 SAME cross-correlation, NHWC x HWIO (what conv_general_dilated computes)."""
    b, h, wd, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((b, h, wd, w.shape[-1]))
    for di in range(3):
        for dj in range(3):
            out += np.einsum("bhwc,co->bhwo", padded[:, di : di + h, dj : dj + wd, :], w[di, dj])
    return out


def cnn_reference(params, x, *, absolute=False):
    f = np.abs if absolute else (lambda a: a)
    p = _np(params)
    h = f(np.asarray(x, np.float64))[..., None]
    for layer in p["convs"]:
        h = conv_same_reference(h, f(layer["w"])) + f(layer["b"])
        if not absolute:
            h = np.maximum(h, 0.0)
    b, hh, ww, c = h.shape
    h = h[:, : hh // 2 * 2, : ww // 2 * 2, :]
    h = h.reshape(b, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
    return h.reshape(b, -1) @ f(p["dense"]["w"]) + f(p["dense"]["b"])


# ---------------------------------------------------------------- MLP


def test_mlp_init_shapes_dtypes_and_determinism():
    params = nets.mlp_init(_key(0), (64, 32, 16, 10))
    assert [(l["w"].shape, l["b"].shape) for l in params] == [
        ((64, 32), (32,)),
        ((32, 16), (16,)),
        ((16, 10), (10,)),
    ]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert all(not np.asarray(l["b"]).any() for l in params)  # biases start at zero
    again = nets.mlp_init(_key(0), [64, 32, 16, 10])
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    bf16 = nets.mlp_init(_key(0), (8, 4, 2), dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(bf16))
    for bad in [(64,), (64, 0, 10), (64, -3, 10), (64, 2.5, 10)]:
        with pytest.raises(ValueError, match="widths"):
            nets.mlp_init(_key(0), bad)


def test_init_variances_are_he_for_relu_layers_and_lecun_for_the_output():
    """E[w^2] is 2/fan_in (He) feeding a ReLU and 1/fan_in (LeCun) for the output layer.

    With m weights, the mean of w^2 estimates sigma^2 with standard error sigma^2*sqrt(2/m)
    (Gaussian fourth moment 3 sigma^4). A two-sided z-test at ALPHA must also reject the
    other initialiser (a factor 2 either way, relative error 1/2), and the power formula
    of the testing rules (docs/contributing.md) says how many weights that takes; it is asserted, not assumed.
    """
    fan_in, hidden, out = 256, 512, 384
    params = nets.mlp_init(_key(1), (fan_in, hidden, out))
    # Four two-sided checks (variance and mean of two layers) share ALPHA (Bonferroni).
    z_alpha, z_beta = norm.isf(ALPHA / 4 / 2), norm.isf(ALPHA)
    for layer, gain in zip(params, (2.0, 1.0)):
        w = np.asarray(layer["w"], np.float64).ravel()
        target = gain / layer["w"].shape[0]
        assert w.size >= (z_alpha + z_beta) ** 2 * 2 / 0.5**2  # power against a factor 2
        z = (np.mean(w**2) - target) / (target * math.sqrt(2 / w.size))
        assert abs(z) < z_alpha, (gain, z)
        assert abs(np.mean(w)) < z_alpha * math.sqrt(target / w.size)


def test_mlp_apply_matches_float64_reference_on_digits():
    ds = sd.load_digits().take(256)
    widths = (64, 48, 32, 10)
    params = nets.mlp_init(_key(2), widths)
    logits = np.asarray(nets.mlp_apply(params, ds.images))
    assert logits.shape == (256, 10) and logits.dtype == np.float32
    ref = mlp_reference(params, ds.images)
    # Every value is rounded once more than counted by sum(fan-in): +len(widths) margin.
    scale = mlp_reference(params, ds.images, absolute=True)
    bound = (sum(widths[:-1]) + len(widths)) * EPS32 * scale
    assert np.all(np.abs(logits - ref) <= bound)
    assert np.ptp(logits, axis=0).min() > 10 * bound.max()
    # Images are flattened row-major inside: (B, H, W) and (B, H*W) give identical logits.
    np.testing.assert_array_equal(logits, np.asarray(nets.mlp_apply(params, ds.flat())))


def test_mlp_apply_rejects_wrong_inputs():
    params = nets.mlp_init(_key(0), (64, 8, 10))
    with pytest.raises(ValueError, match="expects 64"):
        nets.mlp_apply(params, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="leading batch axis"):
        nets.mlp_apply(params, np.zeros(64, np.float32))


# ---------------------------------------------------------------- CNN


@pytest.mark.parametrize("image_shape", [(8, 8), (28, 28), (7, 9)])
def test_cnn_shapes(image_shape):
    params = nets.cnn_init(_key(3), image_shape, num_classes=10, channels=(8, 16))
    h, w = image_shape
    assert jax.tree.map(jnp.shape, params) == {
        "convs": [{"w": (3, 3, 1, 8), "b": (8,)}, {"w": (3, 3, 8, 16), "b": (16,)}],
        "dense": {"w": ((h // 2) * (w // 2) * 16, 10), "b": (10,)},
    }
    x = np.random.default_rng(4).uniform(size=(3, h, w)).astype(np.float32)
    logits = np.asarray(nets.cnn_apply(params, x))
    assert logits.shape == (3, 10) and np.all(np.isfinite(logits))
    if image_shape == (8, 8):
        # A trailing channel axis of 1 is accepted and changes nothing.
        np.testing.assert_array_equal(logits, nets.cnn_apply(params, x[..., None]))


def test_cnn_apply_matches_naive_reference():
    ds = sd.load_digits().take(16)
    channels = (4, 6)
    params = nets.cnn_init(_key(5), (8, 8), 10, channels)
    logits = np.asarray(nets.cnn_apply(params, ds.images))
    ref = cnn_reference(params, ds.images)
    fan_ins = [9 * 1, 9 * channels[0], 4, 4 * 4 * channels[1]]  # conv, conv, pool, dense
    bound = (sum(fan_ins) + 4) * EPS32 * cnn_reference(params, ds.images, absolute=True)
    assert np.all(np.abs(logits - ref) <= bound)
    # Not a vacuous comparison: the bound is far below the spread of logits over examples.
    assert np.ptp(logits, axis=0).min() > 10 * bound.max()


def test_cnn_rejects_wrong_inputs():
    params = nets.cnn_init(_key(0), (8, 8))
    with pytest.raises(ValueError, match="cannot guess H and W"):
        nets.cnn_apply(params, np.zeros((2, 64), np.float32))
    with pytest.raises(ValueError, match=r"image_shape=\(28, 28\)"):
        nets.cnn_apply(params, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="image_shape"):
        nets.cnn_init(_key(0), (1, 8))
    with pytest.raises(ValueError, match="channels"):
        nets.cnn_init(_key(0), (8, 8), channels=(8, 0))


# ---------------------------------------------------------------- losses


def test_cross_entropy_and_accuracy_match_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, size=50)
    lse = np.log(np.exp(logits.astype(np.float64)).sum(axis=1))
    ref = np.mean(lse - logits[np.arange(50), labels])
    # log_softmax: a 7-term sum plus a handful of roundings, relative to |terms| ~ |logits|.
    tol = 16 * EPS32 * (np.abs(logits).max() + lse.max())
    assert abs(float(nets.cross_entropy(logits, labels)) - ref) <= tol
    # k/50 rounded once to float32.
    assert float(nets.accuracy(logits, labels)) == pytest.approx(
        np.mean(logits.argmax(1) == labels), rel=EPS32
    )

    # Uniform logits give log C exactly (up to one rounding of log).
    assert float(nets.cross_entropy(np.zeros((4, 10), np.float32), np.arange(4))) == pytest.approx(
        math.log(10), rel=4 * EPS32
    )
    # Huge logits: log_softmax subtracts the max first, so nothing overflows.
    big = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]], np.float32)
    assert float(nets.cross_entropy(big, np.array([0, 0]))) == pytest.approx(5e3)


def test_initial_loss_is_near_log_num_classes_on_digits():
    """LeCun-normal output layers keep initial logits O(1), so the loss starts near log 10."""
    ds = sd.load_digits()
    for net in (nets.mlp((64, 64, 64, 10)), nets.cnn((8, 8))):
        loss = float(net.loss(net.init(_key(6)), ds.images, ds.labels))
        assert abs(loss - math.log(10)) < 0.5, (net.name, loss)


# ---------------------------------------------------------------- Network and counting


def test_network_factories():
    net = nets.mlp([64, 32, 10])
    assert net is nets.mlp((64, 32, 10))  # cached: compiled code is reused across calls
    assert net.name == "mlp-64-32-10"
    assert nets.cnn((28, 28)).name == "cnn-28x28-8-16-10"
    assert nets.cnn() is nets.cnn((8, 8), 10, (8, 16))
    assert hash(net) == hash(nets.mlp((64, 32, 10)))

    ds = sd.load_digits().take(32)
    params = net.init(_key(7))
    expected = nets.cross_entropy(net.apply(params, ds.images), ds.labels)
    assert float(net.loss(params, ds.images, ds.labels)) == float(expected)
    assert 0.0 <= float(net.accuracy(params, ds.images, ds.labels)) <= 1.0

    # A Network is a valid static argument of jit.
    f = jax.jit(lambda n, p, x, y: n.loss(p, x, y), static_argnums=0)
    assert float(f(net, params, ds.images, ds.labels)) == pytest.approx(float(expected), rel=1e-6)


def test_num_params():
    widths = (64, 32, 16, 10)
    expected = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert nets.num_params(nets.mlp_init(_key(0), widths)) == expected
    assert nets.mlp_num_params(widths) == expected
    cnn_expected = (9 * 8 + 8) + (9 * 8 * 16 + 16) + (14 * 14 * 16 * 10 + 10)
    assert nets.num_params(nets.cnn((28, 28)).init(_key(0))) == cnn_expected
    assert nets.num_params({}) == 0


# ---------------------------------------------------------------- mlp_widths_for_params


@given(
    input_dim=st.sampled_from([3, 64, 784]),
    num_classes=st.sampled_from([2, 10]),
    depth=st.integers(1, 4),
    target=st.integers(1, 5_000_000),
)
def test_widths_for_params_is_the_closest_count(input_dim, num_classes, depth, target):
    """The chosen width beats its neighbours, hence every width.

    P(h) is a polynomial in h with non-negative coefficients, so |P(h) - target| decreases
    then increases in h: a width at least as close as h-1 and h+1 is the best of all.
    """
    widths = nets.mlp_widths_for_params(input_dim, num_classes, target, depth)
    h = widths[1]
    assert widths == (input_dim, *([h] * depth), num_classes)

    def miss(width: int) -> int:
        return abs(nets.mlp_num_params((input_dim, *([width] * depth), num_classes)) - target)

    assert miss(h) <= miss(h + 1)
    assert h == 1 or miss(h) <= miss(h - 1)


@pytest.mark.parametrize(
    ("input_dim", "smallest_target"),
    [(64, 1_000), (784, 10_000)],  # depth-2 MNIST MLPs start at 807 parameters
)
def test_widths_for_params_hits_the_sweep_range_within_5_percent(input_dim, smallest_target):
    """Over the sweep range, one width step is small next to the count, so we land close."""
    for target in np.geomspace(smallest_target, 5e6, 25).round().astype(int):
        widths = nets.mlp_widths_for_params(input_dim, 10, int(target))
        assert abs(nets.mlp_num_params(widths) / target - 1) <= 0.05, (target, widths)


def test_widths_for_params_validation():
    assert nets.mlp_widths_for_params(64, 10, 10) == (64, 1, 1, 10)  # below the smallest net
    assert nets.mlp_widths_for_params(64, 10, 685, depth=1) == (64, 9, 10)  # 65*9 + 10*10
    for bad in [dict(input_dim=0), dict(target_params=-5), dict(depth=0), dict(num_classes=1.5)]:
        args = dict(input_dim=64, num_classes=10, target_params=1000, depth=2) | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            nets.mlp_widths_for_params(**args)
