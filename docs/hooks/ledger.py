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
import os
from pathlib import Path

import pandas as pd
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from snrkit import claims, plots, report

PAGE = "claims.md"
FIGURE_DIR = "ledger"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "_ledger"
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


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# Icons drawn here as inline SVG: emoji need a font the reader may lack, an SVG needs nothing.
_ICONS = {
    "holds": '<path d="M4.5 8.2l2.4 2.4 4.6-5" fill="none" stroke="#fff" stroke-width="1.8"/>',
    "refuted": '<path d="M5.2 5.2l5.6 5.6M10.8 5.2l-5.6 5.6" stroke="#fff" stroke-width="1.8"/>',
}
_OTHER_ICON = '<path d="M4.5 8h7" stroke="#fff" stroke-width="1.8"/>'


def _verdict_badge(verdict: str) -> str:
    """The verdict as coloured text after a small drawn icon (the colours of the report's figures and tables)."""
    colour = plots.VERDICT_COLOURS.get(verdict, plots.REFERENCE_COLOUR)
    icon = (
        '<svg aria-hidden="true" width="1em" height="1em" viewBox="0 0 16 16" style="vertical-align:-0.15em">'
        f'<circle cx="8" cy="8" r="7.5" fill="{colour}"/>{_ICONS.get(verdict, _OTHER_ICON)}</svg>'
    )
    return f'<span style="color:{colour};font-weight:600;white-space:nowrap">{icon} {verdict}</span>'


def _summary(verdicts: pd.DataFrame) -> list[str]:
    probes = [p for p in ("gaussian", "rademacher", "—") if p in set(verdicts["probe"])]
    names = {"—": "no probe"}
    lines = [
        "| claim | source | kind | " + " | ".join(names.get(p, p) for p in probes) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in probes) + " |",
    ]
    for claim_id, claim in claims.CLAIMS.items():
        rows = verdicts[verdicts["id"] == claim_id]
        cells = []
        for probe in probes:
            outcomes = sorted(set(rows[rows["probe"] == probe]["verdict"]))
            cells.append(" ".join(_verdict_badge(v) for v in outcomes) or "—")
        lines.append(f"| [`{claim_id}`](#{claim_id}) | {_cell(claim.source)} | {claim.kind} | " + " | ".join(cells) + " |")
    return lines


def _count(value: object) -> str:
    """A count with thousands separators; a list of counts (the scaling law's widths) as its range."""
    text = str(value)
    if text.startswith("["):
        sizes = json.loads(text)
        return f"{min(sizes):,} to {max(sizes):,} ({len(sizes)} widths)"
    return f"{int(float(text)):,}" if text.replace(".", "", 1).isdigit() else text


def _claim_section(claim_id: str, verdicts: pd.DataFrame) -> list[str]:
    claim = claims.CLAIMS[claim_id]
    rows = verdicts[verdicts["id"] == claim_id]
    several = rows["data"].nunique() > 1
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
    ]
    judged = [f"{data} (n = {_count(n)}, {_count(samples)} samples per probe)"
              for (data, n, samples), _ in rows.groupby(["data", "n", "samples"], sort=False)]
    lines += ["Judged on " + "; ".join(judged) + ".", ""]
    head = ["data"] * several + ["probe", "verdict", "truth / claim [95 % CI]", "exact ratio", "p-value"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    boxes = []
    for r in rows.itertuples():
        interval = f"{report.format_number(r.ratio)} [{report.format_number(r.ratio_lo)}, {report.format_number(r.ratio_hi)}]"
        cells = [r.data] * several + [r.probe, _verdict_badge(r.verdict) + report.outside_note(r.conditions), interval,
                                      report.format_number(r.exact_ratio), report.format_number(r.p_value, 2)]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
        if isinstance(r.correction, str) and r.correction:
            where = f"{r.probe} probe" if r.probe != "—" else "no probe to choose"
            boxes += ["", f'!!! note "What the data say instead ({where}{f", {r.data}" if several else ""})"',
                      f"    {r.correction}"]
    return lines + boxes + [""]


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
    counts, refuted = report.verdict_summary(verdicts)
    lines += ["## Summary", "", counts, "", refuted, ""]
    lines += ['!!! info "How to read a verdict"'] + [f"    - {point}" for point in report.HOW_TO_READ] + [""]
    lines += _summary(verdicts) + [""]
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
            caption = report.FIGURE_CAPTIONS.get(name, name)
            lines += [f"![{caption}]({FIGURE_DIR}/{name}.png)", "", f"*{caption}*", ""]
    lines += ["## Claims", ""]
    for claim_id in claims.CLAIMS:
        lines += _claim_section(claim_id, verdicts)
    return "\n".join(lines)


def on_files(files: Files, config) -> Files:
    folder = ledger_dir()
    verdicts, sweep, provenance = load_ledger(folder)
    found = {p.stem for p in folder.glob("*.png")}
    # In the report's order; a figure without a caption last
    figures = [name for name in report.FIGURE_CAPTIONS if name in found] + sorted(found - set(report.FIGURE_CAPTIONS))
    for name in figures:
        files.append(File.generated(config, f"{FIGURE_DIR}/{name}.png", abs_src_path=str(folder / f"{name}.png")))
    files.append(File.generated(config, PAGE, content=render(verdicts, sweep, provenance, figures)))
    return files
