r"""Figures from tidy frames, drawn in one house style: each function draws what a frame holds.

The numbers come from [`snrkit.sweeps`][snrkit.sweeps] or [`snrkit.report`][snrkit.report];
here they are only drawn. Every figure follows the style guide of the contributor docs
([Figure style](../contributing.md#figure-style)); the means to follow it are public, so a
notebook draws its own figures the same way:

- [`style`][snrkit.plots.style]: the fonts, sizes and number formats of every figure;
- [`figure`][snrkit.plots.figure]: a figure of panels, 6.4 in wide (the docs column);
- [`PALETTE`][snrkit.plots.PALETTE] and [`category_colours`][snrkit.plots.category_colours]:
  one colour-blind-safe colour per category, never cycled;
- [`PROBE_MARKERS`][snrkit.plots.PROBE_MARKERS] and
  [`VERDICT_COLOURS`][snrkit.plots.VERDICT_COLOURS]: the marker of each probe and the
  colour of each verdict, the same in every figure and table;
- [`identity_line`][snrkit.plots.identity_line], [`slope_guide`][snrkit.plots.slope_guide],
  [`reference_line`][snrkit.plots.reference_line]: reference lines, dark grey, on top,
  labelled;
- [`set_scale`][snrkit.plots.set_scale]: log only over a decade or more, at most six ticks;
- [`legend_below`][snrkit.plots.legend_below]: a legend under the panels, never over data.

Figures are `matplotlib.figure.Figure` objects, not `pyplot` ones: no GUI backend is needed or
selected, nothing accumulates in pyplot's figure list, and a notebook still displays the
returned figure. The plotting functions take an optional `fig` (a figure or a subfigure) to
draw into and return the top-level figure; [`save`][snrkit.plots.save] writes a PNG.

Examples:
    >>> import pandas as pd
    >>> from snrkit import plots
    >>> frame = pd.DataFrame(
    ...     {
    ...         "claim": "snrkit exact law",
    ...         "probe": "gaussian",
    ...         "verdict": "holds",
    ...         "predicted": [1.0, 20.0],
    ...         "measured": [1.1, 19.0],
    ...     }
    ... )
    >>> type(plots.plot_parity(frame)).__name__
    'Figure'
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

__all__ = [
    "DPI",
    "FIGURE_WIDTH",
    "PALETTE",
    "PANEL_HEIGHT",
    "PROBE_MARKERS",
    "RC",
    "REFERENCE_COLOUR",
    "VERDICT_COLOURS",
    "category_colours",
    "figure",
    "identity_line",
    "legend_below",
    "plot_cost",
    "plot_parity",
    "plot_snr_per_cost",
    "plot_snr_vs_params",
    "plot_thread_check",
    "probe_marker",
    "reference_line",
    "save",
    "set_scale",
    "slope_guide",
    "style",
]

DPI = 120
"""Resolution of [`save`][snrkit.plots.save], in dots per inch."""
FIGURE_WIDTH = 6.4
"""Width of every figure, in inches: 768 px at [`DPI`][snrkit.plots.DPI], shown at the docs
column's 700 px without its text shrinking below legibility."""
PANEL_HEIGHT = 4.0
"""Height of a single panel, in inches; a row of two panels side by side is lower."""

PALETTE: tuple[str, ...] = (
    "#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#56b4e9", "#fbafe4", "#ece133",
)
"""Category colours: seaborn's `"colorblind"` palette without its grey (reference lines could
be mistaken for it), its two palest colours last. Nine colours; more categories are faceted,
never cycled."""
REFERENCE_COLOUR = "#333333"
"""Dark grey of every reference line (identity, slope guide, floor)."""
PROBE_MARKERS: Mapping[str, str] = {"gaussian": "o", "rademacher": "s", "uniform": "^", "—": "D"}
"""Marker of each probe in every figure; `"—"` is an estimator with no probe to choose."""
VERDICT_COLOURS: Mapping[str, str] = {"holds": "#029e73", "refuted": "#d55e00", "not resolved": "#de8f05"}
"""Colour of each verdict (figure facets, the report's and the ledger's tables)."""

RC: Mapping[str, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "legend.frameon": False,
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.grid": True,
    "grid.alpha": 0.3,
    # ×10⁻³ offsets instead of six-decimal tick labels
    "axes.formatter.use_mathtext": True,
    "axes.formatter.limits": (-2, 3),
    "errorbar.capsize": 2,
    "lines.linewidth": 1.5,
}
"""The matplotlib settings of [`style`][snrkit.plots.style]; `matplotlib.rcParams.update(RC)`
applies them for a whole session."""

_LINESTYLES = ("-", "--", "-.", ":")
# One marker per colour of the palette: within a panel, colour and marker together name an estimator.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "*")
_MAX_TICKS = 6


def style() -> contextlib.AbstractContextManager[None]:
    """The house style for the figures drawn inside a `with` block.

    Returns:
        A context manager that applies [`RC`][snrkit.plots.RC] (fonts of 9 pt and up, the
        colour-blind-safe [`PALETTE`][snrkit.plots.PALETTE], scaled tick labels) and restores
        the previous settings on exit.

    Examples:
        >>> import matplotlib
        >>> from snrkit import plots
        >>> with plots.style():
        ...     matplotlib.rcParams["legend.fontsize"]
        9.0
    """
    return matplotlib.rc_context(dict(RC))


