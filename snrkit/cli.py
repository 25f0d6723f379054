"""The command line: `snrkit report | verify | sweep | cost`. Progress bars live here only.

Each command is a thin wrapper: `report` calls [snrkit.report.build_report][], `verify`
calls [snrkit.claims.verify_all][], `sweep` calls [snrkit.sweeps.snr_sweep][], and `cost`
calls [snrkit.cost.cost_table][] and judges [snrkit.claims.costs][].
Compiled programs are kept between runs in `~/.cache/snrkit/jax` (or
`$SNRKIT_CACHE_DIR/jax`).

Examples:
    ```bash
    snrkit report --quick --out report          # every verdict, the sweep and the figures
    snrkit verify --claim frye-eq5 --probe gaussian --json
    snrkit sweep --quick --out sweep/snr_sweep.csv
    snrkit cost --quick --out cost                 # time and memory per training step
    ```
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from snrkit.core.allocator import keep_freed_memory
from snrkit.core.io import check_output_file, check_output_folder, write_atomic
from snrkit.core.validation import MAX_SEED

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Exact variance and SNR of forward-gradient estimators, and verdicts on published formulas.",
)
"""The `snrkit` command (a Typer app): the entry point of `snrkit` and `python -m snrkit`."""
console = Console(stderr=True)
"""Progress bars and errors go to standard error."""
stdout = Console()
"""Tables and results go to standard output."""


class DataName(str, Enum):
    """Values of `snrkit report --data`: the data of the network-level claims.

    Examples:
        ```bash
        snrkit report --data mnist --mnist-dir ~/data/mnist
        ```
    """

    digits = "digits"
    """scikit-learn's 8x8 digits ([snrkit.data.load_digits][])."""
    mnist = "mnist"
    """MNIST from a folder of IDX files ([snrkit.data.load_mnist][])."""


class ProbeChoice(str, Enum):
    """Values of `snrkit verify --probe`: one probe distribution, or both.

    Examples:
        ```bash
        snrkit verify --claim yao-eq6 --probe rademacher
        ```
    """

    gaussian = "gaussian"
    r"""Standard normal probe entries ($\kappa = 3$), what the papers assume."""
    rademacher = "rademacher"
    r"""Random signs ($\kappa = 1$)."""
    both = "both"
    """Each claim under both probes (the default)."""


def _enable_compilation_cache() -> None:
    """Keep compiled programs between runs of the command (a user cache folder, not the library's default)."""
    import jax

    folder = Path(os.environ.get("SNRKIT_CACHE_DIR", Path.home() / ".cache" / "snrkit")) / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home only costs the speed-up
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


@app.callback()
def _main() -> None:
    _enable_compilation_cache()
    keep_freed_memory()  # XLA's freed temporaries reused, not faulted in afresh every call (core.allocator)


@contextmanager
def _progress() -> Iterator[tuple]:
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, int] = {}

    def on_progress(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total)
        bar.update(tasks[what], completed=done, total=total)

    def on_step(text: str) -> None:
        if "step" not in tasks:
            tasks["step"] = bar.add_task(text, total=None)
        bar.update(tasks["step"], description=text)

    if not console.is_terminal:  # a log file: no bar (rich draws none), one line per stage begun and ended
        yield _log_step, _log_progress({})
        return
    with bar:
        yield on_step, on_progress


def _log_step(text: str) -> None:
    console.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False)


def _log_progress(seen: dict[str, int]) -> Callable[[str, int, int], None]:
    """`on_progress` for a log: a line when a stage starts and when it completes, not one per update."""

    def on_progress(what: str, done: int, total: int) -> None:
        if what not in seen:
            seen[what] = -1
            _log_step(f"{what}: {done}/{total}")
        if done >= total > 0 and seen[what] != total:
            seen[what] = total
            _log_step(f"{what}: done ({done}/{total})")

    return on_progress


def _fail(error: Exception) -> None:
    console.print(f"[red]error:[/] {error}")
    raise typer.Exit(1)


