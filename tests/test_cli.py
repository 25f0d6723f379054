"""The command line end to end (with --quick), in a subprocess like a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from snrkit.report import FIGURE_CAPTIONS

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
    """The quick report in the default folder; it keeps its sweep apart from a full report's, so the
    two kinds of report can share a folder (a full report's sweep CSV there is left untouched)."""
    (tmp_path / "report").mkdir()
    full_sweep = tmp_path / "report" / "snr_sweep.csv"
    full_sweep.write_text("written by a full report\n")
    result = run("report", "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "report"
    figures = [f"{name}.png" for name in FIGURE_CAPTIONS]
    for name in ("report.html", "report.md", "claims.csv", "snr_sweep_quick.csv", "run.json", *figures):
        assert (out / name).stat().st_size > 0, name
    assert full_sweep.read_text() == "written by a full report\n"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "frye-eq5" in html
    # Every figure, in the captions' order, under its caption (not its file name).
    markdown = (out / "report.md").read_text()
    assert [markdown.index(f"]({name})") for name in figures] == sorted(markdown.index(f"]({name})") for name in figures)
    assert all(f"*{caption}*" in markdown for caption in FIGURE_CAPTIONS.values())
    assert "refuted" in result.stdout and "holds" in result.stdout


def test_sweep_and_report_default_paths_differ():
    """`snrkit sweep` then `snrkit report` with default paths must not share one CSV (their settings differ)."""
    help_text = run("sweep", "--help").stdout
    assert "sweep/snr_sweep.csv" in help_text and "sweep/snr_sweep_quick.csv" in help_text


def test_verify_table_keeps_claim_ids_whole_at_80_columns():
    result = subprocess.run(
        [sys.executable, "-m", "snrkit", "verify", "--claim", "yao-partition-beats-directions", "--claim", "frye-eq1",
         "--probe", "gaussian", "--quick"],
        capture_output=True, text=True, env={**ENV, "COLUMNS": "80"}, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("yao-partition-beats-directions" in line for line in lines)
    assert any("frye-eq1" in line and "refuted" in line for line in lines)


def test_verify_json_is_valid_json_with_null_for_nan():
    """frye-snr has no p-value (a deterministic fit): JSON null, not a bare NaN."""
    result = run("verify", "--claim", "frye-snr", "--json", "--quick")
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout
    (verdict,) = json.loads(result.stdout)
    assert verdict["p_value"] is None and verdict["id"] == "frye-snr"


@pytest.mark.parametrize("seed", ["4294967296", "-1", "99999999999999999999999"])
def test_seed_out_of_range_is_one_clear_line(seed):
    result = run("verify", "--claim", "frye-eq1", "--seed", seed)
    assert result.returncode == 2
    assert "--seed" in result.stderr and "Traceback" not in result.stderr


def test_output_under_a_regular_file_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    for command in (["report", "--quick", "--out", str(blocker / "report")], ["sweep", "--quick", "--out", str(blocker / "s.csv")]):
        result = run(*command)
        assert result.returncode == 1 and "is a file, not a folder" in result.stderr, result.stderr
        assert "Errno" not in result.stderr and "Traceback" not in result.stderr


def test_bad_mnist_dir_is_found_before_any_work(tmp_path):
    result = run("verify", "--claim", "frye-thread", "--mnist-dir", str(tmp_path / "absent"))
    assert result.returncode == 1 and "MNIST folder" in result.stderr and "does not exist" in result.stderr