def figure(
    rows: int = 1,
    cols: int = 1,
    *,
    height: float | None = None,
    sharex: bool = False,
    sharey: bool = False,
    height_ratios: Sequence[float] | None = None,
) -> tuple[Figure, np.ndarray]:
    """A figure [`FIGURE_WIDTH`][snrkit.plots.FIGURE_WIDTH] wide with a grid of panels.

    Args:
        rows: rows of panels.
        cols: panels per row; panels to compare sit side by side in one row.
        height: in inches; default [`PANEL_HEIGHT`][snrkit.plots.PANEL_HEIGHT] per row of
            one panel, 3.2 in per row of several.
        sharex: share the x axis of all panels (panels meant to be compared).
        sharey: share the y axis of all panels.
        height_ratios: relative heights of the rows.

    Returns:
        `(figure, axes)`, `axes` a `(rows, cols)` array.

    Examples:
        >>> from snrkit import plots
        >>> fig, axes = plots.figure(1, 2, sharey=True)
        >>> axes.shape, fig.get_size_inches().tolist()
        ((1, 2), [6.4, 3.2])
    """
    if height is None:
        height = (PANEL_HEIGHT if cols == 1 else 3.2) * rows
    with style():
        fig = Figure(figsize=(FIGURE_WIDTH, height), layout="constrained")
        axes = fig.subplots(rows, cols, sharex=sharex, sharey=sharey, squeeze=False,
                            gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, axes


def category_colours(categories: Sequence[str]) -> dict[str, str]:
    """One [`PALETTE`][snrkit.plots.PALETTE] colour per category, in order, never cycled.

    Args:
        categories: distinct names, in the order they should be coloured.

    Returns:
        `name -> colour`.

    Raises:
        ValueError: more categories than colours (facet them, or label them directly).

    Examples:
        >>> from snrkit.plots import category_colours
        >>> category_colours(["frye-eq1", "yao-eq6"])
        {'frye-eq1': '#0173b2', 'yao-eq6': '#de8f05'}
    """
    names = list(dict.fromkeys(categories))
    if len(names) > len(PALETTE):
        raise ValueError(
            f"{len(names)} categories but {len(PALETTE)} distinct colours; a colour must not stand for two "
            f"categories: split the frame into facets or label the lines directly ({names})"
        )
    return dict(zip(names, PALETTE))


def probe_marker(probe: str) -> str:
    """The marker of a probe ([`PROBE_MARKERS`][snrkit.plots.PROBE_MARKERS]).

    Raises:
        ValueError: a probe with no marker; add it to `PROBE_MARKERS`.

    Examples:
        >>> from snrkit.plots import probe_marker
        >>> probe_marker("rademacher")
        's'
    """
    try:
        return PROBE_MARKERS[probe]
    except KeyError:
        raise ValueError(f"no marker for probe {probe!r}; add one to snrkit.plots.PROBE_MARKERS "
                         f"(known: {', '.join(PROBE_MARKERS)})") from None


def set_scale(ax: Axes, axis: str, values: Any) -> str:
    """Log scale when the positive `values` span a decade or more, else linear; at most six ticks.

    A linear axis gets a scaled notation (an offset such as $\\times 10^{-3}$) instead of
    long decimals.

    Args:
        ax: the axes.
        axis: `"x"` or `"y"`.
        values: the values drawn along that axis (NaNs ignored).

    Returns:
        `"log"` or `"linear"`, the scale set.

    Examples:
        >>> from snrkit import plots
        >>> fig, axes = plots.figure()
        >>> ax = axes[0, 0]
        >>> (
        ...     plots.set_scale(ax, "x", [1e-4, 1e-1]),
        ...     plots.set_scale(ax, "y", [1.0, 3.0]),
        ... )
        ('log', 'linear')
    """
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    target = ax.xaxis if axis == "x" else ax.yaxis
    if _spans_decade(data):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        # an axis spanning under three decades gets 1-2-5 steps, so that it has labels
        # besides 10^k; minor ticks unlabelled (matplotlib labels them on short spans, and
        # they collide)
        short = data.max() / data.min() < 10**2.5
        target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if short else (1.0,), numticks=_MAX_TICKS))
        target.set_minor_formatter(NullFormatter())
        return "log"
    (ax.set_xscale if axis == "x" else ax.set_yscale)("linear")
    target.set_major_locator(MaxNLocator(nbins=_MAX_TICKS - 1))
    formatter = ScalarFormatter(useMathText=True)
    formatter.set_powerlimits((-2, 3))
    target.set_major_formatter(formatter)
    return "linear"


def identity_line(ax: Axes, values: Any, *, label: str) -> Line2D:
    """The line $y = x$ over the range of the positive `values`, dark grey, on top of the data.

    Examples:
        >>> from snrkit import plots
        >>> fig, axes = plots.figure()
        >>> line = plots.identity_line(axes[0, 0], [0.5, 2.0, 8.0], label="y = x")
        >>> line.get_xdata().tolist(), line.get_ydata().tolist()
        ([0.5, 8.0], [0.5, 8.0])
    """
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data) & (data > 0)]
    lo, hi = (float(data.min()), float(data.max())) if data.size else (1.0, 1.0)
    (line,) = ax.plot([lo, hi], [lo, hi], color=REFERENCE_COLOUR, linewidth=1.2, zorder=5, label=label, gid="identity")
    return line


