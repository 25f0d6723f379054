r"""Streaming Monte Carlo moments of a law's samples.

`monte_carlo(law, key, N)` draws the same $N$ samples as `law.sample(key, N)`, in chunks
of bounded memory, and returns their mean, variance and the standard error of the variance.

Precision: samples are in the gradient's dtype; their power sums about the law's mean are
accumulated in float64 (inside one jitted step, with x64 enabled only for that step), so
$10^7$ samples lose far less than $10^{-6}$ relative accuracy. The central moments are
recovered from the power sums on the host; centring at the known mean keeps that recovery
free of cancellation.

The standard error of the variance comes from the sample fourth central moment $m_4$, not
a Gaussian assumption. It is the classical variance of the unbiased sample variance,
$\operatorname{Var}[s^2] = \mu_4/N - \sigma^4(N-3)/(N(N-1))$, with the sample moments
plugged in:

$$
\operatorname{se}(s^2)^2 = \frac{m_4}{N} - \frac{s^4 (N-3)}{N(N-1)}.
$$

Examples:
    >>> import jax, jax.numpy as jnp, snrkit as sk
    >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
    >>> m = sk.monte_carlo(law, jax.random.key(0), 4096, batches=32)
    >>> # Var[g_i] = ‖∇‖² + ∇ᵢ² holds
    >>> sk.stats.compare_variance(m, law).holds
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, partial, reduce
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from snrkit.core.law import Law
from snrkit.core.numerics import batch_variance_sd
from snrkit.core.sharding import (
    AXIS,
    Devices,
    check_devices,
    gather,
    replicate,
    sample_mesh,
    spread,
)
from snrkit.core.tree import PyTree, leaf_paths, ravel_host, unravel_host
from snrkit.core.validation import check_callback, check_int, check_key

ProgressFn = Callable[[int, int], None]
"""`on_progress(samples_done, num_samples)`, called after each chunk."""


@dataclass(frozen=True)
class Moments:
    r"""Sampled moments of an estimator, each a pytree of float64 NumPy arrays shaped like the gradient.

    Returned by [`monte_carlo`][snrkit.montecarlo.monte_carlo] and
    [`moments_from_samples`][snrkit.montecarlo.moments_from_samples]; compared with a law by
    [`compare_variance`][snrkit.stats.compare_variance] and
    [`compare_mean`][snrkit.stats.compare_mean]. With samples $x_1,\dots,x_N$:

    $$
    \begin{aligned}
    \bar x &= \frac1N\sum_s x_s,\qquad
    s^2 = \frac{1}{N-1}\sum_s (x_s-\bar x)^2,\qquad
    m_4 = \frac1N\sum_s (x_s-\bar x)^4,\\
    \operatorname{se}(s^2) &= \sqrt{\frac{m_4}{N} - \frac{s^4(N-3)}{N(N-1)}}.
    \end{aligned}
    $$

    Attributes:
        mean: sample mean $\bar x$.
        var: unbiased sample variance $s^2$ (NaN when `num_samples == 1`).
        var_stderr: standard error of `var`, from the sample fourth central moment.
        num_samples: number of samples $N$.
        fourth_moment: sample fourth central moment $m_4$.
        batch_means: mean of each batch of consecutive samples (leading axis: batches).
        batch_vars: unbiased variance within each batch (leading axis: batches).
        batch_sizes: number of samples in each batch.

    Examples:
        >>> import numpy as np, snrkit as sk
        >>> m = sk.moments_from_samples(
        ...     {"w": np.array([[1.0], [2.0], [3.0], [4.0]])}, batches=2
        ... )
        >>> m.num_samples, m.mean["w"].tolist(), round(float(m.var["w"][0]), 4)
        (4, [2.5], 1.6667)
        >>> (
        ...     round(float(m.fourth_moment["w"][0]), 4),
        ...     round(float(m.var_stderr["w"][0]), 4),
        ... )
        (2.5625, 0.6396)
        >>> m.batch_means["w"].tolist(), m.batch_sizes.tolist()
        ([[1.5], [3.5]], [2, 2])
    """

    mean: PyTree
    var: PyTree
    var_stderr: PyTree
    num_samples: int
    fourth_moment: PyTree
    batch_means: PyTree
    batch_vars: PyTree
    batch_sizes: np.ndarray

    @property
    def mean_stderr(self) -> PyTree:
        r"""Standard error of `mean`: $\sqrt{s^2/N}$.

        Examples:
            >>> import numpy as np, snrkit as sk
            >>> m = sk.moments_from_samples(np.array([[1.0], [2.0], [3.0], [4.0]]))
            >>> round(float(m.mean_stderr[0]), 4)  # √(1.6667 / 4)
            0.6455
        """
        return jax.tree_util.tree_map(lambda v: np.sqrt(v / self.num_samples), self.var)

    @property
    def num_batches(self) -> int:
        """Number of batches the samples were grouped in.

        Examples:
            >>> import numpy as np, snrkit as sk
            >>> sk.moments_from_samples(np.zeros((10, 3)), batches=5).num_batches
            5
        """
        return int(self.batch_sizes.size)

    def flat(self, name: str) -> np.ndarray:
        """One field flattened in ravel order (batch fields keep their leading batch axis).

        Args:
            name: a field name, e.g. `"var"` or `"batch_vars"`.

        Returns:
            A float64 array of shape `(n,)`, or `(batches, n)` for a `batch_` field.

        Examples:
            >>> import numpy as np, snrkit as sk
            >>> samples = {"b": np.arange(4.0)[:, None], "w": np.ones((4, 2, 2))}
            >>> m = sk.moments_from_samples(samples, batches=2)
            >>> m.flat("mean").tolist(), m.flat("batch_means").shape
            ([1.5, 1.0, 1.0, 1.0, 1.0], (2, 5))
        """
        value = getattr(self, name)
        if name.startswith("batch_"):
            leaves = jax.tree_util.tree_leaves(value)
            return np.concatenate([np.reshape(leaf, (leaf.shape[0], -1)) for leaf in leaves], axis=1)
        return ravel_host(value)


@dataclass(frozen=True)
class ChunkPlan:
    """How [`monte_carlo`][snrkit.montecarlo.monte_carlo] draws and folds its samples on a device.

    Attributes:
        samples: samples drawn per step (one chunk).
        fold: `"rows"`: the chunk's samples are added to the float64 power sums one at a
            time, each step one fused elementwise loop (what XLA on a CPU runs fastest);
            `"block"`: the whole chunk is reduced at once along its sample axis (what a GPU
            or TPU runs fastest, where a loop of small steps leaves the device idle).
        budget: the bytes a chunk may hold (its probes, samples and float64 deviations).

    Examples:
        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> from snrkit import montecarlo as mc
        >>> law = sk.ForwardGradient().given(jnp.ones(1_000_000))
        >>> plan = mc.chunk_plan(law, jax.devices("cpu")[0])
        >>> budget = min(mc.CPU_CHUNK_BYTES, mc.physical_memory() // 16)
        >>> plan.fold, plan.budget == budget
        ('rows', True)
    """

    samples: int
    fold: str
    budget: int


CPU_CHUNK_BYTES = 1 << 24
"""A chunk's memory budget on a CPU (16 MiB of XLA temporaries a step; at most 1/16 of
the machine's memory). XLA allocates a step's buffers afresh each step; glibc's malloc
serves those under its largest mmap threshold (32 MiB) from its heap, reused, and larger
ones as new pages the kernel zeroes on first touch, which cost more than drawing and
folding the samples. Measured on a 2-core CPU (`bench/bench_montecarlo.py`), 16 MiB ran
the forward gradient 2 to 3.5 times faster than 512 MiB at $n = 10^4$ and $10^5$; at
$10^6$ the gain was within that machine's run-to-run noise. 32 MiB ran up to a third
slower than 16."""
CPU_MEMORY_SHARE = 16
"""On a CPU a chunk may hold at most this fraction (1/16) of the machine's memory."""
ACCELERATOR_MEMORY_SHARE = 8
"""On a GPU or TPU a chunk may hold this fraction (1/8) of the device's memory."""
PROBE_SAMPLES = 8
"""The fewest samples of a chunk whose compiled memory `chunk_plan` measures."""
MAX_CHUNK_SAMPLES = {"rows": 4096, "block": 1 << 20}
"""Most samples per chunk: a row loop gains nothing past a few thousand steps; a block
reduction gains until the device is full."""


def chunk_plan(law: Law, device: jax.Device | None = None) -> ChunkPlan:
    r"""Samples per chunk and the way to fold them, chosen for the device's kind and memory.

    On a CPU chunks may hold `CPU_CHUNK_BYTES` (16 MiB), at most `1/CPU_MEMORY_SHARE` of
    the machine's memory, and are folded row by row; on a GPU or TPU they may hold
    `1/ACCELERATOR_MEMORY_SHARE` of the device's memory (`memory_stats()["bytes_limit"]`)
    and are folded as blocks. What a chunk holds (its probes, samples, float64 deviations
    and whatever the family's draw needs besides) is measured, not guessed: the step is
    compiled (not run) for two chunks $c$ and $2c$ ($c \ge 8$, sized by a generous
    estimate), XLA's temporary memory $T_c$ and $T_{2c}$ of them read, and with the
    per-sample bytes $s = (T_{2c} - T_c)/c$ and the fixed bytes $F = T_c - cs$ the chunk
    is $\lfloor(\text{budget} - F)/s\rfloor$ samples, at least one. Where even the most
    samples per chunk fit by the generous estimate, nothing is compiled; the measurements
    are kept for the rest of the process.

    Args:
        law: the law to be sampled.
        device: where the samples are drawn; `None` for `jax.devices()[0]`.

    Returns:
        The [`ChunkPlan`][snrkit.montecarlo.ChunkPlan], at least one sample per chunk.

    Examples:
        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> from snrkit.montecarlo import chunk_plan
        >>> cpu = jax.devices("cpu")[0]
        >>> chunk_plan(sk.ForwardGradient().given(jnp.ones(2)), cpu)
        ChunkPlan(samples=4096, fold='rows', budget=...)
        >>> large = sk.ForwardGradient(directions=4).given(jnp.ones(10**6))
        >>> 1 <= chunk_plan(large, cpu).samples < 4096
        True
    """
    device = jax.devices()[0] if device is None else device
    if device.platform == "cpu":
        fold, budget = "rows", min(CPU_CHUNK_BYTES, physical_memory() // CPU_MEMORY_SHARE)
    else:
        fold, budget = "block", _device_memory(device) // ACCELERATOR_MEMORY_SHARE
    cap = MAX_CHUNK_SAMPLES[fold]
    n = law.num_coordinates
    # a generous guess of a sample's bytes: probes and estimate, twice over, and float64 work
    guess = 2 * jnp.dtype(law.dtype).itemsize * (law.sampler.probe_entries(n) + n) + (40 if fold == "block" else 8) * n
    if cap * guess <= budget:
        return ChunkPlan(cap, fold, budget)
    guessed = int(max(1, min(cap, budget // guess)))
    # T_c = fixed + c * per_sample, from two compiled (never run) sizes: buffers that do not
    # grow with the chunk must not be charged to every sample, or small budgets get one sample.
    # Sizes below 8 are not measured: XLA lays out a chunk of one sample apart.
    probe = max(PROBE_SAMPLES, min(cap // 2, guessed))
    small, large = _step_bytes(law, fold, probe), _step_bytes(law, fold, 2 * probe)
    if small is None or large is None:  # the backend does not say: keep the generous guess
        return ChunkPlan(guessed, fold, budget)
    per_sample = max(1, (large - small) // probe)
    fixed = max(0, small - probe * per_sample)
    return ChunkPlan(int(max(1, min(cap, (budget - fixed) // per_sample))), fold, budget)


def _step_bytes(law: Law, fold: str, chunk: int) -> int | None:
    """XLA's temporary memory of one fold step of `chunk` samples, compiled and never run (`None` if XLA does not say)."""
    args = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), law.sampling_args)
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return _compiled_step_bytes(law.sampler, chunk, fold, law.num_coordinates, tuple(leaves), treedef)


@cache
def _compiled_step_bytes(
    sampler: Callable, chunk: int, fold: str, n: int, leaves: tuple, treedef: Any
) -> int | None:
    with jax.enable_x64(True):
        vector = jax.ShapeDtypeStruct((n,), jnp.float64)
        lowered = _accumulate.lower(sampler, chunk, fold, jax.tree_util.tree_unflatten(treedef, leaves),
                                    jax.random.key(0), np.uint32(0), chunk, vector, (vector,) * 4)
        stats = lowered.compile().memory_analysis()
    return None if stats is None else int(stats.temp_size_in_bytes)


_FALLBACK_DEVICE_MEMORY = 1 << 32
"""Assumed memory of a machine or accelerator that does not report it (4 GiB)."""


def physical_memory() -> int:
    """The machine's memory in bytes (`os.sysconf`), or 4 GiB where the system does not say.

    Examples:
        >>> from snrkit.montecarlo import physical_memory
        >>> physical_memory() > 0
        True
    """
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_DEVICE_MEMORY


def _device_memory(device: jax.Device) -> int:
    stats = device.memory_stats() or {}
    return int(stats.get("bytes_limit", _FALLBACK_DEVICE_MEMORY))


def monte_carlo(
    law: Law,
    key: jax.Array,
    num_samples: int,
    chunk_size: int | None = None,
    *,
    batches: int = 1,
    on_progress: ProgressFn | None = None,
    devices: Devices = None,
) -> Moments:
    r"""Sample `num_samples` estimates from `law` and return their moments.

    Memory is bounded by `chunk_size × n` (never `num_samples × n`). For a fixed key the
    samples do not depend on `chunk_size` or `batches`: sample `i` is always drawn from
    `fold_in(key, i)`. Their float32 values can differ in the last bits between chunk sizes
    (XLA may sum $\nabla\cdot v$ in another order for another batch shape), so the moments
    agree to float32 rounding of the samples, far below their standard errors, not bit for
    bit; `batches` only regroups the float64 sums.
    The moments are those of [`Moments`][snrkit.montecarlo.Moments]: mean, unbiased
    variance $s^2$, fourth central moment $m_4$ and
    $\operatorname{se}(s^2) = \sqrt{m_4/N - s^4(N-3)/(N(N-1))}$.

    On $D > 1$ devices ([Many devices](../howto/many-devices.md)) each device draws whole
    chunks, the very chunks one device draws (same first index, same shape), so every
    sample has the same bits as on one device. A device adds its chunks to float64 power
    sums of its own, and the host adds the devices' sums in device order. The result for
    the same `key`, `num_samples`, `chunk_size` and `batches` is that of one device:

    - bit for bit when `batches >= D`: each device takes whole batches and sums them in
      one device's order;
    - otherwise each batch is cut into $\lfloor D/\text{batches}\rfloor$ runs of chunks
      summed apart, so the power sums $S_k = \sum_s d_s^k$ differ from one device's by
      float64 rounding of another order of addition,
      $|\Delta S_k| \le 2N\varepsilon\sum_s |d_s|^k$ ($\varepsilon = 2^{-52}$): the
      moments agree to a relative $10^{-11}$ at $N = 10^4$, far below their standard
      errors.

    Every process of a multi-process run (`jax.distributed`) gets the same result.

    Args:
        law: the law to sample, e.g. `sk.ForwardGradient().given(grad)`.
        key: a JAX key, e.g. `jax.random.key(0)`.
        num_samples: number of samples $N \ge 1$.
        chunk_size: samples drawn per step; `None` lets
            [`chunk_plan`][snrkit.montecarlo.chunk_plan] choose for the device's kind and
            memory (16 MiB of temporaries on a CPU, an eighth of a GPU's memory).
        batches: group the samples in this many batches of consecutive indices and also
            report each batch's mean and variance (used by the distribution-free tests in
            [`snrkit.stats`][snrkit.stats]).
        on_progress: called as `on_progress(samples_done, num_samples)` after each chunk
            (on several devices, after each chunk of every device).
        devices: the devices to spread the samples over, e.g. `jax.devices()[:1]`; `None`
            (the default) for all of them, `jax.devices()`. One device runs on that device
            alone, with no sharding.

    Returns:
        The sampled moments.

    Raises:
        TypeError: `law` is not a [`Law`][snrkit.core.law.Law], `key` is not a JAX key, or
            `devices` is not a sequence of `jax.Device`.
        ValueError: `num_samples`, `batches` or `chunk_size` is less than 1,
            `batches > num_samples`, or `devices` is empty, repeats a device or mixes
            platforms.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np, snrkit as sk
        >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
        >>> key = jax.random.key(0)
        >>> m = sk.monte_carlo(law, key, 8192, batches=32)
        >>> m.num_samples, m.num_batches
        (8192, 32)
        >>> sk.stats.compare_variance(
        ...     m, law
        ... ).holds  # m.var is close to law.var() = [34, 41]
        True

        The chunk size changes the memory used, not the samples:

        >>> m2 = sk.monte_carlo(law, key, 8192, chunk_size=1000, batches=32)
        >>> bool(np.allclose(m.flat("var"), m2.flat("var"), rtol=1e-12))
        True

        Nor do the devices (here all of them, and the first alone):

        >>> m3 = sk.monte_carlo(
        ...     law, key, 8192, batches=32, devices=jax.devices()[:1]
        ... )
        >>> bool(np.array_equal(m.flat("var"), m3.flat("var")))
        True
    """
    _check_law(law)
    key = check_key(key)
    num = check_int(num_samples, "num_samples")
    batches = check_int(batches, "batches")
    if batches > num:
        raise ValueError(f"batches={batches} is more than num_samples={num}; every batch needs at least one sample")
    devices = check_devices(devices)
    check_callback(on_progress, "on_progress", "on_progress(samples_done, num_samples)")
    plan = chunk_plan(law, devices[0])
    chunk = plan.samples if chunk_size is None else check_int(chunk_size, "chunk_size")
    n = law.num_coordinates
    bounds = [(b * num) // batches for b in range(batches + 1)]
    largest = max(bounds[b + 1] - bounds[b] for b in range(batches))
    if chunk_size is None:
        # A power of two at least the largest batch: runs with other sample counts reuse the
        # compiled step (each chunk size compiles its own), at most doubling the draws of the last chunk.
        largest = 1 << (largest - 1).bit_length()
    chunk = min(chunk, largest)

    # one device: today's loop, on that device; several: whole chunks handed to each
    place = jax.default_device(devices[0]) if len(devices) == 1 else contextlib.nullcontext()
    with jax.enable_x64(True), place:
        shift = jnp.asarray(np.asarray(law.flat_mean(), dtype=np.float64))
        if len(devices) == 1:
            batch_sums = _batch_sums(law, key, bounds, chunk, plan.fold, shift, on_progress)
        else:
            batch_sums = _sharded_batch_sums(law, key, bounds, chunk, plan.fold, shift, on_progress, devices)
        totals = np.zeros((4, n))
        batch_stats = []
        for b, sums in enumerate(batch_sums):
            totals += sums
            batch_stats.append(_mean_var(sums, bounds[b + 1] - bounds[b]))
        shift_host = np.asarray(shift)

    return _moments(totals, num, shift_host, batch_stats, bounds, law.grad)


def _batch_sums(
    law: Law, key: jax.Array, bounds: list[int], chunk: int, fold: str, shift: jax.Array,
    on_progress: ProgressFn | None,
) -> Iterator[np.ndarray]:
    """Each batch's power sums 1..4 about `shift`, shape `(4, n)`: its chunks folded in order on one device."""
    for b in range(len(bounds) - 1):
        state = tuple(jnp.zeros(shift.size, jnp.float64) for _ in range(4))
        for start in range(bounds[b], bounds[b + 1], chunk):
            valid = min(chunk, bounds[b + 1] - start)
            state = _accumulate(law.sampler, chunk, fold, law.sampling_args, key, np.uint32(start), valid, shift, state)
            if on_progress is not None:
                on_progress(start + valid, bounds[-1])
        yield np.stack([np.asarray(x) for x in state])


def _sharded_batch_sums(
    law: Law, key: jax.Array, bounds: list[int], chunk: int, fold: str, shift: jax.Array,
    on_progress: ProgressFn | None, devices: tuple[jax.Device, ...],
) -> Iterator[np.ndarray]:
    """What `_batch_sums` yields, with the chunks of one device handed out whole to `devices`.

    The chunks are those of one device (starts `bounds[b] + k * chunk`, `chunk` samples
    drawn). Each batch is cut into `segments = max(1, D // batches)` runs of consecutive
    chunks; a device folds one run in order into sums of its own, `D` runs at a time, and a
    batch's sums are its runs' sums added in run order on the host. With one run per batch
    (`batches >= D`) that is one device's order of addition, so the sums are the same bits.
    """
    mesh, width = sample_mesh(devices), len(devices)
    segments = max(1, width // (len(bounds) - 1))
    runs = []
    for b in range(len(bounds) - 1):
        chunks = [(start, min(chunk, bounds[b + 1] - start)) for start in range(bounds[b], bounds[b + 1], chunk)]
        runs += [chunks[j * len(chunks) // segments : (j + 1) * len(chunks) // segments] for j in range(segments)]
    args, key, shift = replicate((law.sampling_args, key, shift), mesh)
    zeros = _sharded_zeros(mesh, (width, shift.size))
    done, parts = 0, []
    for first in range(0, len(runs), width):
        group = runs[first : first + width]
        state = tuple(zeros() for _ in range(4))
        for step in range(max(len(run) for run in group)):
            starts, valids = np.zeros(width, np.uint32), np.zeros(width, np.int64)
            for d, run in enumerate(group):
                if step < len(run):
                    starts[d], valids[d] = run[step]
            state = _accumulate_sharded(
                mesh, law.sampler, chunk, fold, args, key, spread(starts, mesh), spread(valids, mesh), shift, state
            )
            done += int(valids.sum())
            if on_progress is not None:
                on_progress(done, bounds[-1])
        per_device = np.stack(gather(state), axis=1)  # (D, 4, n)
        for d in range(len(group)):
            parts.append(per_device[d])
            if len(parts) == segments:
                yield reduce(np.add, parts)  # left to right: run 0 first
                parts = []


@cache
def _sharded_zeros(mesh: Mesh, shape: tuple[int, int]) -> Callable[[], jax.Array]:
    """A compiled `jnp.zeros(shape, float64)`, row `d` on device `d` of `mesh`."""
    return jax.jit(lambda: jnp.zeros(shape, jnp.float64), out_shardings=NamedSharding(mesh, P(AXIS)))


def _fold(
    sampler: Callable, chunk: int, fold: str, args: Any, key: jax.Array, start: jax.Array, valid: jax.Array,
    shift: jax.Array, state: tuple,
) -> tuple:
    """Add the power sums 1..4 of one chunk's deviations from `shift` (its first `valid` samples) to `state`.

    The chunk is drawn at once (vectorised sampling), then folded as the
    [`ChunkPlan`][snrkit.montecarlo.ChunkPlan] says: `"rows"`, one sample at a time (XLA
    on a CPU turns each step into one fused elementwise loop, where reducing the
    `(chunk, n)` block along its leading axis is an order of magnitude slower), or
    `"block"`, the whole chunk reduced at once (a GPU's way). A chunk of one sample is
    folded as a block: a loop of one step kept XLA from fusing the draw into the sums,
    which ran 1.7 to 1.9 times slower at $n = 10^6$ on a CPU.
    """
    offsets = jnp.arange(chunk, dtype=jnp.uint32)
    samples = sampler(args, key, start.astype(jnp.uint32) + offsets)

    def powers(d: jax.Array) -> tuple:
        d2 = d * d
        return d, d2, d2 * d, d2 * d2

    if fold == "block" or chunk == 1:  # one sample needs no loop, and without one XLA fuses its draw into the sums
        d = jnp.where((offsets < valid)[:, None], samples.astype(jnp.float64) - shift, 0.0)
        return tuple(s + p.sum(0) for s, p in zip(state, powers(d), strict=True))

    def add(i: jax.Array, sums: tuple) -> tuple:
        return tuple(s + p for s, p in zip(sums, powers(samples[i].astype(jnp.float64) - shift), strict=True))

    return jax.lax.fori_loop(0, valid, add, state)


_accumulate = jax.jit(_fold, static_argnums=(0, 1, 2), donate_argnums=(8,))
"""`_fold` compiled: the one-device step."""


@partial(jax.jit, static_argnums=(0, 1, 2, 3), donate_argnums=(9,))
def _accumulate_sharded(
    mesh: Mesh, sampler: Callable, chunk: int, fold: str, args: Any, key: jax.Array, starts: jax.Array,
    valids: jax.Array, shift: jax.Array, state: tuple,
) -> tuple:
    """`_fold` on every device of `mesh` at once: device `d` folds the chunk at `starts[d]` (its first
    `valids[d]` samples) into its own sums, row `d` of each `state` array; with `valids[d] == 0` it draws nothing."""

    def local(args: Any, key: jax.Array, starts: jax.Array, valids: jax.Array, shift: jax.Array, state: tuple) -> tuple:
        mine = tuple(s[0] for s in state)
        mine = jax.lax.cond(
            valids[0] > 0, lambda st: _fold(sampler, chunk, fold, args, key, starts[0], valids[0], shift, st),
            lambda st: st, mine,
        )
        return tuple(s[None] for s in mine)

    # each device computes alone (no collectives): the check of varying axes is off, as in `estimates`
    return jax.shard_map(
        local, mesh=mesh, in_specs=(P(), P(), P(AXIS), P(AXIS), P(), P(AXIS)), out_specs=P(AXIS), check_vma=False
    )(args, key, starts, valids, shift, state)


def sample_norms(law: Law, key: jax.Array, num_samples: int, chunk_size: int | None = None) -> np.ndarray:
    r"""$\|g\|$ of each of `num_samples` estimates: the same samples as `law.sample(key, num_samples)`, drawn in chunks.

    Args:
        law: the law to sample.
        key: a JAX key.
        num_samples: number of samples.
        chunk_size: samples drawn per step (`None`: as [`monte_carlo`][snrkit.montecarlo.monte_carlo]).

    Returns:
        The Euclidean norms, float64, shape `(num_samples,)`.

    Examples:
        Rademacher probes with one coordinate give $g = \nabla v^2 = \nabla$ exactly:

        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> from snrkit.montecarlo import sample_norms
        >>> sample_norms(
        ...     sk.ForwardGradient("rademacher").given(jnp.array([3.0])),
        ...     jax.random.key(0),
        ...     4,
        ... ).tolist()
        [3.0, 3.0, 3.0, 3.0]
    """
    _check_law(law)
    key = check_key(key)
    num = check_int(num_samples, "num_samples")
    chunk = min(num, chunk_plan(law).samples if chunk_size is None else check_int(chunk_size, "chunk_size"))
    parts = []
    with jax.enable_x64(True):
        for start in range(0, num, chunk):
            norms = _norms(law.sampler, chunk, law.sampling_args, key, np.uint32(start))
            parts.append(np.asarray(norms)[: min(chunk, num - start)])
    return np.concatenate(parts)


def _check_law(law: Any) -> None:
    if not isinstance(law, Law):
        raise TypeError(f"law must be a snrkit Law (from estimator.given(grad)), got {type(law).__name__}")


@partial(jax.jit, static_argnums=(0, 1))
def _norms(sampler: Callable, chunk: int, args: Any, key: jax.Array, start: jax.Array) -> jax.Array:
    samples = sampler(args, key, start.astype(jnp.uint32) + jnp.arange(chunk, dtype=jnp.uint32))
    return jnp.sqrt(jnp.sum(samples.astype(jnp.float64) ** 2, axis=-1))


def moments_from_samples(samples: PyTree, *, batches: int = 1) -> Moments:
    """Moments of samples you already hold (e.g. real JVP estimates), computed in float64.

    The same statistics as [`monte_carlo`][snrkit.montecarlo.monte_carlo] (see
    [`Moments`][snrkit.montecarlo.Moments]), centred at the first sample instead of a
    known mean.

    Args:
        samples: a pytree whose leaves have a leading sample axis of the same size.
        batches: group consecutive samples into this many batches (see
            [`monte_carlo`][snrkit.montecarlo.monte_carlo]).

    Returns:
        The sampled moments, shaped like one sample.

    Raises:
        ValueError: `samples` is empty, a leaf has no sample axis, its leaves disagree on the
            number of samples, or `batches` is more than the samples.

    Examples:
        Moments of real forward-gradient estimates of a linear loss, whose gradient is `x`:

        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> x = jnp.array([3.0, 4.0])
        >>> est = sk.ForwardGradient()
        >>> keys = jax.random.split(jax.random.key(0), 2048)
        >>> draws = jax.vmap(
        ...     lambda k: est.estimate(k, lambda w: jnp.dot(w, x), jnp.zeros(2))
        ... )(keys)
        >>> m = sk.moments_from_samples(draws, batches=16)
        >>> m.num_samples, m.var.shape
        (2048, (2,))
        >>> sk.stats.compare_variance(m, est.given(x)).holds
        True
    """
    leaves = jax.tree_util.tree_leaves(samples)
    if not leaves:
        raise ValueError("samples is an empty pytree; pass arrays with a leading sample axis")
    for path, leaf in zip(leaf_paths(samples), leaves, strict=True):
        if np.ndim(leaf) == 0:
            raise ValueError(
                f"samples{'' if path == '<root>' else path} is a scalar; every leaf needs a leading sample axis "
                f"(shape (num_samples, ...)), e.g. the output of est.estimates(key, num, ...)"
            )
    num = int(np.shape(leaves[0])[0])
    if any(np.shape(leaf)[0] != num for leaf in leaves):
        raise ValueError("every leaf of samples needs the same leading (sample) axis")
    batches = check_int(batches, "batches")
    if batches > num:
        raise ValueError(f"batches={batches} is more than the {num} samples; every batch needs at least one sample")
    flat = np.concatenate([np.reshape(np.asarray(leaf, np.float64), (num, -1)) for leaf in leaves], axis=1)
    like = jax.tree_util.tree_map(lambda leaf: np.zeros(np.shape(leaf)[1:]), samples)
    shift = flat[0]
    d = flat - shift
    bounds = [(b * num) // batches for b in range(batches + 1)]
    sums = np.stack([d.sum(0), (d**2).sum(0), (d**3).sum(0), (d**4).sum(0)])
    parts = [d[bounds[b] : bounds[b + 1]] for b in range(batches)]
    batch_stats = [_mean_var(np.stack([p.sum(0), (p**2).sum(0)]), p.shape[0]) for p in parts]
    return _moments(sums, num, shift, batch_stats, bounds, like)


def _moments(sums: np.ndarray, num: int, shift: np.ndarray, batch_stats: list, bounds: list[int], like: PyTree) -> Moments:
    """Assemble `Moments` from power sums about `shift` and per-batch (mean, var) about it."""
    mean_d, var = _mean_var(sums, num)
    fourth = _central_fourth(sums, num, mean_d)
    return Moments(
        mean=unravel_host(shift + mean_d, like),
        var=unravel_host(var, like),
        var_stderr=unravel_host(batch_variance_sd(fourth, var, num), like),
        num_samples=num,
        fourth_moment=unravel_host(fourth, like),
        batch_means=unravel_host(np.stack([m for m, _ in batch_stats]) + shift, like),
        batch_vars=unravel_host(np.stack([v for _, v in batch_stats]), like),
        batch_sizes=np.diff(np.asarray(bounds)),
    )


def _mean_var(sums: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean deviation and unbiased variance from power sums about a shift."""
    mean = sums[0] / count
    m2 = np.maximum(sums[1] - count * mean**2, 0.0)
    var = m2 / (count - 1) if count > 1 else np.full_like(mean, np.nan)
    return mean, var


def _central_fourth(sums: np.ndarray, count: int, mean: np.ndarray) -> np.ndarray:
    """Plug-in fourth central moment from power sums 1..4 about a shift."""
    s2, s3, s4 = sums[1] / count, sums[2] / count, sums[3] / count
    return np.maximum(s4 - 4 * mean * s3 + 6 * mean**2 * s2 - 3 * mean**4, 0.0)
