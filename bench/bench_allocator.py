"""What glibc's malloc thresholds cost a training step: the same step, in two fresh processes.

One process runs with glibc's defaults, the other calls
`snrkit.core.allocator.keep_freed_memory()` first (what snrkit's commands do). Each times
one jitted training step (a covariance-probe prior read from the stale gradient, the
estimator whose 11.6 MiB of temporaries showed the effect, and backprop as the control) of
the MLP 64-1024-1024-10 at batch 256, and prints the median time per call and the ratio of
the two processes.

    python bench/bench_allocator.py            # about a minute
    python bench/bench_allocator.py --quick    # a 256-wide MLP, seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = """
import json, sys, time
import jax, jax.numpy as jnp, numpy as np, optax
import snrkit as sk
from snrkit import cost, nets
from snrkit.core.allocator import keep_freed_memory
from snrkit.data import load_digits
from snrkit.families.covariance import stale_gradient

kept = sys.argv[1] == "kept" and keep_freed_memory()
widths, batch, repeats = json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
net, data = nets.mlp(widths), load_digits()
params = net.init(jax.random.key(0))
x, y = (jnp.asarray(a) for a in cost.batch_of(data, batch))
tx = optax.adam(1e-3)
args = (params, tx.init(params), jax.random.key(0), x, y, cost.stale_state(net, params, data, batch))
out = {"kept": kept}
for method in (cost.Method.backprop(), cost.Method.of(sk.CovarianceProbe.prior(stale_gradient, confidence=0.5))):
    step = jax.jit(cost.training_step(method, net.loss, tx))
    jax.block_until_ready(step(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(*args))
        times.append(time.perf_counter() - start)
    out[method.kind] = float(np.median(times))
print(json.dumps(out))
"""


def run(mode: str, widths: list[int], batch: int, repeats: int) -> dict:
    """One fresh process's medians: `{"kept": bool, "backprop": s, "estimator": s}`."""
    done = subprocess.run([sys.executable, "-c", CHILD, mode, json.dumps(widths), str(batch), str(repeats)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 64-256-256-10 MLP, 7 calls")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    widths, repeats = ([64, 256, 256, 10], 7) if args.quick else ([64, 1024, 1024, 10], args.repeats)
    print(f"malloc thresholds and one training step, MLP {'-'.join(map(str, widths))}, batch 256, "
          f"{time.strftime('%Y-%m-%d')}")
    default, kept = run("default", widths, 256, repeats), run("kept", widths, 256, repeats)
    if not kept["kept"]:
        print("  this C library is not glibc: keep_freed_memory() changes nothing here")
    for kind, name in (("backprop", "backprop"), ("estimator", "covariance prior")):
        print(f"  {name:17s} glibc defaults {1e3 * default[kind]:7.1f} ms   blocks kept {1e3 * kept[kind]:7.1f} ms"
              f"   ratio {default[kind] / kept[kind]:5.2f}")


if __name__ == "__main__":
    main()
