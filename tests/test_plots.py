"""Plots draw exactly what their frames hold: lines, points, error bars, legend entries; save writes a PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from snrkit import plots, sweeps


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    # plots builds Figure objects directly and never needs a GUI; the variable makes sure
    # anything else that touches pyplot in the same process stays headless too.
    monkeypatch.setenv("MPLBACKEND", "Agg")


LABELS = ("ForwardGradient(gaussian, K=1)", "ForwardGradient(rademacher, K=1)", "Partitioned(gaussian, K=1, blocks=4)")
N = (1_000, 4_000, 16_000, 64_000)
MC_N = (1_000, 4_000)


def sweep_like_frame() -> pd.DataFrame:
    """A frame with snr_sweep's columns: SNR = c/n exactly, Monte Carlo at two widths."""
    rows = []
    for i, label in enumerate(LABELS):
        for n in N:
            for metric in sweeps.SWEEP_METRICS:
                base = {column: 0 for column in sweeps.SWEEP_COLUMNS}
                base.update(label=label, n=n, width=n // 100, metric=metric, num_samples=0)
                value = (1 + i) / n
                rows.append({**base, "source": "exact", "value": value, "lo": np.nan, "hi": np.nan})
                if n in MC_N:
                    rows.append({**base, "source": "monte_carlo", "value": value * 1.01, "lo": value * 0.9, "hi": value * 1.1})
    return pd.DataFrame(rows, columns=list(sweeps.SWEEP_COLUMNS))


def errorbar_points(ax) -> list[int]:
    return [len(c.lines[0].get_xdata()) for c in ax.containers if isinstance(c, ErrorbarContainer)]


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_snr_vs_params_draws_one_line_per_estimator_and_the_sampled_points():
    frame = sweep_like_frame()
    fig = plots.plot_snr_vs_params(frame)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # One exact line per label with all four widths; one error-bar series per label with two.
    exact_lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert len(exact_lines) == len(LABELS)
    assert all(len(line.get_xdata()) == len(N) for line in exact_lines)
    assert errorbar_points(ax) == [len(MC_N)] * len(LABELS)
    texts = legend_texts(ax)
    assert len(texts) == len(LABELS) + 1 and texts[-1].startswith("Monte Carlo")
    # The slope in each legend entry is the one sweeps.fit_loglog_slope gives (−1 here).
    for label, text in zip(LABELS, texts):
        slope, lo, hi = sweeps.fit_loglog_slope(frame, "mean_entry_snr", label)
        assert text == f"{label}: slope {slope:.4f} [{lo:.4f}, {hi:.4f}]"
        assert "slope -1.0000" in text


def test_snr_vs_params_takes_given_fits_and_draws_into_given_axes():
    frame = sweep_like_frame()
    frame = frame[frame["source"] == "exact"]
    fig = Figure()
    ax = fig.add_subplot()
    out = plots.plot_snr_vs_params(frame, metric="aggregate_snr", ax=ax, fits={LABELS[0]: (-0.9, -1.0, -0.8)})
    assert out is fig
    texts = legend_texts(ax)
    assert texts == [f"{LABELS[0]}: slope -0.9000 [-1.0000, -0.8000]", LABELS[1], LABELS[2]]
    assert errorbar_points(ax) == []
    with pytest.raises(ValueError, match="no rows with metric='nope'"):
        plots.plot_snr_vs_params(frame, metric="nope")


def test_parity_draws_each_formula_and_the_identity():
    predicted = np.array([1.0, 10.0, 100.0])
    frame = pd.concat(
        [
            pd.DataFrame({"formula": "snrkit exact", "predicted": predicted, "measured": predicted * 1.02}),
            pd.DataFrame({"formula": "frye-eq1", "predicted": predicted / 4, "measured": predicted * 1.02}),
        ]
    )
    frame["measured_lo"], frame["measured_hi"] = frame["measured"] * 0.95, frame["measured"] * 1.05
    fig = plots.plot_parity(frame)
    (ax,) = fig.axes
    assert errorbar_points(ax) == [3, 3]
    assert legend_texts(ax) == ["measured = predicted", "snrkit exact", "frye-eq1"]
    identity = [line for line in ax.get_lines() if line.get_label() == "measured = predicted"][0]
    np.testing.assert_allclose(identity.get_xdata(), identity.get_ydata())
    assert identity.get_xdata()[0] == 0.25 and identity.get_xdata()[-1] == 102.0
    # Without an interval the points are drawn without error bars.
    bare = plots.plot_parity(frame.drop(columns=["measured_lo", "measured_hi"]))
    assert all(c.has_yerr is False for c in bare.axes[0].containers)


def test_thread_check_draws_settings_the_claim_and_the_exact_line():
    norm_sq = np.array([0.01, 0.1, 1.0])
    n = 1_000
    frame = pd.concat(
        [
            pd.DataFrame({"setting": "gaussian", "norm_sq": norm_sq, "mean_entry_var": norm_sq * 1.001, "exact_mean_entry_var": norm_sq * (1 + 1 / n)}),
            pd.DataFrame({"setting": "rademacher", "norm_sq": norm_sq * 2, "mean_entry_var": norm_sq * 2, "exact_mean_entry_var": norm_sq * 2 * (1 - 1 / n)}),
        ]
    )
    frame["lo"], frame["hi"] = frame["mean_entry_var"] * 0.9, frame["mean_entry_var"] * 1.1
    fig = plots.plot_thread_check(frame)
    (ax,) = fig.axes
    assert errorbar_points(ax) == [3, 3]
    texts = legend_texts(ax)
    assert len(texts) == 4 and set(texts) >= {"gaussian", "rademacher"}
    assert any(t.startswith("thread") for t in texts) and any(t.startswith("exact") for t in texts)
    # The exact values: one dashed line per setting, three points each, one legend entry.
    exact = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [len(line.get_xdata()) for line in exact] == [3, 3]
    # Without the exact column: only the claim.
    fig = plots.plot_thread_check(frame.drop(columns=["exact_mean_entry_var"]))
    assert len(legend_texts(fig.axes[0])) == 3


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"lacks \['measured'\]"):
        plots.plot_parity(pd.DataFrame({"formula": ["a"], "predicted": [1.0]}))
    with pytest.raises(ValueError, match="empty frame"):
        plots.plot_thread_check(pd.DataFrame(columns=["setting", "norm_sq", "mean_entry_var", "lo", "hi"]))


def test_save_writes_a_png_creating_folders(tmp_path):
    fig = plots.plot_snr_vs_params(sweep_like_frame())
    path = plots.save(fig, tmp_path / "a" / "b" / "snr.png")
    data = path.read_bytes()
    assert path == tmp_path / "a" / "b" / "snr.png"
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert plots.save(fig, tmp_path / "bare").name == "bare.png"
    with pytest.raises(ValueError, match=r"\.png suffix"):
        plots.save(fig, tmp_path / "snr.pdf")
