r"""What an estimator costs per training step: time, memory, and SNR per unit of cost.

[`cost_table`][snrkit.cost.cost_table] times one jitted training step (the estimate, or
`jax.value_and_grad` for backprop, then the same optax update) of a model for each
method and batch size, and returns a tidy frame, one row per method and batch size
([`COST_COLUMNS`][snrkit.cost.COST_COLUMNS]). The methods
([`default_methods`][snrkit.cost.default_methods]):

- **backprop**: `jax.value_and_grad` of the loss, the baseline of every ratio;
- **the forward gradient**, $K = 1$, Gaussian and Rademacher probes
  (`ForwardGradient(...).value_and_estimate`, one JVP);
- **$K$ directions, vectorised**: `ForwardGradient(directions=K)`, whose $K$ JVPs share
  one primal computation;
- **$K$ directions, sequential**: $K$ separate one-direction JVP passes, each with its own
  primal, averaged ([`sequential_estimate`][snrkit.cost.sequential_estimate]): what not
  sharing the primal costs;
- **every registered family** at its registry `sweep` and `timed` settings
  ([`snrkit.families.FAMILIES`][snrkit.families.FAMILIES]).

**Time.** Each step is compiled first (compile time recorded apart, never in the
timings) and run once to warm up. Then the methods of one batch size are timed round-robin,
one call each per repeat (after one untimed round), each call waited for with
`block_until_ready`, so a slow spell of the machine hits every method alike. The ratio of a method to backprop is the median of
the per-repeat ratios $t_{m,r}/t_{\text{bp},r}$, with a distribution-free 95 % interval
from order statistics ([`median_interval`][snrkit.cost.median_interval]).

**Memory.** Two measures, of different things:

- *XLA's compiled memory analysis* of the step
  (`jax.jit(step).lower(...).compile().memory_analysis()`): the temporary buffers (the
  activations kept for the backward pass live here), the arguments (parameters, optimizer
  state, batch, key) and the outputs, in MiB. Exact for the compiled program, no spread;
  the total is temporary + argument + output − aliased bytes.
- *The process peak* (`ru_maxrss`). It is monotone in one process: the peak so far. By
  default (`isolate=False`) the table gives the increase of the peak while a configuration
  compiles and warms up, in increasing order of batch size: a configuration's excess over
  everything measured before it, so 0 says only "no higher than before". With
  `isolate=True` each configuration is compiled and run in a fresh Python process, whose
  whole peak is reported (the JAX runtime included, a few hundred MiB).

**SNR per unit of cost.** The exact law of each estimator at the gradient of the model on
the batch (at the parameters' initialisation): the aggregate SNR
[`Law.aggregate_snr`][snrkit.core.law.Law.aggregate_snr] of unbiased estimators and the
[`efficiency`][snrkit.core.law.Law.efficiency] of every estimator, each divided by the time
relative to backprop. Backprop's gradient is exact: no SNR, no efficiency (NaN).

Families that need more of the problem than the loss, parameters and data provide
(`Family.needs`, e.g. a `"state"` of values kept between steps) get it from `state=`; a
family whose needs the problem cannot meet gets a row with NaN measurements and the reason
in `note`. Without `state=`, every step carries the state a training loop would:
`"stale_gradient"`, the gradient at the same parameters on the next batch of the data
([`stale_state`][snrkit.cost.stale_state]), what a prior is built from.

Examples:
    >>> from snrkit import cost
    >>> [m.name for m in cost.default_methods(directions=(2,), families=False)]
    ... # doctest: +NORMALIZE_WHITESPACE
    ['backprop', 'ForwardGradient(gaussian, K=1)',
     'ForwardGradient(rademacher, K=1)', 'ForwardGradient(gaussian, K=2)',
     'ForwardGradient(gaussian, K=2) sequential']
"""

from __future__ import annotations

import json
import math
import pickle
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import scipy.stats

from snrkit import nets
from snrkit.core.estimator import Estimator, LossFn
from snrkit.core.io import check_output_file, write_atomic
from snrkit.core.problem import Problem
from snrkit.core.tree import PyTree
from snrkit.core.validation import MAX_SEED, check_callback, check_int
from snrkit.data import Dataset
from snrkit.families import FAMILIES
from snrkit.families.iid import ForwardGradient