def slope_guide(ax: Axes, slope: float, *, x: Sequence[float], through: tuple[float, float], label: str) -> Line2D:
    r"""A dashed guide $y = y_0 (x/x_0)^{\text{slope}}$ through `through`, over `x` (straight on log-log axes).

    Args:
        ax: the axes (log-log).
        slope: the log-log slope, e.g. $-1$ for $\propto 1/n$.
        x: the x values the guide spans (their minimum and maximum are used).
        through: a point $(x_0, y_0)$ on the guide; put it off the data, so the guide is
            seen beside the lines it is compared with, not under them.
        label: its legend text, e.g. `"slope −1"`.

    Examples:
        >>> from snrkit import plots
        >>> fig, axes = plots.figure()
        >>> line = plots.slope_guide(
        ...     axes[0, 0], -1, x=[10, 1000], through=(10, 1.0), label="slope −1"
        ... )
        >>> [round(float(y), 6) for y in line.get_ydata()[[0, -1]]]
        [1.0, 0.01]
    """
    x0, y0 = through
    # Sampled, not two end points: on linear axes (less than a decade of data) the guide is a curve.
    xs = np.geomspace(float(np.min(x)), float(np.max(x)), 50)
    (line,) = ax.plot(xs, y0 * (xs / x0) ** slope, color=REFERENCE_COLOUR, linestyle="--", linewidth=1.2, zorder=5,
                      label=label, gid="guide")
    return line


def reference_line(ax: Axes, level: float, *, label: str, linestyle: str = ":") -> Line2D:
    """A horizontal reference line at `level`, dark grey (dotted by default), on top of the data.

    Examples:
        >>> from snrkit import plots
        >>> fig, axes = plots.figure()
        >>> plots.reference_line(axes[0, 0], 1.0, label="floor").get_ydata()
        [1.0, 1.0]
    """
    return ax.axhline(level, color=REFERENCE_COLOUR, linestyle=linestyle, linewidth=1.2, zorder=5, label=label,
                      gid="reference")


def legend_below(
    target: FigureBase, sections: Sequence[tuple[str, Sequence[tuple[Any, str]]]], *, ncols: int | None = None
) -> Any:
    """A legend under all panels of `target`, one column per section, each headed by its title.

    Args:
        target: a figure or subfigure with constrained layout.
        sections: `(title, [(handle, text), ...])`; an empty title adds no heading. Handles
            should look like what is drawn (the same marker, line style and colour).
        ncols: columns; default one per section.

    Returns:
        The legend.

    Examples:
        >>> from matplotlib.lines import Line2D
        >>> from snrkit import plots
        >>> fig, axes = plots.figure()
        >>> gaussian = Line2D([], [], marker="o", linestyle="none")
        >>> legend = plots.legend_below(fig, [("probe", [(gaussian, "gaussian")])])
        >>> [t.get_text() for t in legend.get_texts()]
        ['probe', 'gaussian']
    """
    sections = [(title, list(entries)) for title, entries in sections if entries]
    columns = [([(_blank(), title)] if title else []) + entries for title, entries in sections]
    depth = max(len(c) for c in columns)
    handles, texts = [], []
    for column in columns:  # a legend fills column by column: pad each section to the same depth
        column = column + [(_blank(), "")] * (depth - len(column))
        handles += [h for h, _ in column]
        texts += [t for _, t in column]
    legend = target.legend(handles, texts, loc="outside lower center", ncols=ncols or len(columns), frameon=False,
                           handlelength=2.2, columnspacing=1.5)
    titles = {title for title, _ in sections if title}
    for text in legend.get_texts():
        if text.get_text() in titles:
            text.set_fontweight("bold")
    return legend


