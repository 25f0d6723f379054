"""The unrolled threefry: the published hash, and every draw bit for bit that of JAX's threefry key."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit.core import threefry
from snrkit.core.threefry import rolled, threefry2x32, unrolled
from snrkit.core.tree import sample_key

# Known answers of Threefry-2x32 with 20 rounds, from the authors' Random123 distribution
# (kat_vectors): key, counter, result, each as two 32-bit words.
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.mark.parametrize(("key", "counter", "expected"), KNOWN_ANSWERS)
def test_the_hash_gives_the_published_answers(key, counter, expected):
    words = threefry2x32(np.array(key, np.uint32), np.array([counter[0]], np.uint32), np.array([counter[1]], np.uint32))
    assert tuple(int(w[0]) for w in words) == expected


DRAWS = {
    "normal float32": lambda k, s: jax.random.normal(k, s),
    "normal bfloat16": lambda k, s: jax.random.normal(k, s, jnp.bfloat16),
    "uniform float32": lambda k, s: jax.random.uniform(k, s, minval=-3.0, maxval=2.0),
    "bits uint32": lambda k, s: jax.random.bits(k, s, jnp.uint32),
    "bits uint8": lambda k, s: jax.random.bits(k, s, jnp.uint8),
    "bits uint16": lambda k, s: jax.random.bits(k, s, jnp.uint16),
    "bernoulli": lambda k, s: jax.random.bernoulli(k, 0.3, s),
}
SHAPES = [(), (0,), (1,), (7,), (3, 1000), (2, 3, 5), (3, 0)]


@pytest.mark.parametrize("draw", DRAWS)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_draw_is_jaxs_bit_for_bit(draw, shape):
    key = jax.random.fold_in(jax.random.key(123), 45)
    expected = DRAWS[draw](key, shape)
    found = DRAWS[draw](unrolled(key), shape)
    assert found.dtype == expected.dtype
    np.testing.assert_array_equal(np.asarray(found), np.asarray(expected))
    jitted = jax.jit(lambda k: DRAWS[draw](unrolled(k), shape))(key)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(expected))


def test_the_unrolled_hash_is_what_draws():
    # the draw tests above would pass on JAX's own bits too: the unrolled key must not call JAX's hash
    key = jax.random.key(1)
    draw = jax.jit(lambda k: jax.random.normal(k, (5,)))
    assert "threefry2x32" in draw.lower(key).as_text()
    assert "threefry2x32" not in draw.lower(unrolled(key)).as_text()


def test_draws_too_large_to_count_or_of_symbolic_shape_use_jaxs_bits(monkeypatch):
    key = jax.random.key(6)
    monkeypatch.setattr(threefry, "MAX_ENTRIES", 16)  # stands for 2**32: the high counter word would be needed
    draw = jax.jit(lambda k: jax.random.normal(k, (20,)))
    assert "threefry2x32" in draw.lower(unrolled(key)).as_text()
    np.testing.assert_array_equal(np.asarray(draw(unrolled(key))), np.asarray(draw(key)))
    monkeypatch.undo()
    # jax.export with a symbolic dimension: no size to count to, so JAX's bits, and no error
    shape = jax.ShapeDtypeStruct(jax.export.symbolic_shape("n"), jnp.float32)
    exported = jax.export.export(jax.jit(lambda k, x: jax.random.normal(unrolled(k), x.shape)))(key, shape)
    np.testing.assert_array_equal(np.asarray(exported.call(key, jnp.zeros(9))),
                                  np.asarray(jax.random.normal(key, (9,))))


def test_float64_draws_use_64_bit_words_like_jax():
    key = jax.random.key(9)
    with jax.enable_x64(True):
        for draw in (lambda k: jax.random.normal(k, (4, 33), jnp.float64), lambda k: jax.random.bits(k, (17,), jnp.uint64)):
            np.testing.assert_array_equal(np.asarray(draw(unrolled(key))), np.asarray(draw(key)))


def test_without_partitionable_counters_jaxs_own_bits_are_used():
    key = jax.random.key(3)
    with jax.threefry_partitionable(False):
        expected = jax.random.normal(key, (5, 8))
        found = jax.random.normal(unrolled(key), (5, 8))
    np.testing.assert_array_equal(np.asarray(found), np.asarray(expected))


def test_split_and_fold_in_keep_the_key_data():
    key = jax.random.key(5)
    fast = unrolled(key)
    np.testing.assert_array_equal(jax.random.key_data(jax.random.split(fast, 3)),
                                  jax.random.key_data(jax.random.split(key, 3)))
    np.testing.assert_array_equal(jax.random.key_data(jax.random.fold_in(fast, 8)),
                                  jax.random.key_data(jax.random.fold_in(key, 8)))


def test_raw_keys_are_read_as_threefry_and_other_implementations_left_alone():
    raw = jax.random.PRNGKey(2)
    np.testing.assert_array_equal(np.asarray(jax.random.normal(unrolled(raw), (6,))),
                                  np.asarray(jax.random.normal(raw, (6,))))
    rbg = jax.random.key(2, impl="rbg")
    assert unrolled(rbg) is rbg and rolled(rbg) is rbg and rolled(raw) is raw
    typed = jax.random.key(2)
    assert rolled(typed) is typed
    np.testing.assert_array_equal(np.asarray(jax.random.bits(rolled(unrolled(typed)), (9,))),
                                  np.asarray(jax.random.bits(typed, (9,))))


@pytest.mark.parametrize(
    "estimator",
    [sk.ForwardGradient("gaussian", directions=2), sk.ForwardGradient("rademacher"), sk.ForwardGradient("uniform"),
     sk.Partitioned(2, probe="gaussian"), sk.OrthogonalFrames(2)],
    ids=str,
)
def test_the_probes_of_a_sample_are_those_of_its_folded_jax_key(estimator):
    # what sample_key promises: the probes of sample i are drawn from fold_in(key, i), whatever the implementation
    grad = jnp.arange(1.0, 12.0)
    spec = estimator.given(grad).sampler
    key = jax.random.key(17)
    for index in (0, 5):
        found = spec.draw({}, sample_key(key, index), grad.size, grad.dtype)
        expected = spec.draw({}, jax.random.fold_in(key, index), grad.size, grad.dtype)
        np.testing.assert_array_equal(np.asarray(found), np.asarray(expected))


ODD = threefry.ODD_DRAW_MIN + 1


@pytest.mark.parametrize("shape", [(ODD,), (1, ODD), (1, 1, ODD + 2), (3, ODD), (ODD + 1,), (1, 7), (ODD, 3)])
@pytest.mark.parametrize("make_key", [lambda: unrolled(jax.random.key(4)), lambda: jax.random.key(4),
                                      lambda: jax.random.PRNGKey(4), lambda: jax.random.key(4, impl="rbg")],
                         ids=["unrolled", "threefry", "raw", "rbg"])
def test_normal_draws_jaxs_normals_bit_for_bit(shape, make_key):
    """Odd vectors drawn as two rows and cut: the same values, jitted, vmapped, and in float64."""
    key = make_key()
    np.testing.assert_array_equal(np.asarray(jax.jit(threefry.normal, static_argnums=(1, 2))(key, shape, jnp.float32)),
                                  np.asarray(jax.random.normal(key, shape)))
    keys = jax.random.split(key, 2)
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda k: threefry.normal(k, shape, jnp.float32))(keys)),
                                  np.asarray(jax.vmap(lambda k: jax.random.normal(k, shape))(keys)))
    with jax.enable_x64(True):
        np.testing.assert_array_equal(np.asarray(threefry.normal(key, shape, jnp.float64)),
                                      np.asarray(jax.random.normal(key, shape, jnp.float64)))


def test_normal_takes_the_two_row_path_only_for_long_odd_vectors_of_c_ordered_keys():
    """The `cond` that keeps XLA CPU off its slow odd-length loop is there exactly where it is needed and valid."""
    def has_cond(key, shape):
        jaxpr = jax.make_jaxpr(lambda k: threefry.normal(k, shape, jnp.float32))(key)
        return any(eqn.primitive.name == "cond" for eqn in jaxpr.jaxpr.eqns)

    key = unrolled(jax.random.key(0))
    assert has_cond(key, (ODD,)) and has_cond(key, (1, ODD)) and has_cond(jax.random.key(0), (ODD,))
    assert not any(has_cond(key, shape) for shape in [(ODD + 1,), (3, ODD), (threefry.ODD_DRAW_MIN - 1,)])
    assert not has_cond(jax.random.key(0, impl="rbg"), (ODD,))  # other generators do not number entries in C order
    with jax.threefry_partitionable(False):
        assert not has_cond(key, (ODD,))
