r"""JAX's threefry keys with their rounds unrolled: the same random bits, several times faster on a CPU.

JAX draws from a `threefry2x32` key by hashing counters with Threefry-2x32 (20 rounds;
Salmon, Moraes, Dror and Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3",
SC '11). On a CPU, JAX lowers the 20 rounds as a loop of five steps, and XLA writes
every step's two arrays of words to memory. Unrolled, the rounds fuse into one loop
over the counters. On a 2-core AMD EPYC this drew $10^7$ Gaussian normals 3.1 to 3.4
times faster (about 300 against 90 million a second; the Benchmarks page, "A faster
Gaussian"); elsewhere JAX already unrolls them.

[`unrolled`][snrkit.core.threefry.unrolled] gives a threefry key on an implementation
whose random bits are computed this way, bit for bit those of JAX's threefry. Only the
bits differ in code: `split`, `fold_in` and `seed` are JAX's own. So a draw from the key
(`jax.random.normal`, `uniform`, `bits`, `bernoulli`, … all go through these bits) gives
the same values as from the original key. JAX's own bits are used where JAX would not
count entries with partitionable counters (`jax_threefry_partitionable` off, or
$2^{32}$ entries or more), and for shapes that are not plain integers (`jax.export`'s
symbolic dimensions).
[`sample_key`][snrkit.core.tree.sample_key] hands such keys to every family's draw.

Fused, the hash is computed once per element of whatever consumes the bits. Where one
word feeds many entries (32 Rademacher signs per word) that repeats it for each; a draw
like that takes JAX's looped hash back with [`rolled`][snrkit.core.threefry.rolled], whose
words XLA writes out once.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from snrkit.core.threefry import unrolled
    >>> key = jax.random.key(0)
    >>> fast = jax.random.normal(unrolled(key), (1000,))
    >>> bool((fast == jax.random.normal(key, (1000,))).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import jax
import jax.extend.random as jax_random
import jax.numpy as jnp
import numpy as np

_JAX_THREEFRY = jax_random.threefry_prng_impl

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
"""Threefry-2x32's rotation constants: four rounds with the first, four with the second, in turn."""
_PARITY = np.uint32(0x1BD11BDA)
"""The key schedule's third word is `k0 ^ k1 ^ _PARITY` (Threefish's constant)."""
_BLOCKS = 5
"""20 rounds: the key is injected after each block of four."""


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
    return (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))


def threefry2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds of the counter pairs `(x0, x1)` under `key`, unrolled.

    Args:
        key: a key's data, two `uint32` words.
        x0: the counters' first words, `uint32`.
        x1: their second words, the shape of `x0`.

    Returns:
        The two hashed words of every counter.

    Examples:
        The first known-answer test of the algorithm's authors (Random123's `kat_vectors`):

        >>> import numpy as np
        >>> from snrkit.core.threefry import threefry2x32
        >>> key, zero = np.zeros(2, np.uint32), np.zeros(1, np.uint32)
        >>> [hex(int(w[0])) for w in threefry2x32(key, zero, zero)]
        ['0x6b200159', '0x99ba4efe']
    """
    words = (key[0], key[1], key[0] ^ key[1] ^ _PARITY)
    x0, x1 = x0 + words[0], x1 + words[1]
    for block in range(_BLOCKS):
        for bits in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, bits) ^ x0
        x0 = x0 + words[(block + 1) % 3]
        x1 = x1 + words[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


MAX_ENTRIES = 1 << 32
"""The most entries one unrolled draw counts; JAX's counter needs its high word past them."""


def _random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """What JAX's threefry `random_bits` returns, hashed by the unrolled `threefry2x32`."""
    concrete = all(isinstance(d, int) for d in shape)  # symbolic dimensions have no size to count to
    size = math.prod(shape) if concrete else MAX_ENTRIES
    if not jax.config.jax_threefry_partitionable or size >= MAX_ENTRIES:
        return _JAX_THREEFRY.random_bits(key, bit_width, shape)
    # JAX's partitionable counter of entry i (C order) is the pair (i >> 32, i & 0xffffffff)
    low = jax.lax.iota(jnp.uint32, size).reshape(shape)
    high, low = threefry2x32(key, jnp.zeros(shape, jnp.uint32), low)
    if bit_width == 64:
        return (high.astype(jnp.uint64) << np.uint64(32)) | low.astype(jnp.uint64)
    return (high ^ low).astype(jnp.dtype(f"uint{bit_width}"))


UNROLLED_THREEFRY = jax_random.define_prng_impl(
    key_shape=_JAX_THREEFRY.key_shape,
    seed=_JAX_THREEFRY.seed,
    split=_JAX_THREEFRY.split,
    random_bits=_random_bits,
    fold_in=_JAX_THREEFRY.fold_in,
    name="threefry2x32_unrolled",
    tag="tfu",
)
"""JAX's `threefry2x32` implementation with the unrolled hash for its random bits."""