def plot_snr_vs_params(
    frame: pd.DataFrame,
    *,
    metric: str = "mean_entry_snr",
    groups: Mapping[str, str] | None = None,
    fig: FigureBase | None = None,
) -> Figure:
    r"""SNR (or efficiency) against the number of parameters, one panel per group of estimators.

    Exact values are lines, Monte Carlo values are markers with their 95 % (batch-means)
    intervals. Within a panel each estimator has its own colour, line style and marker, so
    estimators whose values coincide (Gaussian and Rademacher probes differ by $O(1/n)$) stay
    visible on top of each other; each panel's legend lists what it draws. SNR panels share
    their axes and carry a slope $-1$ guide ($\mathrm{SNR}\propto 1/n$, Frye 2022) below the
    data; efficiency panels carry the floor of unbiased estimators (efficiency 1) and keep
    their own $y$ axes (biased projections reach $10^5$, unbiased estimators sit at 1).
    Fitted slopes belong in a table beside the figure ([snrkit.report.slope_rows][]).

    Args:
        frame: a frame from [snrkit.sweeps.snr_sweep][] (columns `label`, `family`, `n`,
            `source`, `metric`, `value`, `lo`, `hi`).
        metric: `"mean_entry_snr"`, `"aggregate_snr"` or `"efficiency"`.
        groups: `label -> panel title`; default one panel per `family`.
        fig: a figure or subfigure to draw into; a new figure when `None`.

    Returns:
        The figure.

    Raises:
        ValueError: the frame has no rows for `metric`, lacks a needed column, or `groups`
            misses a label.

    Examples:
        >>> import numpy as np, pandas as pd
        >>> from snrkit.plots import plot_snr_vs_params
        >>> frame = pd.DataFrame(
        ...     {
        ...         "label": "FG",
        ...         "family": "forward-gradient",
        ...         "n": [1000, 4000, 16000],
        ...         "source": "exact",
        ...         "metric": "mean_entry_snr",
        ...         "value": [1e-3, 2.5e-4, 6.25e-5],
        ...         "lo": np.nan,
        ...         "hi": np.nan,
        ...     }
        ... )
        >>> fig = plot_snr_vs_params(frame)
        >>> [ax.get_title() for ax in fig.axes]
        ['forward-gradient']
    """
    _require(frame, ("label", "family", "n", "source", "metric", "value", "lo", "hi"), "plot_snr_vs_params")
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        raise ValueError(f"the frame has no rows with metric={metric!r}; it has {sorted(frame['metric'].unique())}")
    labels = list(dict.fromkeys(rows["label"]))
    if groups is None:
        groups = dict(zip(rows["label"], rows["family"]))
    missing = [label for label in labels if label not in groups]
    if missing:
        raise ValueError(f"groups gives no panel for the labels {missing}; map every label of the frame to a panel title")
    panels = list(dict.fromkeys(groups[label] for label in labels))
    members = {panel: [label for label in labels if groups[label] == panel] for panel in panels}
    crowded = {panel: m for panel, m in members.items() if len(m) > len(_MARKERS)}
    if crowded:
        raise ValueError(f"more than {len(_MARKERS)} estimators in one panel ({crowded}); pass groups that split them")
    values = {panel: _bounds(rows[rows["label"].isin(members[panel])]) for panel in panels}
    # Panels on one log scale are compared: side by side, sharing their axes. Panels with scales of
    # their own (efficiency: unbiased at 1, biased up to 10^5) are stacked, each as wide as the figure.
    share = all(_spans_decade(v) for v in values.values())
    cols = min(len(panels), 2) if share else 1
    legend_cols = 1 if cols > 1 else 2
    grid = [panels[i:i + cols] for i in range(0, len(panels), cols)]
    # Legends of one row hold as many lines, so the panels of a row stay aligned.
    depth = [max(math.ceil((len(members[p]) + 1) / legend_cols) for p in row) for row in grid]

    with style():
        target = fig if fig is not None else Figure(
            figsize=(FIGURE_WIDTH, sum(2.8 + 0.2 * d for d in depth)), layout="constrained")
        subfigs = target.subfigures(len(grid), cols, squeeze=False, height_ratios=[2.8 + 0.2 * d for d in depth])
        first = None
        for r, row in enumerate(grid):
            for c, panel in enumerate(row):
                sub = subfigs[r, c]
                ax = sub.add_subplot(sharex=first, sharey=first if share else None)
                first = first or ax
                entries = [_draw_estimator(ax, rows[rows["label"] == label], label, position, len(members[panel]) > 1)
                           for position, label in enumerate(members[panel])]
                entries += _references(ax, metric, rows[rows["label"].isin(members[panel])])
                entries += [(_blank(), "")] * (depth[r] * legend_cols - len(entries))
                set_scale(ax, "x", rows["n"])
                set_scale(ax, "y", np.concatenate(list(values.values())) if share else values[panel])
                ax.set_title(panel)
                ax.set_xlabel("parameters $n$")
                ax.set_ylabel(_METRIC_NAMES.get(metric, metric))
                if c > 0:  # the row shares the y axis of its first panel
                    ax.set_ylabel("")
                    ax.tick_params(labelleft=False)
                legend_below(sub, [("", [(h, _short(t, members[panel])) for h, t in entries])], ncols=legend_cols)
            for c in range(len(row), cols):
                subfigs[r, c].set_visible(False)
    return target.figure


