"""Figures follow the style guide (docs: Contributing, Figure style) where it can be checked.

Each figure function is checked for what the guide promises: categories never share a colour
and marker, legends lie outside every panel and show what is drawn, reference lines (identity,
slope −1 guide, floor) exist, sit on top and say what they should, log axes only over a decade,
no long numbers in figure text; and that the data drawn are the frame's.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from snrkit import plots, sweeps


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    # plots builds Figure objects directly and never needs a GUI; the variable makes sure
    # anything else that touches pyplot in the same process stays headless too.
    monkeypatch.setenv("MPLBACKEND", "Agg")


# ----------------------------------------------------------------------------------------
# Frames: values made here from known formulas, not by the code under test.

FAMILY_LABELS = {
    "ForwardGradient(gaussian, K=1)": ("forward-gradient", 1),
    "ForwardGradient(rademacher, K=1)": ("forward-gradient", 1),  # equal to the Gaussian one: must stay visible
    "ForwardGradient(gaussian, K=4)": ("forward-gradient", 4),
    "Partitioned(gaussian, K=1, blocks=4)": ("partitioned", 4),
}
N = (1_000, 4_000, 16_000, 64_000)
MC_N = (1_000, 4_000)


def sweep_like_frame(efficiency_of=None) -> pd.DataFrame:
    """snr_sweep's columns: SNR = level/n exactly; Monte Carlo 1 % above it, ±10 %, at two widths."""
    rows = []
    for label, (family, level) in FAMILY_LABELS.items():
        for n in N:
            for metric in sweeps.SWEEP_METRICS:
                value = efficiency_of(label, n) if metric == "efficiency" and efficiency_of else level / n
                base = {column: 0 for column in sweeps.SWEEP_COLUMNS}
                base.update(label=label, family=family, n=n, width=n // 100, metric=metric)
                rows.append({**base, "source": "exact", "value": value, "lo": np.nan, "hi": np.nan})
                if n in MC_N:
                    rows.append({**base, "source": "monte_carlo", "value": value * 1.01, "lo": value * 0.9,
                                 "hi": value * 1.1})
    return pd.DataFrame(rows, columns=list(sweeps.SWEEP_COLUMNS))


def parity_like_frame() -> pd.DataFrame:
    predicted = np.array([1e-4, 1e-3, 1e-2])
    parts = [
        ("snrkit exact law", "gaussian", "holds", predicted, predicted * 1.02),
        ("snrkit exact law", "rademacher", "holds", predicted, predicted * 0.98),
        ("frye-eq1", "gaussian", "refuted", predicted * 4, predicted),
        ("yao-eq6", "gaussian", "refuted", predicted / 1.3, predicted),
        ("yao-eq6", "rademacher", "holds", predicted, predicted),
        ("snrkit exact law", "—", "holds", predicted * 2, predicted * 2),
    ]
    return pd.concat(
        [pd.DataFrame({"claim": c, "probe": p, "verdict": v, "predicted": x, "measured": y}) for c, p, v, x, y in parts],
        ignore_index=True,
    )


def thread_like_frame() -> pd.DataFrame:
    norm_sq = np.array([1e-3, 1e-2, 1e-1, 1.0])
    parts = []
    for setting, n, probe, kappa in (("digits, 64-32-10", 2_410, "gaussian", 3), ("mnist, 784-32-10", 25_450, "rademacher", 1)):
        exact = norm_sq * (1 + (kappa - 2) / n)
        parts.append(pd.DataFrame({"setting": setting, "probe": probe, "norm_sq": norm_sq, "mean_entry_var": exact * 1.03,
                                   "lo": exact * 0.95, "hi": exact * 1.11, "exact_mean_entry_var": exact}))
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------------------
# What the style guide promises, as checks on a drawn figure.


def render(fig: Figure):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def all_legends(fig: Figure) -> list:
    """Legends of the figure, its subfigures and its axes."""
    found, queue = [], [fig]
    while queue:
        part = queue.pop(0)
        found += list(part.legends)
        queue += list(part.subfigs)
    return found + [ax.get_legend() for ax in fig.get_axes() if ax.get_legend() is not None]


def assert_legends_outside_axes(fig: Figure) -> None:
    renderer = render(fig)
    legends = all_legends(fig)
    assert legends, "the figure has no legend"
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.get_axes():
            overlap = Bbox.intersection(box, ax.get_window_extent(renderer))
            assert overlap is None or overlap.width * overlap.height == 0, (legend.get_texts()[0].get_text(), ax.get_title())


def series(ax) -> dict[str, tuple]:
    """gid -> (colour, marker, line style) of every data series (gid `category|...`), error-bar caps left out."""
    caps = {id(cap) for c in ax.containers if isinstance(c, ErrorbarContainer) for cap in c.lines[1]}
    return {line.get_gid(): (to_rgba(line.get_color()), line.get_marker(), line.get_linestyle())
            for line in ax.get_lines() if "|" in (line.get_gid() or "") and id(line) not in caps}


def legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts() if t.get_text()]


