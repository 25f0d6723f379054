"""MkDocs hook: render the claims-ledger page from `snrkit.claims` and the latest verdicts.

The verdicts and figures are those `snrkit report` wrote into the ledger folder
(`docs/_ledger`, refreshed by `make ledger`; `SNRKIT_LEDGER_DIR` points elsewhere, e.g. at
your own `report/`). Nothing on the page is typed by hand: the claims come from the registry,
the numbers from `claims.csv`, the figures from the report's PNGs. The build fails when the
folder and the registry disagree (a claim added, removed or reworded since the last run), so
the published ledger cannot silently go stale.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from snrkit import claims, report

PAGE = "claims.md"
FIGURE_DIR = "ledger"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "_ledger"
FIGURE_CAPTIONS = {
    "parity": "Predicted (claim) against sampled variance, one point per coordinate and claim. "
    "Points on the diagonal: the claim holds entry by entry.",
    "thread_check": "Frye's thread check: the mean entry variance against ‖∇‖², with the exact ratio 1 + (κ−2)/n.",
    "snr_vs_params": "Mean per-coordinate SNR against the parameter count, exact (lines) and Monte Carlo (points).",
    "aggregate_snr_vs_params": "Aggregate SNR ‖E g‖² / tr Cov against the parameter count.",
    "efficiency_vs_params": "Efficiency (the floor of unbiased estimators over the total MSE) against the "
    "parameter count; above 1, an estimator beats the floor on these gradients (by bias or structure).",
}


def ledger_dir() -> Path:
    """The folder of the run the page is built from."""
    return Path(os.environ.get("SNRKIT_LEDGER_DIR", DEFAULT_DIR))


def load_ledger(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """Verdicts, sweep and provenance of a report folder, checked against `snrkit.claims.CLAIMS`.

    Raises:
        PluginError: when files are missing or the verdicts do not match the registry.
    """
    fix = "run `make ledger` (or `snrkit report --out DIR` and set SNRKIT_LEDGER_DIR=DIR)"
    missing = [name for name in ("claims.csv", "snr_sweep.csv", "run.json") if not (folder / name).is_file()]
    if missing:
        raise PluginError(f"claims ledger: {folder} lacks {', '.join(missing)}; {fix}")
    verdicts = pd.read_csv(folder / "claims.csv", keep_default_na=False, na_values=[""], encoding="utf-8")
    sweep = pd.read_csv(folder / "snr_sweep.csv")
    provenance = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    recorded, registered = set(verdicts["id"]), set(claims.CLAIMS)
    if recorded != registered:
        raise PluginError(
            f"claims ledger: the verdicts in {folder} are stale: not verified {sorted(registered - recorded)}, "
            f"no longer registered {sorted(recorded - registered)}; {fix}"
        )
    stored = provenance.get("claims", {})
    changed = sorted(claim_id for claim_id, claim in claims.CLAIMS.items() if stored.get(claim_id) != claim.fingerprint())
    if changed:
        raise PluginError(f"claims ledger: claims changed since the verdicts in {folder} were computed: {changed}; {fix}")
    return verdicts, sweep, provenance


def _number(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _verdict_badge(verdict: str) -> str:
    return {"holds": "✅ holds", "refuted": "❌ refuted"}.get(verdict, f"⚠️ {verdict}")


def _outside(row) -> str:
    conditions = row.conditions
    return f" (outside its stated conditions: {conditions})" if isinstance(conditions, str) and conditions else ""


def _summary(verdicts: pd.DataFrame) -> list[str]:
    probes = [p for p in ("gaussian", "rademacher", "—") if p in set(verdicts["probe"])]
    names = {"—": "no probe to choose"}
    lines = [
        "| claim | source | kind | " + " | ".join(names.get(p, p) for p in probes) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in probes) + " |",
    ]
    for claim_id, claim in claims.CLAIMS.items():
        rows = verdicts[verdicts["id"] == claim_id]
        cells = []
        for probe in probes:
            outcomes = sorted({_verdict_badge(v) for v in rows[rows["probe"] == probe]["verdict"]})
            cells.append(", ".join(outcomes) or "—")
        lines.append(f"| [`{claim_id}`](#{claim_id}) | {_cell(claim.source)} | {claim.kind} | " + " | ".join(cells) + " |")
    return lines


def _claim_section(claim_id: str, verdicts: pd.DataFrame) -> list[str]:
    claim = claims.CLAIMS[claim_id]
    lines = [
        f"### `{claim_id}` {{ #{claim_id} }}",
        "",
        f"**Source:** {claim.source}. **Kind:** {claim.kind}. **Estimator:** {claim.about}.",
        "",
        "$$",
        claim.latex,
        "$$",
        "",
        claim.words,
        "",
        "| data | probe | n | samples | verdict | truth / claim [95 % CI] | exact ratio | p-value |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = verdicts[verdicts["id"] == claim_id]
    for r in rows.itertuples():
        interval = f"{_number(r.ratio, 4)} [{_number(r.ratio_lo, 4)}, {_number(r.ratio_hi, 4)}]"
        lines.append(
            f"| {r.data} | {r.probe} | {r.n} | {r.samples} | {_verdict_badge(r.verdict)}{_outside(r)} | {interval} | "
            f"{_number(r.exact_ratio, 4)} | {_number(r.p_value, 2)} |"
        )
    corrections = sorted({str(c) for c in rows["correction"] if isinstance(c, str) and c})
    for correction in corrections:
        lines += ["", f"!!! note \"What the data say instead\"\n    {correction}"]
    return lines + [""]


def render(verdicts: pd.DataFrame, sweep: pd.DataFrame, provenance: dict[str, object], figures: list[str]) -> str:
    """The Markdown of the ledger page."""
    mode = "quick" if provenance.get("quick") else "full"
    lines = [
        "# Claims ledger",
        "",
        (
            f"Every claim registered in `snrkit.claims.CLAIMS` ({len(claims.CLAIMS)} claims), with the verdicts of "
            f"the latest `snrkit report` run ({mode} mode, data `{provenance.get('data')}`, seed {provenance.get('seed')}, "
            f"snrkit {provenance.get('snrkit')}, jax {provenance.get('jax')}, {provenance.get('created_utc')}). "
            "This page is generated when the site is built; `make ledger` reruns the verification. "
            "Where each published derivation departs from the truth is shown step by step in "
            "[Where the papers depart](papers.md)."
        ),
        "",
    ]
    if provenance.get("quick"):
        lines += ['!!! warning "Quick run"', "    These verdicts come from a quick run with fewer samples.", ""]
    lines += ['!!! info "How to read a verdict"', "    " + report.INTRO, ""]
    lines += ["## Summary", ""] + _summary(verdicts) + [""]
    slopes = report.slope_rows(sweep)
    if slopes:
        lines += [
            "## SNR against parameter count",
            "",
            "Slope of log mean-entry SNR on log parameter count; Frye (2022) predicts −1.",
            "",
            "| estimator | source | slope [95 % CI] |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {label} | {source} | {s:.3f} [{lo:.3f}, {hi:.3f}] |" for label, source, s, lo, hi in slopes]
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for name in figures:
            caption = FIGURE_CAPTIONS.get(name, name)
            lines += [f"![{caption}]({FIGURE_DIR}/{name}.png)", "", f"*{caption}*", ""]
    lines += ["## Claims", ""]
    for claim_id in claims.CLAIMS:
        lines += _claim_section(claim_id, verdicts)
    return "\n".join(lines)


def on_files(files: Files, config) -> Files:
    folder = ledger_dir()
    verdicts, sweep, provenance = load_ledger(folder)
    figures = sorted(p.stem for p in folder.glob("*.png"))
    for name in figures:
        files.append(File.generated(config, f"{FIGURE_DIR}/{name}.png", abs_src_path=str(folder / f"{name}.png")))
    files.append(File.generated(config, PAGE, content=render(verdicts, sweep, provenance, figures)))
    return files
