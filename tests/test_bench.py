"""The benchmark scripts run (their figures are read by people, not asserted: tests never time).

`bench/gpu.py` runs only when a session is lent a GPU, so its `--quick` mode is run here on
the CPU: the script a GPU session runs once must not fail there for a reason a CPU shows.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from tests.conftest import ROOT


def _run(script: str, *args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900, check=False)


@pytest.mark.slow
def test_gpu_script_runs_every_section_and_keeps_its_output(tmp_path):
    out = tmp_path / "figures"  # made by the script
    result = _run("gpu.py", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "gpu-bench.txt").read_text()
    assert log.startswith("snrkit benchmarks, ") and "JAX " in log.splitlines()[0]
    assert log.count("ratio vs (a)") == 2 and "ratio vs (b)" not in log  # both probes; no NumPy baseline
    assert "cost per training step, MLP 64-32-10" in log
    assert all(claim in log for claim in ("baydin-time-ratio", "yao-time", "yao-memory"))
    assert "Gaussian normals, n = 1,000,000" in log and "ratio unrolled / JAX" in log
    assert "Gaussian normals of odd length" in log and "ratio threefry.normal / jax" in log
    assert "Exact var(), n = 1,000,000" in log and "ratio var / reduction" in log
    assert log.count("(c) fold alone") == 2 and log.count("draw-then-fold ceiling") == 2
    assert (out / "cost-64-32-10.csv").stat().st_size > 0


@pytest.mark.slow
def test_monte_carlo_benchmark_runs_quick():
    result = _run("bench_montecarlo.py", "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("ratio vs (a)", "ratio vs (b)", "(c) fold alone", "draw-then-fold ceiling", "ratio unrolled / JAX",
                 "ratio threefry.normal / jax", "ratio var / reduction"):
        assert line in result.stdout


@pytest.mark.slow
def test_allocator_benchmark_runs_quick():
    result = _run("bench_allocator.py", "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ratio") == 2 and "covariance prior" in result.stdout


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fold", ["rows", "block"])
def test_the_fold_alone_baseline_does_all_of_monte_carlos_fold(fold):
    # baseline (c) must add every power of every sample, or the ceiling it prints is too high
    bench = _bench_module("bench_montecarlo")
    grad = jnp.asarray(np.random.default_rng(3).standard_normal(50), jnp.float32)
    law = sk.ForwardGradient("rademacher").given(grad)
    key, chunk = jax.random.key(4), 3
    sums = bench.fold_alone(law, key, 2 * chunk + 1, chunk, fold)  # chunks of 3, 3 and 1 of the same samples
    samples = np.asarray(law.sampler(law.sampling_args, key, jnp.arange(chunk, dtype=jnp.uint32)), np.float64)
    deviations = samples - np.asarray(law.flat_mean(), np.float64)
    for power, total in enumerate(sums, start=1):
        expected = 2 * (deviations**power).sum(0) + deviations[0] ** power
        np.testing.assert_allclose(np.asarray(total), expected, rtol=1e-12, atol=1e-12)
