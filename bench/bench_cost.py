"""Cost per training step: time and memory of every method against backprop, and the two cost claims.

The issue's models: the MLP 64-1024-1024-10 on digits at batch sizes 256, 1024 and 4096;
with `--large`, also the 37 M-parameter MLP 784-4096-4096-4096-10 on MNIST (needs
`--mnist-dir`, or MNIST where `snrkit.data.default_mnist_dir()` finds it).

Prints, per batch size, each method's median time per step, its ratio to backprop with the
95 % interval of the paired ratios, XLA's temporary memory, and the verdicts on Baydin et
al.'s ratio (0.59) and Yao's "no significant difference" and growing memory saving.
Run with `python bench/bench_cost.py [--repeats 20] [--large] [--out bench-cost]`.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
import pandas as pd

from snrkit import cost, data
from snrkit.claims import costs

SMALL = (64, 1024, 1024, 10)
LARGE = (784, 4096, 4096, 4096, 10)
BATCH_SIZES = (256, 1024, 4096)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def show(frame: pd.DataFrame) -> None:
    columns = ["batch size", "method", "time per step, median [ms]", "time relative to backprop",
               "time relative to backprop, 95% low", "time relative to backprop, 95% high",
               "XLA temporary memory [MiB]", "peak RSS [MiB]", "aggregate SNR per relative time"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 44,
                           "display.float_format", "{:.4g}".format):
        print(frame[columns].rename(columns=lambda c: c.replace("time relative to backprop", "ratio")).to_string(index=False))
    for verdict in costs.judge_all(frame):
        batch = "" if verdict.batch_size is None else f" (batch {verdict.batch_size})"
        print(f"{verdict.id}{batch}: {verdict.verdict}; {verdict.detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--large", action="store_true", help="also the 37 M-parameter MLP on MNIST")
    parser.add_argument("--mnist-dir", default=None)
    parser.add_argument("--isolate", action="store_true", help="peak RSS of each configuration in a fresh process")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSVs")
    args = parser.parse_args()

    print(f"{time.strftime('%Y-%m-%d')}, {cpu_model()}, JAX {jax.__version__}, {jax.devices()[0].platform}")
    models = [(SMALL, data.load_digits())]
    if args.large:
        folder = args.mnist_dir or data.default_mnist_dir()
        if folder is None:
            raise SystemExit("--large needs MNIST: pass --mnist-dir")
        models.append((LARGE, data.load_mnist(folder)))
    for widths, dataset in models:
        start = time.perf_counter()
        out = None if args.out is None else args.out / f"cost-{'-'.join(map(str, widths))}.csv"
        frame = cost.cost_table(widths, dataset, BATCH_SIZES, repeats=args.repeats, isolate=args.isolate, out_csv=out)
        print(f"\n{frame['model'].iloc[0]} on {dataset.name}, {frame['parameters'].iloc[0]:,} parameters "
              f"({time.perf_counter() - start:.0f} s)")
        show(frame)


if __name__ == "__main__":
    main()
