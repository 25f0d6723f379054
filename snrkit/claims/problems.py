r"""The real problems claims are verified on by default: an MLP trained on digits (or MNIST).

- `"network"`: all parameters of an MLP 64-32-10 after 100 Adam steps on digits, as a
  [`Problem`][snrkit.core.problem.Problem] (the loss, parameters and data), so checks can run
  the real `jax.jvp` estimator on it. It carries the gradient of 10 steps earlier as its
  state `"stale_gradient"` (the prior a covariance probe can be built from).
- `"output-bias"`: the output-layer bias of that MLP (10 entries). Its gradient is
  concentrated (a few classes dominate), so a missing $2\nabla_i^2$ is a large relative
  error there and the comparison has power to see it. Its stale gradient is that layer's.
- `"homogeneous"`: 8 entries of magnitude 0.1 with the signs of the network gradient's
  first 8 entries: the setting Yao's eqs. (8)-(9) assume. A missing $2\sigma^2$ is a
  relative error of $2/(n+1)$, so $n$ is kept small for power.

The MLP is trained once per process and seed (several seconds on a CPU) and cached.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.problem import GradientProblem, Problem, ProblemBase
from snrkit.core.tree import PyTree, ravel_host

DEFAULT_WIDTHS = (64, 32, 10)
"""Layer widths of the MLP behind the default gradients: 64 inputs (8x8 digits; the data's
input width for MNIST), one hidden layer of 32, 10 classes."""
TRAIN_STEPS = 100
"""Adam steps the default MLP is trained for before its gradient is taken (see
[snrkit.gradients.gradient_at][])."""
DEFAULT_PROBLEMS = ("network", "output-bias", "homogeneous")
"""The names [`default_problem`][snrkit.claims.problems.default_problem] knows."""


STALE_STEP = 90
"""The training step of the stale gradient the default problems carry as state (`"stale_gradient"`):
a gradient from ten updates earlier, as a prior would be built from."""


@functools.lru_cache(maxsize=8)
def _digits_problem(seed: int, mnist_dir: str | None = None) -> tuple[Any, PyTree, PyTree, PyTree, tuple, dict[str, Any]]:
    """An MLP trained for 100 Adam steps on digits (or MNIST): parameters, gradient, stale gradient, data, setting."""
    from snrkit import data, gradients, nets

    dataset = data.load_mnist(mnist_dir) if mnist_dir else data.load_digits()
    network = nets.mlp((dataset.input_dim, *DEFAULT_WIDTHS[1:]))
    # As gradients.gradient_at, with a second checkpoint: the trajectory does not depend on
    # which checkpoints are kept, so the step-100 parameters are gradient_at's.
    stale, current = gradients.train(
        jax.random.key(seed), network, dataset, steps=TRAIN_STEPS, batch_size=min(128, dataset.num_examples),
        learning_rate=1e-3, checkpoints=(STALE_STEP, TRAIN_STEPS), metrics=False,
    )
    grad = gradients.full_batch_gradient(network, current.params, dataset)
    stale_grad = gradients.full_batch_gradient(network, stale.params, dataset)
    x, y = jnp.asarray(dataset.flat()), jnp.asarray(dataset.labels)
    setting = {"network": network.name, "data": dataset.name, "train_steps": TRAIN_STEPS}
    return network, current.params, grad, stale_grad, (x, y), setting


def default_problem(kind: str, seed: int = 0, mnist_dir: str | None = None) -> tuple[ProblemBase, dict[str, Any]]:
    """The real problem a claim is verified on by default, with its setting (see the module docs).

    Args:
        kind: one of [`DEFAULT_PROBLEMS`][snrkit.claims.problems.DEFAULT_PROBLEMS].
        seed: seed of the MLP's initialisation and training.
        mnist_dir: folder of the MNIST IDX files; when given, the MLP (784-32-10) is
            trained on MNIST instead of digits.

    Returns:
        `(problem, setting)`: a [`Problem`][snrkit.core.problem.Problem] for `"network"`
        (its gradient the full-batch gradient, computed in chunks), a gradient-only problem
        otherwise, and a dict describing it (network, data, training steps, layer).

    Raises:
        ValueError: for an unknown `kind`.

    Examples:
        >>> from snrkit.claims.problems import default_problem
        >>> problem, setting = default_problem("output-bias")  # doctest: +SKIP
        >>> problem.num_coordinates, setting["layer"]  # doctest: +SKIP
        (10, 'output-layer bias')
    """
    if kind not in DEFAULT_PROBLEMS:
        raise ValueError(f"unknown default gradient {kind!r}; choose one of {', '.join(map(repr, DEFAULT_PROBLEMS))}")
    network, params, grad, stale, (x, y), setting = _digits_problem(seed, mnist_dir)
    if kind == "network":
        problem = Problem(network.loss, params, x, y, network=network, gradient=grad, state={"stale_gradient": stale})
        return problem, {**setting, "layer": "all parameters"}
    if kind == "output-bias":
        return GradientProblem(grad[-1]["b"], state={"stale_gradient": stale[-1]["b"]}), {**setting, "layer": "output-layer bias"}
    signs = np.sign(ravel_host(grad)[:8])
    signs[signs == 0] = 1.0
    synthetic = jnp.asarray(0.1 * signs, jnp.float32)
    return GradientProblem(synthetic), {"data": "synthetic", "layer": "8 entries of magnitude 0.1"}


def default_gradient(kind: str, seed: int = 0, mnist_dir: str | None = None) -> tuple[PyTree, dict[str, Any]]:
    """The gradient of [`default_problem`][snrkit.claims.problems.default_problem], with its setting.

    Examples:
        >>> import numpy as np
        >>> from snrkit.claims import default_gradient
        >>> grad, setting = default_gradient("output-bias")  # doctest: +SKIP
        >>> np.asarray(grad).shape, setting["layer"]  # doctest: +SKIP
        ((10,), 'output-layer bias')
    """
    problem, setting = default_problem(kind, seed, mnist_dir)
    return problem.gradient(), setting
