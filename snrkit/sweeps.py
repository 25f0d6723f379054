"""Experiments that return tidy pandas DataFrames (one row per measurement).

- [`snr_sweep`][snrkit.sweeps.snr_sweep]: exact and sampled SNR (and efficiency) of
  gradient estimators on MLPs of growing size, resumable from a CSV;
  [`fit_loglog_slope`][snrkit.sweeps.fit_loglog_slope] fits the decay exponent.

Rows identify an estimator by the columns of its `describe()` (`label`, `family`, `params`
as JSON), so a new family needs no change here, in the plots or in the report.

Examples:
    >>> from snrkit import sweeps
    >>> sweeps.SWEEP_METRICS, sweeps.SWEEP_SOURCES
    (('mean_entry_snr', 'aggregate_snr', 'efficiency'), ('exact', 'monte_carlo'))
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jax
import numpy as np
import pandas as pd
import scipy.stats

from snrkit import gradients, nets
from snrkit.core.estimator import Estimator
from snrkit.core.io import write_atomic
from snrkit.core.tree import ravel_host
from snrkit.core.validation import check_callback, check_int, check_key
from snrkit.data import Dataset, load_digits
from snrkit.families import FAMILIES
from snrkit.montecarlo import monte_carlo
from snrkit.stats.intervals import batch_means_interval


# ----------------------------------------------------------------------------------------
# SNR against parameter count
# ----------------------------------------------------------------------------------------

SweepProgressFn = Callable[[str, int, int], None]
"""`on_progress(stage, done, total)` of [`snr_sweep`][snrkit.sweeps.snr_sweep]. `stage` is
`"sweep"` for the widths finished so far, or a short description of the running sub-task
(training, one Monte Carlo run) whose `done`/`total` count its own steps or samples."""

SWEEP_ESTIMATORS: tuple[Estimator, ...] = tuple(setting for family in FAMILIES.values() for setting in family.sweep)
"""Estimator settings of [`snr_sweep`][snrkit.sweeps.snr_sweep], in the order their rows
appear: the `sweep` settings of every registered family
([`snrkit.families`][snrkit.families]): Gaussian and Rademacher forward gradients with
$K = 1$ and $K = 4$ directions, 4-block partitioned probes, and the settings of the other
families."""

SWEEP_TARGETS: tuple[int, ...] = (
    1_000, 2_400, 6_000, 14_000, 35_000, 85_000, 210_000, 500_000, 1_200_000, 3_000_000,
)
r"""Default parameter-count targets: ten roughly log-spaced values (ratio ≈ 2.4) from $10^3$
to $3\cdot 10^6$."""
SWEEP_MC_TARGETS: tuple[int, ...] = (1_000, 2_400, 6_000, 14_000)
r"""Targets that also get Monte Carlo rows by default. Sampling costs
`num_samples × n × directions` probe entries (about $2\cdot 10^9$ for these with the
default 8192 samples), which is what keeps the Monte Carlo to the four smallest widths."""

SWEEP_QUICK_TARGETS: tuple[int, ...] = (1_000, 2_000, 4_000, 8_000)
"""Targets of the quick preset (tests, `--quick`): four small widths."""
SWEEP_QUICK_MC_TARGETS: tuple[int, ...] = (1_000, 8_000)
"""Sampled targets of the quick preset: the smallest and largest. Two sampled widths, not
four: each Monte Carlo run compiles its own sampler (about 1.5 s per estimator and width
on CPU), which dominates at this size."""
SWEEP_QUICK_NUM_SAMPLES: int = 32 * 32
"""Monte Carlo samples of the quick preset: 32 batches of 32."""
SWEEP_QUICK: Mapping[str, Any] = MappingProxyType(
    {
        "targets": SWEEP_QUICK_TARGETS,
        "mc_targets": SWEEP_QUICK_MC_TARGETS,
        "num_samples": SWEEP_QUICK_NUM_SAMPLES,
    }
)
"""The quick preset: `snr_sweep(key=..., out_csv=..., **SWEEP_QUICK)` runs it (about 30 s)."""

SWEEP_COLUMNS: tuple[str, ...] = (
    "dataset",      # data set name ("digits")
    "train_steps",  # Adam steps before the gradient was taken
    "key",          # fingerprint of the sweep's key (hex of its key data)
    "width",        # hidden width h of the MLP (input, h, h, classes)
    "network",      # the MLP's name, e.g. "mlp-64-32-32-10"
    "n",            # number of parameters
    "label",        # the estimator's label (rows are keyed by it)
    "family",       # the estimator's family (registry name)
    "params",       # the estimator's hyperparameters, JSON
    "source",       # "exact" or "monte_carlo"
    "metric",       # "mean_entry_snr", "aggregate_snr" or "efficiency"
    "value",
    "lo",           # 95 % batch-means interval (Monte Carlo rows); NaN for exact rows
    "hi",
    "num_samples",  # Monte Carlo samples (0 for exact rows)
    "batches",      # batches behind the interval (0 for exact rows)
)
"""Columns of the [`snr_sweep`][snrkit.sweeps.snr_sweep] frame (and of its CSV), in order.

