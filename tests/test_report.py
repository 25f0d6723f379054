"""The report's frames and pages: what a reader sees first, the tables' width, the figures' captions and data.

The ledger page shares the report's captions, summary and number format; its verdicts are drawn
icons, not emoji, and each "what the data say instead" box names its probe, in the table's order.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from snrkit import claims, plots, report
from snrkit.claims.bibliography import REFERENCES
from tests.conftest import pinned_key

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "docs" / "_ledger"


def load_ledger_hook():
    spec = importlib.util.spec_from_file_location("docs_hook_ledger", ROOT / "docs" / "hooks" / "ledger.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def claims_like_frame() -> pd.DataFrame:
    """The columns of verdict_frame, for three claims; one judged on two data sets, one with no probe."""
    rows = [
        ("frye-eq1", "digits", "gaussian", "refuted", 0.274, 0.271, 0.277, 2.9e-49, "truth ≈ 0.274 × claim (gaussian)"),
        ("frye-eq1", "digits", "rademacher", "refuted", 0.224, 0.223, 0.226, 7.4e-71, "truth ≈ 0.224 × claim (rademacher)"),
        ("frye-thread", "digits", "gaussian", "holds", 0.995, 0.968, 1.02, 1.0, ""),
        ("frye-thread", "mnist", "gaussian", "holds", 1.03, 1.0, 1.05, 1.0, ""),
        ("flugel-mean-length", "digits", "—", "refuted", 1.05, 1.04, 1.05, 2.9e-12, "the expected length is 1.05 × the claim"),
    ]
    frame = pd.DataFrame(rows, columns=["id", "data", "probe", "verdict", "ratio", "ratio_lo", "ratio_hi", "p_value",
                                        "correction"])
    frame["conditions"] = ""
    frame["exact_ratio"] = frame["ratio"]
    frame["statement"] = frame["id"].map(lambda c: claims.CLAIMS[c].words)
    frame["source"] = frame["id"].map(lambda c: claims.CLAIMS[c].source)
    frame["n"], frame["samples"] = 10, 131_072
    return frame


def sweep_like_frame() -> pd.DataFrame:
    n = np.array([1_000, 4_000, 16_000])
    return pd.DataFrame({"label": "FG", "source": "exact", "metric": "mean_entry_snr", "n": n, "value": 1 / n})


def markdown_tables(text: str) -> list[list[str]]:
    """Header cells of every Markdown table."""
    return [[c.strip() for c in line.strip("|").split("|")] for line, rule in zip(text.splitlines(), text.splitlines()[1:])
            if line.startswith("|") and rule.startswith(("| ---", "|---"))]


# ----------------------------------------------------------------------------------------
# Frames


def test_parity_frame_names_snrkit_laws_once_and_keeps_claim_probe_and_verdict():
    grad = jnp.array([3.0, -1.0, 0.5, 2.0])
    verdicts = [claims.verify(c, grad, key=pinned_key(0), probe=p)
                for c in ("snrkit-variance", "frye-eq5", "frye-thread") for p in ("gaussian", "rademacher")]
    frame = report.parity_frame(verdicts)
    assert list(frame.columns) == ["claim", "probe", "verdict", "predicted", "measured"]
    # Four entries per per-entry verdict; the average-entry claim (frye-thread) adds nothing.
    assert frame.groupby(["claim", "probe", "verdict"], sort=False).size().to_dict() == {
        ("snrkit exact law", "gaussian", "holds"): 4, ("snrkit exact law", "rademacher", "holds"): 4,
        ("frye-eq5", "gaussian", "refuted"): 4, ("frye-eq5", "rademacher", "refuted"): 4,
    }
    g = np.asarray(grad, np.float64)
    eq5 = frame[(frame["claim"] == "frye-eq5") & (frame["probe"] == "gaussian")]
    np.testing.assert_allclose(eq5["predicted"], 2 * g**2 + 4 * (g @ g - g**2))  # Frye's eq. (5), as printed
    exact = frame[(frame["claim"] == "snrkit exact law") & (frame["probe"] == "gaussian")]
    np.testing.assert_allclose(exact["predicted"], g @ g + g**2)  # Var[g_i] = ‖∇‖² + ∇_i² (κ = 3)


def test_thread_check_frame_spans_decades_on_digits_with_the_exact_law():
    """The quick report's thread check on digits (the quick sweep's three networks, three checkpoints)."""
    ((dataset, settings),) = report._thread_settings(quick=True, mnist=None)
    assert dataset.name == "digits" and settings["num_samples"] == 1024
    frame = report.thread_check_frame(key=pinned_key(3), dataset=dataset, **settings)
    two_layers = [64 * h + h + h * h + h + h * 10 + 10 for h in (11, 21, 36)]  # the sweep's n ≈ 1,000, 2,000, 4,000
    assert frame["n"].tolist() == [n for n in two_layers for _ in range(3)]
    assert frame["step"].tolist() == [0, 100, 1000] * 3
    assert frame["norm_sq"].max() / frame["norm_sq"].min() >= 100  # two decades of ‖∇‖² for the log-log check
    # Exact mean entry variance of the Gaussian probe (κ = 3): ‖∇‖²(1 + 1/n).
    np.testing.assert_allclose(frame["exact_mean_entry_var"], frame["norm_sq"] * (1 + 1 / frame["n"]), rtol=1e-6)
    # Measured: the mean entry variance is ≈ s² with s = v·∇ ~ N(0, ‖∇‖²), relative sd √(2/N) = 0.044 at
    # N = 1,024; six sd (0.27) bound a true ratio of 1 with a false failure below 1e-8 per point.
    ratio = frame["mean_entry_var"] / frame["norm_sq"]
    assert np.all(np.abs(ratio - 1) < 0.27)
    assert np.all((frame["lo"] < frame["mean_entry_var"]) & (frame["mean_entry_var"] < frame["hi"]))
    # A 95 % interval of about ±2·0.044, within a factor 3 either way.
    half = (frame["hi"] - frame["lo"]) / 2 / frame["norm_sq"]
    assert np.all((half > 0.09 / 3) & (half < 0.09 * 3))
    with pytest.raises(ValueError, match="needs hidden layers and steps"):
        report.thread_check_frame(key=pinned_key(3), dataset=dataset, hidden=())


# ----------------------------------------------------------------------------------------
# The report's pages


def test_verdict_summary_counts_per_probe_and_lists_refuted_claims():
    counts, refuted = report.verdict_summary(claims_like_frame())
    assert counts == "Gaussian probe: 2 holds, 1 refuted. Rademacher probe: 1 refuted. No probe to choose: 1 refuted."
    assert refuted == "Refuted: frye-eq1 (gaussian, rademacher); flugel-mean-length."
    frame = claims_like_frame()
    frame["verdict"] = "holds"
    assert report.verdict_summary(frame)[1] == "Refuted: none."


@pytest.fixture
def pages(tmp_path):
    figures = {}
    for name in report.FIGURE_CAPTIONS:
        fig, axes = plots.figure()
        axes[0, 0].plot([1, 2], [1, 2])
        figures[name] = plots.save(fig, tmp_path / f"{name}.png")
    document = report._document(claims_like_frame(), sweep_like_frame(), figures, quick=True)
    return report._markdown(document), report._html(document, quick=True)


def test_report_starts_with_a_summary_then_a_narrow_verdict_table(pages):
    markdown, html = pages
    headings = re.findall(r"^## (.+)$", markdown, re.MULTILINE)
    assert headings == [
        "Summary", "How to read a verdict", "Verdicts", "SNR against parameter count", "Figures", "Claims", "References",
    ]
    summary = markdown.split("## Summary")[1].split("##")[0]
    assert "Gaussian probe: 2 holds, 1 refuted." in summary and "Refuted: frye-eq1 (gaussian, rademacher)" in summary
    tables = markdown_tables(markdown)
    assert tables[0] == ["claim", "probe", "verdict", "truth / claim [95 % CI]", "p-value"]
    assert max(len(t) for t in tables) <= 5
    verdicts = markdown.split("## Verdicts")[1].split("##")[0]
    # A claim judged on two data sets says which; three significant digits, trailing zeros kept.
    assert "| frye-thread on mnist | gaussian | holds | 1.03 [1.00, 1.05] | 1.0 |" in verdicts
    assert "| frye-eq1 | gaussian | refuted | 0.274 [0.271, 0.277] | 2.9e-49 |" in verdicts
    # Statement, source and correction moved below, per claim.
    details = markdown.split("## Claims")[1]
    assert claims.CLAIMS["frye-eq1"].source not in verdicts and claims.CLAIMS["frye-eq1"].source in details
    assert "truth ≈ 0.224 × claim (rademacher)" in details and "truth ≈" not in verdicts
    assert max(len(re.findall(r"<th>", table)) for table in html.split("<table>")[1:]) <= 5
    assert html.index("Summary") < html.index("<table>")


def test_report_figures_carry_the_docs_captions(pages):
    markdown, html = pages
    for name, caption in report.FIGURE_CAPTIONS.items():
        assert f"![{caption}]({name}.png)" in markdown
        assert f"*{caption}*" in markdown
        assert f"<figcaption>{caption}</figcaption>" in html.replace("&#x27;", "'")
        assert f"<figcaption>{name}</figcaption>" not in html
    holds = plots.VERDICT_COLOURS["holds"]
    assert f'<td style="color:{holds};font-weight:bold">holds</td>' in html


def test_report_cites_every_source_with_its_link(pages):
    """The report reads without the docs: each work a judged claim comes from is listed with
    its authors, title and link (or the note saying why there is none), in both formats."""
    markdown, html = pages
    references = markdown.split("## References")[1]
    keys = dict.fromkeys(claims.CLAIMS[claim_id].reference for claim_id in claims_like_frame()["id"])
    assert len(keys) >= 2
    for key in keys:
        entry = REFERENCES[key]
        assert entry.title in references and entry.title in html
        assert (entry.url or entry.note) in references
        if entry.url:
            assert f'<a href="{entry.url}">' in html
    assert references.count("\n- ") == len(keys)


# ----------------------------------------------------------------------------------------
# The ledger page


@pytest.fixture(scope="module")
def ledger_page() -> str:
    hook = load_ledger_hook()
    verdicts = pd.read_csv(LEDGER / "claims.csv", keep_default_na=False, na_values=[""], encoding="utf-8")
    sweep = pd.read_csv(LEDGER / "snr_sweep.csv")
    provenance = json.loads((LEDGER / "run.json").read_text(encoding="utf-8"))
    return hook.render(verdicts, sweep, provenance, list(report.FIGURE_CAPTIONS))


def test_ledger_shares_the_reports_captions_and_summary(ledger_page):
    assert not hasattr(load_ledger_hook(), "FIGURE_CAPTIONS")  # one dict, the report's
    for name, caption in report.FIGURE_CAPTIONS.items():
        assert f"![{caption}](ledger/{name}.png)" in ledger_page
    verdicts = pd.read_csv(LEDGER / "claims.csv", keep_default_na=False, na_values=[""], encoding="utf-8")
    for line in report.verdict_summary(verdicts):
        assert f"\n{line}\n" in ledger_page


def test_ledger_verdicts_are_drawn_icons_not_emoji(ledger_page):
    emoji = re.compile("[\u2600-\u27bf\ufe0f\U0001f000-\U0001faff]")
    assert not emoji.findall(ledger_page)
    badges = re.findall(r'<span style="color:(#[0-9a-f]{6});[^"]*"><svg[^>]*>.*?</svg> ([a-z ]+)</span>', ledger_page)
    assert badges and all(plots.VERDICT_COLOURS[verdict] == colour for colour, verdict in badges)


def test_ledger_claim_tables_are_narrow_and_boxes_name_their_probe_in_table_order(ledger_page):
    sections = ledger_page.split("\n### ")[1:]
    assert len(sections) == len(claims.CLAIMS)
    verdicts = pd.read_csv(LEDGER / "claims.csv", keep_default_na=False, na_values=[""], encoding="utf-8")
    for section in sections:
        claim_id = section.split("`")[1]
        widths = [len(header) for header in markdown_tables(section)]
        assert widths and max(widths) <= 6, claim_id
        rows = verdicts[verdicts["id"] == claim_id]
        corrected = rows[rows["correction"].fillna("") != ""]
        boxes = re.findall(r'!!! note "What the data say instead \(([^)]*)\)"\n    (.*)', section)
        expected = [(f"{r.probe} probe" if r.probe != "—" else "no probe to choose")
                    + (f", {r.data}" if rows["data"].nunique() > 1 else "") for r in corrected.itertuples()]
        assert [where for where, _ in boxes] == expected, claim_id
        assert [text for _, text in boxes] == corrected["correction"].tolist(), claim_id
