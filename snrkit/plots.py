r"""Figures from tidy frames: each function draws what a frame holds and computes nothing else.

The numbers come from [`snrkit.sweeps`][snrkit.sweeps] (and the fitted slopes from
[snrkit.sweeps.fit_loglog_slope][]) or [`snrkit.report`][snrkit.report]; here they are only
drawn. Figures are built with `matplotlib.figure.Figure` rather than `matplotlib.pyplot`, so
no GUI backend is needed or selected (nothing here calls `matplotlib.use`), nothing
accumulates in pyplot's global figure list in long sweeps, and a notebook still displays the
returned figure.

Functions take an optional `ax` to draw into an existing figure; they return the figure
the axes belong to. [`save`][snrkit.plots.save] writes a PNG.

Examples:
    >>> import pandas as pd
    >>> from snrkit import plots
    >>> frame = pd.DataFrame({"formula": "snrkit exact", "predicted": [1.0, 2.0],
    ...                       "measured": [1.1, 1.9]})
    >>> type(plots.plot_parity(frame)).__name__
    'Figure'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from snrkit import sweeps

__all__ = ["plot_parity", "plot_snr_vs_params", "plot_thread_check", "save"]

DPI = 120
"""Resolution of [`save`][snrkit.plots.save], in dots per inch."""

_METRIC_NAMES = {
    "mean_entry_snr": r"mean entry SNR, mean$_i\ \mathbb{E}[g_i]^2/\mathrm{Var}[g_i]$",
    "aggregate_snr": r"aggregate SNR, $\|\mathbb{E}g\|^2/\mathrm{tr\,Cov}[g]$",
    "efficiency": r"efficiency, floor / $\mathbb{E}\|g-\nabla\|^2$",
}
# Metrics with a line of reference: an efficiency of 1 is the floor of unbiased estimators.
_REFERENCES = {"efficiency": (1.0, "floor of unbiased estimators")}
# Estimators with similar SNR overlap on a log scale (K=4 and 4 blocks both give ~4/n), so
# line styles, not only colours, tell them apart.
_LINESTYLES = ("-", "--", "-.", ":")


def plot_snr_vs_params(
    frame: pd.DataFrame,
    *,
    metric: str = "mean_entry_snr",
    ax: Axes | None = None,
    fits: Mapping[str, tuple[float, float, float]] | None = None,
) -> Figure:
    r"""SNR against the number of parameters, log-log, one colour per estimator.

    Exact values are lines, Monte Carlo values are points with their 95 % (batch-means)
    error bars. Each estimator's legend entry shows the fitted log-log slope $b$ of its
    exact values, $\log \mathrm{SNR} \approx a + b \log n$, with its 95 % interval (a slope
    of $-1$ is $\mathrm{SNR} \propto 1/n$, Frye's (2022) scaling).

    Args:
        frame: a frame from [snrkit.sweeps.snr_sweep][] (columns `label`, `n`,
            `source`, `metric`, `value`, `lo`, `hi`).
        metric: which metric to draw (`"mean_entry_snr"` or `"aggregate_snr"`).
        ax: axes to draw into; a new figure when `None`.
        fits: `label -> (slope, lo, hi)`; by default
            [snrkit.sweeps.fit_loglog_slope][] of the exact rows, for every label that
            has at least two widths.

    Returns:
        The figure.

    Raises:
        ValueError: the frame has no rows for `metric` or lacks a needed column.

    Examples:
        >>> import numpy as np, pandas as pd
        >>> from snrkit.plots import plot_snr_vs_params
        >>> frame = pd.DataFrame({"label": "FG", "n": [1000, 4000, 16000], "source": "exact",
        ...                       "metric": "mean_entry_snr", "value": [1e-3, 2.5e-4, 6.25e-5],
        ...                       "lo": np.nan, "hi": np.nan})
        >>> fig = plot_snr_vs_params(frame)
        >>> type(fig).__name__, fig.axes[0].get_legend().get_texts()[0].get_text()
        ('Figure', 'FG: slope -1.0000 [-1.0000, -1.0000]')
    """
    _require(frame, ("label", "n", "source", "metric", "value", "lo", "hi"), "plot_snr_vs_params")
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        raise ValueError(f"the frame has no rows with metric={metric!r}; it has {sorted(frame['metric'].unique())}")
    fig, ax = _figure(ax, figsize=(6.4, 7.2))
    labels = list(dict.fromkeys(rows["label"]))
    palette = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    if fits is None:
        fits = {}
        for label in labels:
            try:
                fits[label] = sweeps.fit_loglog_slope(rows, metric, label)
            except ValueError:
                pass  # fewer than two exact widths: no slope to show
    has_mc = False
    for index, label in enumerate(labels):
        colour = palette[label]
        exact = rows[(rows["label"] == label) & (rows["source"] == "exact")].sort_values("n")
        ax.plot(
            exact["n"], exact["value"], color=colour, linestyle=_LINESTYLES[index % len(_LINESTYLES)],
            marker="o", markersize=3, label=_fit_label(label, fits.get(label)),
        )
        sampled = rows[(rows["label"] == label) & (rows["source"] == "monte_carlo")].sort_values("n")
        if not sampled.empty:
            has_mc = True
            ax.errorbar(
                sampled["n"], sampled["value"], yerr=_yerr(sampled["value"], sampled["lo"], sampled["hi"]),
                color=colour, marker="s", markersize=5, markerfacecolor="none", linestyle="none", capsize=3,
                label="_nolegend_",
            )
    if metric in _REFERENCES:
        level, text = _REFERENCES[metric]
        ax.axhline(level, color="0.4", linestyle=":", linewidth=1, label=text)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters $n$")
    ax.set_ylabel(_METRIC_NAMES.get(metric, metric))
    handles, texts = ax.get_legend_handles_labels()
    if has_mc:
        handles.append(Line2D([], [], color="0.3", marker="s", markerfacecolor="none", linestyle="none"))
        texts.append("Monte Carlo, 95 % interval")
    # Below the axes: the lines run corner to corner, so no spot inside is free, and the
    # entries are too long to sit beside the axes without squeezing them.
    ax.legend(
        handles, texts, fontsize="small", title="exact (log-log slope, 95 % interval)", title_fontsize="small",
        loc="upper center", bbox_to_anchor=(0.5, -0.14), borderaxespad=0.0,
    )
    ax.grid(True, which="major", alpha=0.3)
    return fig


def plot_parity(frame: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Measured against predicted variance, log-log, with the line of agreement $y = x$.

    A formula that holds entry by entry puts its points on the line; a formula that
    predicts $c$ times the truth puts them on the parallel line $y = x / c$. The frame of a
    report is [snrkit.report.parity_frame][].

    Args:
        frame: columns `formula` (e.g. `"snrkit exact"`, `"frye-eq1"`), `predicted`,
            `measured` and, optionally, `measured_lo` / `measured_hi` (an interval for
            `measured`, drawn as error bars). One colour per formula.
        ax: axes to draw into; a new figure when `None`.

    Returns:
        The figure.

    Raises:
        ValueError: the frame is empty or lacks a needed column.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.plots import plot_parity
        >>> frame = pd.DataFrame({"formula": ["snrkit exact"] * 2 + ["frye-eq1"] * 2,
        ...                       "predicted": [1.0, 2.0, 4.0, 8.0],
        ...                       "measured": [1.1, 1.9, 1.1, 1.9]})
        >>> fig = plot_parity(frame)
        >>> type(fig).__name__, [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        ('Figure', ['measured = predicted', 'snrkit exact', 'frye-eq1'])
    """
    _require(frame, ("formula", "predicted", "measured"), "plot_parity")
    fig, ax = _figure(ax)
    formulas = list(dict.fromkeys(frame["formula"]))
    palette = dict(zip(formulas, sns.color_palette(n_colors=len(formulas))))
    has_interval = {"measured_lo", "measured_hi"} <= set(frame.columns)
    for formula in formulas:
        rows = frame[frame["formula"] == formula]
        yerr = _yerr(rows["measured"], rows["measured_lo"], rows["measured_hi"]) if has_interval else None
        ax.errorbar(
            rows["predicted"], rows["measured"], yerr=yerr, color=palette[formula], marker="o", markersize=4,
            linestyle="none", capsize=2, label=formula,
        )
    _identity_line(ax, frame[["predicted", "measured"]].to_numpy(dtype=np.float64), label="measured = predicted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted variance")
    ax.set_ylabel("measured variance (Monte Carlo)")
    ax.legend(fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return fig


def plot_thread_check(frame: pd.DataFrame, ax: Axes | None = None) -> Figure:
    r"""Frye's thread check: the average entry variance against $\|\nabla\|^2$.

    Frye (2022, thread) checked that the mean over entries of $\operatorname{Var}[g_i]$
    equals $\|\nabla\|^2$ on MNIST gradients. Measured values are points with error
    bars, one colour per setting; the thread's claim is the line $y = x$; the exact
    mean,

    $$
    \frac1n\sum_i \operatorname{Var}[g_i] = \|\nabla\|^2\Big(1 + \frac{\kappa-2}{n}\Big)
    $$

    (divided by $K$ for $K$ directions; derived in the docs:
    [Derivations](../derivations.md)), is drawn as a dashed line per setting through its
    `exact_mean_entry_var` values when the frame has them. The frame of a report is
    [snrkit.report.thread_frame][].

    Args:
        frame: columns `setting`, `norm_sq` ($\|\nabla\|^2$), `mean_entry_var`
            (measured), `lo`, `hi` (its interval) and, optionally,
            `exact_mean_entry_var`.
        ax: axes to draw into; a new figure when `None`.

    Returns:
        The figure.

    Raises:
        ValueError: the frame is empty or lacks a needed column.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.plots import plot_thread_check
        >>> frame = pd.DataFrame({"setting": "mlp on digits (gaussian)", "norm_sq": [1.0, 2.0],
        ...                       "mean_entry_var": [1.01, 2.03], "lo": [0.99, 1.98],
        ...                       "hi": [1.03, 2.08], "exact_mean_entry_var": [1.001, 2.002]})
        >>> type(plot_thread_check(frame)).__name__
        'Figure'
    """
    _require(frame, ("setting", "norm_sq", "mean_entry_var", "lo", "hi"), "plot_thread_check")
    fig, ax = _figure(ax)
    settings = list(dict.fromkeys(frame["setting"]))
    palette = dict(zip(settings, sns.color_palette(n_colors=len(settings))))
    for setting in settings:
        rows = frame[frame["setting"] == setting]
        ax.errorbar(
            rows["norm_sq"], rows["mean_entry_var"], yerr=_yerr(rows["mean_entry_var"], rows["lo"], rows["hi"]),
            color=palette[setting], marker="o", markersize=4, linestyle="none", capsize=2, label=setting,
        )
    _identity_line(
        ax, frame[["norm_sq", "mean_entry_var"]].to_numpy(dtype=np.float64),
        label=r"thread: mean $\mathrm{Var}[g_i] = \|\nabla\|^2$",
    )
    if "exact_mean_entry_var" in frame.columns:
        # One dashed line per setting, in its colour: κ, n and K differ between settings, so
        # the exact values of different settings do not lie on one line.
        label = r"exact: $\|\nabla\|^2(1+(\kappa-2)/n)$"
        for setting in settings:
            rows = frame[(frame["setting"] == setting) & frame["exact_mean_entry_var"].notna()].sort_values("norm_sq")
            if rows.empty:
                continue
            ax.plot(
                rows["norm_sq"], rows["exact_mean_entry_var"], color=palette[setting], linestyle="--",
                linewidth=1, label=label,
            )
            label = "_nolegend_"
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\|\nabla\|^2$")
    ax.set_ylabel(r"mean over entries of $\mathrm{Var}[g_i]$")
    ax.legend(fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return fig


def save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write `fig` as a PNG at [`DPI`][snrkit.plots.DPI] (120) dpi, creating missing folders.

    Args:
        fig: the figure.
        path: file name; `.png` is appended when it has no suffix.

    Returns:
        The path written.

    Raises:
        ValueError: `path` has a suffix other than `.png`.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from matplotlib.figure import Figure
        >>> from snrkit.plots import save
        >>> fig = Figure()
        >>> _ = fig.add_subplot().plot([1, 2], [1, 4])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save(fig, Path(folder) / "figures" / "line")
        ...     path.name, path.stat().st_size > 0
        ('line.png', True)
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    if path.suffix.lower() != ".png":
        raise ValueError(f"save writes PNG files; name the file with a .png suffix instead of {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------------------


def _figure(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.8)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _require(frame: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{who} needs the columns {list(columns)}; the frame lacks {missing}")
    if frame.empty:
        raise ValueError(f"{who} got an empty frame; there is nothing to draw")


def _yerr(value: pd.Series, lo: pd.Series, hi: pd.Series) -> np.ndarray:
    """Asymmetric error bars `[value - lo, hi - value]`; a missing bound draws no bar."""
    value = value.to_numpy(dtype=np.float64)
    below = np.nan_to_num(value - lo.to_numpy(dtype=np.float64), nan=0.0)
    above = np.nan_to_num(hi.to_numpy(dtype=np.float64) - value, nan=0.0)
    return np.stack([below, above])


def _identity_line(ax: Axes, points: np.ndarray, *, label: str) -> None:
    """The line `y = x` across the range of the plotted points."""
    positive = points[np.isfinite(points) & (points > 0)]
    if positive.size == 0:
        return
    lo, hi = positive.min(), positive.max()
    ax.plot([lo, hi], [lo, hi], color="0.5", linestyle="-", linewidth=1, label=label, zorder=0)


def _fit_label(label: str, fit: tuple[float, float, float] | None) -> str:
    if fit is None:
        return label
    slope, lo, hi = fit
    # Four decimals: exact slopes sit within 1e-3 of -1 with intervals narrower than that.
    if np.isnan(lo) or np.isnan(hi):
        return f"{label}: slope {slope:.4f}"
    return f"{label}: slope {slope:.4f} [{lo:.4f}, {hi:.4f}]"
