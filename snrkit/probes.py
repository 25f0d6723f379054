r"""Probe distributions: iid entries with mean 0 and variance 1.

A forward gradient multiplies the directional derivative :math:`\nabla\cdot v` by the probe
:math:`v`. Its exact law depends on the probe only through the even moments of one entry,
:math:`m_{2p} = \mathbb{E}[v^{2p}]`: the variance through the kurtosis
:math:`\kappa = m_4`, the variance of the variance through :math:`m_6` and :math:`m_8`.

===============  ==========================  =========  =========  =========
name             entry                       m4 (κ)     m6         m8
===============  ==========================  =========  =========  =========
``gaussian``     :math:`\mathcal N(0,1)`     3          15         105
``rademacher``   :math:`\pm 1` w.p. 1/2      1          1          1
``uniform``      :math:`U(-\sqrt3, \sqrt3)`  9/5        27/7       9
===============  ==========================  =========  =========  =========

The uniform probe is not used by the papers; it is here because its kurtosis lies between
the other two, so the general-κ formulas are tested at a third point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

Sampler = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


@dataclass(frozen=True)
class Probe:
    """One probe distribution: a sampler and the even moments of one entry.

    Entries must be iid, symmetric about 0 (odd moments vanish: the fourth-moment formula
    uses it) and of variance 1; ``m4``, ``m6``, ``m8`` are their even moments.

    Attributes:
        name: registry name.
        m4: :math:`\\mathbb{E}[v^4]`, the kurtosis :math:`\\kappa` (the variance is 1).
        m6: :math:`\\mathbb{E}[v^6]`.
        m8: :math:`\\mathbb{E}[v^8]`.
        sampler: ``sampler(key, shape, dtype)`` draws iid entries.
    """

    name: str
    m4: float
    m6: float
    m8: float
    # Part of equality and hash: a Probe keys compiled samplers, so two probes with the same
    # name and moments but different samplers must not share one.
    sampler: Sampler = field(repr=False)

    def __post_init__(self) -> None:
        # Even moments of a variance-1 distribution grow: m4 ≥ 1 and m_{2p+2} ≥ m_{2p} (Lyapunov).
        if not (1.0 <= self.m4 <= self.m6 <= self.m8) or not all(map(math.isfinite, (self.m4, self.m6, self.m8))):
            raise ValueError(
                f"probe {self.name!r}: even moments m4={self.m4}, m6={self.m6}, m8={self.m8} are not those of "
                f"a distribution with variance 1 (need 1 <= m4 <= m6 <= m8, finite)"
            )

    @property
    def kurtosis(self) -> float:
        """:math:`\\kappa = \\mathbb{E}[v^4]`."""
        return self.m4

    def sample(self, key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        """Draw an array of iid probe entries."""
        return self.sampler(key, shape, dtype)


def _gaussian(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    return jax.random.normal(key, shape, dtype)


def _rademacher(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    # From explicit 32-bit words: jax.random.rademacher draws in the default float dtype,
    # so it changes with x64 and Monte Carlo (which enables x64) would see other probes.
    sign_bit = jax.random.bits(key, shape, jnp.uint32) >> 31
    return (2 * sign_bit.astype(dtype) - 1).astype(dtype)


_SQRT3 = math.sqrt(3.0)


def _uniform(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, minval=-_SQRT3, maxval=_SQRT3)


PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe("gaussian", 3.0, 15.0, 105.0, _gaussian),
        Probe("rademacher", 1.0, 1.0, 1.0, _rademacher),
        Probe("uniform", 9.0 / 5.0, 27.0 / 7.0, 9.0, _uniform),
    )
}


def get_probe(probe: str | Probe) -> Probe:
    """Look a probe up by name (or pass a :class:`Probe` through).

    Raises:
        ValueError: the name is unknown; the message lists the known ones.
        TypeError: ``probe`` is neither a string nor a :class:`Probe`.
    """
    if isinstance(probe, Probe):
        return probe
    if not isinstance(probe, str):
        raise TypeError(f"probe must be a name such as 'gaussian' or a snrkit.probes.Probe, got {type(probe).__name__}")
    try:
        return PROBES[probe.lower()]
    except KeyError:
        known = ", ".join(repr(k) for k in PROBES)
        raise ValueError(f"unknown probe {probe!r}; choose one of {known}") from None
