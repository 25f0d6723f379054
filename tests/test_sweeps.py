"""snr_sweep: its frame, the mathematics its exact rows must obey, its intervals, and resume.

The quick preset runs once per module (four MLP widths on digits, Monte Carlo at two of
them); the resume tests use a smaller sweep of the same widths so compiled code is shared.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from snrkit import gradients, sweeps
from snrkit.families import FAMILIES
from snrkit.families.iid import ForwardGradient, Partitioned
from tests.conftest import TEST_ALPHA, pinned_key

QUICK_KEY = 0


@pytest.fixture(scope="module")
def quick() -> tuple[pd.DataFrame, list[tuple[str, int, int]]]:
    calls: list[tuple[str, int, int]] = []
    frame = sweeps.snr_sweep(
        key=pinned_key(QUICK_KEY), out_csv=None, on_progress=lambda *a: calls.append(a), **sweeps.SWEEP_QUICK
    )
    return frame, calls


def _exact(frame: pd.DataFrame, label: str, metric: str) -> pd.DataFrame:
    rows = frame[(frame["label"] == label) & (frame["metric"] == metric) & (frame["source"] == "exact")]
    return rows.sort_values("n")


# -- the frame ------------------------------------------------------------------------------


def test_quick_sweep_has_the_documented_rows_and_columns(quick):
    """Long format: one row per (width, estimator, source, metric); intervals only where sampled."""
    frame, calls = quick
    assert list(frame.columns) == list(sweeps.SWEEP_COLUMNS)
    labels = [e.label for e in sweeps.SWEEP_ESTIMATORS]
    assert list(dict.fromkeys(frame["label"])) == labels
    widths = sorted(frame["width"].unique())
    assert len(widths) == len(sweeps.SWEEP_QUICK_TARGETS)
    per_width = len(labels) * len(sweeps.SWEEP_METRICS)
    assert len(frame) == per_width * (len(widths) + len(sweeps.SWEEP_QUICK_MC_TARGETS))
    assert not frame.duplicated(["width", "label", "source", "metric"]).any()
    # n is the parameter count of (64, h, h, 10), and close to its target.
    h = frame["width"].to_numpy()
    assert np.array_equal(frame["n"].to_numpy(), 65 * h + (h + 1) * h + (h + 1) * 10)
    for target, n in zip(sweeps.SWEEP_QUICK_TARGETS, sorted(frame["n"].unique())):
        assert abs(n - target) / target < 0.1

    exact = frame[frame["source"] == "exact"]
    assert exact["lo"].isna().all() and exact["hi"].isna().all()
    assert (exact["num_samples"] == 0).all()
    sampled = frame[frame["source"] == "monte_carlo"]
    assert sorted(sampled["n"].unique()) == [sorted(frame["n"].unique())[i] for i in (0, -1)]
    assert (sampled["num_samples"] == sweeps.SWEEP_QUICK_NUM_SAMPLES).all()
    assert (sampled["lo"] < sampled["value"]).all() and (sampled["value"] < sampled["hi"]).all()
    assert np.isfinite(frame["value"]).all() and (frame["value"] > 0).all()
    assert set(frame["family"]) == {row.name for row in FAMILIES.values() if row.sweep}
    partitioned = frame.loc[frame["family"] == "partitioned", "params"].map(json.loads)
    assert {params["blocks"] for params in partitioned} == {4}
    # Progress: the sweep stage counts widths and ends complete.
    sweep_calls = [c for c in calls if c[0] == "sweep"]
    assert sweep_calls[0] == ("sweep", 0, 4) and sweep_calls[-1] == ("sweep", 4, 4)
    assert any(c[0].endswith("ForwardGradient(gaussian, K=1)") and c[1] == c[2] for c in calls)


def test_exact_snr_decreases_with_n(quick):
    """Every estimator's exact SNR, both metrics, falls as the network grows (it is O(1/n))."""
    frame, _ = quick
    for label in frame["label"].unique():
        for metric in ("mean_entry_snr", "aggregate_snr"):
            values = _exact(frame, label, metric)["value"].to_numpy()
            assert np.all(np.diff(values) < 0), (label, metric, values)


