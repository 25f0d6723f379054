"""Moments are computed in float64 and returned in the narrowest float type that holds them.

A law's moments are squares and fourth powers of the gradient: a float16 gradient of
entries 20 has variances above float16's largest value (65504), and one of entries
$10^{-4}$ has variances below its smallest normal number, where float16 keeps two digits
or none. snrkit therefore computes every moment in float64 and returns it in the
gradient's dtype only when every value fits there (finite values stay finite, non-zero
values stay normal numbers); otherwise in float32, and otherwise in float64 (a JAX array
created with x64 enabled for that step only). Ratios such as the SNR are formed in float64
before the cast, so a ratio of two tiny numbers is exact even when the numbers are not
representable in the gradient's dtype.

Examples:
    >>> import jax.numpy as jnp, snrkit as sk
    >>> law = sk.ForwardGradient().given(jnp.full(300, 20.0, jnp.float16))
    >>> law.var().dtype, float(law.var()[0])  # 300·400 + 400 overflows float16
    (dtype('float32'), 120400.0)
    >>> law.snr().dtype  # 400/120400 fits float16
    dtype('float16')
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

# Widening order of the candidate result types.
_LADDER = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)


def fit(x64: jax.Array, preferred: jnp.dtype) -> jax.Array:
    """`x64` in `preferred` if every value fits there, else in the next wider float type that holds it.

    Args:
        x64: values computed in float64.
        preferred: the dtype to return them in when they fit (the gradient's).

    Returns:
        The values, cast to the first of `preferred`, float32, float64 in which finite
        values stay finite and non-zero values are at least the type's smallest normal number.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.core.precision import fit
        >>> with jax.enable_x64(True):
        ...     x = jnp.array([1e-6, 3.0], jnp.float64)
        >>> fit(x, jnp.float16).dtype, fit(x, jnp.float32).dtype
        (dtype('float32'), dtype('float32'))
    """
    preferred = jnp.dtype(preferred)
    candidates = [preferred] + [jnp.dtype(t) for t in _LADDER if jnp.dtype(t).itemsize > preferred.itemsize]
    if jnp.dtype(jnp.float32) not in candidates and preferred.itemsize < 4:
        candidates.append(jnp.dtype(jnp.float32))
    with jax.enable_x64(True):
        x64 = jnp.asarray(x64, jnp.float64)
        for dtype in candidates:
            if dtype == jnp.float64:
                return x64
            cast, fits = _cast_if_fits(x64, dtype)
            if bool(fits):
                return cast
    raise AssertionError("unreachable: float64 always fits")  # pragma: no cover


def wide_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """The dtype random draws and factorisations run in: the gradient's, but at least float32.

    Half-precision normals are clipped and coarse (JAX's bfloat16 normal never exceeds 2.9),
    so probes drawn in them would not have the moments the laws assume; they are drawn wide
    and rounded to the gradient's dtype instead.

    Examples:
        >>> import jax.numpy as jnp
        >>> from snrkit.core.precision import wide_dtype
        >>> wide_dtype(jnp.bfloat16), wide_dtype(jnp.float32)
        (dtype('float32'), dtype('float32'))
    """
    return jnp.promote_types(dtype, jnp.float32)


@partial(jax.jit, static_argnums=1)
def _cast_if_fits(x: jax.Array, dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
    """`x` cast to `dtype`, and whether every value fits there: one pass over `x`, not two."""
    info = jnp.finfo(dtype)
    finite = jnp.isfinite(x)
    magnitude = jnp.abs(x)
    in_range = (magnitude <= info.max) & ((magnitude >= info.tiny) | (x == 0))
    return x.astype(dtype), jnp.all(~finite | in_range)
