"""`snrkit.cost`, the cost claims and `snrkit cost`: the harness, its CSV, its figures, its verdicts.

No test asserts a wall-clock time or a ratio of timings: they depend on the machine. The
harness is checked for what it computes exactly (columns, counts, laws, XLA's memory), the
judge on synthetic timings with negative controls.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from matplotlib.backends.backend_agg import FigureCanvasAgg
from typer.testing import CliRunner

import snrkit as sk
from snrkit import cost, nets, plots
from snrkit.claims import costs
from snrkit.cli import app
from snrkit.core.tree import ravel_host
from snrkit.data import load_digits

WIDTHS = (64, 8, 10)
SIZES = (8, 32)
FG = "ForwardGradient(gaussian, K=1)"


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The tiny table: backprop, both K = 1 probes, K = 2 vectorised and sequential, at two batch sizes."""
    methods = cost.default_methods(directions=(2,), families=False)
    return cost.cost_table(WIDTHS, load_digits(), SIZES, methods=methods, repeats=6)


# ---- the harness ------------------------------------------------------------------------


def test_one_row_per_method_and_batch_size_with_the_schema(frame):
    assert tuple(frame.columns) == cost.COST_COLUMNS
    methods = [m.name for m in cost.default_methods(directions=(2,), families=False)]
    assert frame["method"].tolist() == methods * len(SIZES)
    assert frame["batch size"].tolist() == [b for b in SIZES for _ in methods]
    assert frame["parameters"].unique().tolist() == [nets.mlp_num_params(WIDTHS)]
    assert set(frame["kind"]) == {"backprop", "estimator", "sequential"}
    for column in ("parameters", "batch size", "directions", "JVPs per step", "repeats"):
        assert frame[column].dtype == np.int64, column
    assert (frame["repeats"] == 6).all() and (~frame["note"].str.startswith("skipped")).all()


def test_what_the_harness_computes_exactly(frame):
    by = frame.set_index(["batch size", "method"])
    for batch in SIZES:
        base = by.loc[(batch, "backprop")]
        assert base["time relative to backprop"] == 1.0 and base["JVPs per step"] == 0
        assert math.isnan(base["aggregate SNR"]) and "exact gradient" in base["note"]
        assert by.loc[(batch, FG), "JVPs per step"] == 1
        assert by.loc[(batch, "ForwardGradient(gaussian, K=2)"), "JVPs per step"] == 2
        sequential = by.loc[(batch, "ForwardGradient(gaussian, K=2) sequential")]
        assert sequential["JVPs per step"] == 2 and sequential["directions"] == 2
        # the sequential baseline follows the K = 2 law; the Gaussian K = 1 SNR is 1/(n + 1)
        assert sequential["aggregate SNR"] == pytest.approx(by.loc[(batch, "ForwardGradient(gaussian, K=2)"),
                                                                   "aggregate SNR"])
        n = nets.mlp_num_params(WIDTHS)
        assert by.loc[(batch, FG), "aggregate SNR"] == pytest.approx(1 / (n + 1), rel=1e-4)
    timed = frame[["time per step, best [ms]", "time per step, lower quartile [ms]", "time per step, median [ms]",
                   "time per step, upper quartile [ms]"]].to_numpy()
    assert np.all(timed > 0) and np.all(np.diff(timed, axis=1) >= 0)
    ratio = frame[["time relative to backprop, 95% low", "time relative to backprop",
                   "time relative to backprop, 95% high"]].to_numpy()
    assert np.all(np.diff(ratio, axis=1) >= 0)
    xla = frame[["XLA temporary memory [MiB]", "XLA argument memory [MiB]", "XLA output memory [MiB]"]].to_numpy()
    assert np.all(xla >= 0)
    assert np.allclose(frame["XLA total memory [MiB]"], xla.sum(axis=1))  # nothing aliased without donation
    # the batch is an argument: its bytes (x float32, y int32) grow the argument memory by exactly that much
    grow = by.loc[(32, FG), "XLA argument memory [MiB]"] - by.loc[(8, FG), "XLA argument memory [MiB]"]
    assert grow * cost.MIB == (32 - 8) * (64 * 4 + 4)
    assert (frame["peak RSS measured as"] == "increase in this process").all()
    assert (frame["efficiency per relative time"] * frame["time relative to backprop"]).dropna().to_numpy() == (
        pytest.approx(frame["efficiency"].dropna().to_numpy()))


