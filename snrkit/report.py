"""The main job: verdicts on every claim, the SNR sweep and the figures, as HTML, Markdown and CSV.

[`build_report`][snrkit.report.build_report] runs everything (it is `snrkit report` on the
command line); the `*_frame` functions turn verdicts into the tidy frames the report's
tables and figures are drawn from.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from snrkit import claims, report
    >>> verdicts = [claims.verify(c, jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0))
    ...             for c in ("snrkit-variance", "frye-eq5")]
    >>> report.verdict_frame(verdicts)[["id", "verdict"]].values.tolist()
    [['snrkit-variance', 'holds'], ['frye-eq5', 'refuted']]
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from snrkit import __version__, claims, data, plots, sweeps
from snrkit.claims.engine import claim_probes
from snrkit.core.io import check_output_folder, write_atomic
from snrkit.core.validation import MAX_SEED, check_int

StepFn = Callable[[str], None]
"""`on_step(description)`: called by [`build_report`][snrkit.report.build_report] before each stage."""
QUICK_TARGETS = sweeps.SWEEP_QUICK_TARGETS[:3]
"""Parameter-count targets of the quick report's sweep, all sampled: three widths, the
fewest the scaling-law verdict fits a slope with an interval to."""
ProgressFn = Callable[[str, int, int], None]
"""`on_progress(what, done, total)`: called during long stages (see
[snrkit.sweeps.SweepProgressFn][])."""


@dataclass(frozen=True)
class Report:
    """What [`build_report`][snrkit.report.build_report] wrote.

    Examples:
        >>> import jax
        >>> from pathlib import Path
        >>> from snrkit.report import build_report
        >>> result = build_report(Path("report"), quick=True)  # doctest: +SKIP
        >>> sorted(result.figures)  # doctest: +SKIP
        ['aggregate_snr_vs_params', 'parity', 'snr_vs_params', 'thread_check']
    """

    out: Path
    """The folder holding `report.html`, `report.md`, `claims.csv`, `snr_sweep.csv`,
    `run.json` and the PNGs."""
    verdicts: list[claims.Verdict]
    """Every [`Verdict`][snrkit.claims.Verdict], in ledger order, each claim under each probe."""
    claims_frame: pd.DataFrame
    """The verdicts as a frame ([`verdict_frame`][snrkit.report.verdict_frame]), as written to
    `claims.csv`."""
    sweep_frame: pd.DataFrame
    """The SNR sweep ([snrkit.sweeps.snr_sweep][]), as written to `snr_sweep.csv`."""
    figures: dict[str, Path]
    """Figure name -> PNG path (`snr_vs_params`, `aggregate_snr_vs_params`, `parity` and,
    when a thread verdict exists, `thread_check`)."""


def verdict_frame(verdicts: list[claims.Verdict]) -> pd.DataFrame:
    """One row per verdict: id, probe, verdict, conditions, ratio and interval, p-value, exact ratio, correction, setting.

    The columns are fields of [`Verdict`][snrkit.claims.Verdict] (where `ratio`,
    `ratio_ci`, `p_value`, `exact_ratio` and `conditions` are defined; `conditions` is
    empty unless the claim was judged outside its stated conditions), with `ratio_ci` split
    into `ratio_lo` and `ratio_hi`, plus `data`, `probe`, `n` and `samples` from its setting
    and the whole setting as one `key=value; ...` string. This is `claims.csv` of a report and
    the source of the [claims ledger](../claims.md).

    Args:
        verdicts: from [snrkit.claims.verify][] or [snrkit.claims.verify_all][].

    Returns:
        A frame with one row per verdict.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.claims import verify
        >>> from snrkit.report import verdict_frame
        >>> v = verify("frye-eq5", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0))
        >>> frame = verdict_frame([v])
        >>> frame.loc[0, ["id", "probe", "verdict"]].tolist(), int(frame.loc[0, "n"])
        (['frye-eq5', 'gaussian', 'refuted'], 4)
        >>> round(float(frame.loc[0, "exact_ratio"]), 3)
        0.376
    """
    rows = []
    for v in verdicts:
        rows.append(
            {
                "id": v.id,
                "data": v.setting.get("data", ""),
                "probe": v.setting.get("probe", ""),
                "verdict": v.verdict,
                "holds": v.holds,
                "conditions": v.conditions,
                "ratio": v.ratio,
                "ratio_lo": v.ratio_ci[0],
                "ratio_hi": v.ratio_ci[1],
                "p_value": v.p_value,
                "exact_ratio": v.exact_ratio,
                "kind": v.kind,
                "source": v.source,
                "statement": v.statement,
                "correction": v.correction,
                "n": v.setting.get("n", ""),
                "samples": v.setting.get("samples", ""),
                "setting": "; ".join(f"{k}={val}" for k, val in v.setting.items()),
            }
        )
    return pd.DataFrame(rows)


def parity_frame(verdicts: list[claims.Verdict]) -> pd.DataFrame:
    """Measured against predicted per-entry variance for snrkit's law and each per-entry claim.

    Each verdict with per-entry arrays ([`Verdict.entries`][snrkit.claims.Verdict.entries])
    of a per-entry claim (`test="entry-variance"`) adds its claim's prediction against the
    Monte Carlo variance, and snrkit's exact law against the same samples once per setting
    (layer, probe, estimator). Claims whose prediction is the exact law itself only add the
    exact law; average-entry claims add nothing, being about the average only.

    Args:
        verdicts: from [snrkit.claims.verify][] or [snrkit.claims.verify_all][].

    Returns:
        The frame [snrkit.plots.plot_parity][] draws: columns `formula` (`"<claim id>
        (<probe>)"` or `"snrkit exact (<probe>)"`), `predicted` and `measured`, one row per
        entry.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.claims import verify
        >>> from snrkit.report import parity_frame
        >>> v = verify("frye-eq5", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0))
        >>> parity_frame([v])["formula"].value_counts(sort=False).to_dict()
        {'snrkit exact (gaussian)': 4, 'frye-eq5 (gaussian)': 4}
    """
    parts = []
    seen_exact = set()
    for v in verdicts:
        if v.entries is None or v.test != "entry-variance":
            continue
        probe = v.setting.get("probe", "")
        setting_key = (v.setting.get("layer"), probe, v.setting.get("estimator"))
        if setting_key not in seen_exact:
            seen_exact.add(setting_key)
            parts.append(
                pd.DataFrame(
                    {"formula": f"snrkit exact ({probe})", "predicted": v.entries["exact"], "measured": v.entries["measured"]}
                )
            )
        if claims.CLAIMS[v.id].predict is not None:  # a claim that is the exact law adds nothing new
            parts.append(
                pd.DataFrame({"formula": f"{v.id} ({probe})", "predicted": v.entries["predicted"], "measured": v.entries["measured"]})
            )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["formula", "predicted", "measured"])


def thread_frame(verdicts: list[claims.Verdict]) -> pd.DataFrame:
    r"""Frye's thread check: mean entry variance (measured, exact) against ‖∇‖², one row per setting.

    From each average-entry verdict (`test="average-variance"`: Frye's thread, the mean over
    entries of $\operatorname{Var}[g_i]$ equals $\|\nabla\|^2$): the measured mean entry
    variance `ratio` $\times$ the claimed average with its interval, and the exact
    $\frac1n\sum_i\operatorname{Var}[g_i]$ ($\|\nabla\|^2(1 + (\kappa-2)/n)/K$ for the
    forward gradient).

    Args:
        verdicts: from [snrkit.claims.verify][] or [snrkit.claims.verify_all][]; verdicts of
            other claims are ignored.

    Returns:
        The frame [snrkit.plots.plot_thread_check][] draws: columns `setting`, `norm_sq`,
        `mean_entry_var`, `lo`, `hi` and `exact_mean_entry_var`.

    Examples:
        Four entries, Gaussian probe: the exact mean entry variance is
        $\|\nabla\|^2(1 + 1/4)$, a quarter above the thread's claim.

        >>> import jax, jax.numpy as jnp
        >>> from snrkit.claims import verify
        >>> from snrkit.report import thread_frame
        >>> v = verify("frye-thread", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0))
        >>> row = thread_frame([v]).iloc[0]
        >>> float(row["norm_sq"]), round(float(row["exact_mean_entry_var"]), 4)
        (14.25, 17.8125)
    """
    rows = []
    for v in verdicts:
        if v.test != "average-variance" or v.entries is None:
            continue
        norm_sq = float(np.mean(v.entries["predicted"]))
        rows.append(
            {
                "setting": f"{v.setting.get('network', '')} on {v.setting.get('data', '')} ({v.setting.get('probe', '')})",
                "norm_sq": norm_sq,
                "mean_entry_var": v.ratio * norm_sq,
                "lo": v.ratio_ci[0] * norm_sq,
                "hi": v.ratio_ci[1] * norm_sq,
                "exact_mean_entry_var": float(np.mean(v.entries["exact"])),
            }
        )
    return pd.DataFrame(rows)


def build_report(
    out: Path,
    *,
    data_name: str = "digits",
    mnist_dir: str | None = None,
    quick: bool = False,
    seed: int = 0,
    on_step: StepFn | None = None,
    on_progress: ProgressFn | None = None,
) -> Report:
    """Verify every claim, run the SNR sweep, draw the figures and write the report.

    The SNR sweep is [snrkit.sweeps.snr_sweep][] (with `quick`, the Gaussian forward
    gradient at [`QUICK_TARGETS`][snrkit.report.QUICK_TARGETS]), kept in `snr_sweep.csv`
    (`snr_sweep_quick.csv` with `quick`, so both kinds of report can share a folder); the
    verdicts are [snrkit.claims.verify_all][] under both probes, reusing the sweep for the
    scaling law, plus the claims that are also judged on MNIST
    ([`Claim.also_on`][snrkit.claims.records.Claim.also_on]) when MNIST is found; the
    figures are those of [`snrkit.plots`][snrkit.plots]. `run.json` records the snrkit and
    JAX versions, the time, the data, `quick` and the seed. Every input (the data name, the
    seed, the MNIST folder, the output folder) is checked before the long work starts.

    Args:
        out: folder for `report.html`, `report.md`, `claims.csv`, `snr_sweep.csv`, `run.json`
            and PNGs.
        data_name: `"digits"` (embedded) or `"mnist"` for the network-level claims.
        mnist_dir: folder of the MNIST IDX files; defaults to
            [snrkit.data.default_mnist_dir][].
        quick: fewer samples and a smaller sweep.
        seed: seed of every random draw and of the default networks, in `[0, 2**32)`.
        on_step: called with a description before each stage.
        on_progress: called as `(what, done, total)` during long stages.

    Returns:
        A [`Report`][snrkit.report.Report] of what was written.

    Raises:
        ValueError: an unknown `data_name`, a bad seed, `"mnist"` without the MNIST files,
            MNIST files that cannot be read, or an output folder that cannot be one.

    Examples:
        Trains networks and verifies every claim, so it takes minutes rather than seconds:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from snrkit.report import build_report
        >>> result = build_report(Path(tempfile.mkdtemp()), quick=True)  # doctest: +SKIP
        >>> (result.out / "report.html").is_file()  # doctest: +SKIP
        True
    """
    step = on_step or (lambda _: None)
    if data_name not in ("digits", "mnist"):
        raise ValueError(f"data must be 'digits' or 'mnist', got {data_name!r}")
    seed = check_int(seed, "seed", minimum=0, maximum=MAX_SEED)
    mnist = str(mnist_dir) if mnist_dir else (str(data.default_mnist_dir()) if data.default_mnist_dir() else None)
    if data_name == "mnist" and mnist is None:
        raise ValueError("--data mnist needs the MNIST IDX files: pass --mnist-dir PATH (or set SNRKIT_MNIST_DIR)")
    if mnist is not None:
        data.check_mnist_dir(mnist)  # used by the network-level claims: checked before the long work
    check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)

    step("SNR against parameter count")
    sweep_frame = sweeps.snr_sweep(
        key=jax.random.fold_in(key, 2),
        # Quick and full sweeps keep separate files, so both kinds of report can share a folder.
        out_csv=out / ("snr_sweep_quick.csv" if quick else "snr_sweep.csv"),
        # quick: the Gaussian forward gradient only, sampled at three small widths (the
        # scaling-law verdict needs at least three sampled widths).
        targets=QUICK_TARGETS if quick else sweeps.SWEEP_TARGETS,
        mc_targets=QUICK_TARGETS if quick else sweeps.SWEEP_MC_TARGETS,
        num_samples=sweeps.SWEEP_QUICK_NUM_SAMPLES if quick else 32 * 256,
        estimators=sweeps.SWEEP_ESTIMATORS[:1] if quick else sweeps.SWEEP_ESTIMATORS,
        on_progress=on_progress,
    )

    probes = ("gaussian", "rademacher")
    extra = [] if data_name != "digits" or mnist is None else [c for c in claims.CLAIMS.values() if "mnist" in c.also_on]
    total = sum(len(claim_probes(c, probes)) for c in claims.CLAIMS.values()) + sum(
        len(claim_probes(c, probes[:1] if quick else probes)) for c in extra)
    done = {"n": 0}

    def on_claim(claim_id: str, probe: str) -> None:
        step(f"verifying {claim_id} ({probe})")
        if on_progress:
            on_progress("claims", done["n"], total)
        done["n"] += 1

    verdicts = claims.verify_all(
        key=jax.random.fold_in(key, 0), quick=quick, probes=probes, mnist_dir=mnist if data_name == "mnist" else None,
        on_claim=on_claim, sweep_frame=sweep_frame, seed=seed,
    )
    for claim in extra:
        for probe in claim_probes(claim, probes[:1] if quick else probes):
            on_claim(f"{claim.id} on MNIST", probe or "—")
            verdicts.append(claims.verify(claim.id, key=jax.random.fold_in(key, 1), quick=quick, probe=probe or None,
                                          mnist_dir=mnist, seed=seed))
    claims_frame = verdict_frame(verdicts)
    write_atomic(out / "claims.csv", claims_frame.to_csv(index=False))

    step("figures")
    figures = {
        "snr_vs_params": plots.plot_snr_vs_params(sweep_frame, metric="mean_entry_snr"),
        "aggregate_snr_vs_params": plots.plot_snr_vs_params(sweep_frame, metric="aggregate_snr"),
        "efficiency_vs_params": plots.plot_snr_vs_params(sweep_frame, metric="efficiency"),
        "parity": plots.plot_parity(parity_frame(verdicts)),
    }
    thread = thread_frame(verdicts)
    if len(thread):
        figures["thread_check"] = plots.plot_thread_check(thread)
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / f"{name}.png"
        plots.save(fig, paths[name])
    write_atomic(out / "report.md", _markdown(claims_frame, sweep_frame, paths, quick))
    write_atomic(out / "report.html", _html(claims_frame, sweep_frame, paths, quick))
    write_atomic(out / "run.json", json.dumps(_provenance(data_name, quick, seed), indent=2) + "\n")
    return Report(out, verdicts, claims_frame, sweep_frame, paths)


def _provenance(data_name: str, quick: bool, seed: int) -> dict[str, object]:
    """What produced a report, so that a page built from it can say so."""
    return {
        "snrkit": __version__,
        "jax": jax.__version__,
        "created_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "data": data_name,
        "quick": quick,
        "seed": seed,
        "claims": {claim_id: claim.fingerprint() for claim_id, claim in claims.CLAIMS.items()},
    }


def slope_rows(sweep_frame: pd.DataFrame) -> list[tuple[str, str, float, float, float]]:
    r"""(label, source, slope, lo, hi) of the mean entry SNR for every estimator with three or more widths.

    The slope of $\log \overline{\mathrm{SNR}}$ on $\log n$ with its 95 % interval, from
    [snrkit.sweeps.fit_loglog_slope][], for the exact and the Monte Carlo rows; $-1$ is
    Frye's (2022) $O(1/n)$.

    Args:
        sweep_frame: a frame of [snrkit.sweeps.snr_sweep][].

    Returns:
        One `(label, source, slope, lo, hi)` tuple per estimator label (sorted) and source
        with at least three distinct `n`.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.report import slope_rows
        >>> frame = pd.DataFrame({"label": "FG", "source": "exact", "metric": "mean_entry_snr",
        ...                       "n": [1000, 4000, 16000], "value": [1e-3, 2.5e-4, 6.25e-5]})
        >>> [(label, source, round(slope, 3)) for label, source, slope, lo, hi in slope_rows(frame)]
        [('FG', 'exact', -1.0)]
    """
    rows = []
    for label in sorted(sweep_frame["label"].unique()):
        for source in ("exact", "monte_carlo"):
            sub = sweep_frame[(sweep_frame.label == label) & (sweep_frame.source == source)]
            if sub["n"].nunique() >= 3:
                slope, lo, hi = sweeps.fit_loglog_slope(sweep_frame, "mean_entry_snr", label, source=source)
                rows.append((label, source, slope, lo, hi))
    return rows


INTRO = (
    "Every registered claim about the noise of forward-gradient estimators (published formulas and snrkit's own laws), "
    "checked on real gradients of an MLP trained for 100 Adam steps on scikit-learn's digits "
    "(the output-layer bias where a claim needs a concentrated gradient to be testable). "
    "refuted: the samples reject the claim; a true claim is refuted with probability at most "
    "1e-6 (distribution-free median-of-batches test with the exact noise level; asymptotic for "
    "the average-entry claim). holds: not refuted, and the test would have refuted a claim off "
    "by a factor 2. not resolved: neither. frye-snr is a deterministic fit of the exact SNR "
    "exponent (no p-value). ratio is measured truth / claim with a 95 % batch-means interval; "
    "exact ratio is what snrkit's exact law gives on the same gradient."
)
"""The introduction of the report: what was checked, and how to read a verdict."""


def _verdict_text(row) -> str:
    """The verdict, with the claim's unmet conditions when it was judged outside them."""
    return f"{row.verdict} (outside its stated conditions: {row.conditions})" if row.conditions else row.verdict


