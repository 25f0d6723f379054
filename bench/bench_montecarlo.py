"""Monte Carlo throughput and exact-variance cost, as ratios against baselines timed in the same run.

For each probe (Gaussian and Rademacher), `snrkit.monte_carlo` of the forward gradient
against:

  (a) the generator bound: the same probes, drawn by the same generator from the same
      per-sample keys, merely summed (what drawing them costs, nothing else);
  (b) the NumPy script one writes by hand: draw every sample with NumPy's generator
      (float32 normals, or signs from random bytes), stack them, call `var`;
  (c) monte_carlo's fold alone: the same chunks' float64 power sums 1..4, of samples drawn
      beforehand. A step that draws its chunk and then folds it costs at least (a) + (c), so
      (a) / ((a) + (c)) is the most such a step reaches against (a), were computing the
      estimate from its probes free; only where XLA fuses the draw into the fold can
      monte_carlo pass it.

Targets (issue 10): monte_carlo >= 0.9x (a) on CPU (0.8x on GPU) and >= 2x (b) on CPU.
Then the Gaussian generator: JAX's threefry normals from a plain key and from the same key
on snrkit's unrolled implementation (`snrkit.core.threefry`, the same values), against
NumPy's float32 normals. Then the exact `var()` at n = 10^7 against one reduction over the
gradient.

Run with `make bench`; `--quick` for a short run. Timings are the best of several repeats
after a warm-up (compile). Coordinates per second count `samples x n`.

`--allocators` runs the whole benchmark again in a fresh process under each memory
allocator this machine has: glibc's malloc, glibc's malloc with transparent huge pages
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, glibc >= 2.35) and tcmalloc (`LD_PRELOAD`,
Debian's `libtcmalloc-minimal4`). XLA on a CPU allocates each step's buffers afresh; glibc
hands large ones out as new pages that the kernel zeroes on first touch, which can cost
more than the arithmetic.
"""

from __future__ import annotations

import argparse
import ctypes.util
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import snrkit as sk
from snrkit.core import threefry
from snrkit.core.threefry import unrolled
from snrkit.core.tree import sample_key
from snrkit.montecarlo import _accumulate, chunk_plan


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(6,))
def _generator_chunk(spec, chunk, fold, args, key, start, total):
    """The same probes as monte_carlo's chunk (same spec, same per-sample keys), summed over samples.

    Summed the way monte_carlo folds on the device (`ChunkPlan.fold`): row by row on a CPU,
    where XLA is slow at reducing a (chunk, n) block along its leading axis, and as one
    block on a GPU, where a loop of small steps leaves it idle. The bound should be neither.
    """
    n, dtype = args["grad"].size, args["grad"].dtype
    probes = jax.vmap(lambda i: spec.draw(args, sample_key(key, i), n, dtype))(start + jnp.arange(chunk, dtype=jnp.uint32))
    rows = probes.reshape(-1, n)
    if fold == "block":
        return total + rows.sum(0)
    return jax.lax.fori_loop(0, rows.shape[0], lambda i, acc: acc + rows[i], total)


def generator_bound(law: sk.core.law.Law, key: jax.Array, num: int, chunk: int, fold: str) -> jax.Array:
    total = jnp.zeros(law.num_coordinates, law.dtype)
    for start in range(0, num, chunk):
        total = _generator_chunk(law.sampler, chunk, fold, law.sampling_args, key, np.uint32(start), total)
    return jax.block_until_ready(total)


def _drawn(samples: jax.Array, key: jax.Array, indices: jax.Array) -> jax.Array:
    """A sampler whose chunk was drawn beforehand: `_accumulate` with it is monte_carlo's fold and nothing else."""
    return samples


def fold_alone(law: sk.core.law.Law, key: jax.Array, num: int, chunk: int, fold: str) -> tuple[jax.Array, ...]:
    """monte_carlo's step without the draw: one chunk of the law's samples, folded as monte_carlo folds `num` samples."""
    samples = law.sampler(law.sampling_args, key, jnp.arange(chunk, dtype=jnp.uint32))
    with jax.enable_x64(True):
        shift = jnp.asarray(np.asarray(law.flat_mean(), np.float64))
        state = tuple(jnp.zeros(law.num_coordinates, jnp.float64) for _ in range(4))
        for start in range(0, num, chunk):
            state = _accumulate(_drawn, chunk, fold, samples, key, np.uint32(start), min(chunk, num - start), shift,
                                state)
        return jax.block_until_ready(state)