def test_sequential_estimate_is_the_mean_of_one_direction_passes():
    network = nets.mlp(WIDTHS)
    params = network.init(jax.random.key(0))
    digits = load_digits()
    x, y = jnp.asarray(digits.flat()[:16]), jnp.asarray(digits.labels[:16])
    key, est = jax.random.key(3), sk.ForwardGradient()
    loss, got = jax.jit(lambda p: cost.sequential_estimate(est, 3, key, network.loss, p, x, y))(params)
    passes = [est.estimate(jax.random.fold_in(key, k), network.loss, params, x, y) for k in range(3)]
    want = jax.tree.map(lambda *g: sum(g) / 3, *passes)
    assert float(loss) == pytest.approx(float(network.loss(params, x, y)), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_training_step_applies_the_same_update_for_every_method():
    """With a linear loss every estimate's direction is known; the update is optax's."""
    import optax

    def loss_fn(w, x, y):
        return jnp.sum(w * x) + 0 * jnp.sum(y)

    w, x, y = jnp.zeros(3), jnp.array([1.0, 2.0, 3.0]), jnp.zeros(3)
    key = jax.random.key(0)
    for method in (cost.Method.backprop(), cost.Method.of(sk.ForwardGradient())):
        direction = x if method.estimator is None else method.estimator.estimate(key, loss_fn, w, x, y)
        tx = optax.sgd(0.5)
        new, _, _ = cost.training_step(method, loss_fn, tx)(w, tx.init(w), key, x, y, None)
        np.testing.assert_allclose(new, -0.5 * direction, rtol=1e-6)


@dataclasses.dataclass(frozen=True)
class NeedsState(sk.ForwardGradient):
    """A family that declares it needs the problem's state (what a stale-gradient prior needs)."""

    needs: ClassVar[frozenset[str]] = frozenset({"gradient", "state"})

    @property
    def label(self) -> str:
        return "NeedsState"


def test_a_family_whose_needs_are_not_met_gets_a_row_that_says_why():
    methods = [cost.Method.backprop(), cost.Method.of(NeedsState())]
    table = cost.cost_table(WIDTHS, load_digits(), [8], methods=methods, repeats=6, state={})
    row = table.set_index("method").loc["NeedsState"]
    assert row["note"].startswith("skipped: NeedsState needs state") and "state=" in row["note"]
    assert row["repeats"] == 0 and math.isnan(row["time per step, median [ms]"])
    # given the state it needs, or by default the stale gradient, it is timed like any other
    for state in ({"anything": 1.0}, None):
        table = cost.cost_table(WIDTHS, load_digits(), [8], methods=methods, repeats=6, state=state)
        assert table.set_index("method").loc["NeedsState", "repeats"] == 6


def test_the_default_state_is_the_gradient_on_the_next_batch():
    """Not the batch's own gradient (that would make a prior an oracle), but the same point's on the next examples."""
    net, digits = nets.mlp(WIDTHS), load_digits()
    params = net.init(jax.random.key(0))
    stale = cost.stale_state(net, params, digits, 16)["stale_gradient"]
    x, y = (jnp.asarray(a) for a in cost.batch_of(digits, 16, start=16))
    np.testing.assert_allclose(ravel_host(stale), ravel_host(jax.grad(net.loss)(params, x, y)),
                               rtol=1e-6)
    x0, y0 = (jnp.asarray(a) for a in cost.batch_of(digits, 16))
    assert not np.allclose(ravel_host(stale), ravel_host(jax.grad(net.loss)(params, x0, y0)))
    np.testing.assert_array_equal(cost.batch_of(digits, 16, start=16)[1], digits.labels[16:32])


def test_backprop_is_added_when_missing():
    table = cost.cost_table(WIDTHS, load_digits(), [8], methods=[cost.Method.of(sk.ForwardGradient())], repeats=6)
    assert table["method"].tolist() == ["backprop", FG]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_sizes": []}, ValueError, "batch_sizes is empty"),
        ({"batch_sizes": [8, 8]}, ValueError, "batch_sizes must be distinct"),
        ({"batch_sizes": [0]}, ValueError, "batch_sizes must be at least 1"),
        ({"batch_sizes": [8.0]}, TypeError, "batch_sizes must be a positive int"),
        ({"repeats": 5}, ValueError, "repeats must be at least 6"),
        ({"optimizer": "lion"}, ValueError, "unknown optimizer 'lion'; choose one of adam, sgd"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate must be a positive"),
        ({"model": (63, 8, 10)}, ValueError, "input width is 63 but digits has 64 inputs"),
        ({"on_progress": True}, TypeError, r"on_progress must be a function on_progress\(stage, done, total\)"),
        ({"model": (64, 8, 7)}, ValueError, "output width is 7 but digits has 10 classes; end the widths with 10"),
        ({"model": (64,)}, ValueError, r"model must list at least two positive integers .* got \(64,\)"),
        ({"model": (64, 0, 10)}, ValueError, "model must list at least two positive integers"),
        ({"model": 64}, ValueError, r"model must list .* got \(64,\)"),
        ({"model": nets.mlp(WIDTHS), "isolate": True}, ValueError, "isolate=True rebuilds the model"),
        ({"methods": [cost.Method.backprop(), cost.Method.backprop()]}, ValueError, "method names must be distinct"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(kwargs, error, message):
    args = {"model": WIDTHS, "data": load_digits(), "batch_sizes": [8], "repeats": 6, **kwargs}
    with pytest.raises(error, match=message):
        cost.cost_table(args.pop("model"), args.pop("data"), args.pop("batch_sizes"), **args)


def test_an_output_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="it is a folder"):
        cost.cost_table(WIDTHS, load_digits(), [8], repeats=6, out_csv=tmp_path)


def test_median_interval_covers_by_order_statistics():
    median, low, high = cost.median_interval([3.0, 1.0, 2.0, float("nan"), 5.0, 4.0])
    assert (median, low, high) == (3.0, 1.0, 5.0)  # five values: the range
    assert all(math.isnan(v) for v in cost.median_interval([float("nan")]))
    # [x_(k), x_(r-k+1)] misses the median when k or more values fall on one side of it:
    # coverage 1 - 2 P(Bin(r, 1/2) <= k - 1), exact for any continuous law. The interval must
    # reach 95 % from MIN_REPEATS on, and be the tightest that does (k + 1 would not).
    def coverage(k: int, r: int) -> float:
        return 1 - 2 * scipy.stats.binom.cdf(k - 1, r, 0.5)

    for r in range(cost.MIN_REPEATS, 61):
        k = int(cost.median_interval(np.arange(r, dtype=float))[1]) + 1
        assert coverage(k, r) >= 0.95 > coverage(k + 1, r), r
    assert coverage(1, cost.MIN_REPEATS - 1) < 0.95  # why fewer repeats are refused


# ---- the CSV ------------------------------------------------------------------------


def test_csv_is_written_atomically_and_reads_back(tmp_path, frame):
    path = tmp_path / "out" / "cost.csv"
    path.parent.mkdir()
    path.write_text("an older file\n")
    methods = [cost.Method.backprop(), cost.Method.of(sk.ForwardGradient())]
    written = cost.cost_table(WIDTHS, load_digits(), [8], methods=methods, repeats=6, out_csv=path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["cost.csv"]  # no temporary file left
    pd.testing.assert_frame_equal(cost.read_cost_csv(path), written)
    assert cost.read_cost_csv(path)["note"].tolist() == ["exact gradient: no SNR", ""]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "cost.csv"
    path.write_text("an older file\n")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("snrkit.core.io.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        cost.cost_table(WIDTHS, load_digits(), [8], methods=[cost.Method.backprop()], repeats=6, out_csv=path)
    assert path.read_text() == "an older file\n" and [p.name for p in tmp_path.iterdir()] == ["cost.csv"]


def test_a_csv_of_other_columns_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("label,value\nx,1\n")
    with pytest.raises(ValueError, match="is not a cost CSV: it lacks the columns"):
        cost.read_cost_csv(path)


# ---- the judge, on synthetic timings -------------------------------------------------


def synthetic(ratios: dict[int, tuple[float, float, float]], memory: dict[int, tuple[float, float]],
              backprop_ms: float = 20.0) -> pd.DataFrame:
    """A cost frame with given FG/backprop ratios `(median, low, high)` and memory `(backprop, FG)` per batch."""
    rows = []
    for batch, (ratio, low, high) in ratios.items():
        bp, fg = memory[batch]
        rows.append({"batch size": batch, "method": "backprop", "time relative to backprop": 1.0,
                     "time relative to backprop, 95% low": 1.0, "time relative to backprop, 95% high": 1.0,
                     "XLA temporary memory [MiB]": bp, "time per step, median [ms]": backprop_ms})
        rows.append({"batch size": batch, "method": FG, "time relative to backprop": ratio,
                     "time relative to backprop, 95% low": low, "time relative to backprop, 95% high": high,
                     "XLA temporary memory [MiB]": fg, "time per step, median [ms]": backprop_ms * ratio})
    return pd.DataFrame(rows)


BAYDIN, YAO_TIME, YAO_MEMORY = costs.COST_CLAIMS


def verdicts_of(claim, frame):
    return [v.verdict for v in costs.judge(claim, frame)]


def test_baydin_holds_at_its_ratio_and_yao_is_then_refuted():
    frame = synthetic({256: (0.59, 0.55, 0.64)}, {256: (4.0, 1.0)})
    assert verdicts_of(BAYDIN, frame) == ["holds"]
    assert verdicts_of(YAO_TIME, frame) == ["refuted"]  # negative control: the other claim on the same data


def test_no_difference_holds_for_yao_and_refutes_baydin():
    frame = synthetic({256: (1.0, 0.93, 1.08), 1024: (1.02, 0.97, 1.1)}, {256: (4.0, 1.0), 1024: (16.0, 1.0)})
    assert verdicts_of(YAO_TIME, frame) == ["holds", "holds"]
    assert verdicts_of(BAYDIN, frame) == ["refuted", "refuted"]


def test_a_step_too_short_to_time_is_not_judged():
    """Under MIN_STEP_MS a call's fixed cost sets the ratio: a tight interval in the band is not a verdict."""
    ratios, memory = {256: (0.59, 0.55, 0.64)}, {256: (4.0, 1.0)}
    assert verdicts_of(BAYDIN, synthetic(ratios, memory, backprop_ms=costs.MIN_STEP_MS)) == ["holds"]
    (short,) = costs.judge(BAYDIN, synthetic(ratios, memory, backprop_ms=0.2))
    assert short.verdict == "not resolved" and short.detail.startswith("not judged: backprop's step takes 0.2 ms")


def test_a_wide_interval_resolves_nothing():
    frame = synthetic({256: (0.8, 0.5, 1.3)}, {256: (4.0, 1.0)})
    assert verdicts_of(BAYDIN, frame) == verdicts_of(YAO_TIME, frame) == ["not resolved"]


def test_the_two_time_claims_never_both_hold():
    grid = np.geomspace(0.3, 3.0, 40)
    for low in grid:
        for high in grid[grid >= low]:
            both = {costs.judge_ratio(BAYDIN, low, high), costs.judge_ratio(YAO_TIME, low, high)}
            assert both != {"holds"}


def test_a_ratio_twice_the_claim_is_refuted():
    """The judge's power: a factor-2 error with a tight interval is always refuted."""
    for claim in (BAYDIN, YAO_TIME):
        for factor in (2.0, 0.5):
            r = claim.claimed * factor
            assert costs.judge_ratio(claim, 0.97 * r, 1.03 * r) == "refuted"
            assert costs.judge_ratio(claim, 0.97 * claim.claimed, 1.03 * claim.claimed) == "holds"


@pytest.mark.parametrize(
    ("memory", "verdict"),
    [
        ({256: (4.0, 1.0), 1024: (16.0, 1.0), 4096: (64.0, 1.0)}, "holds"),
        ({256: (4.0, 1.0), 1024: (4.0, 1.0), 4096: (4.0, 1.0)}, "refuted"),  # a saving that does not grow
        ({256: (1.0, 2.0), 1024: (4.0, 8.0), 4096: (16.0, 32.0)}, "refuted"),  # uses more memory
        ({256: (4.0, 1.0), 1024: (16.0, 1.0), 4096: (12.0, 1.0)}, "not resolved"),  # grows, then falls
        ({256: (100.0, 99.9), 1024: (100.0, 99.8), 4096: (100.0, 99.7)}, "not resolved"),  # under the resolution
    ],
)
def test_memory_saving_rule(memory, verdict):
    frame = synthetic({b: (1.0, 0.9, 1.1) for b in memory}, memory)
    (result,) = costs.judge(YAO_MEMORY, frame)
    assert result.verdict == verdict and result.batch_size is None
    assert result.measured == pytest.approx(memory[4096][0] - memory[4096][1])


def test_memory_on_one_batch_size_and_missing_rows_are_not_resolved():
    frame = synthetic({256: (1.0, 0.9, 1.1)}, {256: (4.0, 1.0)})
    assert verdicts_of(YAO_MEMORY, frame) == ["not resolved"]
    (verdict,) = costs.judge(BAYDIN, frame[frame["method"] == "backprop"])
    assert verdict.verdict == "not resolved" and FG in verdict.detail


def test_claims_are_checked_and_cite_the_bibliography():
    from snrkit.claims.bibliography import REFERENCES

    assert {c.reference for c in costs.COST_CLAIMS} <= set(REFERENCES)
    assert BAYDIN.claimed == pytest.approx(2.46 / 4.17)
    with pytest.raises(ValueError, match="quantity must be one of"):
        costs.CostClaim("x", "s", "yao", "w", "speed")
    with pytest.raises(ValueError, match="not in snrkit.claims.bibliography.REFERENCES"):
        costs.CostClaim("x", "s", "nobody", "w", "memory saving")
    with pytest.raises(ValueError, match="claimed ratio > 0 and a tolerance > 1"):
        costs.CostClaim("x", "s", "yao", "w", "time ratio", claimed=1.0, tolerance=0.5)


def test_the_judge_reads_the_harness_frame(frame):
    verdicts = costs.judge_all(frame)
    assert [v.id for v in verdicts] == ["baydin-time-ratio"] * 2 + ["yao-time"] * 2 + ["yao-memory"]
    assert {v.verdict for v in verdicts} <= set(costs.VERDICTS)
    table = costs.verdict_frame(verdicts)
    assert table["batch size"].tolist()[:2] == list(SIZES)


# ---- the figures --------------------------------------------------------------------


def drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig


def test_time_and_memory_figure(frame):
    fig = drawn(plots.plot_cost(frame))
    left, right = fig.axes
    assert fig.get_size_inches()[0] == plots.FIGURE_WIDTH
    assert left.get_shared_x_axes().joined(left, right)
    styles = {}
    for line in left.get_lines():
        if line.get_gid() in set(frame["method"]) and line.get_linestyle() != "None":  # not the error bars' caps
            styles[line.get_gid()] = (line.get_color(), line.get_marker(), line.get_linestyle())
            own = frame[frame["method"] == line.get_gid()].sort_values("batch size")
            np.testing.assert_allclose(np.asarray(line.get_ydata(), float), own["time per step, median [ms]"])
    assert set(styles) == set(frame["method"]) and len(set(styles.values())) == len(styles)
    for line in right.get_lines():
        own = frame[frame["method"] == line.get_gid()].sort_values("batch size")
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), own["XLA temporary memory [MiB]"])
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts() if t.get_text()]
    assert texts == ["method", *dict.fromkeys(frame["method"])]
    # the legend's handles look like the lines they name, and the legend lies under every panel
    for handle, text in zip(legend.legend_handles, [t.get_text() for t in legend.get_texts()]):
        if text in styles:
            assert (handle.get_color(), handle.get_marker(), handle.get_linestyle()) == styles[text]
    renderer = fig.canvas.get_renderer()
    top = legend.get_window_extent(renderer).y1
    assert all(top <= ax.get_window_extent(renderer).y0 for ax in fig.axes)
    # 8 to 32 is less than a decade: linear axes; the scale rule is set_scale's
    assert left.get_xscale() == "linear"


def test_snr_per_cost_figure_leaves_out_backprop(frame):
    fig = drawn(plots.plot_snr_per_cost(frame))
    top, bottom = fig.axes
    names = {line.get_gid() for ax in fig.axes for line in ax.get_lines()}
    assert "backprop" not in names and FG in names
    for line in bottom.get_lines():
        own = frame[frame["method"] == line.get_gid()].sort_values("batch size")
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), own["efficiency per relative time"])
    assert top.get_ylabel() == "aggregate SNR / relative time"