def test_exact_aggregate_snr_is_k_over_n_plus_kappa_minus_2(quick):
    """For the forward gradient tr Cov = (n+κ−2)‖∇‖²/K, so ‖∇‖²/tr Cov = K/(n+κ−2) whatever ∇.

    The exact rows go through law.flat_var() (float32, summed in float64), so they may
    differ from the closed form by float32 rounding of each entry, ~1e-7 relative.
    """
    frame, _ = quick
    for estimator in sweeps.SWEEP_ESTIMATORS:
        if not isinstance(estimator, ForwardGradient):
            continue
        kappa = estimator.probe_distribution.m4
        rows = _exact(frame, estimator.label, "aggregate_snr")
        expected = estimator.directions / (rows["n"].to_numpy() + kappa - 2)
        np.testing.assert_allclose(rows["value"].to_numpy(), expected, rtol=1e-6)


def test_gaussian_mean_entry_snr_is_between_1_over_2n_and_1_over_n(quick):
    """Gaussian K=1: SNR_i = ∇_i²/(‖∇‖²+∇_i²) and 0 ≤ ∇_i² ≤ ‖∇‖², so each lies in
    [∇_i²/(2‖∇‖²), ∇_i²/‖∇‖²] and their mean in [1/(2n), 1/n] (no 0/0 entry: Var_i ≥ ‖∇‖² > 0)."""
    frame, _ = quick
    rows = _exact(frame, "ForwardGradient(gaussian, K=1)", "mean_entry_snr")
    scaled = rows["value"].to_numpy() * rows["n"].to_numpy()
    assert np.all(scaled <= 1 + 1e-6) and np.all(scaled >= 0.5 - 1e-6), scaled


def test_gaussian_loglog_slope_is_within_the_proven_distance_of_minus_one(quick):
    """What is true about the slope of the exact mean entry SNR, and what is not.

    Write log SNR_j = −log n_j + c_j with c_j = log(n_j SNR_j) ∈ [−log 2, 0] (previous test).
    The least-squares slope is −1 + Σ_j w_j c_j with w_j = (x_j − x̄)/S_xx, x = log n, and
    Σ w_j = 0, so |slope + 1| ≤ log 2 · Σ|x_j − x̄| / (2 S_xx): a bound from the mathematics,
    whatever the gradients.

    Is −1 inside the regression's 95 % interval? Not in general, and not here: c_j is not
    noise but drifts smoothly towards 0 as wider networks spread ‖∇‖² over more entries
    (n SNR → 1), so the points lie almost exactly on a line of slope slightly above −1 and the
    interval, which only measures scatter about a line, is narrow ([−0.9994, −0.9960] for
    the quick sweep, [−0.99966, −0.99894] for the default one). Rademacher drifts the other
    way (n SNR ≥ 1, slope slightly below −1). So the test asserts the bound, the interval's
    consistency with the fit, and the direction of the drift Gaussian vs Rademacher.
    """
    frame, _ = quick
    label = "ForwardGradient(gaussian, K=1)"
    slope, lo, hi = sweeps.fit_loglog_slope(frame, "mean_entry_snr", label)
    x = np.log(_exact(frame, label, "mean_entry_snr")["n"].to_numpy(dtype=float))
    centred = x - x.mean()
    bound = math.log(2) * np.abs(centred).sum() / (2 * (centred**2).sum())
    assert abs(slope + 1) <= bound, (slope, bound)
    assert lo < slope < hi
    rademacher, _, _ = sweeps.fit_loglog_slope(frame, "mean_entry_snr", "ForwardGradient(rademacher, K=1)")
    # Rademacher: SNR_i = ∇_i²/(‖∇‖²−∇_i²) ≥ ∇_i²/‖∇‖², so n SNR ≥ 1 ≥ n SNR(Gaussian) pointwise.
    gaussian_rows = _exact(frame, label, "mean_entry_snr")["value"].to_numpy()
    rademacher_rows = _exact(frame, "ForwardGradient(rademacher, K=1)", "mean_entry_snr")["value"].to_numpy()
    assert np.all(rademacher_rows * _exact(frame, label, "mean_entry_snr")["n"].to_numpy() >= 1 - 1e-6)
    assert np.all(rademacher_rows >= gaussian_rows)
    assert rademacher < slope