def numpy_script(grad: np.ndarray, num: int, probe: str, seed: int = 0) -> np.ndarray:
    """What one writes by hand: draw every sample, stack them, call var."""
    rng = np.random.default_rng(seed)
    samples = np.empty((num, grad.size), np.float32)
    for s in range(num):
        if probe == "gaussian":
            v = rng.standard_normal(grad.size, dtype=np.float32)
        else:
            v = rng.integers(0, 2, grad.size, dtype=np.int8).astype(np.float32) * 2 - 1
        samples[s] = (v @ grad) * v
    return samples.var(axis=0, ddof=1)


def compare_monte_carlo(n: int, samples: int, repeats: int, *, numpy: bool = True) -> None:
    """Print monte_carlo's throughput against (a) the generator bound and, with `numpy`, (b) the NumPy script."""
    rng = np.random.default_rng(0)
    grad = rng.standard_normal(n).astype(np.float32) / np.sqrt(n)
    key = jax.random.key(0, impl="threefry2x32")
    coords = samples * n
    for probe in ("gaussian", "rademacher"):
        law = sk.ForwardGradient(probe).given(jnp.asarray(grad))
        plan = chunk_plan(law)
        chunk = min(plan.samples, samples)
        t_mc = best_time(lambda law=law: sk.monte_carlo(law, key, samples), repeats)
        t_gen = best_time(lambda law=law, chunk=chunk, fold=plan.fold: generator_bound(law, key, samples, chunk, fold),
                          repeats)
        t_fold = best_time(lambda law=law, chunk=chunk, fold=plan.fold: fold_alone(law, key, samples, chunk, fold),
                           repeats)
        print(f"{probe}, n = {n:,}, {samples} samples (chunk {chunk}, {plan.fold} fold), best of {repeats}")
        print(f"  snrkit.monte_carlo      {t_mc:8.3f} s  {coords / t_mc / 1e6:9.1f} M coords/s")
        print(f"  (a) generator bound     {t_gen:8.3f} s  {coords / t_gen / 1e6:9.1f} M coords/s")
        print(f"  (c) fold alone          {t_fold:8.3f} s  {coords / t_fold / 1e6:9.1f} M coords/s")
        if numpy:
            t_np = best_time(lambda probe=probe: numpy_script(grad, samples, probe), max(1, repeats - 1))
            print(f"  (b) NumPy script        {t_np:8.3f} s  {coords / t_np / 1e6:9.1f} M coords/s")
        print(f"  ratio vs (a): {t_gen / t_mc:5.2f}   (target >= 0.9 on CPU, 0.8 on GPU; "
              f"draw-then-fold ceiling (a)/((a)+(c)) = {t_gen / (t_gen + t_fold):4.2f})")
        if numpy:
            print(f"  ratio vs (b): {t_np / t_mc:5.2f}   (target >= 2 on CPU)")


def compare_generators(n: int, repeats: int) -> None:
    """Print how fast n Gaussian normals are drawn: JAX's threefry key, the same key unrolled, NumPy."""
    key = jax.random.key(0, impl="threefry2x32")
    fast = unrolled(key)
    draw = jax.jit(lambda key: jax.random.normal(key, (n,)))
    if not bool((draw(key) == draw(fast)).all()):
        raise AssertionError("the unrolled key drew other normals than JAX's key")
    t_jax = best_time(lambda: jax.block_until_ready(draw(key)), repeats)
    t_unrolled = best_time(lambda: jax.block_until_ready(draw(fast)), repeats)
    rng = np.random.default_rng(0)
    t_numpy = best_time(lambda: rng.standard_normal(n, dtype=np.float32), repeats)
    print(f"Gaussian normals, n = {n:,} (float32)")
    print(f"  JAX threefry key        {n / t_jax / 1e6:9.1f} M/s")
    print(f"  the key unrolled        {n / t_unrolled / 1e6:9.1f} M/s   (the same values)")
    print(f"  NumPy standard_normal   {n / t_numpy / 1e6:9.1f} M/s   (one core)")
    print(f"  ratio unrolled / JAX: {t_jax / t_unrolled:5.2f}   unrolled / NumPy: {t_numpy / t_unrolled:5.2f}")


