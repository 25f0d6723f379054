"""The main job: verdicts on every claim, the SNR sweep and the figures, as HTML, Markdown and CSV.

[`build_report`][snrkit.report.build_report] runs everything (it is `snrkit report` on the
command line); the `*_frame` functions turn verdicts into the tidy frames the report's
tables and figures are drawn from.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from snrkit import claims, report
    >>> grad = jnp.array([3.0, -1.0, 0.5, 2.0])
    >>> verdicts = [
    ...     claims.verify(c, grad, key=jax.random.key(0))
    ...     for c in ("snrkit-variance", "frye-eq5")
    ... ]
    >>> report.verdict_frame(verdicts)[["id", "verdict"]].values.tolist()
    [['snrkit-variance', 'holds'], ['frye-eq5', 'refuted']]
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from snrkit import __version__, claims, data, gradients, nets, plots, sweeps
from snrkit.claims.bibliography import REFERENCES
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
        >>> from snrkit.report import FIGURE_CAPTIONS, build_report
        >>> result = build_report(Path("report"), quick=True)  # doctest: +SKIP
        >>> list(result.figures) == list(FIGURE_CAPTIONS)  # doctest: +SKIP
        True
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
    thread_frame: pd.DataFrame
    """Frye's thread check on gradients along training
    ([`thread_check_frame`][snrkit.report.thread_check_frame], digits and MNIST when found)."""
    figures: dict[str, Path]
    """Figure name -> PNG path, in the order of
    [`FIGURE_CAPTIONS`][snrkit.report.FIGURE_CAPTIONS]."""


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
        >>> grad = jnp.array([3.0, -1.0, 0.5, 2.0])
        >>> v = verify("frye-eq5", grad, key=jax.random.key(0))
        >>> frame = verdict_frame([v])
        >>> (
        ...     frame.loc[0, ["id", "probe", "verdict"]].tolist(),
        ...     int(frame.loc[0, "n"]),
        ... )
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


EXACT_LAW = "snrkit exact law"
"""The claim name [`parity_frame`][snrkit.report.parity_frame] gives snrkit's own exact laws."""