def figure_texts(fig: Figure) -> list[str]:
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))]
    return [t for t in texts if t]


def font_sizes(fig: Figure) -> list[float]:
    render(fig)
    return [t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
            if t.get_text() and t.get_visible()]


def long_numbers(texts: list[str]) -> list[str]:
    """Numbers with more than 3 significant digits (e.g. a slope -0.9991 in a legend)."""
    return [t for t in texts if re.search(r"\d\.\d{3,}|\d{4,}\.\d", t)]


def reference(ax, gid: str):
    lines = [line for line in ax.get_lines() if line.get_gid() == gid]
    assert len(lines) == 1, f"{ax.get_title()!r} has {len(lines)} lines {gid!r}"
    return lines[0]


def data_zorder(ax) -> float:
    return max(line.get_zorder() for line in ax.get_lines() if "|" in (line.get_gid() or ""))


# ----------------------------------------------------------------------------------------
# The SNR figures


def test_snr_vs_params_draws_one_panel_per_family_with_every_estimator_visible():
    frame = sweep_like_frame()
    fig = plots.plot_snr_vs_params(frame)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["forward-gradient", "partitioned"]
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes)  # 1.8 decades of n
    # Panels to compare share both axes.
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1]) and axes[0].get_shared_x_axes().joined(axes[0], axes[1])
    forward = series(axes[0])
    # Every estimator: an exact line over all widths and Monte Carlo markers at the sampled ones.
    for label in list(FAMILY_LABELS)[:3]:
        exact = next(line for line in axes[0].get_lines() if line.get_gid() == f"{label}|exact")
        sampled = next(line for line in axes[0].get_lines() if line.get_gid() == f"{label}|monte_carlo")
        assert exact.get_xdata().tolist() == list(N) and sampled.get_xdata().tolist() == list(MC_N)
        level = FAMILY_LABELS[label][1]
        np.testing.assert_allclose(exact.get_ydata(), [level / n for n in N])
    # The Gaussian and Rademacher K=1 lines coincide: they differ in colour, marker and line style.
    styles = {gid.split("|")[0]: style for gid, style in forward.items() if gid.endswith("|monte_carlo")}
    assert len(set(styles.values())) == len(styles) == 3
    exact_styles = {style[2] for gid, style in forward.items() if gid.endswith("|exact")}
    assert len(exact_styles) == 3


