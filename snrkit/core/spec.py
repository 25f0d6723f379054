r"""How one estimate is drawn: probes, the tangents pushed forward, and how their derivatives combine.

Every estimator snrkit knows is linear in $J$ directional derivatives: it draws probes
from the key of the sample, pushes $J$ tangents $t_1,\dots,t_J$ forward (one JVP each),
and combines the derivatives $s_j = \nabla\cdot t_j$ into the estimate. A
[`ProbeSpec`][snrkit.core.spec.ProbeSpec] describes those three steps once, for both paths:

- the **real estimator** ([`Estimator.estimates`][snrkit.core.estimator.Estimator.estimates])
  gets $s_j$ from `jax.jvp` of the loss;
- the **law's sampler** ([`Law.sample`][snrkit.core.law.Law.sample]) gets $s_j$ from the
  known gradient, $s_j = t_j\cdot\nabla$.

Both draw the probes of sample $i$ from `fold_in(key, i)` with the same `draw`, which is
why estimate $i$ of the real estimator equals sample $i$ of the law (up to float rounding
of $\nabla\cdot t_j$).

A spec is a frozen dataclass: hashable, so it keys compiled samplers
([`monte_carlo`][snrkit.montecarlo.monte_carlo] passes it to `jax.jit` as a static
argument). Arrays it needs (block ids, a covariance factor) are not fields but live in the
*structure*, a dict of arrays passed alongside, so that jit does not bake them in.

Examples:
    >>> import jax, jax.numpy as jnp, snrkit as sk
    >>> law = sk.ForwardGradient(directions=2).given(jnp.array([3.0, 4.0]))
    >>> spec = law.sampler
    >>> (
    ...     spec.num_jvps,
    ...     hash(spec)
    ...     == hash(
    ...         sk.ForwardGradient(directions=2).given(jnp.ones(2)).sampler
    ...     ),
    ... )
    (2, True)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from snrkit.core.tree import sample_key

Structure = Mapping[str, Any]
"""Arrays a spec needs besides the probes (block ids, a factor), by name."""


class ProbeSpec(ABC):
    """Abstract description of one estimate as probes, tangents and a combination.

    Subclasses are frozen dataclasses. They implement `num_jvps`, `draw`, `tangent` and
    `combine`; `derivatives` (the law's $s_j = t_j\\cdot\\nabla$) and `law_args` have
    defaults that a family may override for speed.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> from snrkit.core.spec import ProbeSpec
        >>> isinstance(sk.ForwardGradient().given(jnp.ones(3)).sampler, ProbeSpec)
        True
    """

    @property
    @abstractmethod
    def num_jvps(self) -> int:
        """$J$: the number of directional derivatives (JVPs) behind one estimate."""

    @abstractmethod
    def draw(self, structure: Structure, key: jax.Array, n: int, dtype: jnp.dtype) -> Any:
        """The probes of one sample, drawn from that sample's key.

        Args:
            structure: the structure arrays (the law's sampling args are a superset).
            key: the sample's key, `fold_in(key, index)`.
            n: number of coordinates.
            dtype: floating dtype of the estimate.

        Returns:
            Any pytree of arrays that `tangent` and `combine` understand.
        """

    @abstractmethod
    def tangent(self, structure: Structure, probes: Any, j: jax.Array | int) -> jax.Array:
        """Tangent $t_j$, flat of shape `(n,)`; `j` may be a traced index."""

    def tangents(self, structure: Structure, probes: Any) -> jax.Array:
        """Every tangent at once, shape `(J, n)`: what the real estimator pushes forward in one vectorised batch."""
        return jax.vmap(lambda j: self.tangent(structure, probes, j))(jnp.arange(self.num_jvps))

    @abstractmethod
    def combine(self, structure: Structure, probes: Any, derivs: jax.Array) -> jax.Array:
        """The estimate, flat `(n,)`, from the probes and the derivatives $s_j$ (shape `(J,)`)."""

    def derivatives(self, args: Structure, probes: Any) -> jax.Array:
        r"""$s_j = t_j\cdot\nabla$ for every $j$, shape `(J,)`, from the law's args (`args["grad"]`)."""
        grad = args["grad"]
        return jax.vmap(lambda j: self.tangent(args, probes, j) @ grad)(jnp.arange(self.num_jvps))

    def law_args(self, grad: jax.Array, structure: Structure) -> dict[str, Any]:
        """The arrays the law's sampler needs: the flat gradient and the structure."""
        return {"grad": grad, **structure}

    def probe_entries(self, n: int) -> int:
        """Number of probe entries one sample holds (sizes Monte Carlo chunks)."""
        return self.num_jvps * n

    def __call__(self, args: Structure, key: jax.Array, indices: jax.Array) -> jax.Array:
        """Samples `indices` of the law: shape `(len(indices), n)`; sample `i` uses `fold_in(key, i)` only."""
        grad = args["grad"]

        def one(index: jax.Array) -> jax.Array:
            probes = self.draw(args, sample_key(key, index), grad.size, grad.dtype)
            return self.combine(args, probes, self.derivatives(args, probes))

        if indices.shape[0] == 1:  # unbatched, a draw keeps its own fusion boundaries (threefry.normal)
            return one(indices[0])[None]
        return jax.vmap(one)(indices)


class RowTangentSpec(ProbeSpec):
    """A spec whose probes are the tangents themselves: a `(J, n)` array whose row `j` JVP `j` pushes forward.

    Families with this shape (orthogonal frames, multi-tangent aggregation) implement only
    `num_jvps`, `draw` and `combine`.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> from snrkit.core.spec import RowTangentSpec
        >>> isinstance(
        ...     sk.OrthogonalFrames(2).given(jnp.ones(3)).sampler, RowTangentSpec
        ... )
        True
    """

    def tangent(self, structure: Structure, probes: jax.Array, j: jax.Array | int) -> jax.Array:
        return probes[j]

    def tangents(self, structure: Structure, probes: jax.Array) -> jax.Array:
        return probes

    def derivatives(self, args: Structure, probes: jax.Array) -> jax.Array:
        return probes @ args["grad"]
