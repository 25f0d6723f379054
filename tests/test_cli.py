"""The command line end to end (with --quick), in a subprocess like a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# A private compile cache: the test must not depend on, or fill, the user's ~/.cache/snrkit.
ENV = {**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "160", "SNRKIT_CACHE_DIR": tempfile.mkdtemp(prefix="snrkit-cache-")}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snrkit", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600
    )


@pytest.mark.parametrize("command", [[], ["report"], ["verify"], ["sweep"]])
def test_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_bad_arguments_give_one_clear_line():
    result = run("verify", "--claim", "frye-eq99", "--quick")
    assert result.returncode == 1
    assert "unknown claim 'frye-eq99'; known claims:" in result.stderr
    result = run("report", "--data", "cifar")
    assert result.returncode == 2 and "cifar" in result.stderr


def test_verify_json(tmp_path):
    result = run("verify", "--claim", "frye-eq1", "--claim", "daprato-variance", "--json", "--quick")
    assert result.returncode == 0, result.stderr
    verdicts = json.loads(result.stdout)
    assert [v["id"] for v in verdicts] == ["frye-eq1", "frye-eq1", "daprato-variance", "daprato-variance"]
    for v in verdicts:
        assert {"id", "source", "statement", "holds", "ratio", "ratio_ci", "p_value", "setting"} <= set(v)
    by_probe = {(v["id"], v["setting"]["probe"]): v["holds"] for v in verdicts}
    assert by_probe[("frye-eq1", "gaussian")] is False  # 4‖∇‖² is ~4x the truth


@pytest.mark.slow
def test_report_quick(tmp_path):
    out = tmp_path / "rep"
    result = run("report", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("report.html", "report.md", "claims.csv", "snr_sweep.csv", "run.json", "snr_vs_params.png", "parity.png"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "frye-eq5" in html
    assert "refuted" in result.stdout and "holds" in result.stdout