def test_monte_carlo_values_agree_with_the_exact_snr(quick):
    """Every sampled value lies within its batch-means interval widened to a 1e-6 budget.

    Why not "most 95 % intervals contain the exact value": the (width, estimator) pairs are
    sampled with independent keys, so the misses of one metric are Bin(m, p) with p ≈ 0.05
    (simulated coverage at the quick preset's sizes: 0.945-0.99, see the sweep report), but
    with m = 12 sampled pairs, P(Bin(12, 0.05) ≥ 7) = 1.6e-8 and P(≥ 6) = 4.9e-7: within a
    1e-6 budget only "at most 6 of 12 miss" could be asserted, which is not "most".

    What is asserted instead uses the interval's own model (the all-sample value is normal
    about the truth with the batch-means standard error, se = (hi − lo) / (2 t_{0.975,B−1})):
    each exact value lies within value ± t_{1−α/(2P),B−1} se, P = all sampled points of both
    metrics (Bonferroni), so the test fails with probability ≤ TEST_ALPHA under that model.
    The widened intervals stay narrow enough to reject an exact SNR off by a factor 4 (a
    variance formula wrong by a factor 4): with d = |value − truth| < 0.75 truth − wide,
    |value − truth/4| ≥ 0.75 truth − d > wide and |value − 4 truth| ≥ 3 truth − d > wide.
    """
    frame, _ = quick
    exact = frame[frame["source"] == "exact"].set_index(["width", "label", "metric"])["value"]
    sampled = frame[frame["source"] == "monte_carlo"]
    truth = exact.loc[list(zip(sampled["width"], sampled["label"], sampled["metric"]))].to_numpy()
    dof = sampled["batches"].to_numpy() - 1
    se = (sampled["hi"] - sampled["lo"]).to_numpy() / (2 * scipy.stats.t.ppf(0.975, dof))
    wide = scipy.stats.t.ppf(1 - TEST_ALPHA / (2 * len(sampled)), dof) * se
    deviation = np.abs(sampled["value"].to_numpy() - truth)
    assert np.all(deviation <= wide), sampled.assign(exact=truth, allowed=wide)[deviation > wide]
    # Power: an exact value 4× or 1/4 of the truth would fall outside every widened interval.
    assert np.all(deviation + wide < 0.75 * truth)


def test_fit_loglog_slope_recovers_a_power_law_and_rejects_too_few_points():
    n = np.array([1e3, 1e4, 1e5, 1e6])
    frame = pd.DataFrame(
        {"n": n, "value": 3 * n**-0.5, "label": "a", "metric": "aggregate_snr", "source": "exact"}
    )
    slope, lo, hi = sweeps.fit_loglog_slope(frame, "aggregate_snr", "a")
    assert slope == pytest.approx(-0.5, abs=1e-12)
    assert lo == pytest.approx(-0.5, abs=1e-9) and hi == pytest.approx(-0.5, abs=1e-9)
    # With scatter, the interval is b ± t(0.975, k−2)·se from scipy's linregress.
    noisy = frame.assign(value=3 * n**-0.5 * np.array([1.0, 1.3, 0.8, 1.1]))
    slope, lo, hi = sweeps.fit_loglog_slope(noisy, "aggregate_snr", "a")
    fit = scipy.stats.linregress(np.log(n), np.log(noisy["value"]))
    half = scipy.stats.t.ppf(0.975, 2) * fit.stderr
    assert (slope, lo, hi) == pytest.approx((fit.slope, fit.slope - half, fit.slope + half))
    two = sweeps.fit_loglog_slope(frame.iloc[:2], "aggregate_snr", "a")
    assert two[0] == pytest.approx(-0.5) and math.isnan(two[1]) and math.isnan(two[2])
    with pytest.raises(ValueError, match="label='b'"):
        sweeps.fit_loglog_slope(frame, "aggregate_snr", "b")


