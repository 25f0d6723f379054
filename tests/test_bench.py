"""The benchmark scripts run (their figures are read by people, not asserted: tests never time).

`bench/gpu.py` runs only when a session is lent a GPU, so its `--quick` mode is run here on
the CPU: the script a GPU session runs once must not fail there for a reason a CPU shows.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(script: str, *args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900, check=False)


@pytest.mark.slow
def test_gpu_script_runs_every_section_and_keeps_its_output(tmp_path):
    result = _run("gpu.py", "--quick", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "gpu-bench.txt").read_text()
    assert log.startswith("snrkit benchmarks, ") and "JAX " in log.splitlines()[0]
    assert log.count("ratio vs (a)") == 2 and "ratio vs (b)" not in log  # both probes; no NumPy baseline
    assert "cost per training step, MLP 64-32-10" in log
    assert all(claim in log for claim in ("baydin-time-ratio", "yao-time", "yao-memory"))
    assert "Exact var(), n = 1,000,000" in log and "ratio var / reduction" in log
    assert (tmp_path / "cost-64-32-10.csv").stat().st_size > 0


@pytest.mark.slow
def test_monte_carlo_benchmark_runs_quick():
    result = _run("bench_montecarlo.py", "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("ratio vs (a)", "ratio vs (b)", "ratio var / reduction"):
        assert line in result.stdout