def plot_parity(frame: pd.DataFrame, *, fig: FigureBase | None = None) -> Figure:
    r"""Measured against predicted variance, one panel per verdict, with the line $y = x$.

    A claim that holds entry by entry puts its points on the line; a claim that predicts
    $c$ times the truth puts them on the parallel line $y = x / c$. Colour is the claim,
    the marker the probe, the panel the verdict ("holds", "refuted"); panels share their
    axes. The frame of a report is [snrkit.report.parity_frame][].

    Args:
        frame: columns `claim`, `probe`, `verdict`, `predicted`, `measured` and,
            optionally, `measured_lo` / `measured_hi` (an interval for `measured`, drawn as
            error bars).
        fig: a figure or subfigure to draw into; a new figure when `None`.

    Returns:
        The figure.

    Raises:
        ValueError: the frame is empty, lacks a needed column, or holds more claims than
            [`PALETTE`][snrkit.plots.PALETTE] has colours.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.plots import plot_parity
        >>> frame = pd.DataFrame(
        ...     {
        ...         "claim": ["snrkit exact law"] * 2 + ["frye-eq1"] * 2,
        ...         "probe": "gaussian",
        ...         "verdict": ["holds"] * 2 + ["refuted"] * 2,
        ...         "predicted": [1.0, 20.0, 4.0, 80.0],
        ...         "measured": [1.1, 19.0, 1.1, 19.0],
        ...     }
        ... )
        >>> [ax.get_title() for ax in plot_parity(frame).axes]
        ['holds', 'refuted']
    """
    _require(frame, ("claim", "probe", "verdict", "predicted", "measured"), "plot_parity")
    colours = category_colours(list(frame["claim"]))
    order = {claim: index for index, claim in enumerate(colours)}
    probes = list(dict.fromkeys(frame["probe"]))
    verdicts = sorted(set(frame["verdict"]), key=lambda v: list(VERDICT_COLOURS).index(v) if v in VERDICT_COLOURS else 99)
    has_interval = {"measured_lo", "measured_hi"} <= set(frame.columns)
    points = frame[["predicted", "measured"]].to_numpy(dtype=np.float64)
    with style():
        target = fig if fig is not None else Figure(figsize=(FIGURE_WIDTH, 3.3 + 0.2 * (len(colours) + 1)), layout="constrained")
        axes = np.atleast_1d(target.subplots(1, len(verdicts), sharex=True, sharey=True, squeeze=False)).ravel()
        for ax, verdict in zip(axes, verdicts):
            part = frame[frame["verdict"] == verdict]
            groups = list(part.groupby(["claim", "probe"], sort=False))
            # Claims with equal predictions put points on the same spots: open markers, each claim's
            # larger than the one before, show every claim on a spot as one ring of a target.
            for (claim, probe), rows in reversed(groups):
                yerr = _yerr(rows["measured"], rows["measured_lo"], rows["measured_hi"]) if has_interval else None
                ax.errorbar(rows["predicted"], rows["measured"], yerr=yerr, color=colours[claim], marker=probe_marker(probe),
                            markersize=4.0 + 1.5 * order[claim], markerfacecolor="none", markeredgewidth=1.1,
                            linestyle="none", gid=f"{claim}|{probe}")
            identity_line(ax, points, label="measured = predicted")
            set_scale(ax, "x", points)
            set_scale(ax, "y", points)
            # Plain titles: the claims' colours include the verdict colours of the tables.
            ax.set_title(verdict, fontweight="bold")
            ax.set_xlabel("predicted variance")
        axes[0].set_ylabel("measured variance (Monte Carlo)")
        legend_below(target, [
            ("claim", [(Patch(color=c), claim) for claim, c in colours.items()]),
            ("probe", [(_marker(probe_marker(p), filled=False), _probe_text(p)) for p in probes]),
            ("reference", [(Line2D([], [], color=REFERENCE_COLOUR, linewidth=1.2), "measured = predicted")]),
        ])
    return target.figure


def plot_thread_check(frame: pd.DataFrame, *, fig: FigureBase | None = None) -> Figure:
    r"""Frye's thread check over many gradients: the mean entry variance against $\|\nabla\|^2$.

    Frye (2022, thread) checked that the mean over entries of $\operatorname{Var}[g_i]$
    equals $\|\nabla\|^2$. The top panel (log-log) draws the measured mean with its interval
    against $\|\nabla\|^2$, with the thread's claim $y = x$; the bottom panel draws the
    ratio measured / $\|\nabla\|^2$ on a linear axis, where the intervals and the exact
    law

    $$
    \frac{1}{n\|\nabla\|^2}\sum_i \operatorname{Var}[g_i] = 1 + \frac{\kappa-2}{n}
    $$

    (divided by $K$ for $K$ directions; [Derivations](../derivations.md)) can be read. Colour
    is the setting (data set and network), the marker the probe. The frame of a report is
    [snrkit.report.thread_check_frame][].

    Args:
        frame: columns `setting`, `probe`, `norm_sq` ($\|\nabla\|^2$), `mean_entry_var`
            (measured), `lo`, `hi` (its interval) and `exact_mean_entry_var`.
        fig: a figure or subfigure to draw into; a new figure when `None`.

    Returns:
        The figure.

    Raises:
        ValueError: the frame is empty, lacks a needed column, or holds more settings than
            [`PALETTE`][snrkit.plots.PALETTE] has colours.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.plots import plot_thread_check
        >>> frame = pd.DataFrame(
        ...     {
        ...         "setting": "digits, 64-32-10",
        ...         "probe": "gaussian",
        ...         "norm_sq": [0.01, 1.0],
        ...         "mean_entry_var": [0.0101, 1.01],
        ...         "lo": [0.0095, 0.97],
        ...         "hi": [0.0106, 1.05],
        ...         "exact_mean_entry_var": [0.010004, 1.0004],
        ...     }
        ... )
        >>> [ax.get_yscale() for ax in plot_thread_check(frame).axes]
        ['log', 'linear']
    """
    needed = ("setting", "probe", "norm_sq", "mean_entry_var", "lo", "hi", "exact_mean_entry_var")
    _require(frame, needed, "plot_thread_check")
    frame = frame.reset_index(drop=True)  # rows are found by position (frames from pd.concat repeat labels)
    colours = category_colours(list(frame["setting"]))
    probes = list(dict.fromkeys(frame["probe"]))
    norm_sq = frame["norm_sq"].to_numpy(dtype=np.float64)
    ratio = frame[["mean_entry_var", "lo", "hi", "exact_mean_entry_var"]].to_numpy(dtype=np.float64) / norm_sq[:, None]
    with style():
        target = fig if fig is not None else Figure(figsize=(FIGURE_WIDTH, 5.6 + 0.2 * len(colours)), layout="constrained")
        top, bottom = np.atleast_1d(target.subplots(2, 1, sharex=True, height_ratios=(3, 2))).ravel()
        for (setting, probe), rows in frame.groupby(["setting", "probe"], sort=False):
            at = frame.index.get_indexer(rows.index)
            style_kw = {"color": colours[setting], "marker": probe_marker(probe), "markersize": 5, "linestyle": "none",
                        "gid": f"{setting}|{probe}"}
            top.errorbar(rows["norm_sq"], rows["mean_entry_var"], yerr=_yerr(rows["mean_entry_var"], rows["lo"], rows["hi"]),
                         **style_kw)
            bottom.errorbar(rows["norm_sq"], ratio[at, 0], yerr=np.stack([ratio[at, 0] - ratio[at, 1], ratio[at, 2] - ratio[at, 0]]),
                            **style_kw)
        claim = r"thread: mean $\mathrm{Var}[g_i] = \|\nabla\|^2$"
        identity_line(top, frame[["norm_sq", "mean_entry_var"]].to_numpy(), label=claim)
        reference_line(bottom, 1.0, label=claim, linestyle="-")  # the same claim as the identity line above
        exact = r"exact: $1 + (\kappa-2)/n$"
        # The exact law per gradient (κ and n differ between points): a dark tick at each point.
        bottom.plot(norm_sq, ratio[:, 3], linestyle="none", marker="_", markersize=14, markeredgewidth=2,
                    color=REFERENCE_COLOUR, zorder=6, label=exact, gid="exact")
        set_scale(top, "x", norm_sq)
        set_scale(top, "y", frame[["lo", "mean_entry_var", "hi"]].to_numpy())
        set_scale(bottom, "y", ratio[:, :3])
        top.set_ylabel(r"mean over entries of $\mathrm{Var}[g_i]$")
        bottom.set_ylabel(r"measured / $\|\nabla\|^2$")
        bottom.set_xlabel(r"$\|\nabla\|^2$ (gradients along training)")
        legend_below(target, [
            ("setting", [(Patch(color=c), s) for s, c in colours.items()]),
            ("probe", [(_marker(probe_marker(p)), _probe_text(p)) for p in probes]),
            ("reference", [
                (Line2D([], [], color=REFERENCE_COLOUR, linewidth=1.2), "thread: mean Var = ‖∇‖²"),
                (Line2D([], [], color=REFERENCE_COLOUR, marker="_", markersize=14, markeredgewidth=2, linestyle="none"),
                 "exact law, 1 + (κ−2)/n"),
            ]),
        ])
    return target.figure


