"""Monte Carlo throughput and exact-variance cost, as ratios against baselines timed in the same run.

Targets (issue 2):
  * monte_carlo / raw generator  >= 0.8   (raw: the same probes drawn and merely summed)
  * monte_carlo / NumPy stack+var >= 1.5
  * exact var() / one reduction over the gradient <= 3   (n = 10^7)

Run with `make bench`. Timings are the best of several repeats after a warm-up (compile).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import snrkit as sk
from snrkit.montecarlo import default_chunk_size


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@partial(jax.jit, static_argnums=(0, 1), donate_argnums=(5,))
def _raw_chunk(spec, chunk, key, start, grad, total):
    """The generator's bound: the same probes as monte_carlo, drawn the same way, merely summed.

    Rows are added one at a time, the pattern monte_carlo uses, because XLA on CPU is slow
    at reducing a (chunk, n) block along its leading axis; the baseline should not be.
    """
    idx = start + jnp.arange(chunk, dtype=jnp.uint32)
    probes = jax.vmap(lambda i: spec.draw_probes(key, i, grad.size, grad.dtype))(idx)
    return jax.lax.fori_loop(0, chunk, lambda i, acc: acc + probes[i].sum(0), total)


def raw_generator(law, key, num, chunk):
    total = jnp.zeros(law.num_coordinates, law.dtype)
    for start in range(0, num, chunk):
        total = _raw_chunk(law.sampler, chunk, key, np.uint32(start), law.sampling_args["grad"], total)
    return jax.block_until_ready(total)


def numpy_stack_var(grad: np.ndarray, num: int, seed: int = 0) -> np.ndarray:
    """What one writes by hand: draw every sample, stack them, call var."""
    rng = np.random.default_rng(seed)
    samples = np.empty((num, grad.size), np.float32)
    for s in range(num):
        v = rng.standard_normal(grad.size, dtype=np.float32)
        samples[s] = (v @ grad) * v
    return samples.var(axis=0, ddof=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--n-var", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    grad = rng.standard_normal(args.n).astype(np.float32) / np.sqrt(args.n)
    law = sk.ForwardGradient("gaussian").given(jnp.asarray(grad))
    key = jax.random.key(0, impl="threefry2x32")
    chunk = default_chunk_size(law)
    coords = args.samples * args.n

    t_mc = best_time(lambda: sk.monte_carlo(law, key, args.samples), args.repeats)
    t_raw = best_time(lambda: raw_generator(law, key, args.samples, chunk), args.repeats)
    t_np = best_time(lambda: numpy_stack_var(grad, args.samples), max(1, args.repeats - 1))

    big = jnp.asarray(rng.standard_normal(args.n_var).astype(np.float32))
    big_law = sk.ForwardGradient("gaussian").given(big)
    reduce_once = jax.jit(lambda x: jnp.sum(x * x))
    write_once = jax.jit(lambda x: x * x)
    t_var = best_time(lambda: jax.block_until_ready(big_law.flat_var()), args.repeats)
    t_red = best_time(lambda: jax.block_until_ready(reduce_once(big)), args.repeats)
    t_write = best_time(lambda: jax.block_until_ready(write_once(big)), args.repeats)

    print(f"Monte Carlo, n = {args.n:,}, {args.samples} samples (chunk {chunk}), best of {args.repeats}")
    print(f"  snrkit.monte_carlo      {t_mc:8.3f} s  {coords / t_mc / 1e6:9.1f} M coords/s")
    print(f"  (a) raw generator+sum   {t_raw:8.3f} s  {coords / t_raw / 1e6:9.1f} M coords/s")
    print(f"  (b) NumPy stack + var   {t_np:8.3f} s  {coords / t_np / 1e6:9.1f} M coords/s")
    print(f"  ratio vs (a): {t_raw / t_mc:5.2f}   (target >= 0.8)")
    print(f"  ratio vs (b): {t_np / t_mc:5.2f}   (target >= 1.5)")
    print(f"Exact var(), n = {args.n_var:,}")
    print(f"  law.var()               {t_var * 1e3:8.1f} ms")
    print(f"  one reduction sum(g*g)  {t_red * 1e3:8.1f} ms")
    print(f"  one elementwise g*g     {t_write * 1e3:8.1f} ms   (writes a new n-array, as var() must)")
    print(f"  ratio var / reduction: {t_var / t_red:5.2f}   (target <= 3)")
    print(f"  ratio var / g*g:       {t_var / t_write:5.2f}")


if __name__ == "__main__":
    main()