def parity_frame(verdicts: list[claims.Verdict]) -> pd.DataFrame:
    """Predicted against measured per-entry variance of every per-entry claim, with its verdict.

    Each verdict with per-entry arrays ([`Verdict.entries`][snrkit.claims.Verdict.entries])
    of a per-entry claim (`test="entry-variance"`) adds one row per entry: the claim's
    prediction against the Monte Carlo variance. Claims whose prediction is snrkit's exact
    law itself (no `predict` of their own) share one name,
    [`EXACT_LAW`][snrkit.report.EXACT_LAW]; average-entry claims add nothing, being about
    the average only.

    Args:
        verdicts: from [snrkit.claims.verify][] or [snrkit.claims.verify_all][].

    Returns:
        The frame [snrkit.plots.plot_parity][] draws: columns `claim`, `probe`, `verdict`,
        `predicted` and `measured`, one row per entry.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.claims import verify
        >>> from snrkit.report import parity_frame
        >>> grad, key = jnp.array([3.0, -1.0, 0.5, 2.0]), jax.random.key(0)
        >>> verdicts = [
        ...     verify(c, grad, key=key) for c in ("snrkit-variance", "frye-eq5")
        ... ]
        >>> frame = parity_frame(verdicts)
        >>> frame.groupby(["claim", "verdict"], sort=False).size().to_dict()
        {('snrkit exact law', 'holds'): 4, ('frye-eq5', 'refuted'): 4}
    """
    parts = [
        pd.DataFrame({
            "claim": EXACT_LAW if claims.CLAIMS[v.id].predict is None else v.id,
            "probe": v.setting.get("probe", ""),
            "verdict": v.verdict,
            "predicted": v.entries["predicted"],
            "measured": v.entries["measured"],
        })
        for v in verdicts
        if v.entries is not None and v.test == "entry-variance"
    ]
    columns = ["claim", "probe", "verdict", "predicted", "measured"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


THREAD_HIDDEN: tuple[tuple[int, ...], ...] = ((8,), (32,), (128,))
"""Hidden layers of the MLPs (input, hidden..., classes) of the full report's thread check:
one hidden layer of 8, 32 or 128 units."""
THREAD_STEPS = (0, 10, 100, 1000)
r"""Adam steps at which the thread check takes its gradients; over these steps training
shrinks $\|\nabla\|^2$ by two to three decades."""


def thread_check_frame(
    *,
    key: jax.Array,
    dataset: data.Dataset,
    hidden: Sequence[tuple[int, ...]] = THREAD_HIDDEN,
    steps: Sequence[int] = THREAD_STEPS,
    probes: Sequence[str] = ("gaussian", "rademacher"),
    num_samples: int = 32 * 128,
    batches: int = 32,
    on_progress: ProgressFn | None = None,
) -> pd.DataFrame:
    r"""Frye's thread check on many gradients: the mean entry variance, measured and exact, against $\|\nabla\|^2$.

    For each entry of `hidden`, an MLP (input, hidden..., classes) is trained on `dataset` with
    Adam (batch 128, learning rate $10^{-3}$) and its full-batch gradient is taken at each of
    `steps` ([snrkit.gradients.train][], [snrkit.gradients.full_batch_gradient][]); training
    shrinks $\|\nabla\|^2$, so the gradients span decades of it. On each gradient and probe,
    [snrkit.claims.verify][] judges `frye-thread` (the mean over entries of
    $\operatorname{Var}[g_i]$ equals $\|\nabla\|^2$) with `num_samples` samples; the row holds
    the measured mean entry variance with its 95 % batch-means interval and the exact one,

    $$
    \frac1n\sum_i\operatorname{Var}[g_i] = \|\nabla\|^2\Big(1 + \frac{\kappa-2}{n}\Big).
    $$

    Cost: one training run per network and one sampler compilation per network and probe
    (about a second on a CPU, none for a network and sample count compiled before in the
    process), then `num_samples` $\times\, n$ probe entries per gradient and probe.

    Args:
        key: a JAX key; training (per network) and sampling (per gradient and probe) derive
            from it.
        dataset: the data, e.g. [snrkit.data.load_digits][]`()`.
        hidden: the hidden-layer widths of each network, e.g. `((32,), (11, 11))`.
        steps: training steps of the gradients (0 is the initialisation).
        probes: probes to sample each gradient under.
        num_samples: samples per gradient and probe, at least `2 * batches`.
        batches: batches of the interval.
        on_progress: called as `("thread check", done, total)` after each gradient.

    Returns:
        The frame [snrkit.plots.plot_thread_check][] draws, one row per gradient and probe:
        columns `setting` (data set and network), `data`, `network`, `n`, `step`, `probe`,
        `norm_sq`, `mean_entry_var`, `lo`, `hi`, `exact_mean_entry_var` and `samples`.

    Raises:
        ValueError: an empty `hidden` or `steps`, or a count [snrkit.gradients.train][] or
            [snrkit.claims.verify][] refuses.

    Examples:
        A tiny network on a hand-made data set; with the Gaussian probe ($\kappa = 3$) the
        exact mean entry variance is $\|\nabla\|^2(1 + 1/n)$:

        >>> import jax, numpy as np
        >>> from snrkit.data import Dataset
        >>> from snrkit.report import thread_check_frame
        >>> toy = Dataset(
        ...     np.random.default_rng(0).random((8, 4, 4)),
        ...     np.arange(8) % 4,
        ...     num_classes=4,
        ...     name="toy",
        ... )
        >>> frame = thread_check_frame(
        ...     key=jax.random.key(0),
        ...     dataset=toy,
        ...     hidden=[(3,)],
        ...     steps=(0, 5),
        ...     probes=("gaussian",),
        ...     num_samples=256,
        ... )
        >>> frame[["network", "n", "step"]].values.tolist()
        [['mlp-16-3-4', 67, 0], ['mlp-16-3-4', 67, 5]]
        >>> ratio = frame["exact_mean_entry_var"] / frame["norm_sq"]
        >>> bool(np.allclose(ratio, 1 + 1 / 67))
        True
    """
    if not hidden or not steps:
        raise ValueError(f"thread_check_frame needs hidden layers and steps; got hidden={hidden!r}, steps={steps!r}")
    total, rows = len(hidden) * len(set(steps)) * len(probes), []
    for position, layers in enumerate(hidden):
        network = nets.mlp((dataset.input_dim, *layers, dataset.num_classes))
        width_key = jax.random.fold_in(key, position)
        saved = gradients.train(
            jax.random.fold_in(width_key, 0), network, dataset, steps=max(steps), batch_size=min(128, dataset.num_examples),
            learning_rate=1e-3, checkpoints=steps, metrics=False,
        )
        for checkpoint in saved:
            grad = gradients.full_batch_gradient(network, checkpoint.params, dataset)
            for index, probe in enumerate(probes):
                sample_key = jax.random.fold_in(jax.random.fold_in(width_key, 1 + checkpoint.step), index)
                v = claims.verify("frye-thread", grad, key=sample_key, num_samples=num_samples, batches=batches, probe=probe)
                norm_sq = float(np.mean(v.entries["predicted"]))  # the thread's claim, ‖∇‖², for every entry
                rows.append({
                    "setting": f"{dataset.name}, {network.name}",
                    "data": dataset.name,
                    "network": network.name,
                    "n": int(v.setting["n"]),
                    "step": checkpoint.step,
                    "probe": probe,
                    "norm_sq": norm_sq,
                    "mean_entry_var": v.ratio * norm_sq,
                    "lo": v.ratio_ci[0] * norm_sq,
                    "hi": v.ratio_ci[1] * norm_sq,
                    "exact_mean_entry_var": float(np.mean(v.entries["exact"])),
                    "samples": num_samples,
                })
                if on_progress:
                    on_progress("thread check", len(rows), total)
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
        >>> out = Path(tempfile.mkdtemp())  # doctest: +SKIP
        >>> result = build_report(out, quick=True)  # doctest: +SKIP
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
    estimators = sweeps.SWEEP_ESTIMATORS[:1] if quick else sweeps.SWEEP_ESTIMATORS
    sweep_frame = sweeps.snr_sweep(
        key=jax.random.fold_in(key, 2),
        # Quick and full sweeps keep separate files, so both kinds of report can share a folder.
        out_csv=out / ("snr_sweep_quick.csv" if quick else "snr_sweep.csv"),
        # quick: the Gaussian forward gradient only, sampled at three small widths (the
        # scaling-law verdict needs at least three sampled widths).
        targets=QUICK_TARGETS if quick else sweeps.SWEEP_TARGETS,
        mc_targets=QUICK_TARGETS if quick else sweeps.SWEEP_MC_TARGETS,
        num_samples=sweeps.SWEEP_QUICK_NUM_SAMPLES if quick else 32 * 256,
        estimators=estimators,
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

    step("Frye's thread check along training")
    thread = pd.concat([
        thread_check_frame(key=jax.random.fold_in(jax.random.fold_in(key, 3), index), dataset=dataset,
                           on_progress=on_progress, **settings)
        for index, (dataset, settings) in enumerate(_thread_settings(quick, mnist))
    ], ignore_index=True)

    step("figures")
    # The efficiency of biased projections grows like n / K while unbiased estimators sit at 1: two panels.
    bias = {est.label: "biased estimators" if est.biased else "unbiased estimators" for est in estimators}
    figures = {
        "parity": plots.plot_parity(parity_frame(verdicts)),
        "thread_check": plots.plot_thread_check(thread),
        "snr_vs_params": plots.plot_snr_vs_params(sweep_frame, metric="mean_entry_snr"),
        "aggregate_snr_vs_params": plots.plot_snr_vs_params(sweep_frame, metric="aggregate_snr"),
        "efficiency_vs_params": plots.plot_snr_vs_params(sweep_frame, metric="efficiency", groups=bias),
    }
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / f"{name}.png"
        plots.save(fig, paths[name])
    document = _document(claims_frame, sweep_frame, paths, quick)
    write_atomic(out / "report.md", _markdown(document))
    write_atomic(out / "report.html", _html(document, quick))
    write_atomic(out / "run.json", json.dumps(_provenance(data_name, quick, seed), indent=2) + "\n")
    return Report(out, verdicts, claims_frame, sweep_frame, thread, paths)


def _thread_settings(quick: bool, mnist: str | None) -> list[tuple[data.Dataset, dict[str, object]]]:
    """The data sets of the thread check (digits, and MNIST when its files are found) with their sizes.

    Quick: the networks the quick sweep and the MNIST claim have trained already, with the
    sweep's sample count, so training, gradients and sampling reuse their compilations (a few
    seconds in all); three checkpoints, the Gaussian probe. Full: three widths on digits, the
    two smaller on MNIST (at 128 units its 101,770 parameters take minutes to sample).
    """
    digits = data.load_digits()
    if quick:
        sizes = {"steps": (0, 100, 1000), "probes": ("gaussian",), "num_samples": sweeps.SWEEP_QUICK_NUM_SAMPLES}
        widths = sorted({nets.mlp_widths_for_params(digits.input_dim, digits.num_classes, t, depth=2)[1]
                         for t in QUICK_TARGETS})
        plan = [(digits, {"hidden": [(w, w) for w in widths], **sizes})]
        return plan + ([(data.load_mnist(mnist), {"hidden": [claims.DEFAULT_WIDTHS[1:-1]], **sizes})] if mnist else [])
    return [(digits, {})] + ([(data.load_mnist(mnist), {"hidden": THREAD_HIDDEN[:2]})] if mnist else [])


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
        >>> frame = pd.DataFrame(
        ...     {
        ...         "label": "FG",
        ...         "source": "exact",
        ...         "metric": "mean_entry_snr",
        ...         "n": [1000, 4000, 16000],
        ...         "value": [1e-3, 2.5e-4, 6.25e-5],
        ...     }
        ... )
        >>> [
        ...     (label, round(slope, 3))
        ...     for label, _, slope, _, _ in slope_rows(frame)
        ... ]
        [('FG', -1.0)]
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
    "(the output-layer bias where a claim needs a concentrated gradient to be testable)."
)
"""The first paragraph of the report: what was checked."""
HOW_TO_READ: tuple[str, ...] = (
    ("refuted: the samples reject the claim; a true claim is refuted with probability at most 1e-6 "
     "(distribution-free median-of-batches test with the exact noise level; asymptotic for the average-entry claim)."),
    "holds: not refuted, and the test would have refuted a claim off by a factor 2.",
    "not resolved: neither.",
    ("ratio: measured truth / claim, with a 95 % batch-means interval; exact ratio: what snrkit's exact law gives "
     "on the same gradient."),
    "frye-snr is a deterministic fit of the exact SNR exponent (no p-value).",
)
"""How to read a verdict, one point per line (the report's and the ledger's)."""

FIGURE_CAPTIONS: dict[str, str] = {
    "parity": "Each claim's predicted variance of every entry against the Monte Carlo variance of the same "
    "samples; colour is the claim, the marker the probe. A claim that holds puts its points on the dark line "
    "y = x (left panel); a refuted claim sits on a line parallel to it, off by a constant factor, or scatters "
    "around it (right panel).",
    "thread_check": "Frye's sanity check on many gradients (checkpoints along training, several widths, digits "
    "and MNIST when its files are found): the mean entry variance against ‖∇‖². The thread's claim holds where "
    "the points lie on the dark line (top) and the ratios on 1 (bottom, with 95 % intervals). The exact law "
    "1 + (κ−2)/n (dark ticks) differs from the claim by less than 0.2 %, too little for the intervals to tell.",
    "snr_vs_params": "Mean per-entry SNR against the parameter count, one panel per estimator family: exact "
    "(lines) and Monte Carlo (markers; their 95 % intervals are smaller than the markers). Lines parallel to the "
    "dashed slope −1 guide fall like 1/n; four directions or blocks lift a line fourfold. Estimators with equal "
    "SNR are drawn over each other. The fitted slopes are in the table.",
    "aggregate_snr_vs_params": "Aggregate SNR ‖E g‖² / tr Cov[g] against the parameter count, read as the "
    "figure above: lines parallel to the slope −1 guide fall like 1/n (Monte Carlo intervals smaller than the "
    "markers).",
    "efficiency_vs_params": "Efficiency (the floor of unbiased estimators over the total error E‖g − ∇‖²) "
    "against the parameter count. Unbiased estimators (top, linear axis, 95 % intervals) sit at the floor's 1 "
    "within sampling error; biased projections (bottom, when the sweep has them, log axis) lie far above it and "
    "grow like n / K: shrinking the estimate, not less noise, makes their error small.",
}
"""Each figure's caption: what to look at and what agreement looks like (the report's and the
ledger's), in the order the figures are shown."""

_PROBE_NAMES = {"gaussian": "Gaussian probe", "rademacher": "Rademacher probe", "—": "No probe to choose"}


def verdict_summary(claims_frame: pd.DataFrame) -> tuple[str, str]:
    """Two lines: the verdict counts per probe, and the refuted claims with their probes.

    Args:
        claims_frame: a frame of [`verdict_frame`][snrkit.report.verdict_frame].

    Returns:
        `(counts, refuted)`.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.report import verdict_summary
        >>> frame = pd.DataFrame(
        ...     {
        ...         "id": ["a", "a", "b"],
        ...         "data": "digits",
        ...         "probe": ["gaussian", "rademacher", "gaussian"],
        ...         "verdict": ["refuted", "holds", "holds"],
        ...     }
        ... )
        >>> counts, refuted = verdict_summary(frame)
        >>> counts
        'Gaussian probe: 1 holds, 1 refuted. Rademacher probe: 1 holds.'
        >>> refuted
        'Refuted: a (gaussian).'
    """
    counts = []
    for probe, rows in claims_frame.groupby("probe", sort=False):
        tally = rows["verdict"].value_counts()
        parts = [f"{tally[v]} {v}" for v in plots.VERDICT_COLOURS if v in tally]
        counts.append(f"{_PROBE_NAMES.get(probe, probe)}: {', '.join(parts)}.")
    refuted = claims_frame[claims_frame["verdict"] == "refuted"]
    names = {}
    for row in refuted.itertuples():
        names.setdefault(_claim_name(row, claims_frame), []).append(row.probe)
    listed = "; ".join(name + ("" if probes == ["—"] else f" ({', '.join(probes)})") for name, probes in names.items())
    listed = listed or "none"
    return " ".join(counts), f"Refuted: {listed}."


def _claim_name(row, claims_frame: pd.DataFrame) -> str:
    """The claim's id, with its data set when the claim is judged on more than one."""
    data_sets = set(claims_frame.loc[claims_frame["id"] == row.id, "data"])
    return f"{row.id} on {row.data}" if len(data_sets) > 1 else row.id


def outside_note(conditions: object) -> str:
    """` (outside its stated conditions: …)` when a verdict was judged outside them, else `""`.

    `conditions` is a verdict row's `conditions` cell: the unmet conditions, or empty (an
    empty string, or NaN in a frame read back from CSV).

    Examples:
        >>> from snrkit.report import outside_note
        >>> outside_note("n > 10^4"), outside_note(""), outside_note(float("nan"))
        (' (outside its stated conditions: n > 10^4)', '', '')
    """
    return f" (outside its stated conditions: {conditions})" if isinstance(conditions, str) and conditions else ""


def _verdict_text(row) -> str:
    """The verdict, with the claim's unmet conditions when it was judged outside them."""
    return row.verdict + outside_note(row.conditions)


def _ratio_text(ratio: float, lo: float, hi: float) -> str:
    return f"{format_number(ratio)} [{format_number(lo)}, {format_number(hi)}]"


def format_number(x: float, digits: int = 3) -> str:
    """A number of the report's tables: `digits` significant digits, trailing zeros kept; a dash for NaN.

    Examples:
        >>> from snrkit.report import format_number
        >>> format_number(1.0), format_number(0.27399), format_number(float("nan"))
        ('1.00', '0.274', '—')
        >>> format_number(2.9e-49, digits=2)
        '2.9e-49'
    """
    return "—" if x is None or not np.isfinite(x) else f"{x:#.{digits}g}"


def _document(claims_frame: pd.DataFrame, sweep_frame: pd.DataFrame, figures: dict[str, Path], quick: bool) -> list[tuple]:
    """The report as blocks (`("h2", text)`, `("p", text)`, `("ul", items)`, `("table", header, rows)`,
    `("figure", path, caption)`, `("references", [Reference, ...])`), rendered to Markdown and
    to HTML alike."""
    counts, refuted = verdict_summary(claims_frame)
    blocks: list[tuple] = [("h1", "snrkit report" + (" (quick)" if quick else "")), ("p", INTRO),
                           ("h2", "Summary"), ("p", counts), ("p", refuted),
                           ("h2", "How to read a verdict"), ("ul", list(HOW_TO_READ)), ("h2", "Verdicts")]
    verdict_rows = [
        [_claim_name(r, claims_frame), r.probe, _verdict_text(r), _ratio_text(r.ratio, r.ratio_lo, r.ratio_hi),
         format_number(r.p_value, 2)]
        for r in claims_frame.itertuples()
    ]
    blocks.append(("table", ["claim", "probe", "verdict", "truth / claim [95 % CI]", "p-value"], verdict_rows))
    blocks += [("h2", "SNR against parameter count"),
               ("p", "Slope of log mean-entry SNR on log n, with its 95 % interval; Frye (2022) predicts −1."),
               ("table", ["estimator", "source", "slope [95 % CI]"],
                [[label, source, f"{s:.3f} [{lo:.3f}, {hi:.3f}]"] for label, source, s, lo, hi in slope_rows(sweep_frame)]),
               ("h2", "Figures")]
    blocks += [("figure", path, FIGURE_CAPTIONS.get(name, name)) for name, path in figures.items()]
    blocks.append(("h2", "Claims"))
    for claim_id, rows in claims_frame.groupby("id", sort=False):
        first = rows.iloc[0]
        blocks += [("h3", claim_id), ("p", f"{first.statement} Source: {first.source}.")]
        blocks.append(("ul", [
            f"{_claim_name(r, claims_frame)}, {r.probe}: {_verdict_text(r)}; exact ratio {format_number(r.exact_ratio)}; "
            f"n = {r.n}, {r.samples} samples." + (f" What the data say instead: {r.correction}" if r.correction else "")
            for r in rows.itertuples()
        ]))
    # every work the claims come from, with a stable link: the report must read without the docs
    cited = dict.fromkeys(claims.CLAIMS[claim_id].reference for claim_id in claims_frame["id"])
    blocks += [("h2", "References"), ("references", [REFERENCES[key] for key in cited])]
    return blocks


def _markdown(blocks: list[tuple]) -> str:
    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content[0], ""]
        elif kind == "p":
            lines += [content[0], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in content[0]] + [""]
        elif kind == "table":
            header, rows = content
            lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows] + [""]
        elif kind == "figure":
            path, caption = content
            lines += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]
        elif kind == "references":
            lines += [f"- {reference.markdown()}" for reference in content[0]] + [""]
    return "\n".join(lines)


