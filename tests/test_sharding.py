"""Samples spread over devices give one device's results: in one process with 4 devices, and across 2 processes.

JAX fixes its devices when it starts, so the 4-device runs are fresh Python processes
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`) that run this module
(`python -m tests.test_sharding`), assert that they really see 4 devices and that the work
really went to all 4, and save their results; the test compares them with one device's
results for the same keys, computed here. The multi-process run is 2 processes of 2 devices
each, joined by `jax.distributed.initialize` with a coordinator on localhost.

What "the same" means is the documented guarantee: `estimates` bit for bit;
`monte_carlo` bit for bit when `batches >= D`, and otherwise to float64 rounding of another
order of addition (the bound of `monte_carlo`'s docstring, below).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit.core.sharding import check_devices, gather
from snrkit.data import load_digits
from snrkit.nets import mlp

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 4
NUM_SAMPLES = 2001  # not a multiple of 4: the last chunk is partial and a device's last run short
CHUNK = 97
TIMEOUT = 180


def _key(seed: int) -> jax.Array:
    # tests.conftest.pinned_key, without importing the test configuration into the subprocesses
    return jax.random.key(seed, impl="threefry2x32")


def _laws() -> dict[str, sk.Law]:
    grad = jnp.asarray(np.random.default_rng(0).standard_normal(300), jnp.float32)
    return {
        "forward": sk.ForwardGradient(directions=2).given(grad),
        "partitioned": sk.Partitioned(blocks=3, probe="rademacher", directions=2).given(grad),
    }


def _real_problem() -> tuple:
    """A small MLP on 128 digits: `(loss_fn, params, x, y)`."""
    digits = load_digits()
    net = mlp((64, 16, 10))
    x = jnp.asarray(digits.images[:128].reshape(128, -1))
    return net.loss, net.init(_key(1)), x, jnp.asarray(digits.labels[:128])


def compute(devices: list[jax.Device] | None, *, mlp_estimates: bool = True) -> dict[str, np.ndarray]:
    """Every result compared, flat, by name: moments for 1 batch (< D) and 8 batches (>= D), and real estimates."""
    out = {}
    for name, law in _laws().items():
        for batches in (1, 8):
            m = sk.monte_carlo(law, _key(7), NUM_SAMPLES, CHUNK, batches=batches, devices=devices)
            for field in ("mean", "var", "fourth_moment", "batch_means", "batch_vars"):
                out[f"{name}/{batches}/{field}"] = m.flat(field)
    if mlp_estimates:
        loss_fn, params, x, y = _real_problem()
        # 48 = 9 blocks of 5 (3 to a device) and a remainder of 3
        real = sk.ForwardGradient().estimates(_key(3), 48, loss_fn, params, x, y, batch_size=5, devices=devices)
        _check_split(real, devices)
        leaves = jax.tree_util.tree_leaves(real)
        out["estimates"] = np.concatenate([np.asarray(leaf).reshape(48, -1) for leaf in leaves], axis=1)
    # a bare array and a loss whose JVP multiplies the (per-device) tangent by a shared value,
    # and which branches on a Python flag (never traced, also under shard_map); 8 blocks of 6
    w, x = jnp.linspace(-1.0, 1.0, 50), jnp.ones((8, 50))
    bare = sk.Partitioned(blocks=2).estimates(_key(4), 48, _tanh_loss, w, x, True, batch_size=6, devices=devices)
    _check_split(bare, devices)
    out["estimates/bare"] = gather(bare)  # every process reads every estimate
    return out


def _tanh_loss(w: jax.Array, x: jax.Array, squash: bool) -> jax.Array:
    return jnp.sum(jnp.tanh(x @ w) if squash else x @ w)


def _check_split(tree: object, devices: list[jax.Device] | None) -> None:
    """On every device (`devices=None`, several of them), the estimates lie split over all, 12 to a device."""
    if devices is not None or jax.device_count() == 1:
        return
    for leaf in jax.tree_util.tree_leaves(tree):
        assert len(leaf.sharding.device_set) == jax.device_count(), leaf.sharding
        assert leaf.sharding.spec == jax.sharding.PartitionSpec("samples"), leaf.sharding
        assert {shard.data.shape[0] for shard in leaf.addressable_shards} == {48 // jax.device_count()}


def _record_sharded_steps() -> list[int]:
    """Wrap monte_carlo's sharded step: the number of devices each step's sums span, one entry a step."""
    import snrkit.montecarlo as mc

    spans: list[int] = []
    step = mc._accumulate_sharded

    def recorded(*args: object) -> tuple:
        state = step(*args)
        spans.extend(len(s.sharding.device_set) for s in state)
        return state

    mc._accumulate_sharded = recorded
    return spans


def main(argv: list[str]) -> None:
    """The subprocess: `python -m tests.test_sharding OUT.npz [PROCESS_ID NUM_PROCESSES PORT]`."""
    out, rest = argv[0], argv[1:]
    if rest:
        process_id, num_processes, port = map(int, rest)
        jax.distributed.initialize(
            coordinator_address=f"localhost:{port}", num_processes=num_processes, process_id=process_id
        )
        assert jax.process_count() == num_processes and jax.local_device_count() == DEVICES // num_processes
    assert jax.device_count() == DEVICES, jax.devices()
    spans = _record_sharded_steps()
    results = compute(None, mlp_estimates=not rest)  # the MLP's compile is left to the 4-device run
    assert spans and set(spans) == {DEVICES}, spans  # every step's sums lie on all 4 devices
    np.savez(out, **results)
    if rest:
        jax.distributed.shutdown()


def _env(devices_per_process: int) -> dict[str, str]:
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def _start(out: Path, devices_per_process: int, *rest: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_sharding", str(out), *map(str, rest)],
        cwd=ROOT, env=_env(devices_per_process), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(process: subprocess.Popen, out: Path) -> dict[str, np.ndarray]:
    try:
        log, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        log, _ = process.communicate()
        pytest.fail(f"{process.args} ran past {TIMEOUT} s:\n{log[-4000:]}")
    assert process.returncode == 0, f"{process.args} failed:\n{log[-4000:]}"
    with np.load(out) as saved:
        return dict(saved)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, object]:
    """Every result: the 4-device process and the 2 joined processes run while this one computes one device's."""
    folder = tmp_path_factory.mktemp("sharding")
    port = _free_port()
    outs = {"four": folder / "four.npz", "process0": folder / "process0.npz", "process1": folder / "process1.npz"}
    started = {
        "four": _start(outs["four"], DEVICES),
        **{f"process{i}": _start(outs[f"process{i}"], DEVICES // 2, i, 2, port) for i in range(2)},
    }
    one = compute(jax.devices()[:1])
    return {"one": one, **{name: _finish(process, outs[name]) for name, process in started.items()}}


def assert_same_as_one_device(result: dict[str, np.ndarray], one: dict[str, np.ndarray]) -> None:
    """Bit for bit where `batches >= D` and for the estimates; else within float64 rounding of another order.

    Summing the same N float64 terms t_s in another order moves the sum by at most
    2Nε Σ|t_s| (ε = 2^-52). For the power sums of deviations d_s from the law's mean that
    bounds the mean's change by 2Nε·rms(d) ≤ 2Nε·√var (the mean deviation is far below √var)
    and the variance's and fourth moment's relative change by about 4Nε; the test allows twice.
    """
    tol = 8 * NUM_SAMPLES * np.finfo(np.float64).eps
    for name, expected in one.items():
        if name not in result:
            continue
        got = result[name]
        if name.startswith("estimates") or "/8/" in name:
            np.testing.assert_array_equal(got, expected, err_msg=name)
        elif name.endswith(("mean", "means")):
            scale = np.sqrt(one[name.replace("mean", "var")])
            np.testing.assert_array_less(np.abs(got - expected), tol * scale + 1e-300, err_msg=name)
        else:
            np.testing.assert_allclose(got, expected, rtol=tol, atol=0, err_msg=name)
        assert got.dtype == np.float64 or name.startswith("estimates"), name


def test_four_devices_give_one_devices_results(runs):
    """monte_carlo (ForwardGradient, Partitioned; 1 and 8 batches) and estimates on a real MLP,
    on 4 devices in one process: one device's results, and not by accident of one device (the
    subprocess asserts that it saw 4 devices and that every step spanned all 4)."""
    assert set(runs["four"]) == set(runs["one"])
    assert_same_as_one_device(runs["four"], runs["one"])


def test_two_processes_give_one_process_results(runs):
    """jax.distributed on this machine: 2 processes of 2 devices each, coordinator on localhost.
    Both get the same results, bit for bit those of one process with 4 devices, and one
    device's within the guarantee."""
    assert set(runs["process0"]) == set(runs["one"]) - {"estimates"}
    for name in runs["process0"]:
        np.testing.assert_array_equal(runs["process0"][name], runs["process1"][name], err_msg=name)
        np.testing.assert_array_equal(runs["process0"][name], runs["four"][name], err_msg=name)
    assert_same_as_one_device(runs["process0"], runs["one"])


def test_devices_argument_is_checked():
    law = _laws()["forward"]
    with pytest.raises(ValueError, match=r"devices is empty.*jax.devices\(\)\[:1\]"):
        sk.monte_carlo(law, _key(0), 10, devices=[])
    with pytest.raises(TypeError, match=r"devices must be a sequence of jax.Device, got one device; pass devices=\[device\]"):
        sk.monte_carlo(law, _key(0), 10, devices=jax.devices()[0])
    with pytest.raises(TypeError, match=r"devices must hold jax.Device objects"):
        sk.ForwardGradient().estimates(_key(0), 4, lambda w: jnp.sum(w), jnp.ones(2), devices=[0])
    with pytest.raises(ValueError, match=r"names a device more than once"):
        check_devices(jax.devices()[:1] * 2)


if __name__ == "__main__":
    main(sys.argv[1:])