def _markdown(claims_frame: pd.DataFrame, sweep_frame: pd.DataFrame, figures: dict[str, Path], quick: bool) -> str:
    lines = ["# snrkit report" + (" (quick)" if quick else ""), "", INTRO, "", "## Verdicts", ""]
    lines.append("| claim | data | probe | verdict | truth / claim [95 % CI] | exact ratio | p-value | n | correction |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in claims_frame.itertuples():
        lines.append(
            f"| {r.id} | {r.data} | {r.probe} | {_verdict_text(r)} | {r.ratio:.4g} [{r.ratio_lo:.4g}, {r.ratio_hi:.4g}] | "
            f"{r.exact_ratio:.4g} | {r.p_value:.2g} | {r.n} | {r.correction} |"
        )
    lines += ["", "## SNR against parameter count", "", "| estimator | source | slope of log SNR on log n [95 % CI] |", "| --- | --- | --- |"]
    for label, source, slope, lo, hi in slope_rows(sweep_frame):
        lines.append(f"| {label} | {source} | {slope:.3f} [{lo:.3f}, {hi:.3f}] |")
    lines += ["", "## Figures", ""]
    for name, path in figures.items():
        lines.append(f"![{name}]({path.name})")
    return "\n".join(lines) + "\n"


def _html(claims_frame: pd.DataFrame, sweep_frame: pd.DataFrame, figures: dict[str, Path], quick: bool) -> str:
    def cell(x: object) -> str:
        return f"<td>{html.escape(str(x))}</td>"

    rows = []
    for r in claims_frame.itertuples():
        colour = {"holds": "#1a7f37", "refuted": "#cf222e"}.get(r.verdict, "#9a6700")
        rows.append(
            "<tr>" + cell(r.id) + cell(r.data) + cell(r.probe) + f'<td style="color:{colour};font-weight:bold">{html.escape(_verdict_text(r))}</td>'
            + cell(f"{r.ratio:.4g} [{r.ratio_lo:.4g}, {r.ratio_hi:.4g}]") + cell(f"{r.exact_ratio:.4g}")
            + cell(f"{r.p_value:.2g}") + cell(r.n) + cell(r.statement) + cell(r.source) + cell(r.correction) + "</tr>"
        )
    slope_html = "".join(
        f"<tr>{cell(label)}{cell(source)}{cell(f'{s:.3f} [{lo:.3f}, {hi:.3f}]')}</tr>" for label, source, s, lo, hi in slope_rows(sweep_frame)
    )
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, path in figures.items()
    )
    head = "<tr><th>claim</th><th>data</th><th>probe</th><th>verdict</th><th>truth / claim [95 % CI]</th><th>exact ratio</th><th>p-value</th><th>n</th><th>statement</th><th>source</th><th>correction</th></tr>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>snrkit report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}img{{max-width:100%}}</style></head><body>
<h1>snrkit report{' (quick)' if quick else ''}</h1><p>{html.escape(INTRO)}</p>
<h2>Verdicts</h2><table>{head}{''.join(rows)}</table>
<h2>SNR against parameter count</h2><table><tr><th>estimator</th><th>source</th><th>slope [95 % CI]</th></tr>{slope_html}</table>
<h2>Figures</h2>{images}</body></html>
"""