BACKPROP = "backprop"
"""The name (and `kind`) of the backprop baseline in the cost frame."""
KINDS = (BACKPROP, "estimator", "sequential")
"""Values of the `kind` column: backprop, an estimator's own `value_and_estimate`, or $K$
one-direction passes run one after the other
([`sequential_estimate`][snrkit.cost.sequential_estimate])."""
OPTIMIZERS: Mapping[str, Callable[[float], optax.GradientTransformation]] = {
    "adam": optax.adam,
    "sgd": optax.sgd,
}
"""The optax optimizers a training step can use, by name."""
MIB = 2**20
"""Bytes in a MiB."""

COST_COLUMNS: tuple[str, ...] = (
    "model",
    "parameters",
    "batch size",
    "method",
    "kind",
    "family",
    "settings",
    "directions",
    "JVPs per step",
    "repeats",
    "compile time [s]",
    "time per step, median [ms]",
    "time per step, best [ms]",
    "time per step, lower quartile [ms]",
    "time per step, upper quartile [ms]",
    "time relative to backprop",
    "time relative to backprop, 95% low",
    "time relative to backprop, 95% high",
    "XLA temporary memory [MiB]",
    "XLA argument memory [MiB]",
    "XLA output memory [MiB]",
    "XLA total memory [MiB]",
    "peak RSS [MiB]",
    "peak RSS measured as",
    "aggregate SNR",
    "efficiency",
    "aggregate SNR per relative time",
    "efficiency per relative time",
    "note",
)
"""Columns of the [`cost_table`][snrkit.cost.cost_table] frame and CSV, in order.

- `model`, `parameters`, `batch size`: the network's name, its parameter count, the batch.
- `method`, `kind`, `family`, `settings`, `directions`: the method's unique name, one of
  [`KINDS`][snrkit.cost.KINDS], the estimator's family and hyperparameters (JSON; empty
  for backprop), $K$ of sequential rows (and 1 otherwise).
- `JVPs per step`: JVPs behind one estimate (`est.cost(problem).jvps`; 0 for backprop).
- `repeats`, `compile time [s]`: timed calls; lowering and compiling the step once.
- `time per step, ... [ms]`: median, best, quartiles of the timed calls.
- `time relative to backprop` (and `95% low`, `95% high`): median of the per-repeat
  ratios to backprop and its distribution-free 95 % interval.
- `XLA ... memory [MiB]`: the compiled step's temporary, argument and output buffers and
  their total (minus aliased bytes).
- `peak RSS [MiB]`, `peak RSS measured as`: `"fresh process"` (`isolate=True`: the peak of
  a process that ran only this configuration) or `"increase in this process"`.
- `aggregate SNR` (unbiased estimators), `efficiency` and each per relative time.
- `note`: why a row has no measurements, or what it is (backprop: exact gradient).
"""

_INT_COLUMNS = ("parameters", "batch size", "directions", "JVPs per step", "repeats")
_TEXT_COLUMNS = ("model", "method", "kind", "family", "settings", "peak RSS measured as", "note")

ProgressFn = Callable[[str, int, int], None]
"""`on_progress(stage, done, total)` of [`cost_table`][snrkit.cost.cost_table]."""


@dataclass(frozen=True)
class Method:
    """One way to get the update direction of a training step.

    Attributes:
        name: unique name, the `method` column (an estimator's `label`).
        kind: one of [`KINDS`][snrkit.cost.KINDS].
        estimator: the estimator (`None` for backprop); for a sequential method, the
            one-direction estimator each pass runs.
        directions: passes averaged by a sequential method; 1 otherwise.

    Examples:
        >>> from snrkit.cost import Method
        >>> Method.sequential(4).name
        'ForwardGradient(gaussian, K=4) sequential'
    """

    name: str
    kind: str
    estimator: Estimator | None = None
    directions: int = 1

    @classmethod
    def backprop(cls) -> Method:
        """`jax.value_and_grad` of the loss: the exact gradient."""
        return cls(BACKPROP, BACKPROP)

    @classmethod
    def of(cls, estimator: Estimator) -> Method:
        """An estimator's own `value_and_estimate` (its $K$ JVPs as it computes them)."""
        return cls(estimator.label, "estimator", estimator)

    @classmethod
    def sequential(cls, directions: int, probe: str = "gaussian") -> Method:
        """$K$ one-direction forward gradients one after the other, each with its own primal."""
        directions = check_int(directions, "directions", minimum=2, hint="passes averaged")
        same = ForwardGradient(probe=probe, directions=directions)
        return cls(f"{same.label} sequential", "sequential", ForwardGradient(probe=probe), directions)

    @property
    def law_estimator(self) -> Estimator | None:
        """The estimator whose law the method's estimate follows (`None` for backprop).

        $K$ independent one-direction estimates averaged follow the law of
        `ForwardGradient(directions=K)`.
        """
        if self.kind == "sequential":
            return ForwardGradient(probe=self.estimator.probe, directions=self.directions)
        return self.estimator