- `dataset`, `train_steps`, `key`: the data set, the Adam steps before the gradient was
  taken, and a fingerprint of the sweep's key (hex of its key data).
- `width`, `network`, `n`: the hidden width $h$ of the MLP (input, $h$, $h$, classes), its
  name and its number of parameters.
- `label`, `family`, `params`: the estimator, as its
  [`describe()`][snrkit.core.estimator.Estimator.describe] gives it.
- `source`, `metric`, `value`: one of [`SWEEP_SOURCES`][snrkit.sweeps.SWEEP_SOURCES], one
  of [`SWEEP_METRICS`][snrkit.sweeps.SWEEP_METRICS], and its value.
- `lo`, `hi`: the 95 % batch-means interval of Monte Carlo rows (NaN for exact rows).
- `num_samples`, `batches`: Monte Carlo samples and batches behind the interval (0 for
  exact rows).
"""
SWEEP_SOURCES: tuple[str, ...] = ("exact", "monte_carlo")
"""Values of the `source` column: from the exact law, or from Monte Carlo samples."""
SWEEP_METRICS: tuple[str, ...] = ("mean_entry_snr", "aggregate_snr", "efficiency")
"""Values of the `metric` column (see [`snr_metrics`][snrkit.sweeps.snr_metrics])."""

_INT_COLUMNS = ("train_steps", "width", "n", "num_samples", "batches")
_FLOAT_COLUMNS = ("value", "lo", "hi")
_TEXT_COLUMNS = tuple(c for c in SWEEP_COLUMNS if c not in _INT_COLUMNS + _FLOAT_COLUMNS)
_ROW_KEY = ("width", "label", "source", "metric")


def snr_metrics(
    signal_sq: np.ndarray, var: np.ndarray, *, squared_bias: float = 0.0, floor: float = math.nan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Mean per-entry SNR, aggregate SNR and efficiency from squared means and variances.

    $$
    \begin{aligned}
    \overline{\mathrm{SNR}} &= \frac1{|I|}\sum_{i\in I}\frac{\mathbb E[g_i]^2}{\sigma_i^2},\qquad
    \mathrm{SNR}_\text{agg} = \frac{\|\mathbb E g\|^2}{\sum_i\sigma_i^2},\\
    \text{efficiency} &= \frac{\text{floor}}{\|\mathbb E g - \nabla\|^2 + \sum_i\sigma_i^2},
    \end{aligned}
    $$

    where $I$ leaves out the entries with $\mathbb E[g_i] = \sigma_i = 0$ (neither signal
    nor noise, so no ratio; see [snrkit.core.law.Law.snr][]). An entry with
    $\sigma_i = 0 \ne \mathbb E[g_i]$ is estimated exactly and makes the mean `inf`. The
    floor is [`Law.floor`][snrkit.core.law.Law.floor], $\max(0, n/J-1)\|\nabla\|^2$.

    Args:
        signal_sq: $\mathbb E[g_i]^2$ ($\nabla_i^2$ for an unbiased estimator), shape `(n,)`.
        var: $\sigma_i^2$ (exact, or sampled), shape `(..., n)`: a leading axis
            gives one set of metrics per row (e.g. per Monte Carlo batch).
        squared_bias: $\|\mathbb E g - \nabla\|^2$ (exact).
        floor: the floor of the total variance; NaN leaves the efficiency NaN.

    Returns:
        `(mean_entry_snr, aggregate_snr, efficiency)`, float64 arrays of shape `var.shape[:-1]`.

    Examples:
        The Gaussian forward gradient of $\nabla = (2, 1)$ has
        $\sigma_i^2 = \|\nabla\|^2 + \nabla_i^2 = (9, 6)$ and floor $(2/1 - 1)\cdot 5$:

        >>> import numpy as np
        >>> from snrkit.sweeps import snr_metrics
        >>> metrics = snr_metrics(
        ...     np.array([4.0, 1.0]), np.array([9.0, 6.0]), floor=5.0
        ... )
        >>> [round(float(m), 4) for m in metrics]  # (4/9 + 1/6)/2, 5/15, 5/15
        [0.3056, 0.3333, 0.3333]
    """
    signal_sq = np.asarray(signal_sq, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = signal_sq / var
        defined = ~np.isnan(ratio)
        mean_entry = np.sum(np.where(defined, ratio, 0.0), axis=-1) / np.sum(defined, axis=-1)
        total_var = np.sum(var, axis=-1)
        aggregate = np.sum(signal_sq) / total_var
        efficiency = floor / (squared_bias + total_var)
    return mean_entry, aggregate, efficiency


def fit_loglog_slope(
    frame: pd.DataFrame, metric: str, label: str, source: str = "exact", confidence: float = 0.95
) -> tuple[float, float, float]:
    r"""Least-squares slope of $\log(\text{value})$ on $\log n$, with a t-interval.

    For the forward gradient with a Gaussian probe, $\nabla_i^2/(\|\nabla\|^2+\nabla_i^2)$
    lies between $\nabla_i^2/(2\|\nabla\|^2)$ and $\nabla_i^2/\|\nabla\|^2$, so the
    mean entry SNR lies in $[1/(2n), 1/n]$ and tends to $1/n$ for a gradient
    spread over many entries (Frye 2022: SNR is $O(1/n)$); the slope is then close to
    $-1$. The interval is the usual regression interval
    $b \pm t_{(1+c)/2,\,k-2}\,\mathrm{se}(b)$ over the $k$ points; for exact
    values it measures how far the points are from a straight line, not sampling noise.

    Args:
        frame: a frame from [`snr_sweep`][snrkit.sweeps.snr_sweep].
        metric: one of [`SWEEP_METRICS`][snrkit.sweeps.SWEEP_METRICS].
        label: the estimator label (`estimator.label`).
        source: `"exact"` or `"monte_carlo"`.
        confidence: coverage of the interval.

    Returns:
        `(slope, lo, hi)`; `lo` and `hi` are NaN with only two points.

    Raises:
        ValueError: fewer than two rows with a positive, finite value and distinct `n`.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.sweeps import fit_loglog_slope
        >>> frame = pd.DataFrame(
        ...     {
        ...         "label": "FG",
        ...         "source": "exact",
        ...         "metric": "mean_entry_snr",
        ...         "n": [1000, 4000, 16000],
        ...         "value": [1.1e-3, 2.4e-4, 6.5e-5],
        ...     }
        ... )
        >>> [round(x, 3) for x in fit_loglog_slope(frame, "mean_entry_snr", "FG")]
        [-1.02, -1.592, -0.448]
    """
    rows = frame[(frame["metric"] == metric) & (frame["label"] == label) & (frame["source"] == source)]
    values = rows["value"].to_numpy(dtype=np.float64)
    counts = rows["n"].to_numpy(dtype=np.float64)
    usable = np.isfinite(values) & (values > 0) & (counts > 0)
    if np.unique(counts[usable]).size < 2:
        raise ValueError(
            f"fit_loglog_slope needs at least two widths with a positive value for metric={metric!r}, "
            f"label={label!r}, source={source!r}; found {int(usable.sum())} usable rows. Check the names "
            f"against frame['metric'], frame['label'] and frame['source']."
        )
    fit = scipy.stats.linregress(np.log(counts[usable]), np.log(values[usable]))
    dof = int(usable.sum()) - 2
    if dof < 1:
        return float(fit.slope), math.nan, math.nan
    half = float(scipy.stats.t.ppf((1 + confidence) / 2, dof)) * float(fit.stderr)
    return float(fit.slope), float(fit.slope) - half, float(fit.slope) + half


def snr_sweep(
    *,
    key: jax.Array,
    out_csv: str | os.PathLike[str] | None,
    targets: Sequence[int] = SWEEP_TARGETS,
    mc_targets: Sequence[int] = SWEEP_MC_TARGETS,
    data: Dataset | None = None,
    train_steps: int = 100,
    num_samples: int = 32 * 256,
    batches: int = 32,
    estimators: Sequence[Estimator] = SWEEP_ESTIMATORS,
    on_progress: SweepProgressFn | None = None,
) -> pd.DataFrame:
    r"""Exact (and sampled) SNR and efficiency of gradient estimators against the parameter count.

    For each target parameter count, an MLP with two hidden layers of equal width $h$
    (closest count to the target on `data`, see [snrkit.nets.mlp_widths_for_params][])
    is trained for `train_steps` Adam steps (batch 128, learning rate $10^{-3}$) and its
    full-batch gradient $\nabla$ taken ([snrkit.gradients.gradient_at][]). For each
    estimator the frame gets, in long format:

    - `source="exact"`: from the exact law, $\sigma_i^2 = \operatorname{Var}[g_i]$;
    - `source="monte_carlo"` (only for widths of `mc_targets`): the same metrics with
      the sampled variances $\hat\sigma_i^2$ of `num_samples` estimates (the true
      $\nabla$ is known, so only the noise is estimated), with a 95 % *batch-means*
      interval ([`batch_means_interval`][snrkit.stats.batch_means_interval]): the metric
      computed on each of `batches` batches gives the standard error of the all-sample
      value.

    Metrics (see [`snr_metrics`][snrkit.sweeps.snr_metrics]): `"mean_entry_snr"`
    $\frac1n\sum_i\mathbb E[g_i]^2/\sigma_i^2$, `"aggregate_snr"`
    $\|\mathbb E g\|^2/\sum_i\sigma_i^2$ and `"efficiency"`, the floor over the total MSE
    ([`Law.efficiency`][snrkit.core.law.Law.efficiency]; sampled rows use the sampled
    variances and the exact bias). For the forward gradient the exact aggregate SNR
    is $K/(n+\kappa-2)$ whatever $\nabla$, and the exact mean entry SNR lies in
    $[K/(2n), K/n]$ (Gaussian), both $O(1/n)$ as Frye (2022) states; both are derived in
    the docs: [Derivations](../derivations.md).

    **Resume.** With `out_csv`, the CSV is rewritten atomically (a temporary file in the
    same folder, then `os.replace`) after each width, so an interrupted sweep leaves
    only whole widths behind. On start, rows already in the CSV are kept, keyed by
    `(width, label, source, metric)`; a width whose rows are all present is skipped and
    only missing rows are computed. Every random choice of a width derives from
    `fold_in(key, width)` (and the estimator's label), so a resumed sweep returns the same
    frame as an uninterrupted one. Rows for widths not requested now stay in the CSV but
    are not returned. Every resumed cell is validated (an empty or non-finite value, a
    duplicated row, rows of another estimator under the same label are errors naming the line
    and column); a non-finite value the sweep computes itself is returned but not stored, so
    its width is recomputed on resume.

    **Cost.** The default sweep took 121 s on 2 CPU cores (162 s while other jobs shared
    them): 30 s of training and gradients, 79 s of Monte Carlo at the four sampled widths
    (sampling costs `num_samples × n × directions` probe entries, plus one compilation
    per estimator and width), the rest exact laws.
    [`SWEEP_QUICK`][snrkit.sweeps.SWEEP_QUICK] takes about 30 s.

    Args:
        key: a JAX key; training, initialisation and sampling all derive from it.
        out_csv: where to keep results (and resume from), or `None`.
        targets: parameter counts to aim at; targets that give the same width count once.
        mc_targets: the subset of `targets` that also get Monte Carlo rows.
        data: a [`Dataset`][snrkit.data.Dataset]; default scikit-learn's digits.
        train_steps: Adam steps before the gradient is taken (0: at initialisation).
        num_samples: Monte Carlo samples per estimator and width.
        batches: batches of the batch-means interval (at least 2).
        estimators: the settings to evaluate; default
            [`SWEEP_ESTIMATORS`][snrkit.sweeps.SWEEP_ESTIMATORS].
        on_progress: see [`SweepProgressFn`][snrkit.sweeps.SweepProgressFn].

    Returns:
        A frame with the columns [`SWEEP_COLUMNS`][snrkit.sweeps.SWEEP_COLUMNS], sorted by
        width, then estimator in the given order, then source and metric.

    Raises:
        ValueError: bad targets, `mc_targets` not a subset of `targets`, or an
            `out_csv` with other columns, a malformed, non-finite or duplicated row (the
            message names the line and column), or rows written by a sweep with another
            key, data set, training length, sample count or batch count.

    Examples:
        A one-width sweep on a tiny hand-made data set, exact rows only. The exact
        aggregate SNR of the Gaussian forward gradient is $1/(n+1)$ whatever $\nabla$:

        >>> import jax, numpy as np
        >>> import snrkit as sk
        >>> from snrkit.data import Dataset
        >>> from snrkit.sweeps import SWEEP_COLUMNS, snr_sweep
        >>> images = np.random.default_rng(0).random((8, 4, 4))
        >>> toy = Dataset(images, np.arange(8) % 4, num_classes=4, name="toy")
        >>> frame = snr_sweep(
        ...     key=jax.random.key(0),
        ...     out_csv=None,
        ...     data=toy,
        ...     targets=(100,),
        ...     mc_targets=(),
        ...     train_steps=0,
        ...     estimators=[sk.ForwardGradient(probe="gaussian")],
        ... )
        >>> tuple(frame.columns) == SWEEP_COLUMNS
        True
        >>> row = frame[frame["metric"] == "aggregate_snr"].iloc[0]
        >>> int(row["n"]), round(1 / row["value"])
        (108, 109)
    """
    key = check_key(key)
    data = load_digits() if data is None else data
    train_steps = check_int(train_steps, "train_steps", minimum=0)
    num_samples = check_int(num_samples, "num_samples")
    batches = check_int(batches, "batches", minimum=2)
    check_callback(on_progress, "on_progress", "on_progress(stage, done, total)")
    estimators = tuple(estimators)
    if not estimators:
        raise ValueError("estimators is empty; pass at least one, e.g. sweeps.SWEEP_ESTIMATORS")
    described = [est.describe() for est in estimators]
    labels = [d["label"] for d in described]
    if len(set(labels)) != len(labels):
        raise ValueError(f"estimators must have distinct labels (rows are keyed by label); got {labels}")
    target_list = [check_int(t, "targets", hint="parameter counts") for t in targets]
    if not target_list:
        raise ValueError("targets is empty; pass parameter counts, e.g. sweeps.SWEEP_TARGETS")
    mc_list = [check_int(t, "mc_targets", hint="parameter counts") for t in mc_targets]
    if not set(mc_list) <= set(target_list):
        raise ValueError(
            f"mc_targets must be a subset of targets; {sorted(set(mc_list) - set(target_list))} are not in targets"
        )
    if mc_list and num_samples < 2 * batches:
        raise ValueError(
            f"num_samples={num_samples} is less than 2 * batches={2 * batches}; every batch needs two samples for a variance"
        )

    def width_of(target: int) -> int:
        return nets.mlp_widths_for_params(data.input_dim, data.num_classes, target, depth=2)[1]

    widths = sorted({width_of(t) for t in target_list})
    mc_widths = {width_of(t) for t in mc_list}
    config = {"dataset": data.name, "train_steps": train_steps, "key": _key_fingerprint(key)}
    mc_config = {"num_samples": num_samples, "batches": batches}

    path = None if out_csv is None else Path(out_csv)
    rows: dict[tuple, dict[str, Any]] = {}
    if path is not None and path.exists():
        existing = _read_sweep_csv(path)
        _check_resumable(existing, path, config, mc_config, described)
        rows = {tuple(r[c] for c in _ROW_KEY): r for r in existing.to_dict("records")}

    def report(stage: str, done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(stage, done, total)

    report("sweep", 0, len(widths))
    for done, width in enumerate(widths, start=1):
        sources = SWEEP_SOURCES if width in mc_widths else SWEEP_SOURCES[:1]
        missing = [
            (index, source)
            for index, label in enumerate(labels)
            for source in sources
            if any((width, label, source, metric) not in rows for metric in SWEEP_METRICS)
        ]
        if missing:
            new = _sweep_width(
                key, width, data, estimators, described, missing,
                train_steps=train_steps, num_samples=num_samples, batches=batches, report=report,
            )
            for row in new:
                rows[tuple(row[c] for c in _ROW_KEY)] = {**config, **row}
            if path is not None:
                # A non-finite value (an exact entry's infinite SNR, a zero gradient) is recomputed on
                # resume rather than stored: a resumed CSV with one is then surely tampered with.
                _write_atomic(_to_frame([r for r in rows.values() if math.isfinite(r["value"])], labels), path)
        report("sweep", done, len(widths))

    requested = set(widths)
    return _to_frame([r for r in rows.values() if r["width"] in requested], labels)


def _sweep_width(
    key: jax.Array,
    width: int,
    data: Dataset,
    estimators: Sequence[Estimator],
    described: Sequence[dict[str, object]],
    todo: Sequence[tuple[int, str]],
    *,
    train_steps: int,
    num_samples: int,
    batches: int,
    report: SweepProgressFn,
) -> list[dict[str, Any]]:
    """The rows of one width for the `(estimator index, source)` pairs in `todo`."""
    network = nets.mlp((data.input_dim, width, width, data.num_classes))
    # fold_in(key, width): a width's results do not depend on which other widths run.
    width_key = jax.random.fold_in(key, width)
    stage = f"n={nets.mlp_num_params((data.input_dim, width, width, data.num_classes)):,}: training"
    report(stage, 0, 1)
    _, grad = gradients.gradient_at(jax.random.fold_in(width_key, 0), network, data, step=train_steps)
    report(stage, 1, 1)
    flat_grad = ravel_host(grad)
    n = int(flat_grad.size)
    out = []
    for index, source in todo:
        estimator, info = estimators[index], described[index]
        law = estimator.given(grad)
        mean = np.asarray(law.flat_mean(), np.float64)
        signal_sq, floor = mean**2, float(law.floor())
        squared_bias = float(np.sum((mean - flat_grad) ** 2))
        common = {"width": width, "network": network.name, "n": n, **info, "source": source}
        if source == "exact":
            values = snr_metrics(signal_sq, np.asarray(law.flat_var()), squared_bias=squared_bias, floor=floor)
            for metric, value in zip(SWEEP_METRICS, values):
                out.append({**common, "metric": metric, "value": float(value), "lo": math.nan, "hi": math.nan, "num_samples": 0, "batches": 0})
            continue
        # The label (not the position in the list) picks the sampling key, so adding or
        # reordering estimators leaves every other estimator's samples unchanged.
        mc_key = jax.random.fold_in(jax.random.fold_in(width_key, 1), zlib.crc32(str(info["label"]).encode()) & 0x7FFFFFFF)
        mc_stage = f"n={n:,}: Monte Carlo {info['label']}"
        moments = monte_carlo(law, mc_key, num_samples, batches=batches, on_progress=lambda d, t: report(mc_stage, d, t))
        overall = snr_metrics(signal_sq, moments.flat("var"), squared_bias=squared_bias, floor=floor)
        per_batch = snr_metrics(signal_sq, moments.flat("batch_vars"), squared_bias=squared_bias, floor=floor)
        for metric, value, batch_values in zip(SWEEP_METRICS, overall, per_batch):
            lo, hi = batch_means_interval(float(value), batch_values)
            out.append({**common, "metric": metric, "value": float(value), "lo": lo, "hi": hi, "num_samples": num_samples, "batches": batches})
    return out


def _key_fingerprint(key: jax.Array) -> str:
    """The key's data as hex, so a CSV records which key produced it."""
    return "-".join(f"{int(word):08x}" for word in np.ravel(np.asarray(jax.random.key_data(key))))


def _to_frame(rows: Any, labels: Sequence[str]) -> pd.DataFrame:
    """Rows as a frame with fixed columns, dtypes and order (so runs compare equal)."""
    frame = pd.DataFrame(list(rows), columns=list(SWEEP_COLUMNS))
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype(np.int64)
    for column in _FLOAT_COLUMNS:
        frame[column] = frame[column].astype(np.float64)
    for column in _TEXT_COLUMNS:
        frame[column] = frame[column].astype(str)
    # Labels of this run first, in their given order; labels only the CSV knows after them.
    order = {label: i for i, label in enumerate(labels)}
    extra = sorted(set(frame["label"]) - set(order))
    order.update({label: len(labels) + i for i, label in enumerate(extra)})
    sort_keys = pd.DataFrame(
        {
            "width": frame["width"],
            "label": frame["label"].map(order),
            "source": frame["source"].map({s: i for i, s in enumerate(SWEEP_SOURCES)}),
            "metric": frame["metric"].map({m: i for i, m in enumerate(SWEEP_METRICS)}),
        }
    )
    index = sort_keys.sort_values(["width", "label", "source", "metric"], kind="stable").index
    return frame.loc[index].reset_index(drop=True)


def _read_sweep_csv(path: Path) -> pd.DataFrame:
    """The rows of a sweep CSV, every cell checked: a resumed sweep trusts nothing it did not validate."""
    fix = f"Delete {path} (or the offending rows) to recompute them, or pass another out_csv."
    try:
        # Everything as text first: an empty cell must not pass as NaN, nor a key as a number.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a snr_sweep CSV ({type(err).__name__}: {err}). {fix}") from err
    if list(frame.columns) != list(SWEEP_COLUMNS):
        missing = [c for c in SWEEP_COLUMNS if c not in frame.columns]
        extra = [c for c in frame.columns if c not in SWEEP_COLUMNS]
        raise ValueError(
            f"{path} does not have the columns of a snr_sweep CSV (missing {missing}, unexpected {extra}, "
            f"expected {list(SWEEP_COLUMNS)} in that order), so it cannot be resumed. {fix}"
        )
    rows, seen = [], {}
    for line, record in enumerate(frame.to_dict("records"), start=2):
        row = {column: _parse_cell(record[column], column, line, path, fix) for column in SWEEP_COLUMNS}
        if row["source"] not in SWEEP_SOURCES or row["metric"] not in SWEEP_METRICS:
            raise ValueError(f"{path}, line {line}: unknown source {row['source']!r} or metric {row['metric']!r}. {fix}")
        if not math.isfinite(row["value"]):
            raise ValueError(f"{path}, line {line}, column value: {row['value']} is not a finite number. {fix}")
        if row["source"] == "monte_carlo" and not (math.isfinite(row["lo"]) and math.isfinite(row["hi"])):
            raise ValueError(f"{path}, line {line}, columns lo/hi: a Monte Carlo row needs a finite interval. {fix}")
        key = tuple(row[c] for c in _ROW_KEY)
        if key in seen:
            raise ValueError(
                f"{path}, lines {seen[key]} and {line} both hold {dict(zip(_ROW_KEY, key))}; a resumed sweep cannot "
                f"tell which is right. {fix}"
            )
        seen[key] = line
        rows.append(row)
    return _to_frame(rows, [])


def _parse_cell(text: str, column: str, line: int, path: Path, fix: str) -> Any:
    """One CSV cell as the column's type, or a clear error naming the line and column."""
    if column in _TEXT_COLUMNS:
        if not text:
            raise ValueError(f"{path}, line {line}, column {column}: empty. {fix}")
        return text
    if column in _FLOAT_COLUMNS:
        if not text and column in ("lo", "hi"):
            return math.nan  # exact rows have no interval
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{path}, line {line}, column {column}: {text!r} is not a number. {fix}") from None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}, line {line}, column {column}: {text!r} is not an integer. {fix}") from None


def _check_resumable(
    frame: pd.DataFrame, path: Path, config: dict[str, Any], mc_config: dict[str, Any], described: Sequence[dict[str, Any]]
) -> None:
    """Refuse to mix rows of another configuration, or of another estimator under the same label, into this sweep."""
    for info in described:
        rows = frame[frame["label"] == info["label"]]
        other = rows[(rows["family"] != info["family"]) | (rows["params"] != info["params"])]
        if len(other):
            raise ValueError(
                f"{path} holds rows labelled {info['label']!r} for another estimator (params {other['params'].iloc[0]}, "
                f"here {info['params']}); two estimators share the label (functions are named by their qualified "
                f"name: give them distinct names). Delete {path} or choose another out_csv (--out)."
            )
    # Sample and batch counts only describe the Monte Carlo rows (exact rows record 0).
    for rows, wanted in ((frame, config), (frame[frame["source"] == "monte_carlo"], mc_config)):
        for column, value in wanted.items():
            found = sorted(set(rows[column].tolist()) - {value})
            if found:
                raise ValueError(
                    f"{path} holds rows with {column}={found[0]!r} but this sweep has {column}={value!r}; "
                    f"resuming would mix two configurations. Delete {path} to start afresh, or choose another "
                    f"out_csv (--out on the command line)."
                )


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` so that `path` is always either the old or the new file."""
    write_atomic(path, frame.to_csv(index=False))
