"""Every benchmark of issue 10 in one run of a few minutes, for a GPU session (one H200).

Run on the device machine, from the repository's root, as

    PYTHONPATH=. python3 bench/gpu.py --out "$OUT"

snrkit's dependencies, JAX with CUDA among them, are in the machine's image: nothing
needs installing. Keep what it writes, `gpu-bench.txt` (everything printed) and the CSVs
of the cost table. The figures go to the docs' Benchmarks page with the date and hardware printed at
the top. `--quick` runs small sizes, for a check on a CPU that the script works.

What it measures, each against a baseline timed in the same run:

1. `monte_carlo` of the forward gradient (Gaussian and Rademacher) at n = 10^6 and 10^7,
   against the generator bound (the same probes drawn and summed);
2. the cost of a training step (`snrkit.cost.cost_table`) of backprop, the forward
   gradient, K = 4 and 16 directions and every family, for the MLPs 64-1024-1024-10 and
   784-4096-4096-4096-10 at batch 256, 1024 and 4096 (random inputs of the model's width:
   timings do not depend on the values; MNIST is not on the device machine), printed as
   `bench_cost.py` prints it, with the verdicts on Baydin's and Yao's cost claims;
3. 10^7 Gaussian normals from JAX's threefry key and from the same key unrolled
   (`snrkit.core.threefry`; JAX already unrolls the rounds off the CPU, so expect parity
   unless `jax_threefry_gpu_kernel_lowering` is on, when JAX's key uses its own kernel);
4. the exact `var()` of a 10^9-coordinate gradient against one reduction over it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cost  # sibling scripts
import bench_montecarlo

import snrkit as sk
from snrkit import cost
from snrkit.data import Dataset


class _Tee(io.TextIOBase):
    """Print to the terminal and keep a copy."""

    def __init__(self, *streams: io.TextIOBase):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)


def random_images(width: int, count: int, seed: int = 0) -> Dataset:
    """`count` random images of `width` pixels (one row) and 10 classes: timings only."""
    rng = np.random.default_rng(seed)
    return Dataset(rng.random((count, 1, width), np.float32), rng.integers(0, 10, count), num_classes=10,
                   name=f"random-{width}")


def cost_section(models: list[tuple[tuple[int, ...], int]], batches: tuple[int, ...], repeats: int,
                 out: Path | None) -> None:
    for widths, directions in models:
        methods = cost.default_methods(directions=directions)
        start = time.perf_counter()
        frame = cost.cost_table(widths, random_images(widths[0], max(batches)), batches, methods=methods,
                                repeats=repeats,
                                out_csv=None if out is None else out / f"cost-{'-'.join(map(str, widths))}.csv")
        print(f"\ncost per training step, MLP {'-'.join(map(str, widths))} "
              f"({frame['parameters'].iloc[0]:,} parameters, {time.perf_counter() - start:.0f} s)")
        bench_cost.show(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu-bench.txt and the CSVs")
    parser.add_argument("--quick", action="store_true", help="small sizes: a check that the script runs")
    args = parser.parse_args()
    if args.quick:
        mc_sizes, repeats = [(10_000, 64)], 2
        models, batches, cost_repeats, var_n = [((64, 32, 10), (4,))], (16, 32), cost.MIN_REPEATS, 1_000_000
    else:
        mc_sizes, repeats = [(1_000_000, 4096), (10_000_000, 512)], 3
        models = [((64, 1024, 1024, 10), (4, 16)), ((784, 4096, 4096, 4096, 10), (4, 16))]
        batches, cost_repeats, var_n = (256, 1024, 4096), 10, 1_000_000_000

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    log = contextlib.nullcontext(None) if args.out is None else open(args.out / "gpu-bench.txt", "w")  # noqa: SIM115
    with log as copy:
        if copy is not None:
            sys.stdout = _Tee(sys.__stdout__, copy)
        device = jax.devices()[0]
        print(f"snrkit benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {len(jax.devices())} x "
              f"{device.device_kind} ({device.platform}), JAX {jax.__version__}, snrkit {sk.__version__}")
        for n, samples in mc_sizes:  # NumPy's script is a CPU baseline: not here
            bench_montecarlo.compare_monte_carlo(n, samples, repeats, numpy=False)
        cost_section(models, batches, cost_repeats, args.out)
        bench_montecarlo.compare_generators(min(var_n, 10_000_000), repeats)
        bench_montecarlo.compare_odd_lengths(mc_sizes[0][0], repeats)
        bench_montecarlo.compare_exact_variance(var_n, repeats)
        sys.stdout = sys.__stdout__


if __name__ == "__main__":
    main()