def default_methods(directions: Sequence[int] = (4,), *, forward_gradient: bool = True,
                    families: bool = True) -> list[Method]:
    """Backprop, the forward gradient, $K$ directions both ways, and every family's settings.

    Args:
        directions: the $K$ of the vectorised and sequential rows (each at least 2).
        forward_gradient: include the forward gradient with $K = 1$ (both probes).
        families: include every registered family's `sweep` and `timed` settings (those
            not already listed under the same label).

    Returns:
        The methods, backprop first, names unique.

    Examples:
        >>> from snrkit.cost import default_methods
        >>> names = [m.name for m in default_methods()]
        >>> names[:2], "ForwardGradient(gaussian, K=4) sequential" in names
        (['backprop', 'ForwardGradient(gaussian, K=1)'], True)
    """
    methods = [Method.backprop()]
    if forward_gradient:
        methods += [Method.of(ForwardGradient(probe=p)) for p in ("gaussian", "rademacher")]
    for k in directions:
        methods += [Method.of(ForwardGradient(directions=check_int(k, "directions", minimum=2))), Method.sequential(k)]
    if families:
        methods += [Method.of(est) for row in FAMILIES.values() for est in (*row.sweep, *row.timed)]
    unique: dict[str, Method] = {}
    for method in methods:
        unique.setdefault(method.name, method)
    return list(unique.values())


def sequential_estimate(
    estimator: Estimator, directions: int, key: jax.Array, loss_fn: LossFn, params: PyTree, *args: Any,
    state: Mapping[str, Any] | None = None,
) -> tuple[jax.Array, PyTree]:
    """The baseline of what not sharing the primal costs: `directions` estimates, one pass each, averaged.

    Pass $k$ runs `estimator.value_and_estimate(fold_in(key, k), ...)`, its own forward
    pass of the loss and its own JVP. The passes are the iterations of a `lax.scan`, and
    the parameters enter each through an `optimization_barrier` tied to the iteration, so
    XLA can neither merge the $K$ primal computations nor hoist them out of the loop.

    Args:
        estimator: the one-pass estimator (e.g. `ForwardGradient()`).
        directions: $K$, the passes averaged.
        key: a JAX key; pass $k$ uses `fold_in(key, k)`.
        loss_fn: `loss_fn(params, *args)`, a scalar.
        params: the parameters.
        *args: the loss's further arguments (data, labels).
        state: values kept between steps, passed to every pass.

    Returns:
        `(loss, estimate)`: the loss (of the first pass) and the average of the estimates.

    Examples:
        A linear loss: every pass estimates the gradient `x` without bias.

        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> from snrkit.cost import sequential_estimate
        >>> def loss_fn(w, x):
        ...     return jnp.sum(w * x)
        >>> w, x = jnp.zeros(3), jnp.array([1.0, 2.0, 3.0])
        >>> loss, g = sequential_estimate(
        ...     sk.ForwardGradient(), 2, jax.random.key(0), loss_fn, w, x
        ... )
        >>> float(loss), g.shape
        (0.0, (3,))
    """

    def one(total: PyTree, k: jax.Array) -> tuple[PyTree, jax.Array]:
        tied, _ = jax.lax.optimization_barrier((params, k))
        loss, g = estimator.value_and_estimate(jax.random.fold_in(key, k), loss_fn, tied, *args, state=state)
        return jax.tree.map(jnp.add, total, g), loss

    zeros = jax.tree.map(jnp.zeros_like, params)
    total, losses = jax.lax.scan(one, zeros, jnp.arange(directions, dtype=jnp.uint32))
    return losses[0], jax.tree.map(lambda t: t / directions, total)