def _verdict_table(verdicts: list, title: str) -> Table:
    """The verdicts as a table that fits 80 columns with claim ids and verdicts whole.

    Intervals, sample counts and settings are in `--json` and the report.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("claim", no_wrap=True)
    table.add_column("probe", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("truth/claim", justify="right", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    colour = {"holds": "green", "refuted": "red", "not resolved": "yellow"}
    for v in verdicts:
        mark = "*" if v.conditions else ""
        table.add_row(
            v.id,
            str(v.setting.get("probe", "")),
            f"[{colour[v.verdict]}]{v.verdict}{mark}[/]",
            f"{v.ratio:.4g}",
            f"{v.p_value:.1g}",
        )
    if any(v.conditions for v in verdicts):
        table.caption = "* judged outside the claim's stated conditions (--json: conditions)"
    return table


def _check_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise typer.BadParameter(
            f"must be an integer in [0, {MAX_SEED}] (JAX keeps 32 bits of a seed, so larger ones would collide "
            f"with smaller ones), got {seed}", param_hint="--seed")
    return seed


MNIST_DIR_OPTION = typer.Option(None, "--mnist-dir", help="Folder of the MNIST IDX files.")
"""`--mnist-dir` of `snrkit report` and `snrkit cost`."""


# In the commands' docstrings a "\f" line ends the text of --help (click and typer cut there),
# so the Examples after it stay out of the help screens.
@app.command()
def report(
    out: Path = typer.Option(Path("report"), "--out", help="Folder for report.html, report.md, claims.csv and figures."),
    data: DataName = typer.Option(DataName.digits, "--data", help="Data of the network-level claims."),
    mnist_dir: Path | None = MNIST_DIR_OPTION,
    quick: bool = typer.Option(False, "--quick", help="Fewer samples and a smaller sweep (seconds, not minutes)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw and of the default networks.", callback=_check_seed),
) -> None:
    """Verify every claim, run the SNR sweep, and write an HTML/Markdown report with figures.
    \f

    Examples:
        ```bash
        snrkit report --quick --out report
        snrkit report --data mnist --mnist-dir ~/data/mnist --out report-mnist
        ```
    """
    from snrkit.report import build_report

    start = time.perf_counter()
    try:
        with _progress() as (on_step, on_progress):
            result = build_report(
                out, data_name=data.value, mnist_dir=str(mnist_dir) if mnist_dir else None, quick=quick, seed=seed,
                on_step=on_step, on_progress=on_progress,
            )
    except (ValueError, TypeError, OSError) as error:
        _fail(error)
    stdout.print(_verdict_table(result.verdicts, "Verdicts on the published variance formulas"))
    stdout.print(f"wrote {out / 'report.html'}, {out / 'report.md'}, {out / 'claims.csv'} and "
                 f"{len(result.figures)} figures in {time.perf_counter() - start:.0f} s")


@app.command()
def verify(
    claim: list[str] | None = typer.Option(None, "--claim", help="Claim id (repeatable); default: all."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON list of verdicts."),
    quick: bool = typer.Option(False, "--quick", help="Fewer samples."),
    probe: ProbeChoice = typer.Option(ProbeChoice.both, "--probe", help="Probe distribution(s)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw and of the default networks.", callback=_check_seed),
    mnist_dir: Path | None = typer.Option(None, "--mnist-dir", help="Use an MLP on MNIST for network-level claims."),
) -> None:
    """Verify published claims with the real estimator and print the verdicts.
    \f

    Examples:
        ```bash
        snrkit verify --claim frye-eq5 --claim yao-eq6 --quick
        snrkit verify --probe rademacher --json > verdicts.json
        ```
    """
    import jax

    from snrkit import claims

    ids = claim or list(claims.CLAIMS)
    try:
        for claim_id in ids:
            claims.get_claim(claim_id)
        if mnist_dir is not None:
            from snrkit import data

            data.check_mnist_dir(mnist_dir)
        probes = ("gaussian", "rademacher") if probe is ProbeChoice.both else (probe.value,)
        with _progress() as (on_step, _):
            verdicts = claims.verify_all(
                key=jax.random.key(seed), quick=quick, probes=probes, claim_ids=ids,
                mnist_dir=str(mnist_dir) if mnist_dir else None, seed=seed,
                on_claim=lambda c, p: on_step(f"verifying {c} ({p})"),
            )
    except (ValueError, TypeError, OSError) as error:
        _fail(error)
    if json_output:
        print(json.dumps(_json_ready([v.to_dict() for v in verdicts]), indent=2, allow_nan=False))
    else:
        stdout.print(_verdict_table(verdicts, "Verdicts"))


def _json_ready(value: object) -> object:
    """Plain JSON values: NumPy scalars and arrays as numbers and lists, NaN and infinities as null."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@app.command()
