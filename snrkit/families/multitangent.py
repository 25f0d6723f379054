r"""Multi-tangent forward gradients: K tangents, one JVP each, aggregated by a sum, a mean or a projection.

With tangents $v_1,\dots,v_K$ ($V = (v_1,\dots,v_K)$, iid Gaussian or unit-length) and
directional derivatives $s_k = \nabla\cdot v_k$:

| aggregation | estimate | law |
| --- | --- | --- |
| `"sum"` | $\sum_k s_k v_k$ | Gaussian: $K\times$ the forward gradient's; unit: see below |
| `"mean"` | $\frac1K\sum_k s_k v_k$ | Gaussian: the forward gradient's ([`ForwardGradient`][snrkit.families.iid.ForwardGradient]) |
| `"projection"` | $V(V^\top V)^{-1}V^\top\nabla$ | a Haar $K$-frame projection ([`OrthogonalFrames`][snrkit.families.orthogonal.OrthogonalFrames], `scale="projection"`) |

The projection onto the span of $K$ iid Gaussian (or unit) tangents has the law of the
projection onto a Haar-random $K$-dimensional subspace, because the span is one: it equals
$QQ^\top\nabla$ for the $Q$ of the QR of $V$. Unit-length tangents ($v = \varepsilon/\|\varepsilon\|$,
uniform on the sphere) have $\mathbb E[vv^\top] = I/n$, so their mean is biased:

$$
\mathbb E[g] = \frac{\nabla}{n},\qquad
\operatorname{Cov}[g] = \frac{\|\nabla\|^2 I + \frac{n-2}{n}\nabla\nabla^\top}{K\,n(n+2)} .
$$

**The peer's scale factor.** Flügel et al. (2025, "Beyond backpropagation: optimization with
multi-tangent forward gradients") multiply the aggregate by $1/\ell$ to match its expected
length to the gradient's, with $\ell = \mathbb E\chi_K/\mathbb E\chi_n$ for the projection and
$\ell = \sqrt{2/(\pi n)}$ ($K = 1$) or $\sqrt{(n+K)/(1+K)}/n$ ($K \ge 2$) for the mean of unit
tangents (the sum: $K\ell$). `scale="peer"` applies that factor; the claims ledger judges
whether it does what it says (the `flugel-*` claims of the [claims ledger](../claims.md)). Derived in the docs:
[Multi-tangent aggregation](../families/multi-tangent.md).

Examples:
    >>> import jax.numpy as jnp, snrkit as sk
    >>> grad = jnp.array([3.0, 4.0, 0.0, 1.0])
    >>> sk.MultiTangent(2, "mean").given(
    ...     grad
    ... ).var().tolist() == sk.ForwardGradient(directions=2).given(
    ...     grad
    ... ).var().tolist()
    True
    >>> sk.MultiTangent(2, "mean", tangents="unit").given(
    ...     grad
    ... ).mean().tolist()  # ∇/n
    [0.75, 1.0, 0.0, 0.25]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.estimator import Cost, Estimator
from snrkit.core.law import CorrectionTerms, Law
from snrkit.core.numerics import sum_of_others
from snrkit.core.precision import wide_dtype
from snrkit.core.problem import ProblemBase
from snrkit.core.spec import ProbeSpec, RowTangentSpec, Structure
from snrkit.core.streamed import Blocks, CoordinateVariance, StreamedForm
from snrkit.core.threefry import normal
from snrkit.core.tree import PyTree
from snrkit.core.validation import check_int
from snrkit.families.iid import BlockProbeLaw
from snrkit.families.orthogonal import HaarProjectionLaw
from snrkit.families.registry import Family
from snrkit.probes import get_probe

AGGREGATIONS = ("sum", "mean", "projection")
"""The values of `MultiTangent(aggregation=...)`."""
TANGENTS = ("gaussian", "unit")
"""The values of `MultiTangent(tangents=...)`."""


def chi_mean(k: int) -> float:
    r"""$\mathbb E\chi_k = \sqrt2\,\Gamma(\frac{k+1}2)/\Gamma(\frac k2)$, the mean length of a $k$-dimensional standard normal.

    Examples:
        >>> from snrkit.families.multitangent import chi_mean
        >>> round(chi_mean(1), 6), round(chi_mean(2), 6)  # √(2/π), √(π/2)
        (0.797885, 1.253314)
    """
    return math.sqrt(2.0) * math.exp(math.lgamma((k + 1) / 2) - math.lgamma(k / 2))


def peer_expected_length(aggregation: str, k: int, n: int) -> float:
    r"""The expected length $\mathbb E\|g\|/\|\nabla\|$ the peer library assumes (Flügel et al. 2025, their code).

    Projection: $\mathbb E\chi_K/\mathbb E\chi_n$ (1 when $K \ge n$). Mean of unit-length
    tangents: $\sqrt{2/(\pi n)}$ for $K = 1$, $\sqrt{(n+K)/(1+K)}/n$ for $K \ge 2$. Sum: $K$ times
    the mean's.

    Examples:
        >>> from snrkit.families.multitangent import peer_expected_length
        >>> round(peer_expected_length("mean", 4, 64), 5)  # √(68/5)/64
        0.05762
    """
    if aggregation == "projection":
        return 1.0 if k >= n else chi_mean(k) / chi_mean(n)
    mean = math.sqrt(2 / (math.pi * n)) if k == 1 else math.sqrt((n + k) / (1 + k)) / n
    return mean * (k if aggregation == "sum" else 1)


@dataclass(frozen=True)
class MultiTangentSpec(RowTangentSpec):
    """Draws the K tangents (Gaussian rows, normalised for unit tangents) and aggregates their forward gradients."""

    directions: int
    aggregation: str
    unit: bool
    scale: float | str

    @property
    def num_jvps(self) -> int:
        return self.directions

    def factor(self, n: int) -> float:
        """The constant every estimate is multiplied by, for $n$ coordinates."""
        if self.scale == "peer":
            return 1.0 / peer_expected_length(self.aggregation, self.directions, n)
        return float(self.scale)

    def draw(self, structure: Structure, key: jax.Array, n: int, dtype: jnp.dtype) -> jax.Array:
        tangents = normal(key, (self.directions, n), wide_dtype(dtype))
        if self.unit:
            tangents = tangents / jnp.linalg.norm(tangents, axis=-1, keepdims=True)
        return tangents.astype(dtype)

    def combine(self, structure: Structure, probes: jax.Array, derivs: jax.Array) -> jax.Array:
        factor = self.factor(probes.shape[-1])
        if self.aggregation == "projection":
            # V(VᵀV)⁻¹Vᵀ∇ from the derivatives s = Vᵀ∇; the K × K Gram system is solved wide.
            wide = probes.astype(wide_dtype(probes.dtype))
            solved = jnp.linalg.solve(wide @ wide.T, derivs.astype(wide.dtype))
            return (factor * (solved @ wide)).astype(probes.dtype)
        total = derivs @ probes
        return factor * (total / self.directions if self.aggregation == "mean" else total)


class SphereProbeLaw(Law):
    r"""Exact law of the mean of $K$ forward gradients along unit-length tangents (uniform on the sphere).

    Per direction, $\mathbb E[(\nabla\cdot v)^p v_i^p] = \mathbb E[(\nabla\cdot\varepsilon)^p\varepsilon_i^p]/\prod_{j<p}(n+2j)$
    (the length of a Gaussian is independent of its direction), and $(\nabla\cdot\varepsilon)\varepsilon_i$
    is a Gaussian quadratic form. With $P = \nabla_i$ and $Q^2 = \|\nabla\|^2$:

    $$
    \begin{aligned}
    \operatorname{Var}[g_i] &= \frac{\|\nabla\|^2 + \frac{n-2}{n}\nabla_i^2}{K\,n(n+2)},\\
    \mu_{4,i}^{(1)} &= \frac{9n^3Q^4 + 6n(n-2)(7n-12)P^2Q^2 + 3(n-2)(3n^2-14n+24)P^4}{n^4(n+2)(n+4)(n+6)},
    \end{aligned}
    $$

    and the mean of $K$ directions has $(\mu_4^{(1)} + 3(K-1)\sigma_1^4)/K^3$. Derived in the
    docs: [Multi-tangent aggregation](../families/multi-tangent.md).

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.MultiTangent(1, "mean", tangents="unit").given(
        ...     jnp.array([3.0, 4.0])
        ... )
        >>> law.var().tolist()  # (25 + 0)/(2·4): for n = 2 the ∇_i² term vanishes
        [3.125, 3.125]
    """

    closed_forms = frozenset({"cov", "fourth_central_moment", "projected_variance"})

    def __init__(self, grad: PyTree, *, spec: ProbeSpec, structure: Structure, directions: int, scale: float,
                 estimator: Estimator | None = None):
        super().__init__(grad, spec=spec, structure=structure, scale=scale, estimator=estimator)
        self.directions = directions

    def _flat_mean64(self) -> jax.Array:
        with jax.enable_x64(True):
            return self._grad64() * self.mean_factor(self.num_coordinates)

    def _flat_var64(self) -> jax.Array:
        return self._on_grad64(_sphere_var, self.directions)

    @staticmethod
    def mean_factor(n: int) -> float:
        r"""$1/n$: $\mathbb E[g] = \nabla/n$ at scale 1."""
        return 1.0 / n

    @staticmethod
    def coordinate_variance(n: int, directions: int) -> CoordinateVariance:
        r"""$\operatorname{Var}[g_i] = (O_i + \frac{2n-2}{n}\nabla_i^2)/(Kn(n+2))$, with $O_i = \sum_{j\ne i}\nabla_j^2$.

        The one formula of this law's variance, in memory and streamed
        ([`snrkit.ondisk`][snrkit.ondisk]): $\|\nabla\|^2 + \frac{n-2}n\nabla_i^2$
        written as two non-negative terms.

        Examples:
            >>> import numpy as np
            >>> from snrkit.families.multitangent import SphereProbeLaw
            >>> f = SphereProbeLaw.coordinate_variance(4, 2)
            >>> f.statistic, float(f(np.float64(1.0), 3.0))  # (3 + 6/4)/(2·4·6)
            ('others', 0.09375)
        """
        n = float(n)
        return CoordinateVariance(
            "others", lambda x, others: (others + (2 * n - 2) / n * x) / (directions * n * (n + 2)))

    def _flat_cov64(self) -> jax.Array:
        return self._on_grad64(_sphere_cov, self.directions)

    def _flat_fourth64(self) -> jax.Array:
        return self._on_grad64(_sphere_fourth, self.directions)

    def _projected_variance64(self, weights: np.ndarray) -> float:
        g = np.asarray(self._flat_grad, np.float64)
        n, k = g.size, self.directions
        return float(((g @ g) * (weights @ weights) + (n - 2) / n * (weights @ g) ** 2) / (k * n * (n + 2)))

    def correction_terms(self) -> CorrectionTerms:
        g = np.asarray(self._flat_grad, np.float64)
        n, k = g.size, self.directions
        c = self.scale**2 / (k * n * (n + 2))
        return CorrectionTerms({"∇_i²": c * g * g, "‖∇‖²": np.full_like(g, c * float(g @ g))},
                               note="times c²/(Kn(n+2))")


@partial(jax.jit, static_argnums=1)
def _sphere_var(g: jax.Array, k: int) -> jax.Array:
    return SphereProbeLaw.coordinate_variance(g.size, k).in_memory(g)


@partial(jax.jit, static_argnums=1)
def _sphere_cov(g: jax.Array, k: int) -> jax.Array:
    n = float(g.size)
    return (jnp.sum(g**2) * jnp.eye(g.size, dtype=g.dtype) + (n - 2) / n * jnp.outer(g, g)) / (k * n * (n + 2))


@partial(jax.jit, static_argnums=1)
def _sphere_fourth(g: jax.Array, k: int) -> jax.Array:
    n = float(g.size)
    p2 = g**2
    q2 = sum_of_others(p2) + p2
    one = (9 * n**3 * q2**2 + 6 * n * (n - 2) * (7 * n - 12) * p2 * q2 + 3 * (n - 2) * (3 * n * n - 14 * n + 24) * p2**2) / (
        n**4 * (n + 2) * (n + 4) * (n + 6)
    )
    var1 = (q2 + (n - 2) / n * p2) / (n * (n + 2))
    return (one + 3 * (k - 1) * var1**2) / k**3


@dataclass(frozen=True)
class MultiTangent(Estimator):
    r"""$K$ tangents, one JVP each, aggregated by a sum, a mean or the projection onto their span.

    See the module docs for the estimates and their laws.

    Args:
        directions: $K \ge 1$ tangents (at most $n$ for the projection, checked by `given`).
        aggregation: `"sum"`, `"mean"` or `"projection"`.
        tangents: `"gaussian"` (iid standard normal entries) or `"unit"` (normalised to length 1).
        scale: a positive number multiplying the estimate, or `"peer"`: the peer library's
            norm-matching factor $1/\ell$ (for the projection, or for unit tangents).

    Raises:
        ValueError: unknown aggregation or tangents, `directions < 1`, a non-positive
            scale, or `scale="peer"` for the sum or mean of Gaussian tangents (the peer's
            factor assumes unit length there).
        TypeError: `directions` is not an int.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> grad = jnp.arange(1.0, 9.0)
        >>> law = sk.MultiTangent(4, "projection").given(grad)
        >>> (
        ...     round(float(law.total_mse()), 3),
        ...     round(float((1 - 4 / 8) * grad @ grad), 3),
        ... )  # (1 − K/n)‖∇‖²
        (102.0, 102.0)
    """

    family = "multi-tangent"

    directions: int = 2
    aggregation: str = "mean"
    tangents: str = "gaussian"
    scale: float | str = 1.0

    def __post_init__(self) -> None:
        check_int(self.directions, "directions", hint="the number K of tangents")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(map(repr, AGGREGATIONS))}, got {self.aggregation!r}")
        if self.tangents not in TANGENTS:
            raise ValueError(f"tangents must be one of {', '.join(map(repr, TANGENTS))}, got {self.tangents!r}")
        if self.scale == "peer":
            if self.aggregation != "projection" and self.tangents != "unit":
                raise ValueError(
                    "scale='peer' for the sum or mean assumes unit-length tangents (the peer's expected length is for "
                    "|v| = 1): pass tangents='unit', or a number as scale"
                )
            return
        if isinstance(self.scale, bool) or not isinstance(self.scale, int | float) or not (
            math.isfinite(self.scale) and self.scale > 0
        ):
            raise ValueError(f"scale must be a positive number or 'peer', got {self.scale!r}")

    @property
    def biased(self) -> bool:
        r"""Whether $\mathbb E[g] \ne \nabla$: only Gaussian sums and means whose scale undoes the
        factor $K$ (or 1) are unbiased for every $n$; unit tangents give $\nabla/n$ and the projection
        $\frac Kn\nabla$ (times the scale), which no fixed scale corrects for every $n$."""
        if self.tangents != "gaussian" or self.aggregation == "projection" or self.scale == "peer":
            return True
        gain = float(self.scale) * (self.directions if self.aggregation == "sum" else 1)
        return not math.isclose(gain, 1.0, rel_tol=1e-12)

    @property
    def label(self) -> str:
        scale = "" if self.scale == 1 else f", scale={self.scale}"
        return f"MultiTangent(K={self.directions}, {self.aggregation}, {self.tangents}{scale})"

    def _plan(self, problem: ProblemBase) -> tuple[MultiTangentSpec, Structure]:
        return self._spec(problem.num_coordinates), {}

    def _spec(self, n: int) -> MultiTangentSpec:
        """The spec for n coordinates (after checking that the projection fits them)."""
        if self.aggregation == "projection" and self.directions > n:
            raise ValueError(
                f"directions={self.directions} tangents span at most the {n} coordinates of the gradient: the "
                f"projection needs directions <= {n}"
            )
        scale = self.scale if self.scale == "peer" else float(self.scale)
        return MultiTangentSpec(self.directions, self.aggregation, self.tangents == "unit", scale)

    def _law_scale(self, spec: MultiTangentSpec, n: int) -> float:
        """The scale of the law: the spec's factor, times K for the sum."""
        factor = spec.factor(n)
        return factor * (self.directions if self.aggregation == "sum" else 1)

    def streamed_form(self, sizes: tuple[int, ...]) -> StreamedForm:
        r"""The law's variance as a [`StreamedForm`][snrkit.core.streamed.StreamedForm]: one block, its law's formula.

        The projection streams the Haar projection's law, unit tangents the sphere's and
        Gaussian tangents the forward gradient's, each with this estimator's scale.

        Args:
            sizes: the number of coordinates of each leaf of the gradient, in ravel order.

        Raises:
            ValueError: a projection on more tangents than coordinates.

        Examples:
            >>> import snrkit as sk
            >>> sk.MultiTangent(2, "sum").streamed_form((3,)).scale  # K · 1
            2.0
        """
        n = sum(sizes)
        spec, k = self._spec(n), self.directions
        if self.aggregation == "projection":
            return StreamedForm(self.family, Blocks.one(n), HaarProjectionLaw.coordinate_variance(n, k),
                                mean_factor=HaarProjectionLaw.mean_factor(n, k), scale=spec.factor(n))
        scale = self._law_scale(spec, n)
        if self.tangents == "unit":
            return StreamedForm(self.family, Blocks.one(n), SphereProbeLaw.coordinate_variance(n, k),
                                mean_factor=SphereProbeLaw.mean_factor(n), scale=scale)
        return StreamedForm(self.family, Blocks.one(n),
                            BlockProbeLaw.coordinate_variance(get_probe("gaussian"), k), scale=scale)

    def _law(self, problem: ProblemBase) -> Law:
        spec, structure = self._plan(problem)
        grad, n = problem.gradient(), problem.num_coordinates
        if self.aggregation == "projection":
            return HaarProjectionLaw(grad, spec=spec, structure=structure, directions=self.directions,
                                     scale=spec.factor(n), estimator=self)
        total = self._law_scale(spec, n)
        if self.tangents == "unit":
            return SphereProbeLaw(grad, spec=spec, structure=structure, directions=self.directions, scale=total,
                                  estimator=self)
        return BlockProbeLaw(grad, spec=spec, structure=structure, probe=get_probe("gaussian"),
                             directions=self.directions, scale=total, estimator=self)

    def _shape_free_cost(self) -> Cost:
        return Cost.of_directions(self.directions)


FAMILIES = (
    Family(
        name="multi-tangent",
        title="Multi-tangent aggregation",
        estimator=MultiTangent,
        summary="K Gaussian or unit tangents aggregated by sum, mean or the projection onto their span.",
        law=r"\text{mean: } \mathbb E[g]=\nabla \text{ (Gaussian)};\ \text{projection: } \mathbb E[g]=\tfrac Kn\nabla",
        bias="the Gaussian mean is unbiased; sum, unit tangents and the projection are biased (scaled)",
        cost="K JVPs (and a K×K solve for the projection)",
        source="Flügel et al. (2025), multi-tangent forward gradients",
        docs="families/multi-tangent.md",
        order=30,
        sweep=(MultiTangent(directions=4, aggregation="projection", scale="peer"),),
    ),
)
"""The registry row of this module."""

__all__ = ["MultiTangent", "SphereProbeLaw", "MultiTangentSpec", "chi_mean", "peer_expected_length", "FAMILIES"]