def _batch_axis(ax: Axes, sizes: Any) -> None:
    """The batch-size axis: its scale from `set_scale`, ticks at the measured sizes themselves (at most six)."""
    set_scale(ax, "x", sizes)
    ticks = np.unique(np.asarray(sizes, dtype=np.int64))
    if ticks.size <= _MAX_TICKS:
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])


def plot_cost(frame: pd.DataFrame, *, fig: FigureBase | None = None) -> Figure:
    """Time per training step and XLA's temporary memory against the batch size, one line per method.

    The two panels sit side by side and share the batch-size axis (log when it spans a
    decade). Colour is the method's group (backprop, a family, or the sequential
    baseline), the marker its probe ([`PROBE_MARKERS`][snrkit.plots.PROBE_MARKERS]), the
    line style the setting within the group, so every method is one combination. Time bars
    span the lower to the upper quartile of the timed calls. The caption is
    [`snrkit.cost.TIME_MEMORY_CAPTION`][snrkit.cost.TIME_MEMORY_CAPTION].

    Args:
        frame: a frame of [`snrkit.cost.cost_table`][snrkit.cost.cost_table]; rows
            without a time (skipped methods) are not drawn.
        fig: a figure or subfigure to draw into; a new figure when `None`.

    Returns:
        The figure.

    Raises:
        ValueError: the frame lacks a needed column or has nothing to draw, or it has
            more method groups than colours.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.plots import plot_cost
        >>> frame = pd.DataFrame({
        ...     "batch size": [16, 64] * 2, "method": ["backprop"] * 2 + ["FG"] * 2,
        ...     "kind": ["backprop"] * 2 + ["estimator"] * 2,
        ...     "family": [""] * 2 + ["forward-gradient"] * 2,
        ...     "settings": [""] * 2 + ['{"probe": "gaussian"}'] * 2,
        ...     "time per step, median [ms]": [1.0, 3.0, 1.1, 3.2],
        ...     "time per step, lower quartile [ms]": [0.9, 2.9, 1.0, 3.1],
        ...     "time per step, upper quartile [ms]": [1.1, 3.1, 1.2, 3.3],
        ...     "XLA temporary memory [MiB]": [4.0, 16.0, 1.0, 1.0]})
        >>> [ax.get_ylabel() for ax in plot_cost(frame).axes]
        ['time per step [ms]', 'XLA temporary memory [MiB]']
    """
    time, low, high, memory = (_COST_TIME, _COST_TIME_LOW, _COST_TIME_HIGH, _COST_MEMORY)
    _require(frame, ("batch size", "method", "kind", "family", "settings", time, low, high, memory), "plot_cost")
    rows = frame[np.isfinite(frame[time].to_numpy(dtype=np.float64))]
    if rows.empty:
        raise ValueError("plot_cost got no row with a time per step; every method was skipped")
    styles = _cost_styles(rows)
    with style():
        target = fig if fig is not None else Figure(figsize=(FIGURE_WIDTH, 3.2 + 0.2 * math.ceil(len(styles) / 2)),
                                                    layout="constrained")
        left, right = target.subplots(1, 2, sharex=True)
        for name, (colour, marker, linestyle) in styles.items():
            own = rows[rows["method"] == name].sort_values("batch size")
            kw = {"color": colour, "marker": marker, "linestyle": linestyle, "markersize": 5, "gid": name}
            left.errorbar(own["batch size"], own[time], yerr=_yerr(own[time], own[low], own[high]), **kw)
            right.plot(own["batch size"], own[memory], **kw)
        _batch_axis(left, rows["batch size"])
        set_scale(left, "y", rows[[time, low, high]].to_numpy(dtype=np.float64))
        set_scale(right, "y", rows[memory])
        for ax, label in ((left, "time per step [ms]"), (right, "XLA temporary memory [MiB]")):
            ax.set_xlabel("batch size")
            ax.set_ylabel(label)
        legend_below(target, [("method", _cost_legend(styles))], ncols=2)
    return target.figure