def training_step(method: Method, loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Callable[..., Any]:
    """`step(params, opt_state, key, x, y, state) -> (params, opt_state, loss)` of a method (not jitted).

    Every method shares the update: `optimizer.update` of its direction, then
    `optax.apply_updates`; only how the direction is computed differs.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> from snrkit.cost import Method, training_step
        >>> def loss_fn(w, x, y):
        ...     return jnp.sum((w * x - y) ** 2)
        >>> tx, w = optax.sgd(0.1), jnp.ones(2)
        >>> step = training_step(Method.backprop(), loss_fn, tx)
        >>> new, _, loss = step(w, tx.init(w), None, jnp.ones(2), jnp.zeros(2), None)
        >>> float(loss), new.tolist()  # gradient 2 (w x - y) x = 2
        (2.0, [0.800000011920929, 0.800000011920929])
    """

    def direction(params: PyTree, key: jax.Array, x: Any, y: Any, state: Any) -> tuple[jax.Array, PyTree]:
        if method.kind == BACKPROP:
            return jax.value_and_grad(loss_fn)(params, x, y)
        if method.kind == "sequential":
            return sequential_estimate(method.estimator, method.directions, key, loss_fn, params, x, y, state=state)
        return method.estimator.value_and_estimate(key, loss_fn, params, x, y, state=state)

    def step(params: PyTree, opt_state: Any, key: jax.Array, x: Any, y: Any, state: Any) -> tuple[PyTree, Any, jax.Array]:
        loss, grads = direction(params, key, x, y, state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


MIN_REPEATS = 6
r"""Fewest timed calls per method and batch size: with $r$ values the widest order-statistic
interval of the median, $[x_{(1)}, x_{(r)}]$, covers it with probability $1 - 2^{1-r}$, at
least 95 % from $r = 6$ on (see [`median_interval`][snrkit.cost.median_interval])."""


def median_interval(values: Any, confidence: float = 0.95) -> tuple[float, float, float]:
    r"""The median and a distribution-free interval for it, from order statistics.

    With $r$ values sorted, $x_{(1)}\le\dots\le x_{(r)}$, the interval is
    $[x_{(k)}, x_{(r-k+1)}]$ for the largest $k$ with
    $P(\mathrm{Bin}(r, \tfrac12) \le k-1) \le (1-c)/2$: it covers the true median with
    probability at least $c$ whatever the distribution, provided the values are independent.
    With too few values for that ($r \le 5$ at 95 %) it is $[x_{(1)}, x_{(r)}]$, whose
    coverage is only $1 - 2^{1-r}$.

    Args:
        values: the sample (NaNs dropped).
        confidence: $c$.

    Returns:
        `(median, low, high)`; NaNs when no finite value is left.

    Examples:
        >>> from snrkit.cost import median_interval
        >>> median_interval(range(1, 21))  # k = 6: the 6th and 15th values
        (10.5, 6.0, 15.0)
    """
    data = np.sort(np.asarray(values, np.float64).ravel())
    data = data[np.isfinite(data)]
    r = data.size
    if r == 0:
        return math.nan, math.nan, math.nan
    alpha = (1 - confidence) / 2
    ks = [k for k in range(1, r // 2 + 1) if scipy.stats.binom.cdf(k - 1, r, 0.5) <= alpha]
    k = ks[-1] if ks else 1
    return float(np.median(data)), float(data[k - 1]), float(data[r - k])


def batch_of(data: Dataset, batch_size: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`batch_size` examples of `data` (flattened) from example `start` on, cycling through it when it has fewer.

    Examples:
        >>> from snrkit.cost import batch_of
        >>> from snrkit.data import load_digits
        >>> x, y = batch_of(load_digits(), 4096)  # 1797 digits, cycled
        >>> x.shape, bool((y[:1797] == y[1797:3594]).all())
        ((4096, 64), True)
    """
    rows = (start + np.arange(batch_size)) % data.num_examples
    return np.asarray(data.flat()[rows], np.float32), np.asarray(data.labels[rows])


def stale_state(network: nets.Network, params: PyTree, data: Dataset, batch_size: int) -> dict[str, PyTree]:
    """The state a training step carries by default: `{"stale_gradient": ...}`, read by priors.

    In a training loop the stale gradient is an earlier step's, on an earlier batch. Here
    every timed call steps from the same parameters, so it is the gradient at those
    parameters on the *next* `batch_size` examples ([`batch_of`][snrkit.cost.batch_of]
    from example `batch_size` on): another batch's view of the same point, a belief that
    is close to the batch's gradient but not equal to it (an equal one would make a prior
    an oracle and its SNR per unit of cost meaningless). On a data set of fewer than two
    batches the two batches share examples, and the belief comes closer: on digits (1,797
    examples) its cosine with the batch's gradient was 0.88, 0.97 and 0.999 at batch 256,
    1024 and 4096, so a prior's SNR per unit of cost there is an upper bound.

    Examples:
        >>> import jax
        >>> from snrkit import nets
        >>> from snrkit.cost import stale_state
        >>> from snrkit.data import load_digits
        >>> net = nets.mlp((64, 8, 10))
        >>> params = net.init(jax.random.key(0))
        >>> state = stale_state(net, params, load_digits(), 32)
        >>> state["stale_gradient"][0]["w"].shape
        (64, 8)
    """
    x, y = batch_of(data, batch_size, start=batch_size)
    return {"stale_gradient": jax.grad(network.loss)(params, jnp.asarray(x), jnp.asarray(y))}


def _network(model: nets.Network | Sequence[int]) -> tuple[nets.Network, tuple[int, ...] | None]:
    if isinstance(model, nets.Network):
        return model, None
    widths = nets.check_widths(model, "model")
    return nets.mlp(widths), widths


def _rss_mib() -> float:
    """This process's peak resident set so far (`ru_maxrss` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MIB if sys.platform == "darwin" else 1024)


@dataclass
class _Compiled:
    method: Method
    run: Any
    compile_s: float
    memory: dict[str, float]
    rss: float
    jvps: int
    note: str = ""


def _compile(method: Method, loss_fn: LossFn, optimizer: optax.GradientTransformation, args: tuple,
             problem: Problem) -> _Compiled:
    """Lower, compile and warm up one method's step; its XLA memory and the RSS increase."""
    before = _rss_mib()
    start = time.perf_counter()
    compiled = jax.jit(training_step(method, loss_fn, optimizer)).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    stats = compiled.memory_analysis()
    memory = {"temp": math.nan, "argument": math.nan, "output": math.nan, "total": math.nan}
    if stats is not None:
        temp, argument, output = stats.temp_size_in_bytes, stats.argument_size_in_bytes, stats.output_size_in_bytes
        memory = {"temp": temp / MIB, "argument": argument / MIB, "output": output / MIB,
                  "total": (temp + argument + output - stats.alias_size_in_bytes) / MIB}
    jvps = 0 if method.estimator is None else method.estimator.cost(problem).jvps * method.directions
    return _Compiled(method, compiled, compile_s, memory, _rss_mib() - before, jvps)


def _payload(widths: tuple[int, ...], method: Method, x: np.ndarray, y: np.ndarray, *, optimizer: str,
             learning_rate: float, seed: int, state: Any) -> bytes:
    """One configuration, pickled for a fresh process; a clear error for what cannot be pickled."""
    try:
        return pickle.dumps({"widths": widths, "method": method, "x": x, "y": y, "optimizer": optimizer,
                             "learning_rate": learning_rate, "seed": seed, "state": state})
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise ValueError(f"isolate=True sends each configuration to a fresh process, but {method.name} cannot be "
                         f"pickled ({error}); run it with isolate=False") from None


def _isolated_rss(widths: tuple[int, ...], method: Method, x: np.ndarray, y: np.ndarray, *, optimizer: str,
                  learning_rate: float, seed: int, state: Any) -> float:
    """The peak RSS [MiB] of a fresh Python process that compiles and runs only this configuration."""
    payload = _payload(widths, method, x, y, optimizer=optimizer, learning_rate=learning_rate, seed=seed, state=state)
    child = subprocess.run([sys.executable, "-c", "from snrkit.cost import _isolated_main; _isolated_main()"],
                           input=payload, capture_output=True, timeout=1800, check=False)
    if child.returncode != 0:
        tail = child.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"the fresh process measuring {method.name} at batch {len(y)} failed: {' | '.join(tail)}")
    return float(json.loads(child.stdout.decode().strip().splitlines()[-1])["peak_rss_mib"])


def _isolated_main() -> None:
    """The child of `isolate=True`: read the configuration from stdin, run the step, print the peak RSS."""
    job = pickle.loads(sys.stdin.buffer.read())
    network = nets.mlp(job["widths"])
    params = network.init(jax.random.key(job["seed"]))
    optimizer = OPTIMIZERS[job["optimizer"]](job["learning_rate"])
    args = (params, optimizer.init(params), jax.random.key(job["seed"]), jnp.asarray(job["x"]),
            jnp.asarray(job["y"]), job["state"])
    step = jax.jit(training_step(job["method"], network.loss, optimizer))
    for _ in range(3):
        jax.block_until_ready(step(*args))
    print(json.dumps({"peak_rss_mib": _rss_mib()}))


def cost_table(
    model: nets.Network | Sequence[int],
    data: Dataset,
    batch_sizes: Sequence[int],
    *,
    methods: Sequence[Method] | None = None,
    repeats: int = 20,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    seed: int = 0,
    state: Mapping[str, Any] | None = None,
    isolate: bool = False,
    out_csv: str | Path | None = None,
    on_progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Time and memory of one training step per method and batch size, and SNR per unit of cost.

    See the module docs for what is measured and how. Batch sizes are measured in
    increasing order (what the in-process RSS increase needs); the batch is the first
    examples of `data`, cycled when the batch is larger than the data set
    ([`batch_of`][snrkit.cost.batch_of]). The parameters are the model's initialisation
    from `seed`; the timed calls do not update them (every call steps from the same point).

    Args:
        model: a [`Network`][snrkit.nets.Network], or the widths of an MLP
            ([`snrkit.nets.mlp`][snrkit.nets.mlp]); `isolate=True` needs the widths.
        data: the data set; its input width must be the model's.
        batch_sizes: distinct batch sizes.
        methods: default [`default_methods()`][snrkit.cost.default_methods]; backprop is
            added first when missing (every ratio is to it).
        repeats: timed calls per method and batch size (at least `MIN_REPEATS`, 6).
        optimizer: a name of [`OPTIMIZERS`][snrkit.cost.OPTIMIZERS].
        learning_rate: the optimizer's learning rate.
        seed: seed of the initialisation and of the probes.
        state: values kept between training steps, for families that need `"state"`;
            by default `stale_state(...)` of each batch size.
        isolate: measure the peak RSS of each configuration in a fresh process (slower).
        out_csv: where to write the frame, or `None`; written atomically after each batch
            size, so that an error at a later one keeps the rows measured before it.
        on_progress: `on_progress(stage, done, total)`.

    Returns:
        A frame with the columns [`COST_COLUMNS`][snrkit.cost.COST_COLUMNS], sorted by
        batch size, then method in the given order.

    Raises:
        ValueError: bad batch sizes, repeats, optimizer, seed, duplicated method names, an
            `out_csv` that cannot be written, `isolate=True` with a `Network`, or data
            whose input width or number of classes is not the model's.
        TypeError: a batch size or `repeats` that is not an int.

    Examples:
        >>> from snrkit import cost
        >>> from snrkit.data import load_digits
        >>> methods = cost.default_methods(directions=(), families=False)
        >>> frame = cost.cost_table(
        ...     (64, 8, 10), load_digits(), [16], methods=methods[:2], repeats=6
        ... )
        >>> frame["method"].tolist(), tuple(frame.columns) == cost.COST_COLUMNS
        (['backprop', 'ForwardGradient(gaussian, K=1)'], True)
        >>> float(frame["time relative to backprop"].iloc[0])
        1.0
    """
    network, widths = _network(model)
    sizes = sorted(check_int(b, "batch_sizes", hint="examples per step") for b in batch_sizes)
    if not sizes:
        raise ValueError("batch_sizes is empty; pass at least one, e.g. [256, 1024]")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"batch_sizes must be distinct, got {list(batch_sizes)}")
    repeats = check_int(repeats, "repeats", minimum=MIN_REPEATS, hint="a 95 % interval of the median needs at least 6")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not (isinstance(learning_rate, int | float) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate!r}")
    check_int(seed, "seed", minimum=0, maximum=MAX_SEED)
    check_callback(on_progress, "on_progress", "on_progress(stage, done, total)")
    methods = list(default_methods() if methods is None else methods)
    if not any(m.kind == BACKPROP for m in methods):
        methods.insert(0, Method.backprop())
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be distinct (rows are keyed by them), got {names}")
    if isolate and widths is None:
        raise ValueError("isolate=True rebuilds the model in a fresh process from its widths; pass the MLP's "
                         "widths, e.g. (64, 1024, 1024, 10), instead of a Network")
    if isolate:  # each configuration goes to a fresh process: refuse what cannot, before any compiling
        for method in methods:
            _payload(widths, method, np.zeros(0), np.zeros(0), optimizer=optimizer, learning_rate=learning_rate,
                     seed=seed, state=state)
    params = network.init(jax.random.key(seed))
    if widths is not None and widths[0] != data.input_dim:
        raise ValueError(f"the model's input width is {widths[0]} but {data.name} has {data.input_dim} inputs "
                         f"per example; start the widths with {data.input_dim}")
    if widths is not None and widths[-1] != data.num_classes:  # labels past the logits: a wrong loss, silently
        raise ValueError(f"the model's output width is {widths[-1]} but {data.name} has {data.num_classes} classes; "
                         f"end the widths with {data.num_classes}")
    path = None if out_csv is None else Path(out_csv)
    if path is not None:
        check_output_file(path)

    def report(stage: str, done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(stage, done, total)

    tx = OPTIMIZERS[optimizer](learning_rate)
    rows: list[dict[str, Any]] = []
    total = len(sizes) * len(methods)
    report("cost", 0, total)
    for b_index, batch in enumerate(sizes):
        x, y = batch_of(data, batch)
        carried = stale_state(network, params, data, batch) if state is None else state
        args = (params, tx.init(params), jax.random.key(seed), jnp.asarray(x), jnp.asarray(y), carried)
        problem = Problem(network.loss, params, args[3], args[4], network=network, state=carried)
        ready: list[_Compiled] = []
        skipped: dict[str, str] = {}
        report(f"batch {batch}: compiling", 0, len(methods))
        for m_index, method in enumerate(methods, start=1):
            try:
                if method.estimator is not None:
                    problem.require(method.estimator.needs, method.name)
            except ValueError as error:
                skipped[method.name] = f"skipped: {error}"
            else:
                entry = _compile(method, network.loss, tx, args, problem)
                if isolate:
                    entry.rss = _isolated_rss(widths, method, x, y, optimizer=optimizer, learning_rate=learning_rate,
                                              seed=seed, state=carried)
                ready.append(entry)
            report(f"batch {batch}: compiling", m_index, len(methods))
        times = _time_round_robin(ready, args, repeats, seed, lambda d, b=batch: report(f"batch {b}: timing", d, repeats))
        base = times[BACKPROP]
        for method in methods:
            rows.append(_row(network, params, batch, method, problem, repeats, isolate,
                             next((e for e in ready if e.method is method), None), times.get(method.name), base,
                             skipped.get(method.name, "")))
        if path is not None:  # after every batch size: a failure later keeps what was measured
            write_atomic(path, _to_frame(rows).to_csv(index=False))
        report("cost", (b_index + 1) * len(methods), total)
    return _to_frame(rows)


def _time_round_robin(ready: Sequence[_Compiled], args: tuple, repeats: int, seed: int,
                      report: Callable[[int], None]) -> dict[str, np.ndarray]:
    """Seconds of each call, `repeats` rounds of one call per method; a fresh key per round."""
    keys = [jax.random.fold_in(jax.random.key(seed), r + 1) for r in range(repeats)]
    times = {e.method.name: np.empty(repeats) for e in ready}
    for entry in ready:  # one untimed round: the first calls after the other compilations run cold
        jax.block_until_ready(entry.run(*args))
    for r, key in enumerate(keys):
        call = (*args[:2], key, *args[3:])
        for entry in ready:
            start = time.perf_counter()
            jax.block_until_ready(entry.run(*call))
            times[entry.method.name][r] = time.perf_counter() - start
        report(r + 1)
    return times


def _row(network: nets.Network, params: PyTree, batch: int, method: Method, problem: Problem, repeats: int,
         isolate: bool, entry: _Compiled | None, seconds: np.ndarray | None, base: np.ndarray, note: str) -> dict:
    estimator = method.estimator
    described = estimator.describe() if estimator is not None else {"family": "", "params": ""}
    row = {
        "model": network.name, "parameters": nets.num_params(params), "batch size": batch, "method": method.name,
        "kind": method.kind, "family": described["family"], "settings": described["params"],
        "directions": method.directions, "JVPs per step": 0, "repeats": 0, "note": note,
        "peak RSS measured as": "fresh process" if isolate else "increase in this process",
    }
    if entry is None:
        return row
    ratio, lo, hi = median_interval(seconds / base)
    row.update({
        "JVPs per step": entry.jvps, "repeats": repeats, "compile time [s]": entry.compile_s,
        "time per step, median [ms]": 1e3 * float(np.median(seconds)), "time per step, best [ms]": 1e3 * float(seconds.min()),
        "time per step, lower quartile [ms]": 1e3 * float(np.quantile(seconds, 0.25)),
        "time per step, upper quartile [ms]": 1e3 * float(np.quantile(seconds, 0.75)),
        "time relative to backprop": ratio, "time relative to backprop, 95% low": lo,
        "time relative to backprop, 95% high": hi,
        "XLA temporary memory [MiB]": entry.memory["temp"], "XLA argument memory [MiB]": entry.memory["argument"],
        "XLA output memory [MiB]": entry.memory["output"], "XLA total memory [MiB]": entry.memory["total"],
        "peak RSS [MiB]": entry.rss,
    })
    law_estimator = method.law_estimator
    if law_estimator is None:
        row["note"] = note or "exact gradient: no SNR"
        return row
    law = law_estimator.given(problem)
    efficiency = float(law.efficiency())
    snr = math.nan if law_estimator.biased else float(law.aggregate_snr())
    row.update({"aggregate SNR": snr, "efficiency": efficiency, "aggregate SNR per relative time": snr / ratio,
                "efficiency per relative time": efficiency / ratio})
    if law_estimator.biased:
        row["note"] = note or "biased: efficiency only"
    return row


def _to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a frame with the fixed columns and dtypes (missing measurements NaN)."""
    frame = pd.DataFrame(list(rows), columns=list(COST_COLUMNS))
    for column in COST_COLUMNS:
        if column in _INT_COLUMNS:
            frame[column] = frame[column].astype(np.int64)
        elif column in _TEXT_COLUMNS:
            frame[column] = frame[column].fillna("").astype(str)
        else:
            frame[column] = frame[column].astype(np.float64)
    return frame


def read_cost_csv(path: str | Path) -> pd.DataFrame:
    """A CSV written by [`cost_table`][snrkit.cost.cost_table], with its dtypes.

    Raises:
        ValueError: the file does not have the columns of a cost CSV.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from snrkit.cost import read_cost_csv
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "cost.csv"
        ...     _ = path.write_text("method,seconds\\nbackprop,1\\n")
        ...     read_cost_csv(path)
        Traceback (most recent call last):
        ...
        ValueError: .../cost.csv is not a cost CSV: it lacks the columns ...
    """
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in COST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not a cost CSV: it lacks the columns {missing}; write one with "
                         f"snrkit.cost.cost_table(..., out_csv=...) or `snrkit cost`")
    return _to_frame(frame[list(COST_COLUMNS)].to_dict("records"))


TIME_MEMORY_CAPTION = (
    "Time per training step (left) and XLA's temporary memory of the compiled step (right) against the batch "
    "size. Each method is one colour, marker and line style; the bars span the lower to the upper quartile of "
    "the timed calls (often smaller than the markers). The forward gradient saves memory where its curve lies "
    "under backprop's, and the saving grows with the batch size where the gap widens."
)
"""Caption of [`plot_cost`][snrkit.plots.plot_cost]'s figure."""
SNR_PER_COST_CAPTION = (
    "Aggregate SNR of each unbiased estimator (top) and efficiency of every estimator (bottom), each divided by "
    "its time per step relative to backprop, against the batch size. Higher is better: more signal per unit of "
    "time. Backprop, exact, has no SNR and is not drawn."
)
"""Caption of [`plot_snr_per_cost`][snrkit.plots.plot_snr_per_cost]'s figure."""


__all__ = [
    "BACKPROP",
    "COST_COLUMNS",
    "KINDS",
    "MIB",
    "OPTIMIZERS",
    "SNR_PER_COST_CAPTION",
    "TIME_MEMORY_CAPTION",
    "Method",
    "batch_of",
    "cost_table",
    "default_methods",
    "median_interval",
    "read_cost_csv",
    "sequential_estimate",
    "stale_state",
    "training_step",
]
