r"""Orthogonal frames: K orthonormal directions drawn from the Haar measure, one JVP each.

$$
g = c \sum_{k=1}^K (\nabla\cdot q_k)\, q_k = c\,QQ^\top\nabla,
$$

with $Q = (q_1,\dots,q_K)$ Haar on the Stiefel manifold,
drawn as the QR factor of an $n\times K$ Gaussian matrix with the sign fix (each column
multiplied by the sign of the matching diagonal entry of $R$). With $P = QQ^\top$ a random
rank-$K$ projection and $m = K/n$:

$$
\mathbb E[g] = c\,\tfrac Kn\nabla,\qquad
\operatorname{Cov}[g] = c^2\,\frac{K(n-K)}{n(n+2)}
    \Big[\tfrac2n\nabla\nabla^\top + \frac{\|\nabla\|^2 I - \nabla\nabla^\top}{n-1}\Big].
$$

`scale="unbiased"` ($c = n/K$) gives $\mathbb E[g] = \nabla$ and total variance
$(n/K-1)\|\nabla\|^2$: **the floor** of every estimator that is linear in $K$ directional
derivatives and unbiased for every gradient (averaged over rotations of the gradient), so
unbiased orthogonal frames are optimal among them, on every gradient.
`scale="projection"` ($c = 1$) is the plain projection: $\mathbb E[g] = \frac Kn\nabla$ and
$\mathbb E\|g-\nabla\|^2 = (1-K/n)\|\nabla\|^2$. Both are derived, with the fourth moment and
the floor, in the docs: [Orthogonal frames](../families/orthogonal-frames.md).

Examples:
    >>> import jax.numpy as jnp, snrkit as sk
    >>> grad = jnp.array([3.0, 4.0, 0.0, 0.0])
    >>> law = sk.OrthogonalFrames(directions=2).given(grad)
    >>> (
    ...     float(law.total_variance()),
    ...     float(law.floor()),
    ...     float(law.efficiency()),
    ... )  # (4/2 − 1)·25
    (25.0, 25.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

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
from snrkit.families.registry import Family

SCALES = ("unbiased", "projection")
"""The values of `OrthogonalFrames(scale=...)`."""


def haar_frame(key: jax.Array, n: int, k: int, dtype: jnp.dtype) -> jax.Array:
    r"""$K$ orthonormal rows drawn from the Haar measure: the Q of the QR of an $n\times K$ Gaussian, with the sign fix.

    Without the sign fix (each column times the sign of $R$'s diagonal) the frame is not
    Haar-distributed: QR implementations choose signs deterministically.

    Args:
        key: the sample's key.
        n: dimension.
        k: number of directions, at most `n`.
        dtype: floating dtype.

    Returns:
        An array of shape `(K, n)` with orthonormal rows.

    Examples:
        >>> import jax, numpy as np
        >>> from snrkit.families.orthogonal import haar_frame
        >>> q = np.asarray(haar_frame(jax.random.key(0), 5, 3, np.float32))
        >>> bool(np.allclose(q @ q.T, np.eye(3), atol=1e-6))
        True
    """
    gaussian = normal(key, (k, n), wide_dtype(dtype))
    return orthonormalise(gaussian).astype(dtype)


def orthonormalise(rows: jax.Array) -> jax.Array:
    """Orthonormal rows spanning the same space as `rows` (`(K, n)`, K ≤ n), by QR with the sign fix."""
    q, r = jnp.linalg.qr(rows.T)
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(rows.dtype)
    return (q * signs).T


@dataclass(frozen=True)
class HaarFrameSpec(RowTangentSpec):
    r"""Draws $g = c\,QQ^\top\nabla$: the probes of a sample are the $K$ orthonormal rows of $Q^\top$.

    Attributes:
        directions: $K$.
        scale: `"unbiased"` ($c = n/K$) or `"projection"` ($c = 1$).
    """

    directions: int
    scale: str

    @property
    def num_jvps(self) -> int:
        return self.directions

    def factor(self, n: int) -> float:
        """The scale $c$ for $n$ coordinates."""
        return n / self.directions if self.scale == "unbiased" else 1.0

    def draw(self, structure: Structure, key: jax.Array, n: int, dtype: jnp.dtype) -> jax.Array:
        return haar_frame(key, n, self.directions, dtype)

    def combine(self, structure: Structure, probes: jax.Array, derivs: jax.Array) -> jax.Array:
        return (self.factor(probes.shape[-1]) * derivs) @ probes


class HaarProjectionLaw(Law):
    r"""Exact law of $g = c\,P\nabla$ with $P$ the projection onto a Haar-random $K$-dimensional subspace.

    For a unit vector $u$, $\|Pu\|^2 = A \sim \mathrm{Beta}(K/2, (n-K)/2)$, and $e_i^\top P u$
    has the law of $\cos\theta_i\,A + \sin\theta_i\sqrt{A(1-A)}\,t$ with $\cos\theta_i = u_i$
    and $t$ the first coordinate of a uniform point on $S^{n-2}$, independent of $A$. With
    $O_i = \sum_{j\ne i}\nabla_j^2$ and scale 1:

    $$
    \begin{aligned}
    \operatorname{Var}[g_i] &= \frac{K(n-K)}{n(n+2)}\Big[\frac{2\nabla_i^2}{n} + \frac{O_i}{n-1}\Big],\\
    \mu_{4,i} &= \nabla_i^4\mu_4(A) + \frac{6\nabla_i^2 O_i}{n-1}\,\mathbb E[(A-m)^2A(1-A)]\\
        &\qquad + \frac{3 O_i^2}{(n-1)(n+1)}\,\mathbb E[A^2(1-A)^2],
    \end{aligned}
    $$

    with the Beta moments in closed form (free of the cancellation of raw moments at
    large $n$). Derived in the docs: [Orthogonal frames](../families/orthogonal-frames.md).
    It is also the law of the projection onto the span of $K$ iid Gaussian (or unit-length)
    tangents, whose span is Haar-distributed (the multi-tangent projection of the
    [estimator families](../families/index.md)).

    Attributes:
        directions: $K$.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.OrthogonalFrames(directions=1, scale="projection").given(
        ...     jnp.array([3.0, 4.0])
        ... )
        >>> (
        ...     law.mean().tolist(),
        ...     law.var().tolist(),
        ... )  # (K/n)∇; K(n−K)/(n(n+2))·(2∇ᵢ²/n + O_i/(n−1)) = 25/8
        ([1.5, 2.0], [3.125, 3.125])
    """

    closed_forms = frozenset({"cov", "fourth_central_moment", "projected_variance"})

    def __init__(self, grad: PyTree, *, spec: ProbeSpec, structure: Structure, directions: int, scale: float,
                 estimator: Estimator | None = None):
        super().__init__(grad, spec=spec, structure=structure, scale=scale, estimator=estimator)
        self.directions = directions

    def _flat_mean64(self) -> jax.Array:
        with jax.enable_x64(True):
            return self._grad64() * self.mean_factor(self.num_coordinates, self.directions)

    def _flat_var64(self) -> jax.Array:
        return self._on_grad64(_frame_var, self.directions)

    @staticmethod
    def mean_factor(n: int, directions: int) -> float:
        r"""$K/n$: $\mathbb E[g] = \frac Kn\nabla$ at scale 1."""
        return directions / n

    @staticmethod
    def coordinate_variance(n: int, directions: int) -> CoordinateVariance:
        r"""$\operatorname{Var}[g_i] = \frac{K(n-K)}{n(n+2)}\big[\frac{2\nabla_i^2}{n} + \frac{O_i}{n-1}\big]$ from $\nabla_i^2$ and $O_i$.

        The one formula of this law's variance, in memory and streamed
        ([`snrkit.ondisk`][snrkit.ondisk]); $O_i = \sum_{j\ne i}\nabla_j^2$ is taken
        without cancellation. Zero when $K \ge n$ (the frame spans everything).

        Examples:
            >>> import numpy as np
            >>> from snrkit.families.orthogonal import HaarProjectionLaw
            >>> f = HaarProjectionLaw.coordinate_variance(2, 1)
            >>> f(np.array([9.0, 16.0]), np.array([16.0, 9.0])).tolist()
            [3.125, 3.125]
        """
        if directions >= n:
            return CoordinateVariance("sums", lambda x, t: x * 0.0)
        c, n = _frame_constant(n, directions), float(n)
        return CoordinateVariance("others", lambda x, others: c * (2 * x / n + others / (n - 1)))

    def _flat_cov64(self) -> jax.Array:
        return self._on_grad64(_frame_cov, self.directions)

    def _flat_fourth64(self) -> jax.Array:
        return self._on_grad64(_frame_fourth, self.directions)

    def _projected_variance64(self, weights: np.ndarray) -> float:
        g = np.asarray(self._flat_grad, np.float64)
        n, k = g.size, self.directions
        if k >= n:
            return 0.0
        wg = float(weights @ g)
        return _frame_constant(n, k) * (2 * wg**2 / n + (float(g @ g) * float(weights @ weights) - wg**2) / (n - 1))

    def correction_terms(self) -> CorrectionTerms:
        """The two terms of the exact variance: $\\nabla_i^2$ and $\\|\\nabla\\|^2$ (times the law's constants)."""
        g = np.asarray(self._flat_grad, np.float64)
        c = self.scale**2 * _frame_constant(g.size, self.directions)
        return CorrectionTerms({"∇_i²": c * g * g, "‖∇‖²": np.full_like(g, c * float(g @ g))},
                               note="times c²K(n−K)/(n(n+2))")


def _frame_constant(n: int, k: int) -> float:
    return k * (n - k) / (n * (n + 2)) if k < n else 0.0


@partial(jax.jit, static_argnums=1)
def _frame_var(g: jax.Array, k: int) -> jax.Array:
    return HaarProjectionLaw.coordinate_variance(g.size, k).in_memory(g)


@partial(jax.jit, static_argnums=1)
def _frame_cov(g: jax.Array, k: int) -> jax.Array:
    size = g.size
    n = float(size)
    if k >= size:
        return jnp.zeros((size, size), g.dtype)
    outer = jnp.outer(g, g)
    return _frame_constant(n, k) * (2 * outer / n + (jnp.sum(g**2) * jnp.eye(size, dtype=g.dtype) - outer) / (n - 1))


def beta_moments(n: int, k: int) -> tuple[float, float, float]:
    r"""$\mu_4(A)$, $\mathbb E[(A-m)^2A(1-A)]$ and $\mathbb E[A^2(1-A)^2]$ for $A\sim\mathrm{Beta}(K/2,(n-K)/2)$, $m = K/n$.

    Closed forms without the cancellation raw moments suffer at large $n$ (every term is
    non-negative except $Kr(n-12)$, and only below $n = 12$); with $r = n-K$:
    $\mu_4 = 12Kr[4(K^2-Kr+r^2)+nKr]/(n^4(n+2)(n+4)(n+6))$,
    $\mathbb E[(A-m)^2A(1-A)] = 2Kr[4n^2+Kr(n-12)]/(n^3(n+2)(n+4)(n+6))$ and
    $\mathbb E[A^2(1-A)^2] = K(K+2)r(r+2)/(n(n+2)(n+4)(n+6))$.

    Examples:
        >>> from snrkit.families.orthogonal import beta_moments
        >>> [
        ...     round(x, 6) for x in beta_moments(4, 2)
        ... ]  # Beta(1, 1) is uniform: 1/80, 1/120, 1/30
        [0.0125, 0.008333, 0.033333]
    """
    n_, k_ = float(n), float(k)
    r = n_ - k_
    mu4 = 12 * k_ * r * (4 * (k_ * k_ - k_ * r + r * r) + n_ * k_ * r) / (n_**4 * (n_ + 2) * (n_ + 4) * (n_ + 6))
    d2 = 2 * k_ * r * (4 * n_ * n_ + k_ * r * (n_ - 12)) / (n_**3 * (n_ + 2) * (n_ + 4) * (n_ + 6))
    a2 = k_ * (k_ + 2) * r * (r + 2) / (n_ * (n_ + 2) * (n_ + 4) * (n_ + 6))
    return mu4, d2, a2


@partial(jax.jit, static_argnums=1)
def _frame_fourth(g: jax.Array, k: int) -> jax.Array:
    n = float(g.size)
    if k >= n:
        return jnp.zeros_like(g)
    mu4, d2, a2 = beta_moments(n, k)
    g2 = g**2
    others = sum_of_others(g2)
    return g2**2 * mu4 + 6 * g2 * others * d2 / (n - 1) + 3 * others**2 * a2 / ((n - 1) * (n + 1))


@dataclass(frozen=True)
class OrthogonalFrames(Estimator):
    r"""$K$ orthonormal directions from the Haar measure, one JVP each: $g = c\,QQ^\top\nabla$.

    Unbiased ($c = n/K$) it reaches the floor $(n/K-1)\|\nabla\|^2$ of every linear
    unbiased estimator with $K$ JVPs; as a plain projection ($c = 1$) its total MSE is
    $(1-K/n)\|\nabla\|^2$ (see the module docs and
    [Orthogonal frames](../families/orthogonal-frames.md)).

    Args:
        directions: $K$, between 1 and the number of coordinates $n$ (checked by `given`).
        scale: `"unbiased"` ($c = n/K$, $\mathbb E[g] = \nabla$) or `"projection"`
            ($c = 1$, $\mathbb E[g] = \frac Kn\nabla$).

    Raises:
        ValueError: `directions < 1` or an unknown `scale`; `given` refuses $K > n$.
        TypeError: `directions` is not an int.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.OrthogonalFrames(directions=1).given(jnp.array([3.0, 4.0]))
        >>> # (n−K)/(K(n+2)) · (2∇ᵢ² + n·O_i/(n−1)) = (18 + 32)/4
        >>> law.var().tolist()
        [12.5, 12.5]
        >>> round(
        ...     float(
        ...         sk.OrthogonalFrames(2, scale="projection")
        ...         .given(jnp.arange(1.0, 5.0))
        ...         .total_mse()
        ...     ),
        ...     4,
        ... )
        15.0
    """

    family = "orthogonal-frames"

    directions: int = 1
    scale: Literal["unbiased", "projection"] = "unbiased"

    def __post_init__(self) -> None:
        check_int(self.directions, "directions", hint="the number K of orthonormal directions")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be 'unbiased' (c = n/K) or 'projection' (c = 1), got {self.scale!r}")

    @property
    def biased(self) -> bool:
        r"""The plain projection is biased ($\mathbb E[g] = \frac Kn\nabla$) unless $K = n$."""
        return self.scale == "projection"

    @property
    def label(self) -> str:
        return f"OrthogonalFrames(K={self.directions}, {self.scale})"

    def _plan(self, problem: ProblemBase) -> tuple[HaarFrameSpec, Structure]:
        self._check_fits(problem.num_coordinates)
        return HaarFrameSpec(self.directions, self.scale), {}

    def _check_fits(self, n: int) -> None:
        if self.directions > n:
            raise ValueError(
                f"directions={self.directions} is more than the {n} coordinates of the gradient: at most {n} "
                f"orthonormal directions exist; use directions <= {n} (directions={n} gives the exact gradient)"
            )

    def streamed_form(self, sizes: tuple[int, ...]) -> StreamedForm:
        r"""The law's variance as a [`StreamedForm`][snrkit.core.streamed.StreamedForm]: one block, $O_i$ and the scale $c$.

        Args:
            sizes: the number of coordinates of each leaf of the gradient, in ravel order.

        Raises:
            ValueError: more directions than coordinates.

        Examples:
            >>> import snrkit as sk
            >>> sk.OrthogonalFrames(2, "projection").streamed_form((4,)).scale
            1.0
        """
        n = sum(sizes)
        self._check_fits(n)
        return StreamedForm(self.family, Blocks.one(n), HaarProjectionLaw.coordinate_variance(n, self.directions),
                            mean_factor=HaarProjectionLaw.mean_factor(n, self.directions),
                            scale=HaarFrameSpec(self.directions, self.scale).factor(n))

    def _law(self, problem: ProblemBase) -> HaarProjectionLaw:
        spec, structure = self._plan(problem)
        return HaarProjectionLaw(problem.gradient(), spec=spec, structure=structure, directions=self.directions,
                                 scale=spec.factor(problem.num_coordinates), estimator=self)

    def _shape_free_cost(self) -> Cost:
        return Cost.of_directions(self.directions)


FAMILIES = (
    Family(
        name="orthogonal-frames",
        title="Orthogonal frames",
        estimator=OrthogonalFrames,
        summary="K orthonormal Haar directions, one JVP each; unbiased (scaled by n/K) it reaches the floor.",
        law=r"\mathbb E[g]=c\tfrac Kn\nabla,\ \operatorname{tr}\operatorname{Cov}[g]=c^2\tfrac Kn(1-\tfrac Kn)\|\nabla\|^2",
        bias="unbiased with scale='unbiased'; biased (E[g] = (K/n)∇) with scale='projection'",
        cost="K JVPs (and a QR of an n×K matrix)",
        source="snrkit; the floor: docs, Orthogonal frames",
        docs="families/orthogonal-frames.md",
        order=10,
        sweep=(OrthogonalFrames(directions=4, scale="unbiased"), OrthogonalFrames(directions=4, scale="projection")),
    ),
)
"""The registry row of this module."""

__all__ = ["OrthogonalFrames", "HaarProjectionLaw", "HaarFrameSpec", "haar_frame", "orthonormalise", "beta_moments", "FAMILIES"]