def unrolled(key: jax.Array) -> jax.Array:
    """`key` on the unrolled implementation when it is a threefry key (typed, or raw `uint32`
    read as the default threefry); any other key as it is. It draws the same values.

    Examples:
        >>> import jax
        >>> from snrkit.core.threefry import unrolled
        >>> key = jax.random.key(0)
        >>> jax.random.key_impl(unrolled(key)) == jax.random.key_impl(key)
        False
        >>> rbg = jax.random.key(0, impl="rbg")
        >>> unrolled(rbg) is rbg
        True
    """
    return _moved(key, _JAX_THREEFRY.name, UNROLLED_THREEFRY)


def rolled(key: jax.Array) -> jax.Array:
    """`key` back on JAX's threefry when it is on the unrolled implementation; any other key as it is.

    For draws that read each random word many times, where the unrolled hash, fused into
    every reader, would be computed again for each. It draws the same values.

    Examples:
        >>> import jax
        >>> from snrkit.core.threefry import rolled, unrolled
        >>> key = jax.random.key(0)
        >>> jax.random.key_impl(rolled(unrolled(key))) == jax.random.key_impl(key)
        True
    """
    return _moved(key, UNROLLED_THREEFRY, _JAX_THREEFRY.name)


ODD_DRAW_MIN = 1 << 12
"""Fewest normals for which [`normal`][snrkit.core.threefry.normal] draws an odd-length vector as two rows."""


def normal(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    r"""`jax.random.normal(key, shape, dtype)`, bit for bit, without XLA CPU's slow path for odd lengths.

    XLA's CPU code runs an elementwise fusion of transcendental functions (the normals'
    $\operatorname{erf}^{-1}$) 5 to 8 times slower per entry over a vector of odd length,
    alone or behind leading axes of length 1, than over one of even length or a matrix of
    several rows: $1.1\cdot10^6$ normals took 21 ms against 2.6 ms for one more (a 2-core
    AMD EPYC, JAX 0.10.2). So a draw of that shape, at least `ODD_DRAW_MIN` long, is
    made as two rows of $\lceil m/2\rceil$ and cut back to $m$: the same values, since
    partitionable threefry numbers the entries in C order. The rows are drawn inside a
    `lax.cond` whose two branches are the same draw, which XLA does not fuse into the cut
    (a fused cut would run the odd loop again); its predicate only keeps the `cond`, and
    must not be one XLA can fold to a constant. Other backends draw as JAX does.

    Args:
        key: a JAX key.
        shape: the shape of the draw.
        dtype: a floating dtype.

    Returns:
        The normals, shape `shape`.

    Examples:
        >>> import jax
        >>> from snrkit.core.threefry import normal
        >>> key = jax.random.key(0)
        >>> fast = normal(key, (1, 5001), jax.numpy.float32)
        >>> bool((fast == jax.random.normal(key, (1, 5001))).all())
        True
    """
    size = math.prod(shape) if all(isinstance(d, int) for d in shape) else 0
    typed, implementation = _implementation(key)
    numbered_in_c_order = jax.config.jax_threefry_partitionable and implementation in (
        UNROLLED_THREEFRY, _JAX_THREEFRY.name, _JAX_THREEFRY)
    if size % 2 == 0 or size < ODD_DRAW_MIN or sum(d > 1 for d in shape) != 1 or not numbered_in_c_order:
        return jax.random.normal(key, shape, dtype)

    def rows(key: jax.Array) -> jax.Array:
        return jax.random.normal(key, (2, (size + 1) // 2), dtype)

    def two_rows(key: jax.Array) -> jax.Array:
        data = jax.random.key_data(key) if typed else key
        either = data.reshape(-1)[0] != 0  # both branches draw the same: any predicate XLA cannot fold will do
        return jax.lax.cond(either, rows, rows, key).reshape(-1)[:size].reshape(shape)

    # only XLA's CPU code has the slow path; elsewhere a cond may cost a sync with the host
    return jax.lax.platform_dependent(key, cpu=two_rows, default=lambda key: jax.random.normal(key, shape, dtype))


def _implementation(key: jax.Array) -> tuple[bool, Any]:
    """`(typed, implementation)` of a key: a raw `uint32` key is on JAX's default implementation."""
    typed = bool(jnp.issubdtype(key.dtype, jax.dtypes.prng_key))
    return typed, jax.random.key_impl(key) if typed else jax.config.jax_default_prng_impl


def _moved(key: jax.Array, source: str | Hashable, target: str | Hashable) -> jax.Array:
    """`key`'s data on implementation `target` when `key` is on `source` (a raw key is on JAX's default)."""
    typed, implementation = _implementation(key)
    if implementation != source:
        return key
    return jax.random.wrap_key_data(jax.random.key_data(key) if typed else key, impl=target)