def plot_snr_per_cost(frame: pd.DataFrame, *, fig: FigureBase | None = None) -> Figure:
    """SNR and efficiency per unit of time (relative to backprop) against the batch size.

    Two stacked panels with scales of their own: the aggregate SNR of unbiased estimators
    and the efficiency of every estimator, each divided by the method's time relative to
    backprop. Colours, markers and line styles are those of
    [`plot_cost`][snrkit.plots.plot_cost] for the same frame. Backprop (exact, no SNR) is
    not drawn. The caption is
    [`snrkit.cost.SNR_PER_COST_CAPTION`][snrkit.cost.SNR_PER_COST_CAPTION].

    Args:
        frame: a frame of [`snrkit.cost.cost_table`][snrkit.cost.cost_table].
        fig: a figure or subfigure to draw into; a new figure when `None`.

    Returns:
        The figure.

    Raises:
        ValueError: the frame lacks a needed column or has no estimator to draw.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.plots import plot_snr_per_cost
        >>> frame = pd.DataFrame({
        ...     "batch size": [16, 64], "method": ["FG", "FG"],
        ...     "kind": "estimator", "family": "forward-gradient",
        ...     "settings": '{"probe": "gaussian"}',
        ...     "aggregate SNR per relative time": [1e-3, 9e-4],
        ...     "efficiency per relative time": [0.7, 0.6]})
        >>> [ax.get_ylabel() for ax in plot_snr_per_cost(frame).axes]
        ['aggregate SNR / relative time', 'efficiency / relative time']
    """
    snr, efficiency = "aggregate SNR per relative time", "efficiency per relative time"
    _require(frame, ("batch size", "method", "kind", "family", "settings", snr, efficiency), "plot_snr_per_cost")
    drawn = frame[np.isfinite(frame[efficiency].to_numpy(dtype=np.float64))]
    if drawn.empty:
        raise ValueError("plot_snr_per_cost got no estimator with an efficiency; backprop alone has no SNR")
    styles = _cost_styles(frame[np.isfinite(frame[_COST_TIME].to_numpy(dtype=np.float64))]
                          if _COST_TIME in frame.columns else frame)
    with style():
        target = fig if fig is not None else Figure(
            figsize=(FIGURE_WIDTH, 5.6 + 0.2 * math.ceil(len(styles) / 2)), layout="constrained")
        top, bottom = target.subplots(2, 1, sharex=True)
        shown = {}
        for ax, column in ((top, snr), (bottom, efficiency)):
            rows = drawn[np.isfinite(drawn[column].to_numpy(dtype=np.float64))]
            for name in dict.fromkeys(rows["method"]):
                colour, marker, linestyle = styles[name]
                own = rows[rows["method"] == name].sort_values("batch size")
                ax.plot(own["batch size"], own[column], color=colour, marker=marker, linestyle=linestyle,
                        markersize=5, gid=name)
                shown[name] = styles[name]
            set_scale(ax, "y", rows[column])
            ax.set_ylabel(column.replace(" per ", " / "))
        _batch_axis(bottom, drawn["batch size"])
        bottom.set_xlabel("batch size")
        legend_below(target, [("method", _cost_legend(shown))], ncols=2)
    return target.figure


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
        >>> from snrkit import plots
        >>> fig, axes = plots.figure()
        >>> _ = axes[0, 0].plot([1, 2], [1, 4])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = plots.save(fig, Path(folder) / "figures" / "line")
        ...     path.name, path.stat().st_size > 0
        ('line.png', True)
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    if path.suffix.lower() != ".png":
        raise ValueError(f"save writes PNG files; name the file with a .png suffix instead of {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with style():
        fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------------------

_METRIC_NAMES = {
    "mean_entry_snr": r"mean entry SNR",
    "aggregate_snr": r"aggregate SNR $\|\mathbb{E}g\|^2/\mathrm{tr\,Cov}[g]$",
    "efficiency": r"efficiency, floor / $\mathbb{E}\|g-\nabla\|^2$",
}
# Metrics that fall like 1/n get a slope −1 guide; the efficiency has the floor as its reference.
_GUIDES = {"mean_entry_snr": -1.0, "aggregate_snr": -1.0}
_REFERENCES = {"efficiency": (1.0, "floor (efficiency 1)")}


def _draw_estimator(ax: Axes, rows: pd.DataFrame, label: str, position: int, several: bool) -> tuple[Any, str]:
    """One estimator: its exact line and its Monte Carlo markers with intervals; returns its legend entry."""
    colour, linestyle, marker = PALETTE[position], _LINESTYLES[position % len(_LINESTYLES)], _MARKERS[position]
    # Later lines are thinner, so an estimator drawn over an equal one leaves the earlier one's edges visible.
    width = max(2.8 - 0.4 * position, 0.9) if several else 1.5
    size = max(6.5 - position, 3.5) if several else 5.0
    exact = rows[rows["source"] == "exact"].sort_values("n")
    sampled = rows[rows["source"] == "monte_carlo"].sort_values("n")
    if not exact.empty:
        ax.plot(exact["n"], exact["value"], color=colour, linestyle=linestyle, linewidth=width, gid=f"{label}|exact")
    if not sampled.empty:
        ax.errorbar(sampled["n"], sampled["value"], yerr=_yerr(sampled["value"], sampled["lo"], sampled["hi"]),
                    color=colour, marker=marker, markersize=size, linestyle="none", zorder=4, gid=f"{label}|monte_carlo")
    handle = Line2D([], [], color=colour, linestyle=linestyle if not exact.empty else "none", linewidth=width,
                    marker=marker if not sampled.empty else None, markersize=size)
    return handle, label


def _references(ax: Axes, metric: str, rows: pd.DataFrame) -> list[tuple[Any, str]]:
    """The panel's reference: the slope guide below the data, or the metric's level."""
    if metric in _GUIDES:
        slope = _GUIDES[metric]
        left = rows[rows["n"] == rows["n"].min()]["value"].to_numpy(dtype=np.float64)
        # A third of the lowest value at the smallest n: parallel to the data, below it.
        line = slope_guide(ax, slope, x=rows["n"], through=(float(rows["n"].min()), float(np.nanmin(left)) / 3),
                           label=f"slope {_signed(slope)}")
        return [(line, line.get_label())]
    if metric in _REFERENCES:
        level, text = _REFERENCES[metric]
        line = reference_line(ax, level, label=text)
        return [(line, text)]
    return []


def _bounds(rows: pd.DataFrame) -> np.ndarray:
    """Every value a panel draws (with interval ends), for its axis scale."""
    return rows[["value", "lo", "hi"]].to_numpy(dtype=np.float64).ravel()


def _spans_decade(values: np.ndarray) -> bool:
    data = values[np.isfinite(values)]
    return bool(data.size and data.min() > 0 and data.max() / data.min() >= 10)


def _short(text: str, labels: Sequence[str]) -> str:
    """A label without the estimator's name when every label of the panel shares it: `Name(a, b)` -> `a, b`."""
    heads = {label.split("(", 1)[0] for label in labels}
    if text in labels and len(heads) == 1 and text.endswith(")") and "(" in text:
        return text.split("(", 1)[1][:-1]
    return text


def _signed(x: float) -> str:
    return f"{x:+g}".replace("-", "−")


def _probe_text(probe: str) -> str:
    return "no probe to choose" if probe == "—" else probe


def _marker(marker: str, *, filled: bool = True) -> Line2D:
    """A legend handle for a marker shape alone (its colour is another variable's)."""
    return Line2D([], [], color="0.35", marker=marker, markersize=6, linestyle="none",
                  markerfacecolor=None if filled else "none", markeredgewidth=1.3)


def _blank() -> Patch:
    return Patch(visible=False)


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


_COST_TIME = "time per step, median [ms]"
_COST_TIME_LOW = "time per step, lower quartile [ms]"
_COST_TIME_HIGH = "time per step, upper quartile [ms]"
_COST_MEMORY = "XLA temporary memory [MiB]"


def _cost_styles(rows: pd.DataFrame) -> dict[str, tuple[str, str, str]]:
    """`method -> (colour, marker, line style)`: colour the group, marker the probe, line style the rest."""
    import json

    groups, probes = {}, {}
    for record in rows.drop_duplicates("method").to_dict("records"):
        kind, family = record["kind"], record["family"]
        groups[record["method"]] = "backprop" if kind == "backprop" else (
            f"{family}, sequential" if kind == "sequential" else family)
        settings = json.loads(record["settings"]) if record["settings"] else {}
        probe = settings.get("probe", settings.get("tangents", "—"))
        probes[record["method"]] = probe if probe in PROBE_MARKERS else "—"
    colours = category_colours(list(dict.fromkeys(groups.values())))
    styles, used = {}, {}
    for name, group in groups.items():
        marker = probe_marker(probes[name])
        position = used.get((group, marker), 0)
        used[(group, marker)] = position + 1
        styles[name] = (colours[group], marker, _LINESTYLES[position % len(_LINESTYLES)])
    if len(set(styles.values())) < len(styles):
        raise ValueError("more settings of one family and probe than line styles; pass fewer methods")
    return styles


def _cost_legend(styles: Mapping[str, tuple[str, str, str]]) -> list[tuple[Any, str]]:
    return [(Line2D([], [], color=c, marker=m, linestyle=ls, markersize=5), name)
            for name, (c, m, ls) in styles.items()]
