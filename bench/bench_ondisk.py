"""Streamed exact moments of a gradient on disk (snrkit.ondisk) against one plain pass over it.

A float32 gradient of n coordinates (default 10^9, three leaves) is written to a gradient
folder under --dir (a temporary folder, deleted afterwards). Timed in the same run:

  * baseline: one plain chunked pass that reads the memmap and sums ∇² in float64;
  * ondisk.total_variance (two passes, nothing written), Gaussian and Rademacher probes
    (block sums; the sums of the others, without cancellation);
  * ondisk.var and ondisk.snr (two passes, n float64 values written), and var in float32.

Printed: seconds, ratios to the baseline, and the process's peak resident memory
(ru_maxrss) after the streamed runs, against the n × 8 bytes one float64 copy would hold.
Target: O(n), a small constant times the baseline pass; peak memory bounded by the chunk.

    python bench/bench_ondisk.py            # n = 10^9 (minutes; about 3n × 8 bytes of disk)
    python bench/bench_ondisk.py --n 10000000
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import snrkit as sk
from snrkit import ondisk


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def leaf_shapes(n: int) -> dict[str, tuple[int, ...]]:
    """Three leaves: (r, 2048), (r, 1024) and the rest, flat (r = n // 4096)."""
    rows = n // 4096
    return {"w1": (rows, 2048), "w2": (rows, 1024), "b": (n - 3072 * rows,)}


def write_gradient(folder: Path, n: int, chunk: int, seed: int = 0) -> None:
    """A float32 N(0, 1/n) gradient as a gradient folder, written chunk by chunk (bounded memory)."""
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / np.sqrt(n))

    class Generated:
        """An array-like that draws its values as they are read, in order."""

        def __init__(self, shape: tuple[int, ...]):
            self.shape, self.dtype = shape, np.dtype(np.float32)

        def __getitem__(self, index: tuple) -> np.ndarray:
            shape = np.empty(self.shape, dtype=[])[index].shape  # the piece's shape, no data
            return rng.standard_normal(shape, dtype=np.float32) * scale

    tree = {name: Generated(shape) for name, shape in leaf_shapes(n).items()}
    ondisk.save_gradient(tree, folder, chunk_elements=chunk)


def baseline_pass(folder: Path, chunk: int) -> float:
    """One plain chunked pass: read the memmap, sum ∇² in float64."""
    total = 0.0
    for leaf in ondisk.open_gradient(folder).values():
        flat = leaf.reshape(-1)
        for start in range(0, flat.size, chunk):
            piece = np.asarray(flat[start:start + chunk], np.float64)
            total += float(np.dot(piece, piece))
    return total


def baseline_file_pass(folder: Path, chunk: int) -> float:
    """The same pass with plain file reads (how snrkit.ondisk reads a gradient folder)."""
    total = 0.0
    for leaf in ondisk.open_gradient(folder).values():
        with open(leaf.filename, "rb") as f:
            f.seek(leaf.offset)
            for start in range(0, leaf.size, chunk):
                piece = np.fromfile(f, np.float32, min(chunk, leaf.size - start)).astype(np.float64)
                total += float(np.dot(piece, piece))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10**9)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder in /tmp)")
    parser.add_argument("--chunk", type=int, default=ondisk.DEFAULT_CHUNK_ELEMENTS)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="snrkit-bench-", dir=args.dir))
    try:
        grad, n, chunk = root / "grad", args.n, args.chunk
        t_write, _ = timed(lambda: write_gradient(grad, n, chunk))
        print(f"n = {n:.3g} float32 coordinates ({n * 4 / 2**30:.2f} GiB), chunk = {chunk}, written in {t_write:.1f} s")
        rss_before = peak_rss_bytes()

        runs: dict[str, tuple[float, object]] = {}
        gaussian, rademacher = sk.ForwardGradient("gaussian"), sk.ForwardGradient("rademacher")
        runs["total_variance (gaussian)"] = timed(lambda: ondisk.total_variance(gaussian, grad, chunk_elements=chunk))
        runs["total_variance (rademacher)"] = timed(
            lambda: ondisk.total_variance(rademacher, grad, chunk_elements=chunk))
        runs["var (gaussian, float64 out)"] = timed(
            lambda: ondisk.var(gaussian, grad, root / "var", chunk_elements=chunk))
        runs["snr (gaussian, float64 out)"] = timed(
            lambda: ondisk.snr(gaussian, grad, root / "snr", chunk_elements=chunk))
        shutil.rmtree(root / "snr")
        runs["var (rademacher, float32 out)"] = timed(
            lambda: ondisk.var(rademacher, grad, root / "var", chunk_elements=chunk, dtype="float32", overwrite=True))
        rss_streamed = peak_rss_bytes()

        t_file, _ = min((timed(lambda: baseline_file_pass(grad, chunk)) for _ in range(2)), key=lambda r: r[0])
        t_base, norm = min((timed(lambda: baseline_pass(grad, chunk)) for _ in range(2)), key=lambda r: r[0])
        rss_all = peak_rss_bytes()

        print(f"baseline (read memmap, sum ∇² in float64): {t_base:.2f} s, {n * 4 / t_base / 2**30:.2f} GiB/s")
        print(f"  the same pass with plain file reads: {t_file:.2f} s ({t_file / t_base:.2f} × the memmap pass)")
        print(f"{'streamed':32s} {'seconds':>8s} {'÷ baseline':>10s}")
        for name, (seconds, _) in runs.items():
            print(f"{name:32s} {seconds:8.2f} {seconds / t_base:10.2f}")
        tv = runs["total_variance (gaussian)"][1]
        print(f"check: total variance {tv:.6g} = (n + 1)‖∇‖² = {(n + 1) * norm:.6g}")
        print(f"peak RSS: {rss_before / 2**20:.0f} MiB after writing, {rss_streamed / 2**20:.0f} MiB after the "
              f"streamed runs, {rss_all / 2**20:.0f} MiB after the baseline (n × 8 bytes = {n * 8 / 2**20:.0f} MiB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
