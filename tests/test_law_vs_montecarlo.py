"""Property tests: the exact law agrees with Monte Carlo of its own samples.

Budget (TESTING.md): false failure ≤ 1e-6 per test function, split evenly over its
examples and over the two comparisons (mean, variance) of each. The comparison is the
distribution-free median-of-batches test of snrkit.stats with the law's exact noise, so
the bound holds at these finite sample sizes, not only asymptotically. Keys are derived
from the example, never drawn by hypothesis.
"""

from __future__ import annotations

import zlib

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import snrkit as sk
from tests.conftest import TEST_ALPHA, pinned_key
from tests.reference import three_point_probe

MAX_EXAMPLES = 16
ALPHA = TEST_ALPHA / (2 * MAX_EXAMPLES)
BATCHES, BATCH_SIZE = 32, 512

# A few fixed structures (each new shape is a compile): flat, dict of mixed shapes, nested list/tuple.
STRUCTURES = {
    "flat": lambda x: jnp.asarray(x[:6]),
    "dict": lambda x: {"w": jnp.asarray(x[:6]).reshape(2, 3), "b": jnp.asarray(x[6:8])},
    "nested": lambda x: [jnp.asarray(x[:2]), (jnp.asarray(x[2:6]).reshape(2, 2, 1), {"s": jnp.asarray(x[6])})],
}
PROBES = {"gaussian": "gaussian", "rademacher": "rademacher", "uniform": "uniform", "three-point": three_point_probe(0.25)}

entry = st.one_of(
    st.just(0.0),
    st.floats(1e-2, 4.0).flatmap(lambda a: st.sampled_from([a, -a])),
)


@st.composite
def cases(draw):
    values = np.array(draw(st.lists(entry, min_size=8, max_size=8)), np.float32)
    structure = draw(st.sampled_from(sorted(STRUCTURES)))
    probe = draw(st.sampled_from(sorted(PROBES)))
    directions = draw(st.sampled_from([1, 3]))
    kind = draw(st.sampled_from(["forward", "blocks-int", "blocks-leaves", "blocks-explicit"]))
    grad = STRUCTURES[structure](values)
    n = int(sum(np.size(v) for v in __import__("jax").tree_util.tree_leaves(grad)))
    if kind == "forward":
        est = sk.ForwardGradient(PROBES[probe], directions)
    elif kind == "blocks-int":
        est = sk.Partitioned(draw(st.sampled_from([2, 3])), PROBES[probe], directions)
    elif kind == "blocks-leaves":
        est = sk.Partitioned("leaves", PROBES[probe], directions)
    else:
        ids = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
        est = sk.Partitioned(ids, PROBES[probe], directions)
    return grad, est, (structure, probe, directions, kind, values.tobytes())


@settings(max_examples=MAX_EXAMPLES)
@given(cases())
def test_exact_law_matches_monte_carlo(case):
    """Mean and per-coordinate variance of the law hold against 16384 of its samples."""
    grad, est, label = case
    law = est.given(grad)
    key = pinned_key(zlib.crc32(repr(label).encode()))
    m = sk.monte_carlo(law, key, BATCHES * BATCH_SIZE, batches=BATCHES)
    var = sk.stats.compare_variance(m, law, alpha=ALPHA)
    mean = sk.stats.compare_mean(m, law, alpha=ALPHA)
    assert var.holds, f"{est}: {var}"
    assert mean.holds, f"{est}: {mean}"
