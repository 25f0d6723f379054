r"""Probe distributions: iid entries with mean 0 and variance 1.

A forward gradient multiplies the directional derivative $\nabla\cdot v$ by the probe
$v$. Its exact law depends on the probe only through the even moments of one entry,
$m_{2p} = \mathbb{E}[v^{2p}]$: the variance through the kurtosis $\kappa = m_4$, the
variance of the variance through $m_6$ and $m_8$.

| name | entry | $m_4$ ($\kappa$) | $m_6$ | $m_8$ |
| --- | --- | --- | --- | --- |
| `gaussian` | $\mathcal N(0,1)$ | 3 | 15 | 105 |
| `rademacher` | $\pm 1$ with probability 1/2 each (32 per random word) | 1 | 1 | 1 |
| `uniform` | $U(-\sqrt3, \sqrt3)$ | 9/5 | 27/7 | 9 |

These are the standard moments: $(2p-1)!!$ for the Gaussian, $1$ for a sign,
$3^p/(2p+1)$ for the uniform. The Gaussian probe is the one of Baydin et al. (2022),
"Gradients without backpropagation". The Rademacher probe has the smallest kurtosis of any
variance-1 entry ($m_4 \ge m_2^2 = 1$), and with it the smallest variance,
$\sum_{j\ne i}\nabla_j^2$. The uniform probe is not used by the papers; it is here because
its kurtosis lies between the other two, so the general-$\kappa$ formulas are tested at a
third point.

Examples:
    >>> from snrkit.probes import PROBES
    >>> [(p.name, p.kurtosis) for p in PROBES.values()]
    [('gaussian', 3.0), ('rademacher', 1.0), ('uniform', 1.8)]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.precision import wide_dtype
from snrkit.core.threefry import normal, rolled

Sampler = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]
"""`sampler(key, shape, dtype)`: an array of `shape` with iid probe entries."""


@dataclass(frozen=True)
class Probe:
    r"""One probe distribution: a sampler and the even moments of one entry.

    Entries must be iid, symmetric about 0 (odd moments vanish: the fourth-moment formula
    uses it) and of variance 1; `m4`, `m6`, `m8` are their even moments. The moments are
    checked for consistency ($1 \le m_4 \le m_6 \le m_8$, as for any variance-1
    distribution), not against the sampler.

    Attributes:
        name: registry name.
        m4: $\mathbb{E}[v^4]$, the kurtosis $\kappa$ (the variance is 1).
        m6: $\mathbb{E}[v^6]$.
        m8: $\mathbb{E}[v^8]$.
        sampler: `sampler(key, shape, dtype)` draws iid entries.

    Examples:
        A probe of your own, here $\pm 1$ signs built from a Bernoulli draw:

        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> from snrkit.probes import Probe
        >>> def signs(key, shape, dtype):
        ...     return jnp.where(
        ...         jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0
        ...     ).astype(dtype)
        >>> probe = Probe("signs", m4=1.0, m6=1.0, m8=1.0, sampler=signs)
        >>> sk.ForwardGradient(probe=probe).given(
        ...     jnp.array([3.0, 4.0])
        ... ).var().tolist()
        [16.0, 9.0]
        >>> Probe("bad", m4=0.5, m6=1.0, m8=1.0, sampler=signs)
        Traceback (most recent call last):
        ...
        ValueError: probe 'bad': even moments m4=0.5, m6=1.0, m8=1.0 ...
    """

    name: str
    m4: float
    m6: float
    m8: float
    # Part of equality and hash: a Probe keys compiled samplers, so two probes with the same
    # name and moments but different samplers must not share one.
    sampler: Sampler = field(repr=False)
    checked: bool = field(default=True, repr=False, compare=False)
    """Check the sampler against the stated moments at construction (see `check_sampler`);
    the built-in probes, tested in the suite, skip it."""

    def __post_init__(self) -> None:
        # Even moments of a variance-1 distribution grow: m4 ≥ 1 and m_{2p+2} ≥ m_{2p} (Lyapunov).
        if not (1.0 <= self.m4 <= self.m6 <= self.m8) or not all(map(math.isfinite, (self.m4, self.m6, self.m8))):
            raise ValueError(
                f"probe {self.name!r}: even moments m4={self.m4}, m6={self.m6}, m8={self.m8} are not those of "
                f"a distribution with variance 1 (need 1 <= m4 <= m6 <= m8, finite)"
            )
        if not callable(self.sampler):
            raise TypeError(
                f"probe {self.name!r}: sampler must be a function sampler(key, shape, dtype) -> array of iid "
                f"entries, got {self.sampler!r}"
            )
        if self.checked:
            _check_sampler(self)

    @property
    def kurtosis(self) -> float:
        r"""The kurtosis $\kappa = \mathbb{E}[v^4] = m_4$ of one entry (its variance is 1).

        It is the only probe moment in the variance:
        $\operatorname{Var}[g_i] = \|\nabla\|^2 + (\kappa-2)\nabla_i^2$.

        Examples:
            >>> from snrkit.probes import get_probe
            >>> get_probe("gaussian").kurtosis, get_probe("rademacher").kurtosis
            (3.0, 1.0)
        """
        return self.m4

    def sample(self, key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        """Draw an array of iid probe entries.

        Args:
            key: a JAX key, e.g. `jax.random.key(0)`.
            shape: shape of the result.
            dtype: floating dtype of the result.

        Returns:
            An array of `shape` whose entries are iid draws of this probe.

        Examples:
            >>> import jax, numpy as np
            >>> from snrkit.probes import get_probe
            >>> v = get_probe("rademacher").sample(jax.random.key(0), (2, 3))
            >>> v.shape, set(np.asarray(v).ravel().tolist()) <= {-1.0, 1.0}
            ((2, 3), True)
        """
        return self.sampler(key, shape, dtype)


_CHECK_DRAWS = 1 << 16
_CHECK_SIGMAS = 8.0


def _check_sampler(probe: Probe) -> None:
    """Refuse a sampler whose draws contradict the stated moments (mean 0, variance 1, fourth moment m4)."""
    draws = probe.sampler(jax.random.key(0, impl="threefry2x32"), (_CHECK_DRAWS,), jnp.float32)
    if jnp.shape(draws) != (_CHECK_DRAWS,):
        raise ValueError(
            f"probe {probe.name!r}: sampler(key, ({_CHECK_DRAWS},), float32) returned shape {jnp.shape(draws)}; "
            f"it must return an array of the requested shape"
        )
    x = np.asarray(draws, np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"probe {probe.name!r}: the sampler drew NaN or inf")
    count = float(_CHECK_DRAWS)
    checks = (
        ("mean", x.mean(), 0.0, 1.0),
        ("variance", (x**2).mean(), 1.0, probe.m4 - 1.0),
        # The fourth-moment law needs a symmetric entry (odd moments 0) with the stated m6.
        ("third moment", (x**3).mean(), 0.0, probe.m6),
        ("fourth moment", (x**4).mean(), probe.m4, probe.m8 - probe.m4**2),
        ("sixth moment", (x**6).mean(), probe.m6, float((x**12).mean()) - probe.m6**2),
    )
    for what, found, stated, spread in checks:
        tolerance = _CHECK_SIGMAS * math.sqrt(max(spread, 0.0) / count) + 1e-5 * max(1.0, abs(stated))
        if abs(found - stated) > tolerance:
            raise ValueError(
                f"probe {probe.name!r}: its sampler draws entries of {what} {found:.4g}, but the stated moments "
                f"say {stated:g} (tolerance {tolerance:.2g} at {_CHECK_DRAWS} draws); fix the sampler or the moments "
                f"(a probe entry needs mean 0, variance 1 and fourth moment m4)"
            )


def _gaussian(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    # Drawn at least in float32: half-precision normals are clipped (see precision.wide_dtype).
    return normal(key, shape, wide_dtype(dtype)).astype(dtype)


_SIGNS_PER_WORD = 32


def _rademacher(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    # 32 signs from each random 32-bit word (entry j, in C order, is bit j % 32 of word
    # j // 32): the generator draws 1/32 of the words one sign per word needs, and signs
    # come out at the speed of a shift. Explicit words, not jax.random.rademacher, whose
    # draws change with the default float dtype (Monte Carlo enables x64). JAX's looped
    # hash: unrolled, XLA would fuse it into each of a word's 32 signs (core.threefry).
    size = math.prod(shape)
    words = jax.random.bits(rolled(key), (-(-size // _SIGNS_PER_WORD),), jnp.uint32)
    bits = (words[:, None] >> jnp.arange(_SIGNS_PER_WORD, dtype=jnp.uint32)) & 1
    return (1 - 2 * bits.reshape(-1)[:size].astype(dtype)).reshape(shape)


_SQRT3 = math.sqrt(3.0)


def _uniform(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    return jax.random.uniform(key, shape, wide_dtype(dtype), minval=-_SQRT3, maxval=_SQRT3).astype(dtype)


PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe("gaussian", 3.0, 15.0, 105.0, _gaussian, checked=False),
        Probe("rademacher", 1.0, 1.0, 1.0, _rademacher, checked=False),
        Probe("uniform", 9.0 / 5.0, 27.0 / 7.0, 9.0, _uniform, checked=False),
    )
}
"""The built-in probes by name: `"gaussian"`, `"rademacher"` and `"uniform"` (see the table above)."""


def get_probe(probe: str | Probe) -> Probe:
    """Look a probe up by name (or pass a [`Probe`][snrkit.probes.Probe] through).

    Args:
        probe: a name in [`PROBES`][snrkit.probes.PROBES] (case-insensitive) or a `Probe`.

    Returns:
        The `Probe`.

    Raises:
        ValueError: the name is unknown; the message lists the known ones.
        TypeError: `probe` is neither a string nor a `Probe`.

    Examples:
        >>> from snrkit.probes import get_probe
        >>> get_probe("Gaussian").m4, get_probe("Gaussian").m8
        (3.0, 105.0)
        >>> get_probe("normal")
        Traceback (most recent call last):
        ...
        ValueError: unknown probe 'normal'; choose one of 'gaussian', ...
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