def test_figures_refuse_frames_with_nothing_to_draw(frame):
    with pytest.raises(ValueError, match="lacks"):
        plots.plot_cost(frame.drop(columns=["XLA temporary memory [MiB]"]))
    with pytest.raises(ValueError, match="no estimator with an efficiency"):
        plots.plot_snr_per_cost(frame[frame["method"] == "backprop"])


def test_figures_draw_into_a_subfigure(frame):
    fig, _ = plots.figure()
    fig.clear()
    sub = fig.subfigures(1, 1)
    assert plots.plot_cost(frame, fig=sub) is fig


# ---- the command line -----------------------------------------------------------------

runner = CliRunner()


def one_line(result) -> str:
    """The command's output with rich's line breaks undone."""
    return " ".join(result.output.split())


def test_cost_command_writes_the_csv_figures_and_verdicts(tmp_path):
    out = tmp_path / "cost"
    result = runner.invoke(app, ["cost", "--quick", "--method", "forward-gradient", "--repeats", "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("cost.csv", "cost_claims.csv", "cost_time_memory.png", "cost_snr.png"):
        assert (out / name).stat().st_size > 0, name
    table = cost.read_cost_csv(out / "cost.csv")
    assert table["method"].unique().tolist() == ["backprop", FG, "ForwardGradient(rademacher, K=1)"]
    assert table["batch size"].unique().tolist() == [16, 64]
    assert "baydin-time-ratio" in result.output and "yao-memory" in result.output
    claims_table = pd.read_csv(out / "cost_claims.csv")
    assert set(claims_table["verdict"]) <= set(costs.VERDICTS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--batch-size", "8", "--batch-size", "8"], "--batch-size values must be distinct"),
        (["--repeats", "5"], "--repeats must be at least 6"),
        (["--directions", "1"], "--directions must be at least 2"),
        (["--directions", "4", "--directions", "4"], "--directions values must be distinct"),
        (["--directions", "3", "--method", "families"], "add --method directions, or drop --directions"),
        (["--hidden", "0"], "--hidden must be at least 1"),
    ],
)
def test_cost_command_refuses_bad_options_with_one_line(args, message, tmp_path):
    result = runner.invoke(app, ["cost", "--quick", "--out", str(tmp_path / "c"), *args])
    assert result.exit_code == 1 and message in one_line(result), result.output
    assert "Traceback" not in result.output and not (tmp_path / "c").exists()


def test_cost_command_finds_mnist_where_report_does(tmp_path, monkeypatch):
    """--mnist-dir, else SNRKIT_MNIST_DIR (checked), else a clear error; nothing written on an error."""
    from snrkit import data
    from tests.test_data import small_mnist

    real_default = data.default_mnist_dir
    monkeypatch.setattr(data, "default_mnist_dir", lambda: None)
    result = runner.invoke(app, ["cost", "--quick", "--data", "mnist", "--out", str(tmp_path / "c")])
    assert result.exit_code == 1 and "pass --mnist-dir PATH (or set SNRKIT_MNIST_DIR)" in one_line(result)
    monkeypatch.setattr(data, "default_mnist_dir", real_default)
    monkeypatch.setenv("SNRKIT_MNIST_DIR", str(tmp_path / "absent"))
    result = runner.invoke(app, ["cost", "--quick", "--data", "mnist", "--out", str(tmp_path / "c")])
    assert result.exit_code == 1 and "SNRKIT_MNIST_DIR=" in one_line(result) and not (tmp_path / "c").exists()
    (tmp_path / "mnist").mkdir()
    small_mnist(tmp_path / "mnist", n=20)  # 4x3 images
    monkeypatch.setenv("SNRKIT_MNIST_DIR", str(tmp_path / "mnist"))
    result = runner.invoke(app, ["cost", "--quick", "--data", "mnist", "--method", "forward-gradient",
                                 "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert set(cost.read_cost_csv(tmp_path / "c" / "cost.csv")["model"]) == {"mlp-12-32-10"}


def test_cost_command_refuses_an_output_under_a_file(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    result = runner.invoke(app, ["cost", "--quick", "--out", str(blocker / "cost")])
    assert result.exit_code == 1 and "is a file, not a folder" in one_line(result)


def test_cost_command_help_lists_its_options():
    result = runner.invoke(app, ["cost", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--quick", "--data", "--mnist-dir", "--batch-size", "--repeats", "--isolate"):
        assert option in result.output


# ---- slow: every family, and a fresh process per configuration -----------------------


@pytest.mark.slow
def test_every_registered_family_is_timed():
    table = cost.cost_table(WIDTHS, load_digits(), [8], repeats=6)
    from snrkit.families import FAMILIES

    labels = {est.label for row in FAMILIES.values() for est in (*row.sweep, *row.timed)}
    assert set(FAMILIES) == {table.set_index("method").loc[label, "family"] for label in labels}  # every family
    assert labels <= set(table["method"])
    assert (table["repeats"] == 6).all()
    biased = table[table["note"] == "biased: efficiency only"]
    assert biased["aggregate SNR"].isna().all() and biased["efficiency"].notna().all()


@pytest.mark.slow
def test_isolated_processes_report_their_own_peak():
    methods = [cost.Method.backprop(), cost.Method.of(sk.ForwardGradient())]
    table = cost.cost_table(WIDTHS, load_digits(), [8], methods=methods, repeats=6, isolate=True)
    assert (table["peak RSS measured as"] == "fresh process").all()
    assert (table["peak RSS [MiB]"] > 50).all()  # a whole Python process with JAX loaded