def test_snr_vs_params_error_bars_are_the_frames_intervals():
    frame = sweep_like_frame()
    ax = plots.plot_snr_vs_params(frame).get_axes()[1]
    (container,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = container.lines[2][0].get_segments()
    value = 4 / np.array(MC_N)
    np.testing.assert_allclose([s[0][1] for s in segments], value * 0.9)
    np.testing.assert_allclose([s[1][1] for s in segments], value * 1.1)


def test_snr_vs_params_has_a_slope_minus_one_guide_below_the_data_in_every_panel():
    fig = plots.plot_snr_vs_params(sweep_like_frame(), metric="aggregate_snr")
    for ax in fig.get_axes():
        guide = reference(ax, "guide")
        x, y = np.asarray(guide.get_xdata(), float), np.asarray(guide.get_ydata(), float)
        np.testing.assert_allclose(np.diff(np.log(y)) / np.diff(np.log(x)), -1.0)
        assert (x[0], x[-1]) == pytest.approx((N[0], N[-1]))
        assert guide.get_color() == plots.REFERENCE_COLOUR and guide.get_zorder() > data_zorder(ax)
        # Beside the data, not under it: below every exact line at the guide's ends.
        lowest = min(FAMILY_LABELS[gid.split("|")[0]][1] for gid in series(ax))
        assert np.all(y < lowest / x)
        assert guide.get_label() == "slope −1"


def test_snr_vs_params_legends_list_what_is_drawn_outside_the_panels_without_numbers():
    fig = plots.plot_snr_vs_params(sweep_like_frame())
    assert_legends_outside_axes(fig)
    legends = [legend for legend in all_legends(fig)]
    texts = [legend_texts(legend) for legend in legends]
    # Labels lose the estimator name their panel shares; no slope, no interval.
    assert texts == [["gaussian, K=1", "rademacher, K=1", "gaussian, K=4", "slope −1"],
                     ["gaussian, K=1, blocks=4", "slope −1"]]
    assert not long_numbers(figure_texts(fig))
    # Each entry's marker, colour and line style are the ones drawn for its estimator.
    ax = fig.get_axes()[0]
    handles = [h for h, t in zip(legends[0].legend_handles, legends[0].get_texts()) if t.get_text()]
    for label, handle in zip(list(FAMILY_LABELS)[:3], handles):
        sampled = next(line for line in ax.get_lines() if line.get_gid() == f"{label}|monte_carlo")
        exact = next(line for line in ax.get_lines() if line.get_gid() == f"{label}|exact")
        assert handle.get_marker() == sampled.get_marker() and handle.get_color() == sampled.get_color()
        assert handle.get_linestyle() == exact.get_linestyle()
    assert min(font_sizes(fig)) >= 9


def test_efficiency_panels_by_bias_have_their_own_scales_and_the_floor():
    def efficiency(label, n):  # a biased projection grows like n / 4; unbiased estimators sit just below 1
        return n / 4 if "K=4" in label else 1 - 2 / (n + 1)

    frame = sweep_like_frame(efficiency)
    groups = {label: "biased" if "K=4" in label else "unbiased" for label in FAMILY_LABELS}
    fig = plots.plot_snr_vs_params(frame, metric="efficiency", groups=groups)
    unbiased, biased = fig.get_axes()
    assert (unbiased.get_title(), biased.get_title()) == ("unbiased", "biased")
    # Values within 0.2 % (and ±10 % intervals) of 1: linear; 250 to 16,000: log. Stacked, not sharing y.
    assert unbiased.get_yscale() == "linear" and biased.get_yscale() == "log"
    assert not unbiased.get_shared_y_axes().joined(unbiased, biased)
    renderer = render(fig)
    assert unbiased.get_window_extent(renderer).y0 > biased.get_window_extent(renderer).y1
    for ax in (unbiased, biased):
        floor = reference(ax, "reference")
        assert list(floor.get_ydata()) == [1.0, 1.0] and floor.get_zorder() > data_zorder(ax)
        assert not [line for line in ax.get_lines() if line.get_gid() == "guide"]
    # At most six ticks on the linear axis, labelled without long decimals.
    ticks = [t for t in unbiased.yaxis.get_major_ticks() if unbiased.get_ylim()[0] <= t.get_loc() <= unbiased.get_ylim()[1]]
    assert len(ticks) <= 6
    assert not long_numbers([t.label1.get_text() for t in ticks])
    assert_legends_outside_axes(fig)


def test_snr_vs_params_refuses_what_it_cannot_draw():
    frame = sweep_like_frame()
    with pytest.raises(ValueError, match="no rows with metric='nope'"):
        plots.plot_snr_vs_params(frame, metric="nope")
    with pytest.raises(ValueError, match="no panel for the labels"):
        plots.plot_snr_vs_params(frame, groups={"ForwardGradient(gaussian, K=1)": "a"})
    with pytest.raises(ValueError, match=r"lacks \['family'\]"):
        plots.plot_snr_vs_params(frame.drop(columns=["family"]))


def test_snr_vs_params_draws_into_a_given_figure():
    fig = Figure(figsize=(6.4, 8), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    assert plots.plot_snr_vs_params(sweep_like_frame(), fig=top) is fig
    assert plots.plot_snr_vs_params(sweep_like_frame(), metric="aggregate_snr", fig=bottom) is fig
    assert len(fig.get_axes()) == 4


# ----------------------------------------------------------------------------------------
# Parity


def test_parity_encodes_claim_probe_and_verdict_by_colour_marker_and_panel():
    frame = parity_like_frame()
    fig = plots.plot_parity(frame)
    holds, refuted = fig.get_axes()
    assert (holds.get_title(), refuted.get_title()) == ("holds", "refuted")
    assert holds.get_shared_x_axes().joined(holds, refuted) and holds.get_shared_y_axes().joined(holds, refuted)
    colours = plots.category_colours(["snrkit exact law", "frye-eq1", "yao-eq6"])
    drawn = {**series(holds), **series(refuted)}
    expected = {f"{c}|{p}" for c, p in frame[["claim", "probe"]].drop_duplicates().itertuples(index=False)}
    assert set(drawn) == expected
    for gid, (colour, marker, _) in drawn.items():
        claim, probe = gid.split("|")
        assert colour == to_rgba(colours[claim])
        assert marker == plots.PROBE_MARKERS[probe]
    assert len({style[:2] for style in drawn.values()}) == len(drawn)  # no two share colour and marker
    # Each panel holds its verdict's rows.
    assert set(series(refuted)) == {"frye-eq1|gaussian", "yao-eq6|gaussian"}


def test_parity_identity_line_spans_the_data_on_top_and_the_legend_stays_outside():
    frame = parity_like_frame()
    fig = plots.plot_parity(frame)
    for ax in fig.get_axes():
        identity = reference(ax, "identity")
        np.testing.assert_array_equal(identity.get_xdata(), identity.get_ydata())
        assert identity.get_xdata()[0] == pytest.approx(1e-4 / 1.3) and identity.get_xdata()[-1] == pytest.approx(0.04)
        assert identity.get_color() == plots.REFERENCE_COLOUR and identity.get_zorder() > data_zorder(ax)
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert_legends_outside_axes(fig)
    (legend,) = all_legends(fig)
    assert legend_texts(legend) == ["claim", "snrkit exact law", "frye-eq1", "yao-eq6", "probe", "gaussian",
                                    "rademacher", "no probe to choose", "reference", "measured = predicted"]


def test_parity_refuses_more_claims_than_colours():
    frame = pd.DataFrame({"claim": [f"claim-{i}" for i in range(len(plots.PALETTE) + 1)], "probe": "gaussian",
                          "verdict": "holds", "predicted": 1.0, "measured": 1.0})
    with pytest.raises(ValueError, match="distinct colours"):
        plots.plot_parity(frame)
    with pytest.raises(ValueError, match=r"lacks \['verdict'\]"):
        plots.plot_parity(frame.drop(columns=["verdict"]))


# ----------------------------------------------------------------------------------------
# Frye's thread check


def test_thread_check_draws_the_claim_and_the_exact_law_over_decades():
    frame = thread_like_frame()
    fig = plots.plot_thread_check(frame)
    top, ratio = fig.get_axes()
    assert (top.get_xscale(), top.get_yscale(), ratio.get_yscale()) == ("log", "log", "linear")
    assert top.get_shared_x_axes().joined(top, ratio)
    identity = reference(top, "identity")
    np.testing.assert_array_equal(identity.get_xdata(), identity.get_ydata())
    # From the least ‖∇‖² to the largest measured value.
    assert identity.get_xdata()[0] == 1e-3 and identity.get_xdata()[-1] == frame["mean_entry_var"].max()
    claim = reference(ratio, "reference")
    assert list(claim.get_ydata()) == [1.0, 1.0] and claim.get_linestyle() == identity.get_linestyle() == "-"
    # The exact law, per gradient: 1 + (κ−2)/n.
    exact = reference(ratio, "exact")
    n = np.repeat([2_410, 25_450], 4)
    kappa = np.repeat([3, 1], 4)
    np.testing.assert_allclose(exact.get_ydata(), 1 + (kappa - 2) / n)
    assert exact.get_zorder() > data_zorder(ratio)
    # Measured ratios with their intervals: 1.03 (1 + (κ−2)/n) in [0.95, 1.11] × (1 + (κ−2)/n).
    measured = np.concatenate([c.lines[0].get_ydata() for c in ratio.containers if isinstance(c, ErrorbarContainer)])
    np.testing.assert_allclose(measured, 1.03 * (1 + (kappa - 2) / n))
    containers = [c for c in ratio.containers if isinstance(c, ErrorbarContainer)]
    low = [s[0][1] for c in containers for s in c.lines[2][0].get_segments()]
    np.testing.assert_allclose(low, 0.95 * (1 + (kappa - 2) / n))


def test_thread_check_draws_a_frame_with_repeated_index_labels():
    """Frames of two data sets joined by pd.concat repeat index labels; the figure is the same."""
    frame = thread_like_frame()
    half = len(frame) // 2
    joined = pd.concat([frame.iloc[:half], frame.iloc[half:].reset_index(drop=True)])
    assert not joined.index.is_unique
    drawn = [plots.plot_thread_check(f).get_axes()[1] for f in (frame, joined)]
    ys = [np.concatenate([c.lines[0].get_ydata() for c in ax.containers]) for ax in drawn]
    np.testing.assert_array_equal(ys[0], ys[1])


def test_thread_check_colours_settings_marks_probes_and_keeps_its_legend_outside():
    fig = plots.plot_thread_check(thread_like_frame())
    top, _ = fig.get_axes()
    drawn = series(top)
    assert set(drawn) == {"digits, 64-32-10|gaussian", "mnist, 784-32-10|rademacher"}
    assert drawn["digits, 64-32-10|gaussian"][1] == "o" and drawn["mnist, 784-32-10|rademacher"][1] == "s"
    assert len({style[0] for style in drawn.values()}) == 2
    assert_legends_outside_axes(fig)
    (legend,) = all_legends(fig)
    assert legend_texts(legend) == ["setting", "digits, 64-32-10", "mnist, 784-32-10", "probe", "gaussian", "rademacher",
                                    "reference", "thread: mean Var = ‖∇‖²", "exact law, 1 + (κ−2)/n"]
    assert min(font_sizes(fig)) >= 9


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"lacks \['exact_mean_entry_var'\]"):
        plots.plot_thread_check(thread_like_frame().drop(columns=["exact_mean_entry_var"]))
    with pytest.raises(ValueError, match="empty frame"):
        plots.plot_thread_check(thread_like_frame().iloc[:0])


# ----------------------------------------------------------------------------------------
# The shared means


def test_category_colours_never_cycle_and_skip_grey():
    colours = plots.category_colours([f"c{i}" for i in range(len(plots.PALETTE))])
    assert len(set(colours.values())) == len(plots.PALETTE) == 9
    assert "#949494" not in colours.values() and plots.REFERENCE_COLOUR not in colours.values()
    with pytest.raises(ValueError, match="10 categories but 9 distinct colours"):
        plots.category_colours([f"c{i}" for i in range(10)])
    with pytest.raises(ValueError, match="no marker for probe 'sphere'"):
        plots.probe_marker("sphere")


@pytest.mark.parametrize(
    ("values", "scale"),
    [([1.0, 9.99], "linear"), ([1.0, 10.0], "log"), ([0.9991, 1.0004], "linear"), ([-1.0, 100.0], "linear"),
     ([1e-7, 1e-3], "log")],
)
def test_set_scale_takes_log_only_over_a_decade_with_few_short_ticks(values, scale):
    fig, axes = plots.figure()
    ax = axes[0, 0]
    ax.plot(values, values)
    assert plots.set_scale(ax, "y", values) == scale
    render(fig)
    low, high = ax.get_ylim()
    ticks = [t for t in ax.yaxis.get_major_ticks() if low <= t.get_loc() <= high]
    assert 2 <= len(ticks) <= 6
    labels = [t.label1.get_text() for t in ticks]
    assert not long_numbers(labels), labels


def test_save_writes_a_png_creating_folders(tmp_path):
    fig = plots.plot_thread_check(thread_like_frame())
    path = plots.save(fig, tmp_path / "a" / "b" / "thread.png")
    data = path.read_bytes()
    assert path == tmp_path / "a" / "b" / "thread.png"
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert plots.save(fig, tmp_path / "bare").name == "bare.png"
    with pytest.raises(ValueError, match=r"\.png suffix"):
        plots.save(fig, tmp_path / "thread.pdf")
    # The docs column is 700 px: a saved figure is at most 6.4 in at 120 dpi, plus the legend's margin.
    from PIL import Image

    assert Image.open(path).size[0] <= 800
