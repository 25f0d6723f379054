"""snrkit.gradients: the true gradient is the mean of the per-example gradients, however
it is chunked, and short training really trains.

Float tolerance for comparing two float32 computations of the same mean of N per-example
gradients ``g_n`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
§4.2): summing N terms in any order is off by at most ``(N-1) * u * sum_n |g_n| / N`` per
coordinate, to first order, with unit roundoff ``u = eps/2``. Using ``eps`` for ``u`` leaves
a factor-2 margin for the per-example rounding, and two orders differ by at most
``TOL_FACTOR * N * eps * mean_n |g_n|`` with ``TOL_FACTOR = 2``. The order XLA sums in is
unspecified (blocked matmuls, chunks), which is why the worst-case bound is used rather
than the pairwise-summation one. It is still tight enough to notice a single missing
example (asserted in the test), so it is not a blanket ``atol``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snrkit import data as sd
from snrkit import gradients as sg
from snrkit import nets

EPS32 = float(np.finfo(np.float32).eps)
TOL_FACTOR = 2.0
MNIST_DIR = Path(sd.__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="threefry2x32")


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]


def assert_same_mean(a, b, per_example, *, n: int) -> None:
    """a and b agree within the summation bound built from the per-example gradients."""
    for x, y, g in zip(leaves(a), leaves(b), leaves(per_example), strict=True):
        bound = TOL_FACTOR * n * EPS32 * np.abs(g).mean(axis=0)
        assert np.all(np.abs(x - y) <= bound), np.max(np.abs(x - y) - bound)


@pytest.fixture(scope="module")
def digits() -> sd.Dataset:
    return sd.load_digits()


@pytest.fixture(scope="module")
def mlp_setup(digits):
    net = nets.mlp((64, 32, 10))
    params = net.init(_key(0))
    per_example = sg.per_example_gradients(net, params, digits.images, digits.labels)
    return net, params, per_example


def test_gradient_pytrees_are_shaped_like_params(digits, mlp_setup):
    net, params, per_example = mlp_setup
    grad = sg.full_batch_gradient(net, params, digits)
    assert jax.tree.structure(grad) == jax.tree.structure(params)
    for g, p, e in zip(jax.tree.leaves(grad), jax.tree.leaves(params), jax.tree.leaves(per_example)):
        assert g.shape == p.shape and g.dtype == p.dtype
        assert e.shape == (digits.num_examples, *p.shape)
    mini = sg.minibatch_gradient(_key(1), net, params, digits, 32)
    assert jax.tree.map(jnp.shape, mini) == jax.tree.map(jnp.shape, params)


def test_full_batch_gradient_is_the_mean_of_per_example_gradients(digits, mlp_setup):
    net, params, per_example = mlp_setup
    n = digits.num_examples
    full = sg.full_batch_gradient(net, params, digits)
    mean = [g.mean(axis=0) for g in leaves(per_example)]
    assert_same_mean(leaves(full), mean, per_example, n=n)

    # Power: the mean over all but the last example breaks the bound somewhere, so the
    # tolerance would catch a chunking bug that drops or double-counts one example.
    short = [g[:-1].mean(axis=0) for g in leaves(per_example)]
    with pytest.raises(AssertionError):
        assert_same_mean(short, leaves(full), per_example, n=n)


# One example per chunk (1797 chunks, the most accumulation steps), or one chunk larger
# than N. Both reuse programs compiled elsewhere in this file; the default split of
# 1024 + 773 (a remainder chunk) is checked against per-example gradients above.
@pytest.mark.parametrize("chunk_size", [1, 5000])
def test_chunking_does_not_change_the_gradient(digits, mlp_setup, chunk_size):
    net, params, per_example = mlp_setup
    whole = sg.full_batch_gradient(net, params, digits, chunk_size=None)
    chunked = sg.full_batch_gradient(net, params, digits, chunk_size=chunk_size)
    assert_same_mean(chunked, whole, per_example, n=digits.num_examples)


def test_per_example_gradient_is_the_gradient_of_that_example(digits, mlp_setup):
    net, params, per_example = mlp_setup
    for i in (0, 1, 1796):
        one = (digits.images[i : i + 1], digits.labels[i : i + 1])
        alone = sg.full_batch_gradient(net, params, one)
        for a, b in zip(leaves(alone), leaves(per_example)):
            # The same arithmetic, batched by vmap: a few roundings of |entries| at most.
            np.testing.assert_allclose(b[i], a, rtol=0, atol=16 * EPS32 * np.abs(a).max())


def test_minibatch_gradient(digits, mlp_setup):
    net, params, per_example = mlp_setup
    n = digits.num_examples
    # A batch of all N examples is a reordering of the full batch.
    everything = sg.minibatch_gradient(_key(2), net, params, digits, n)
    full = sg.full_batch_gradient(net, params, digits, chunk_size=None)
    assert_same_mean(everything, full, per_example, n=n)

    a = leaves(sg.minibatch_gradient(_key(3), net, params, digits, 32))
    b = leaves(sg.minibatch_gradient(_key(3), net, params, digits, 32))
    c = leaves(sg.minibatch_gradient(_key(4), net, params, digits, 32))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # a function of the key
    assert not all(np.array_equal(x, z) for x, z in zip(a, c))
    for bad, error in ((0, ValueError), (n + 1, ValueError), (2.5, TypeError)):
        with pytest.raises(error, match="batch_size"):
            sg.minibatch_gradient(_key(3), net, params, digits, bad)


def test_data_and_loss_forms(digits, mlp_setup):
    net, params, _ = mlp_setup
    as_dataset = leaves(sg.full_batch_gradient(net, params, digits, chunk_size=None))
    as_pair = leaves(
        sg.full_batch_gradient(net.loss, params, (digits.images, digits.labels), chunk_size=None)
    )
    for x, y in zip(as_dataset, as_pair):
        np.testing.assert_array_equal(x, y)

    # Any mean-loss function works, e.g. squared error on one-hot targets.
    def mse(p, x, y):
        return jnp.mean((net.apply(p, x) - jax.nn.one_hot(y, 10)) ** 2)

    grad = sg.full_batch_gradient(mse, params, digits, chunk_size=None)
    assert all(np.all(np.isfinite(g)) for g in leaves(grad))

    with pytest.raises(TypeError, match="Dataset or a pair"):
        sg.full_batch_gradient(net, params, digits.images)
    with pytest.raises(ValueError, match="same, non-zero number"):
        sg.full_batch_gradient(net, params, (digits.images, digits.labels[:-1]))
    with pytest.raises(ValueError, match="chunk_size"):
        sg.full_batch_gradient(net, params, digits, chunk_size=0)
    with pytest.raises(TypeError, match="Network or a function"):
        sg.full_batch_gradient("mlp", params, digits)


# ---------------------------------------------------------------- training


def test_training_reduces_the_loss_on_digits(digits):
    """200 Adam steps fit the digits: a large drop in loss, accuracy far above chance.

    Measured on the training data itself: this checks that the optimiser wiring trains,
    not that the model generalises. Observed: loss 2.43 -> 0.075, accuracy 0.03 -> 0.98.
    """
    net = nets.mlp((64, 32, 10))
    checkpoints = sg.train(
        _key(5), net, digits, steps=200, batch_size=64, learning_rate=1e-2, checkpoints=(0, 50, 200)
    )
    assert [c.step for c in checkpoints] == [0, 50, 200]
    first, middle, last = checkpoints
    assert last.loss < 0.25 * first.loss
    assert middle.loss < first.loss
    assert last.accuracy > 0.8  # chance is 0.1
    # The reported metrics are the full-data loss and accuracy at those parameters.
    logits = net.apply(last.params, digits.images)
    assert last.loss == pytest.approx(float(nets.cross_entropy(logits, digits.labels)), rel=1e-5)
    assert last.accuracy == pytest.approx(float(nets.accuracy(logits, digits.labels)))


def test_training_is_a_function_of_the_key(digits):
    # Same network, data and batch size as the test above, so compilations are reused.
    net = nets.mlp((64, 32, 10))
    run = sg.train(
        _key(6), net, digits, steps=30, batch_size=64, learning_rate=1e-2, checkpoints=[30, 0, 10, 10]
    )
    assert [c.step for c in run] == [0, 10, 30]  # sorted, duplicates dropped
    # Step 0 is the initialisation from the first half of the key split.
    for a, b in zip(leaves(run[0].params), leaves(net.init(jax.random.split(_key(6))[0]))):
        np.testing.assert_array_equal(a, b)
    # The trajectory does not depend on where checkpoints are taken.
    alone = sg.train(
        _key(6), net, digits, steps=30, batch_size=64, learning_rate=1e-2, metrics=False
    )
    assert [c.step for c in alone] == [0, 30]
    assert np.isnan(alone[-1].loss) and np.isnan(alone[-1].accuracy)
    for a, b in zip(leaves(run[-1].params), leaves(alone[-1].params)):
        np.testing.assert_array_equal(a, b)
    # gradient_at returns the same parameters and their full-batch gradient.
    params, grad = sg.gradient_at(_key(6), net, digits, step=30, batch_size=64, learning_rate=1e-2)
    for a, b in zip(leaves(params), leaves(run[-1].params)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(grad), leaves(sg.full_batch_gradient(net, run[-1].params, digits))):
        np.testing.assert_array_equal(a, b)
    init_params, _ = sg.gradient_at(_key(6), net, digits)
    for a, b in zip(leaves(init_params), leaves(run[0].params)):
        np.testing.assert_array_equal(a, b)


def test_sgd_also_trains_and_bad_arguments_are_rejected(digits):
    net = nets.mlp((64, 32, 10))
    run = sg.train(
        _key(7), net, digits, steps=100, batch_size=64, learning_rate=0.3, optimizer="sgd"
    )
    assert run[-1].loss < 0.5 * run[0].loss

    common = dict(steps=10, batch_size=8, learning_rate=1e-2)
    for bad, match in [
        (dict(steps=-1), "steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(optimizer="lbfgs"), "optimizer"),
        (dict(checkpoints=(0, 11)), "checkpoints"),
        (dict(checkpoints=()), "checkpoints"),
    ]:
        with pytest.raises(ValueError, match=match):
            sg.train(_key(7), net, digits, **(common | bad))


# ---------------------------------------------------------------- CNN, and MNIST


def _assert_finite_and_alive(grad) -> None:
    """Every leaf finite, and every leaf carries some gradient (no dead layer)."""
    for g in leaves(grad):
        assert np.all(np.isfinite(g))
        assert np.linalg.norm(g) > 0


def test_cnn_gradient_on_digits(digits):
    net = nets.cnn((8, 8))
    small = digits.take(512)
    params = net.init(_key(8))
    grad = sg.full_batch_gradient(net, params, small, chunk_size=256)
    _assert_finite_and_alive(grad)
    assert jax.tree.structure(grad) == jax.tree.structure(params)


@pytest.fixture(scope="module")
def mnist_few() -> sd.Dataset:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test set not found at {MNIST_DIR}")
    return sd.load_mnist(MNIST_DIR).take(32)


def test_cnn_and_mlp_gradients_on_mnist(mnist_few):
    cnn = nets.cnn((28, 28))
    _assert_finite_and_alive(sg.full_batch_gradient(cnn, cnn.init(_key(9)), mnist_few))
    # The MLP flattens 28x28 images itself.
    mlp = nets.mlp(nets.mlp_widths_for_params(784, 10, 20_000))
    _assert_finite_and_alive(sg.full_batch_gradient(mlp, mlp.init(_key(10)), mnist_few))