def _html(blocks: list[tuple], quick: bool) -> str:
    def verdict_cell(text: str) -> str:
        colour = plots.VERDICT_COLOURS.get(text.split(" (")[0], plots.REFERENCE_COLOUR)
        return f'<td style="color:{colour};font-weight:bold">{html.escape(text)}</td>'

    parts = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(content[0])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(content[0])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in content[0]) + "</ul>")
        elif kind == "table":
            header, rows = content
            verdict = header.index("verdict") if "verdict" in header else -1
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join(
                "<tr>" + "".join(verdict_cell(x) if i == verdict else f"<td>{html.escape(str(x))}</td>" for i, x in enumerate(row))
                + "</tr>" for row in rows
            )
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "references":  # Reference.html() escapes its own text
            parts.append("<ul>" + "".join(f"<li>{reference.html()}</li>" for reference in content[0]) + "</ul>")
        elif kind == "figure":
            path, caption = content
            image = base64.b64encode(path.read_bytes()).decode()
            parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{image}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    title = "snrkit report" + (" (quick)" if quick else "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:820px;margin:2em auto;padding:0 1em;line-height:1.45}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
img{{max-width:100%}}figcaption{{font-size:14px;color:#444;margin-bottom:1.5em}}</style></head><body>
{chr(10).join(parts)}
</body></html>
"""