def test_snr_metrics_by_hand():
    """∇ = (3, 4, 0, 0) with variances (34, 41, 25, 0): the 0/0 entry is left out of the mean;
    the efficiency is the floor over squared bias plus total variance."""
    grad_sq = np.array([9.0, 16.0, 0.0, 0.0])
    var = np.array([[34.0, 41.0, 25.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    mean_entry, aggregate, efficiency = sweeps.snr_metrics(grad_sq, var, squared_bias=5.0, floor=75.0)
    np.testing.assert_allclose(mean_entry, [(9 / 34 + 16 / 41 + 0) / 3, (9 + 16) / 3])
    np.testing.assert_allclose(aggregate, [25 / 100, 25 / 3])
    np.testing.assert_allclose(efficiency, [75 / 105, 75 / 8])
    assert np.isnan(sweeps.snr_metrics(grad_sq, var[0])[2])  # no floor given: no efficiency


# -- resume ---------------------------------------------------------------------------------

# Small but complete: three quick widths, Monte Carlo at the first, two estimators.
SMALL = {
    "targets": (1_000, 2_000, 4_000),
    "mc_targets": (1_000,),
    "num_samples": 256,
    "batches": 8,
    "train_steps": 10,
    "estimators": (ForwardGradient(probe="gaussian"), Partitioned(blocks=4, probe="rademacher")),
}
ROWS_PER_WIDTH = 2 * len(sweeps.SWEEP_METRICS)  # estimators × metrics, per source


class CountingGradients:
    """Wraps gradients.gradient_at, recording the hidden width of each network it trains."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_on_call: int | None = None):
        self.widths: list[int] = []
        self.fail_on_call = fail_on_call
        self._real = gradients.gradient_at
        monkeypatch.setattr(gradients, "gradient_at", self)

    def __call__(self, key, network, data, **kwargs):
        self.widths.append(network.name)
        if self.fail_on_call is not None and len(self.widths) == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        return self._real(key, network, data, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted() -> pd.DataFrame:
    return sweeps.snr_sweep(key=pinned_key(1), out_csv=None, **SMALL)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_resume_skips_finished_widths_and_matches_an_uninterrupted_run(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "sub" / "sweep.csv"
    first = sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **{**SMALL, "targets": SMALL["targets"][:2]})
    expected_first = uninterrupted[uninterrupted["width"].isin(first["width"].unique())].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, expected_first, check_exact=True)

    counter = CountingGradients(monkeypatch)
    resumed = sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **SMALL)
    # Only the third width was trained: the first two came from the CSV.
    assert counter.widths == [f"mlp-64-{w}-{w}-10" for w in [sorted(uninterrupted["width"].unique())[-1]]]
    pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(out), uninterrupted, check_dtype=False)

    # Everything present: nothing is recomputed at all.
    counter.widths.clear()
    again = sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **SMALL)
    assert counter.widths == []
    pd.testing.assert_frame_equal(again, uninterrupted, check_exact=True)
    assert _leftovers(out.parent) == []


def test_adding_monte_carlo_later_computes_only_the_missing_rows(tmp_path, monkeypatch, uninterrupted):
    """Exact rows already in the CSV are kept; a width that now needs sampling gets only those rows."""
    out = tmp_path / "sweep.csv"
    exact_only = sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **{**SMALL, "mc_targets": ()})
    pd.testing.assert_frame_equal(
        exact_only, uninterrupted[uninterrupted["source"] == "exact"].reset_index(drop=True), check_exact=True
    )
    counter = CountingGradients(monkeypatch)
    resumed = sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **SMALL)
    assert len(counter.widths) == 1  # only the sampled width needs its gradient again
    pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)


def test_interrupted_sweep_leaves_only_complete_widths(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "sweep.csv"
    CountingGradients(monkeypatch, fail_on_call=2)  # dies while computing the second width
    with pytest.raises(KeyboardInterrupt):
        sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **SMALL)
    saved = pd.read_csv(out)
    first_width = sorted(uninterrupted["width"].unique())[0]
    # The first width (exact and Monte Carlo rows) and nothing else.
    assert set(saved["width"]) == {first_width}
    assert len(saved) == 2 * ROWS_PER_WIDTH
    expected = uninterrupted[uninterrupted["width"] == first_width].reset_index(drop=True)
    pd.testing.assert_frame_equal(saved, expected, check_dtype=False)
    assert _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_previous_csv(tmp_path, monkeypatch, uninterrupted):
    """os.replace happens only after the whole file is written: a crash mid-write keeps the old file."""
    out = tmp_path / "sweep.csv"
    real_fsync = os.fsync
    writes = []

    def flaky_fsync(fd):
        writes.append(fd)
        if len(writes) == 2:  # the second width's file is written but not yet in place
            raise OSError("disk full")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", flaky_fsync)
    with pytest.raises(OSError, match="disk full"):
        sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **SMALL)
    monkeypatch.setattr(os, "fsync", real_fsync)
    saved = pd.read_csv(out)
    assert len(saved) == 2 * ROWS_PER_WIDTH
    assert _leftovers(tmp_path) == []


def test_csv_with_other_columns_is_refused_with_the_fix(tmp_path):
    out = tmp_path / "other.csv"
    pd.DataFrame({"width": [1], "snr": [0.5]}).to_csv(out, index=False)
    with pytest.raises(ValueError, match="does not have the columns") as info:
        sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **SMALL)
    message = str(info.value)
    assert str(out) in message and f"Delete {out}" in message and "another out_csv" in message
    out.write_text("")
    with pytest.raises(ValueError, match="not a snr_sweep CSV"):
        sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **SMALL)


def test_csv_of_another_configuration_is_refused(tmp_path, uninterrupted):
    out = tmp_path / "sweep.csv"
    uninterrupted.to_csv(out, index=False)
    with pytest.raises(ValueError, match="key=.*mix two configurations"):
        sweeps.snr_sweep(key=pinned_key(2), out_csv=out, **SMALL)
    with pytest.raises(ValueError, match="num_samples"):
        sweeps.snr_sweep(key=pinned_key(1), out_csv=out, **{**SMALL, "num_samples": 512})


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="subset of targets"):
        sweeps.snr_sweep(key=pinned_key(0), out_csv=None, targets=(1_000,), mc_targets=(2_000,))
    with pytest.raises(ValueError, match="targets is empty"):
        sweeps.snr_sweep(key=pinned_key(0), out_csv=None, targets=(), mc_targets=())
    with pytest.raises(ValueError, match="batches"):
        sweeps.snr_sweep(key=pinned_key(0), out_csv=None, targets=(1_000,), mc_targets=(), batches=1)
    with pytest.raises(TypeError, match="on_progress must be a function"):
        sweeps.snr_sweep(key=pinned_key(0), out_csv=None, targets=(1_000,), mc_targets=(), on_progress="bar")


def test_no_temporary_file_survives_in_the_working_folder(tmp_path, monkeypatch, uninterrupted):
    """A relative out_csv works and its temporary file lands beside it, then disappears."""
    monkeypatch.chdir(tmp_path)
    frame = sweeps.snr_sweep(key=pinned_key(1), out_csv="rel.csv", **{**SMALL, "targets": (1_000,)})
    assert os.path.exists("rel.csv") and _leftovers(tmp_path) == []
    pd.testing.assert_frame_equal(frame, uninterrupted[uninterrupted["width"] == frame["width"].iloc[0]].reset_index(drop=True))


def test_a_tampered_csv_is_refused_naming_the_line_and_column(tmp_path, uninterrupted):
    """A resumed CSV is validated cell by cell: a duplicated row with another value, a non-finite value and
    an empty cell each stop the sweep with the line and column, instead of silently winning or counting as done."""
    clean = tmp_path / "clean.csv"
    uninterrupted.to_csv(clean, index=False)
    header, *rows = list(csv.reader(clean.open(newline="")))
    value = header.index("value")

    def write(name: str, body: list[list[str]]) -> Path:
        path = tmp_path / name
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([header, *body])
        return path

    other = list(rows[0])
    other[value] = str(float(rows[0][value]) * 3.7)
    with pytest.raises(ValueError, match=rf"lines 2 and {len(rows) + 2} both hold .*cannot tell which is right"):
        sweeps.snr_sweep(key=pinned_key(1), out_csv=write("duplicated.csv", [*rows, other]), **SMALL)

    for bad, message in (("inf", r"line 2, column value: inf is not a finite number"),
                         ("", r"line 2, column value: '' is not a number")):
        cells = list(rows[0])
        cells[value] = bad
        with pytest.raises(ValueError, match=message):
            sweeps.snr_sweep(key=pinned_key(1), out_csv=write(f"broken{len(bad)}.csv", [cells, *rows[1:]]), **SMALL)