def compare_odd_lengths(n: int, repeats: int) -> None:
    """Print one estimate's Gaussian draw of an odd length (as one (1, n) row): JAX's, threefry.normal's, and
    the same draw one entry shorter, the even-length baseline."""
    odd = n | 1
    key = unrolled(jax.random.key(0, impl="threefry2x32"))
    jax_draw = jax.jit(lambda key: jax.random.normal(key, (1, odd)))
    ours = jax.jit(lambda key: threefry.normal(key, (1, odd), jnp.float32))
    even = jax.jit(lambda key: jax.random.normal(key, (1, odd - 1)))
    if not bool((jax_draw(key) == ours(key)).all()):
        raise AssertionError("threefry.normal drew other normals than jax.random.normal")
    t_jax, t_ours, t_even = (best_time(lambda f=f: jax.block_until_ready(f(key)), repeats) for f in (jax_draw, ours, even))
    print(f"Gaussian normals of odd length, (1, {odd:,})")
    print(f"  jax.random.normal       {odd / t_jax / 1e6:9.1f} M/s")
    print(f"  threefry.normal         {odd / t_ours / 1e6:9.1f} M/s   (the same values)")
    print(f"  one entry fewer (even)  {(odd - 1) / t_even / 1e6:9.1f} M/s")
    print(f"  ratio threefry.normal / jax: {t_jax / t_ours:5.2f}   / even length: {t_even / t_ours:5.2f}")


def compare_exact_variance(n: int, repeats: int) -> None:
    """Print the exact var() of an n-coordinate gradient against one reduction and one elementwise pass over it."""
    big = jax.random.normal(jax.random.key(1), (n,), jnp.float32)
    big_law = sk.ForwardGradient("gaussian").given(big)
    reduce_once = jax.jit(lambda x: jnp.sum(x * x))
    write_once = jax.jit(lambda x: x * x)
    t_var = best_time(lambda: jax.block_until_ready(big_law.flat_var()), repeats)
    t_red = best_time(lambda: jax.block_until_ready(reduce_once(big)), repeats)
    t_write = best_time(lambda: jax.block_until_ready(write_once(big)), repeats)
    print(f"Exact var(), n = {n:,}")
    print(f"  law.var()               {t_var * 1e3:8.1f} ms")
    print(f"  one reduction sum(g*g)  {t_red * 1e3:8.1f} ms")
    print(f"  one elementwise g*g     {t_write * 1e3:8.1f} ms   (writes a new n-array, as var() must)")
    print(f"  ratio var / reduction: {t_var / t_red:5.2f}   (target <= 3)")
    print(f"  ratio var / g*g:       {t_var / t_write:5.2f}")


def allocators() -> dict[str, dict[str, str]]:
    """The allocators this machine can run a process under, as the environment variables that choose them."""
    chosen = {"glibc malloc": {}, "glibc malloc, huge pages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}}
    tcmalloc = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    if tcmalloc is not None:
        chosen["tcmalloc"] = {"LD_PRELOAD": tcmalloc}
    return chosen


def allocator_in_use() -> str:
    """The allocator settings of this process's environment, as `--allocators` sets them."""
    settings = [f"{name}={os.environ[name]}" for name in ("LD_PRELOAD", "GLIBC_TUNABLES") if os.environ.get(name)]
    return ", ".join(settings) or "default (glibc malloc)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="coordinates of the gradient")
    parser.add_argument("--samples", type=int, default=256, help="Monte Carlo samples")
    parser.add_argument("--n-var", type=int, default=10_000_000, help="coordinates for the exact var() timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n = 10^5, 128 samples, 2 repeats")
    parser.add_argument("--allocators", action="store_true",
                        help="run again in a fresh process under each memory allocator this machine has")
    args = parser.parse_args()
    if args.allocators:
        rest = [a for a in sys.argv[1:] if a != "--allocators"]
        for name, env in allocators().items():
            print(f"\n===== {name} =====", flush=True)
            subprocess.run([sys.executable, __file__, *rest], env={**os.environ, **env}, check=True)
        return
    if args.quick:
        args.n, args.samples, args.n_var, args.repeats = 100_000, 128, 1_000_000, 2

    device = jax.devices()[0]
    print(f"snrkit Monte Carlo benchmark: {device.platform} ({device.device_kind}), {platform.processor() or 'cpu'}, "
          f"JAX {jax.__version__}, {time.strftime('%Y-%m-%d')}, allocator: {allocator_in_use()}")
    compare_monte_carlo(args.n, args.samples, args.repeats)
    compare_generators(args.n_var, args.repeats)
    compare_odd_lengths(args.n, args.repeats)
    compare_exact_variance(args.n_var, args.repeats)


if __name__ == "__main__":
    main()