def sweep(
    out: Path | None = typer.Option(
        None, "--out", help="CSV of the sweep; an existing one is resumed (default sweep/snr_sweep.csv, or "
        "sweep/snr_sweep_quick.csv with --quick)."),
    quick: bool = typer.Option(False, "--quick", help="Four small widths, few samples (sweeps.SWEEP_QUICK)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw.", callback=_check_seed),
) -> None:
    """SNR against parameter count over MLP widths on digits (resumes from --out).
    \f

    Examples:
        ```bash
        snrkit sweep --quick          # writes sweep/snr_sweep_quick.csv
        snrkit sweep --out mine.csv   # the full sweep, resumed from mine.csv if it exists
        ```
    """
    import jax

    from snrkit import sweeps
    from snrkit.report import slope_rows

    # Quick and full sweeps differ in settings, so they keep separate files and never mix on resume.
    out = out or Path("sweep") / ("snr_sweep_quick.csv" if quick else "snr_sweep.csv")
    preset = dict(sweeps.SWEEP_QUICK) if quick else {
        "targets": sweeps.SWEEP_TARGETS, "mc_targets": sweeps.SWEEP_MC_TARGETS, "num_samples": 32 * 256}
    try:
        check_output_file(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with _progress() as (_, on_progress):
            frame = sweeps.snr_sweep(key=jax.random.key(seed), out_csv=out, on_progress=on_progress, **preset)
    except (ValueError, TypeError, OSError) as error:
        _fail(error)
    table = Table(title="Log-log slope of the mean entry SNR against n")
    for column in ("estimator", "source", "slope [95 % CI]"):
        table.add_column(column)
    for label, source, s, lo, hi in slope_rows(frame):
        table.add_row(label, source, f"{s:.3f} [{lo:.3f}, {hi:.3f}]")
    stdout.print(table)
    stdout.print(f"wrote {out}")


class MethodGroup(str, Enum):
    """Values of `snrkit cost --method`: groups of methods to time (backprop is always timed).

    Examples:
        ```bash
        snrkit cost --quick --method forward-gradient --method directions
        ```
    """

    forward_gradient = "forward-gradient"
    """The forward gradient with one direction, Gaussian and Rademacher probes."""
    directions = "directions"
    """K directions, vectorised (shared primal) and sequential (one primal per pass)."""
    families = "families"
    """Every registered family at its registry sweep settings."""


COST_PRESETS = {
    "full": {"hidden": (1024, 1024), "batch_size": (256, 1024, 4096), "repeats": 20},
    "quick": {"hidden": (32,), "batch_size": (16, 64), "repeats": 7},
}
"""Defaults of `snrkit cost` and `snrkit cost --quick` (explicit options override them)."""


def _cost_table(frame) -> Table:
    """The cost frame as a table: ratios with their intervals, memory, SNR per relative time."""
    import math

    table = Table(title="Cost per training step", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for column, justify in (("method", "left"), ("batch", "right"), ("ms", "right"), ("× backprop [95%]", "right"),
                            ("temp MiB", "right"), ("SNR/time", "right")):
        # method names wrap at their commas, and a word too long for the column folds, never cut
        table.add_column(column, justify=justify, no_wrap=column != "method", overflow="fold")
    for row in frame.to_dict("records"):
        if not row["repeats"]:
            table.add_row(row["method"], str(row["batch size"]), "skipped", "", "", "")
            continue
        interval = (f"{row['time relative to backprop']:.2f} [{row['time relative to backprop, 95% low']:.2f}, "
                    f"{row['time relative to backprop, 95% high']:.2f}]")
        snr = row["aggregate SNR per relative time"]
        table.add_row(row["method"], str(row["batch size"]), f"{row['time per step, median [ms]']:.3g}", interval,
                      f"{row['XLA temporary memory [MiB]']:.3g}", "" if math.isnan(snr) else f"{snr:.2g}")
    return table


def _cost_verdict_table(verdicts: list) -> Table:
    table = Table(title="Cost claims on this machine", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for column in ("claim", "batch", "verdict", "measured [95%]"):
        table.add_column(column, no_wrap=True)
    colour = {"holds": "green", "refuted": "red", "not resolved": "yellow"}
    for v in verdicts:
        measured = f"{v.measured:.3g}" + (f" [{v.low:.3g}, {v.high:.3g}]" if v.batch_size is not None else " MiB saved")
        table.add_row(v.id, "" if v.batch_size is None else str(v.batch_size), f"[{colour[v.verdict]}]{v.verdict}[/]",
                      measured)
    return table


@app.command()
def cost(
    out: Path = typer.Option(Path("cost"), "--out", help="Folder for cost.csv, cost_claims.csv and the figures."),
    data: DataName = typer.Option(DataName.digits, "--data", help="Data the model is trained on."),
    mnist_dir: Path | None = MNIST_DIR_OPTION,
    quick: bool = typer.Option(False, "--quick", help="A small MLP, two small batches, few repeats (seconds)."),
    hidden: list[int] | None = typer.Option(None, "--hidden", help="Hidden width (repeatable); default 1024 1024."),
    batch_size: list[int] | None = typer.Option(
        None, "--batch-size", help="Batch size (repeatable); default 256 1024 4096."),
    repeats: int | None = typer.Option(None, "--repeats", help="Timed calls per method and batch size (≥ 6); default 20."),
    directions: list[int] | None = typer.Option(
        None, "--directions", help="K of the vectorised and sequential rows (repeatable); default 4."),
    method: list[MethodGroup] | None = typer.Option(
        None, "--method", help="Methods besides backprop (repeatable); default all."),
    isolate: bool = typer.Option(False, "--isolate", help="Measure each configuration's peak RSS in a fresh process."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation and the probes.", callback=_check_seed),
) -> None:
    """Time and memory per training step of backprop and every estimator, and two cost claims.
    \f

    Writes `cost.csv` (one row per method and batch size, see `snrkit.cost.COST_COLUMNS`),
    `cost_claims.csv`, `cost_time_memory.png` and `cost_snr.png` into `--out`.

    Examples:
        ```bash
        snrkit cost --quick --out cost-quick
        snrkit cost --hidden 1024 --hidden 1024 --batch-size 256 --batch-size 4096
        ```
    """
    from snrkit import cost as cost_module
    from snrkit import data as data_module
    from snrkit import plots
    from snrkit.claims import costs
    from snrkit.core.validation import check_int

    preset = COST_PRESETS["quick" if quick else "full"]
    groups = set(method or list(MethodGroup))
    start = time.perf_counter()
    try:
        check_output_folder(out)
        widths = [check_int(w, "--hidden", hint="hidden width") for w in (hidden or preset["hidden"])]
        sizes = [check_int(b, "--batch-size", hint="examples per step") for b in (batch_size or preset["batch_size"])]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"--batch-size values must be distinct, got {sizes}")
        count = check_int(repeats if repeats is not None else preset["repeats"], "--repeats",
                          minimum=cost_module.MIN_REPEATS, hint="a 95 % interval of the median needs at least 6")
        ks = [check_int(k, "--directions", minimum=2, hint="K directions") for k in (directions or [4])]
        if len(set(ks)) != len(ks):
            raise ValueError(f"--directions values must be distinct, got {ks}")
        if directions and MethodGroup.directions not in groups:
            raise ValueError("--directions sets K of the 'directions' rows, which the --method options leave out; "
                             "add --method directions, or drop --directions")
        if data is DataName.mnist:
            mnist_dir = mnist_dir or data_module.default_mnist_dir()
            if mnist_dir is None:
                raise ValueError("--data mnist needs the MNIST IDX files: pass --mnist-dir PATH (or set SNRKIT_MNIST_DIR)")
            data_module.check_mnist_dir(mnist_dir)
        dataset = data_module.load(data.value, mnist_dir=mnist_dir)
        model = (dataset.input_dim, *widths, dataset.num_classes)
        methods = cost_module.default_methods(
            ks if MethodGroup.directions in groups else (),
            forward_gradient=MethodGroup.forward_gradient in groups, families=MethodGroup.families in groups)
        with _progress() as (_, on_progress):
            frame = cost_module.cost_table(model, dataset, sizes, methods=methods, repeats=count, seed=seed,
                                           isolate=isolate, out_csv=out / "cost.csv", on_progress=on_progress)
        verdicts = costs.judge_all(frame)
        if quick:  # a 32-wide MLP timed in milliseconds is not the setting the claims speak of
            verdicts = [dataclasses.replace(v, verdict="not resolved", detail=f"not judged on a quick run; {v.detail}")
                        for v in verdicts]
        write_atomic(out / "cost_claims.csv", costs.verdict_frame(verdicts).to_csv(index=False))
        plots.save(plots.plot_cost(frame), out / "cost_time_memory.png")
        if frame["efficiency per relative time"].notna().any():
            plots.save(plots.plot_snr_per_cost(frame), out / "cost_snr.png")
    except (ValueError, TypeError, OSError, RuntimeError) as error:
        _fail(error)
    stdout.print(_cost_table(frame))
    stdout.print(_cost_verdict_table(verdicts))
    stdout.print(f"wrote {out / 'cost.csv'}, {out / 'cost_claims.csv'} and the figures in "
                 f"{time.perf_counter() - start:.0f} s")
