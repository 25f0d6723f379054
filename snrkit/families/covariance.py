r"""Gaussian probes with a covariance: $v = s\,\varepsilon_0 + U\varepsilon_1$, $\Sigma = s^2 I + UU^\top$.

$$
g = \frac1K\sum_{k=1}^K (\nabla\cdot v_k)\, v_k,\qquad v_k \sim \mathcal N(0, \Sigma),
$$

with $U$ an $n\times r$ factor (the low-rank part) and $s^2 \ge 0$ an isotropic part. With
$q = \nabla^\top\Sigma\nabla$:

$$
\mathbb E[g] = \Sigma\nabla,\qquad
\operatorname{Cov}[g] = \frac{q\,\Sigma + \Sigma\nabla\nabla^\top\Sigma}{K}
$$

— biased unless $\Sigma\nabla = \nabla$. Every probe covariance that papers propose is this
case: a prior built from a stale gradient (Frye's suggestion to sample from a prior about the
gradient direction), a low-rank subspace, an anisotropic or $W^\top$ guess.

**The whitened variant** $g = \frac1K\sum_k(\nabla\cdot v_k)\,\Sigma^{-1}v_k$ is unbiased,
$\mathbb E[g] = \Sigma^{-1}\Sigma\nabla = \nabla$, with
$\operatorname{Cov}[g] = (q\,\Sigma^{-1} + \nabla\nabla^\top)/K$. It exists exactly when
$\Sigma$ is invertible ($s > 0$, or $U$ of rank $n$): with a singular $\Sigma$ the estimate
lies in the range of $\Sigma$, so no linear correction can make it unbiased for a gradient
outside that range.

Each entry is a Gaussian quadratic form, $g_i = \lambda_+\chi^2_1 + \lambda_-\chi'^2_1$ per
direction with $\lambda_\pm = (P_i \pm Q_i)/2$, which gives the fourth moment in closed form.
Derived in the docs: [Gaussian probes with a covariance](../families/covariance-probes.md).

Examples:
    >>> import jax.numpy as jnp, numpy as np, snrkit as sk
    >>> u = np.array([[1.0], [0.0]])  # Σ = u uᵀ: probe along e₁ only
    >>> law = sk.CovarianceProbe(factor=u).given(jnp.array([3.0, 4.0]))
    >>> (
    ...     law.mean().tolist(),
    ...     law.var().tolist(),
    ... )  # Σ∇ = (3, 0); 2·9 on e₁, 0 elsewhere
    ([3.0, 0.0], [18.0, 0.0])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.estimator import Cost, Estimator, jsonable
from snrkit.core.law import CorrectionTerms, Law
from snrkit.core.precision import wide_dtype
from snrkit.core.problem import ProblemBase
from snrkit.core.spec import ProbeSpec, Structure
from snrkit.core.streamed import no_streamed_form
from snrkit.core.threefry import normal
from snrkit.core.tree import PyTree, is_traced, ravel, ravel_host
from snrkit.core.validation import check_int
from snrkit.families.registry import Family

# A whitened probe needs Σ invertible; a smallest singular value below this fraction of the
# largest is treated as singular (float32 factors cannot resolve less).
_RANK_TOLERANCE = 1e-6


class Factor:
    """A fixed `(n, r)` factor, hashable by value, so the estimator stays a hashable frozen dataclass.

    Args:
        array: the factor, a 2-D array of finite floats (rows in ravel order of the gradient).

    Raises:
        ValueError: not 2-D, empty, or with NaN or inf entries.

    Examples:
        >>> import numpy as np
        >>> from snrkit.families.covariance import Factor
        >>> (
        ...     Factor(np.ones((3, 2))),
        ...     Factor(np.ones((3, 2))) == Factor(np.ones((3, 2))),
        ... )
        (Factor(n=3, r=2), True)
    """

    __slots__ = ("array",)

    def __init__(self, array: Any):
        values = np.asarray(array)
        if values.ndim != 2:
            raise ValueError(
                f"factor must be a 2-D array of shape (n, r) (one row per coordinate, in ravel order), got shape "
                f"{values.shape}; for one direction u pass u[:, None]"
            )
        if values.size == 0:
            raise ValueError(f"factor has shape {values.shape}: it needs at least one row and one column")
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float32)
        if not np.all(np.isfinite(values)):
            bad = int(values.size - np.isfinite(values).sum())
            raise ValueError(f"factor has {bad} non-finite value(s) (NaN or inf); a probe covariance must be finite")
        values = np.array(values)
        values.setflags(write=False)
        self.array = values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Factor) and self.array.shape == other.array.shape and np.array_equal(self.array, other.array)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def fingerprint(self) -> str:
        """A short hash of the values (identifies the factor in sweep rows)."""
        return hashlib.sha1(self.array.tobytes() + str(self.array.shape).encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"Factor(n={self.array.shape[0]}, r={self.array.shape[1]})"


@dataclass(frozen=True)
class GaussianFactorSpec(ProbeSpec):
    r"""Draws $g = \frac1K\sum_k (\nabla\cdot v_k)\,r_k$ with $v_k = s\varepsilon_{0k} + U\varepsilon_{1k}$ and $r_k = v_k$ (plain) or $\Sigma^{-1}v_k$ (whitened).

    The probes of a sample are the `(K, n + r)` (or `(K, r)` without an isotropic part)
    standard normals $\varepsilon$. Structure: `"factor"` ($U$), `"isotropic"` ($s$), and for
    a whitened probe `"inverse_core"` ($(s^2I + U^\top U)^{-1}$, $s > 0$) or `"read_factor"`
    ($\Sigma^{-1}U$, $s = 0$).

    Attributes:
        directions: $K$.
        rank: $r$, the columns of $U$.
        isotropic: whether $s > 0$.
        whiten: whether the estimate reads $\Sigma^{-1}v$.
    """

    directions: int
    rank: int
    isotropic: bool
    whiten: bool

    @property
    def num_jvps(self) -> int:
        return self.directions

    def draw(self, structure: Structure, key: jax.Array, n: int, dtype: jnp.dtype) -> jax.Array:
        width = self.rank + (n if self.isotropic else 0)
        return normal(key, (self.directions, width), wide_dtype(dtype)).astype(dtype)

    def _split(self, eps: jax.Array, n: int) -> tuple[jax.Array | None, jax.Array]:
        return (eps[..., :n], eps[..., n:]) if self.isotropic else (None, eps)

    def _probe(self, structure: Structure, eps: jax.Array) -> jax.Array:
        r"""$v = s\varepsilon_0 + U\varepsilon_1$, in the structure's (wide) dtype."""
        factor = structure["factor"]
        iso, low = self._split(eps.astype(factor.dtype), factor.shape[0])
        v = factor @ low
        return v if iso is None else v + structure["isotropic"] * iso

    def tangent(self, structure: Structure, probes: jax.Array, j: jax.Array | int) -> jax.Array:
        return self._probe(structure, probes[j]).astype(probes.dtype)

    def combine(self, structure: Structure, probes: jax.Array, derivs: jax.Array) -> jax.Array:
        # (1/K) Σ_k s_k ε_k, then the linear read-out: v itself, or Σ⁻¹v.
        weighted = (derivs[:, None].astype(structure["factor"].dtype) * probes).mean(axis=0)
        v = self._probe(structure, weighted)
        if not self.whiten:
            return v.astype(probes.dtype)
        if not self.isotropic:
            _, low = self._split(weighted.astype(v.dtype), v.shape[0])
            return (structure["read_factor"] @ low).astype(probes.dtype)
        # Σ⁻¹v = (v − U C⁻¹ Uᵀ v)/s², C = s²I + UᵀU (Woodbury).
        factor, s = structure["factor"], structure["isotropic"]
        return ((v - factor @ (structure["inverse_core"] @ (factor.T @ v))) / s**2).astype(probes.dtype)

    def probe_entries(self, n: int) -> int:
        return self.directions * (self.rank + (n if self.isotropic else 0))


class GaussianFactorLaw(Law):
    r"""Exact law of the Gaussian covariance probe (plain or whitened), averaged over $K$ directions.

    With $q = \nabla^\top\Sigma\nabla$, the mean $\mu = \Sigma\nabla$ (plain) or $\nabla$
    (whitened) and $D_i = \Sigma_{ii}$ (plain) or $(\Sigma^{-1})_{ii}$ (whitened):

    $$
    \begin{aligned}
    \operatorname{Var}[g_i] &= \frac{q D_i + \mu_i^2}{K},\\
    \mu_{4,i} &= \frac{9\mu_i^4 + 42\mu_i^2 qD_i + 9q^2D_i^2 + 3(K-1)(\mu_i^2+qD_i)^2}{K^3}.
    \end{aligned}
    $$

    Derived in the docs: [Gaussian probes with a covariance](../families/covariance-probes.md).

    Examples:
        >>> import jax.numpy as jnp, numpy as np, snrkit as sk
        >>> law = sk.CovarianceProbe(factor=np.eye(2)).given(
        ...     jnp.array([3.0, 4.0])
        ... )  # Σ = I: the forward gradient
        >>> (
        ...     law.var().tolist(),
        ...     sk.ForwardGradient().given(jnp.array([3.0, 4.0])).var().tolist(),
        ... )
        ([34.0, 41.0], [34.0, 41.0])
    """

    closed_forms = frozenset({"cov", "fourth_central_moment", "projected_variance"})

    def __init__(self, grad: PyTree, *, spec: GaussianFactorSpec, structure: Structure, estimator: Estimator | None = None):
        super().__init__(grad, spec=spec, structure=structure, estimator=estimator)
        self.directions = spec.directions
        self.whiten = spec.whiten
        self._u = np.asarray(structure["factor"], np.float64)
        self._s = float(structure["isotropic"]) if spec.isotropic else 0.0
        g = np.asarray(self._flat_grad, np.float64)
        self._g = g
        ut_g = self._u.T @ g
        self._q = self._s**2 * float(g @ g) + float(ut_g @ ut_g)
        if self.whiten:
            self._mu = g
            self._diag = self._inverse_diag()
        else:
            self._mu = self._s**2 * g + self._u @ ut_g
            self._diag = self._s**2 + np.einsum("ij,ij->i", self._u, self._u)

    # Σ⁻¹ pieces of the whitened law (s > 0: Woodbury; s = 0: the read factor Σ⁻¹U).
    def _inverse_diag(self) -> np.ndarray:
        if self._s > 0:
            core = np.asarray(self._structure["inverse_core"], np.float64)
            return (1.0 - np.einsum("ij,jk,ik->i", self._u, core, self._u)) / self._s**2
        read = np.asarray(self._structure["read_factor"], np.float64)
        return np.einsum("ij,ij->i", read, read)

    def _apply_ww(self, w: np.ndarray) -> np.ndarray:
        """$WW^\\top w$: $\\Sigma w$ (plain) or $\\Sigma^{-1} w$ (whitened)."""
        if not self.whiten:
            return self._s**2 * w + self._u @ (self._u.T @ w)
        if self._s > 0:
            core = np.asarray(self._structure["inverse_core"], np.float64)
            return (w - self._u @ (core @ (self._u.T @ w))) / self._s**2
        read = np.asarray(self._structure["read_factor"], np.float64)
        return read @ (read.T @ w)

    def _x64(self, values: np.ndarray) -> jax.Array:
        with jax.enable_x64(True):
            return jnp.asarray(values, jnp.float64)

    def _flat_mean64(self) -> jax.Array:
        return self._x64(self._mu)

    def _flat_var64(self) -> jax.Array:
        return self._x64((self._q * self._diag + self._mu**2) / self.directions)

    def _flat_fourth64(self) -> jax.Array:
        p2, q2, k = self._mu**2, self._q * self._diag, self.directions
        one = 9 * p2**2 + 42 * p2 * q2 + 9 * q2**2
        return self._x64((one + 3 * (k - 1) * (p2 + q2) ** 2) / k**3)

    def _flat_cov64(self) -> jax.Array:
        ww = self._apply_ww(np.eye(self.num_coordinates))
        return self._x64((self._q * ww + np.outer(self._mu, self._mu)) / self.directions)

    def _projected_variance64(self, weights: np.ndarray) -> float:
        return float((self._q * weights @ self._apply_ww(weights) + (weights @ self._mu) ** 2) / self.directions)

    def correction_terms(self) -> CorrectionTerms:
        """The two terms of the exact variance: $q D_i/K$ and $\\mu_i^2/K$."""
        k = self.directions
        diag_name = "(∇ᵀΣ∇)(Σ⁻¹)_ii" if self.whiten else "(∇ᵀΣ∇)Σ_ii"
        mean_name = "∇_i²" if self.whiten else "(Σ∇)_i²"
        return CorrectionTerms({diag_name: self._q * self._diag / k, mean_name: self._mu**2 / k},
                               note="" if k == 1 else f"all over K={k}")


FactorSource = Any
"""A fixed `(n, r)` array, or a function `problem -> (n, r) array` (see [`CovarianceProbe`][snrkit.families.covariance.CovarianceProbe])."""


@dataclass(frozen=True)
class CovarianceProbe(Estimator):
    r"""Forward gradient with Gaussian probes $v \sim \mathcal N(0, s^2I + UU^\top)$, averaged over $K$ directions.

    $\mathbb E[g] = \Sigma\nabla$, $\operatorname{Cov}[g] = ((\nabla^\top\Sigma\nabla)\Sigma +
    \Sigma\nabla\nabla^\top\Sigma)/K$; with `whiten=True`, $\Sigma^{-1}v$ replaces $v$ in the
    estimate, which makes it unbiased when $\Sigma$ is invertible (see the module docs).

    Args:
        factor: $U$, a flat `(n, r)` array in ravel order of the gradient, or a function
            `factor(problem) -> (n, r) array` that builds it from the
            [problem][snrkit.core.problem.Problem] (e.g. from a stale gradient it carries).
        directions: $K \ge 1$.
        isotropic: $s^2 \ge 0$, the isotropic part of $\Sigma$.
        whiten: read $\Sigma^{-1}v$ instead of $v$ (unbiased; needs $\Sigma$ invertible).

    A factor function runs when the law is built, and once per call of `estimate` or
    `estimates`, before any JVP; it may read the problem's state (pass `state=` to the real
    estimator). If it asks the problem for the gradient, that call is a backward pass.

    Raises:
        ValueError: a factor that is not 2-D or not finite, `directions < 1`, a negative or
            non-finite `isotropic`; `given` refuses a factor whose row count is not $n$, a
            callable factor that returns the wrong shape, and `whiten=True` with a singular $\Sigma$.
        TypeError: `factor` is neither an array nor a function.

    Examples:
        A prior built from a gradient seen earlier, the other directions damped by half:

        >>> import jax.numpy as jnp, snrkit as sk
        >>> stale = jnp.array([2.5, 4.5, 0.5])
        >>> est = sk.CovarianceProbe.prior(stale, confidence=0.5)
        >>> law = est.given(jnp.array([3.0, 4.0, 0.0]))
        >>> float(law.total_mse()) < float(
        ...     sk.ForwardGradient().given(jnp.array([3.0, 4.0, 0.0])).total_mse()
        ... )
        True
    """

    family = "covariance-probe"

    factor: FactorSource
    directions: int = 1
    isotropic: float = 0.0
    whiten: bool = False

    def __post_init__(self) -> None:
        check_int(self.directions, "directions", hint="the number K of probes averaged")
        if isinstance(self.isotropic, bool) or not isinstance(self.isotropic, int | float | np.integer | np.floating):
            raise TypeError(f"isotropic must be a float s² >= 0, got {self.isotropic!r}")
        if not (math.isfinite(float(self.isotropic)) and self.isotropic >= 0):
            raise ValueError(f"isotropic must be a finite s² >= 0 (the isotropic part of Σ), got {self.isotropic!r}")
        if not isinstance(self.whiten, bool):
            raise TypeError(f"whiten must be True or False, got {self.whiten!r}")
        factor = self.factor
        if isinstance(factor, Factor) or callable(factor):
            return
        if factor is None or isinstance(factor, str | bool | int | float):
            raise TypeError(f"factor must be an (n, r) array or a function problem -> (n, r) array, got {factor!r}")
        object.__setattr__(self, "factor", Factor(factor))

    # -- constructors for the cases users ask for ---------------------------------------
    @classmethod
    def prior(cls, belief: PyTree | Callable[[ProblemBase], PyTree], *, confidence: float = 0.5, directions: int = 1,
              whiten: bool = False) -> CovarianceProbe:
        r"""Probes concentrated on a believed gradient direction: $\Sigma = (1-\rho)I + \rho\,\hat b\hat b^\top$.

        Frye's thread (2022) suggests "if you already have a good prior about the gradient
        direction, maybe you could sample from it" (e.g. a stale gradient from an earlier
        step); the note gives no covariance, so this parametrisation is snrkit's. With $\hat b$ the unit vector of
        the belief, the probe keeps variance 1 along $\hat b$ and damps every orthogonal
        direction to $1-\rho$. So $\Sigma\hat b = \hat b$: a correct belief
        ($\nabla \parallel \hat b$) leaves the estimate unbiased and cuts its total
        variance from $(n+1)\|\nabla\|^2$ to $((1-\rho)(n-1) + 2)\|\nabla\|^2$; a wrong
        one biases it, $\mathbb E[g] = (1-\rho)\nabla + \rho(\hat b\cdot\nabla)\hat b$,
        shrinking the part of $\nabla$ the belief misses. `whiten=True` removes the bias
        (for $\rho < 1$), at the price of more variance off the belief.

        Args:
            belief: the believed gradient (a pytree or flat array shaped like the gradient),
                or a function `problem -> belief` (e.g. reading a stale gradient the problem carries).
            confidence: $\rho \in [0, 1]$; 0 is the isotropic forward gradient, 1 probes
                along the belief only.
            directions: $K$.
            whiten: the unbiased variant (needs $\rho < 1$).

        Returns:
            The estimator.

        Raises:
            ValueError: `confidence` outside [0, 1], or a zero belief (checked by `given`).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> grad = jnp.array([3.0, 4.0, 0.0])
            >>> law = sk.CovarianceProbe.prior(grad, confidence=0.5).given(
            ...     grad
            ... )  # a correct belief
            >>> # total variance ((1−ρ)(n−1) + 2)·25
            >>> law.mean().tolist(), float(law.total_variance())
            ([3.0, 4.0, 0.0], 75.0)
        """
        if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be a number in [0, 1] (the share of the probe along the belief), got {confidence!r}")
        factor = _PriorFactor(belief, float(confidence))
        if not callable(belief):
            factor = Factor(factor(None))
        return cls(factor=factor, directions=directions, isotropic=1.0 - float(confidence), whiten=whiten)

    @classmethod
    def subspace(cls, basis: Any, *, directions: int = 1) -> CovarianceProbe:
        r"""Probes confined to the span of `basis` (an `(n, r)` array): $\Sigma = QQ^\top$, the orthogonal projection.

        The estimate is $\mathbb E[g] = QQ^\top\nabla$, the gradient's component in the
        subspace (biased unless the gradient lies in it); Gaussian probes in an
        $r$-dimensional subspace behave like the forward gradient in $\mathbb R^r$:
        $\operatorname{tr}\operatorname{Cov}[g] = (r+1)\|QQ^\top\nabla\|^2/K$.

        Examples:
            >>> import jax.numpy as jnp, numpy as np, snrkit as sk
            >>> law = sk.CovarianceProbe.subspace(
            ...     np.array([[1.0], [1.0], [0.0]])
            ... ).given(jnp.array([3.0, 1.0, 5.0]))
            >>> [round(x, 5) for x in law.mean().tolist()]  # projection on (1, 1, 0)/√2
            [2.0, 2.0, 0.0]
        """
        values = Factor(basis).array.astype(np.float64)
        q, r = np.linalg.qr(values)
        keep = np.abs(np.diag(r)) > _RANK_TOLERANCE * max(np.abs(np.diag(r)).max(), 1e-300)
        if not keep.any():
            raise ValueError("basis spans no direction (all its columns are zero)")
        return cls(factor=q[:, keep].astype(np.float32), directions=directions)

    # -- the family hooks ------------------------------------------------------------------
    @property
    def biased(self) -> bool:
        return not self.whiten

    @property
    def label(self) -> str:
        factor = self.factor.fingerprint if isinstance(self.factor, Factor) else jsonable(self.factor)
        extras = (f", isotropic={self.isotropic:g}" if self.isotropic else "") + (", whitened" if self.whiten else "")
        return f"CovarianceProbe(K={self.directions}, factor={factor}{extras})"

    def params(self) -> dict[str, Any]:
        factor = jsonable(self.factor.array if isinstance(self.factor, Factor) else self.factor)
        return {"factor": factor, "directions": self.directions, "isotropic": float(self.isotropic), "whiten": self.whiten}

    def _factor_for(self, problem: ProblemBase) -> np.ndarray | jax.Array:
        n = problem.num_coordinates
        if isinstance(self.factor, Factor):
            values, where = self.factor.array, "factor"
        else:
            built, where = self.factor(problem), f"the factor built by {jsonable(self.factor)}"
            # under the caller's jit (a training step whose state holds a stale gradient) the
            # factor is traced: its values cannot be checked here, only its shape
            values = built if is_traced(built) else Factor(built).array
            if values.ndim != 2:
                raise ValueError(f"{where} has shape {values.shape}; it must be (n, r), one row per coordinate")
        if values.shape[0] != n:
            raise ValueError(
                f"{where} has {values.shape[0]} rows but the gradient has {n} coordinates; give one row per coordinate "
                f"(shape ({n}, r), rows in ravel order)"
            )
        return values

    def _plan(self, problem: ProblemBase) -> tuple[GaussianFactorSpec, Structure]:
        factor = self._factor_for(problem)
        n, rank = factor.shape
        s = math.sqrt(float(self.isotropic))
        # The factor and Σ⁻¹ stay at least float32: a half-precision Σ⁻¹ would bias the whitened estimate.
        dtype = wide_dtype(problem.dtype)
        structure: dict[str, Any] = {"factor": jnp.asarray(factor, dtype), "isotropic": jnp.asarray(s, dtype)}
        if self.whiten:
            structure.update(_traced_whitening(factor, s, dtype) if is_traced(factor) else _whitening(factor, s, dtype))
        return GaussianFactorSpec(self.directions, rank, s > 0, self.whiten), structure

    def _law(self, problem: ProblemBase) -> GaussianFactorLaw:
        spec, structure = self._plan(problem)
        return GaussianFactorLaw(problem.gradient(), spec=spec, structure=structure, estimator=self)

    def streamed_form(self, sizes: tuple[int, ...]) -> NoReturn:
        r"""None: $\operatorname{Var}[g_i] = (qD_i + \mu_i^2)/K$ needs $\Sigma\nabla$, from the $n\times r$ factor in memory.

        Raises:
            NoStreamedForm: always (see [`snrkit.ondisk`][snrkit.ondisk]).

        Examples:
            >>> import numpy as np, snrkit as sk
            >>> sk.CovarianceProbe(factor=np.eye(2)).streamed_form((2,))
            Traceback (most recent call last):
            ...
            snrkit.core.streamed.NoStreamedForm: CovarianceProbe(...) (family ...
        """
        raise no_streamed_form(
            self,
            "its variance (q·Σ_ii + (Σ∇)_i²)/K needs Σ∇ and the diagonal of Σ = s²I + UUᵀ, "
            "from an n×r factor U held in memory, not block totals of ∇²",
        )

    def _shape_free_cost(self) -> Cost:
        if not isinstance(self.factor, Factor):
            return super()._shape_free_cost()
        n, rank = self.factor.array.shape
        width = rank + (n if self.isotropic else 0)
        return Cost(jvps=self.directions, memory=self.directions * width / n + 1.0)


def _traced_whitening(factor: jax.Array, s: float, dtype: Any) -> dict[str, jax.Array]:
    r"""`_whitening` of a factor traced under jit: $(s^2I + U^\top U)^{-1}$, which $s > 0$ keeps invertible."""
    if s == 0:
        raise ValueError(
            "whiten=True with isotropic=0 needs a factor of full rank n, which a factor computed under jax.jit "
            "cannot be checked for; add an isotropic part (isotropic > 0), or build the estimator outside jit"
        )
    u = factor.astype(dtype)
    return {"inverse_core": jnp.linalg.inv(s * s * jnp.eye(u.shape[1], dtype=dtype) + u.T @ u)}


def _whitening(factor: np.ndarray, s: float, dtype: Any) -> dict[str, jax.Array]:
    """The arrays that apply Σ⁻¹, or a clear error when Σ is singular (no unbiased variant exists)."""
    factor = factor.astype(np.float64)
    n, rank = factor.shape
    if s > 0:
        core = np.linalg.inv(s * s * np.eye(rank) + factor.T @ factor)
        return {"inverse_core": jnp.asarray(core, dtype)}
    singular = np.linalg.svd(factor, compute_uv=False)
    if rank < n or singular.min() <= _RANK_TOLERANCE * singular.max():
        raise ValueError(
            f"whiten=True needs an invertible Σ, but Σ = UUᵀ has rank {int(np.sum(singular > _RANK_TOLERANCE * singular.max()))} "
            f"< n = {n}: the estimate lies in the range of Σ, so no linear correction makes it unbiased for a gradient "
            f"outside it. Add an isotropic part (isotropic > 0) or use the plain (biased) probe."
        )
    read = np.linalg.solve(factor @ factor.T, factor)  # Σ⁻¹U
    return {"read_factor": jnp.asarray(read, dtype)}


def stale_gradient(problem: ProblemBase) -> PyTree:
    """The belief of a prior from a training loop: the `"stale_gradient"` a problem carries as its state.

    A clear error names the missing state when the problem carries none.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> from snrkit.families.covariance import stale_gradient
        >>> problem = sk.GradientProblem(
        ...     jnp.ones(2), state={"stale_gradient": jnp.array([1.0, 0.0])}
        ... )
        >>> stale_gradient(problem).tolist()
        [1.0, 0.0]
    """
    return problem.state_value("stale_gradient")


class _PriorFactor:
    """The factor √ρ b̂ of a prior, from a fixed belief or a function of the problem (named for labels)."""

    def __init__(self, belief: Any, confidence: float):
        self.belief, self.confidence = belief, confidence
        self.__qualname__ = f"prior(confidence={confidence:g})"

    def __call__(self, problem: ProblemBase | None) -> np.ndarray | jax.Array:
        belief = self.belief(problem) if callable(self.belief) else self.belief
        if is_traced(belief):  # under jit: a zero or non-finite belief gives NaN probes, seen in the estimate
            flat = ravel(belief)[0]
            flat = flat.astype(jnp.promote_types(flat.dtype, jnp.float32))  # a float16 norm overflows
            return (math.sqrt(self.confidence) * flat / jnp.linalg.norm(flat))[:, None]
        flat = ravel_host(belief)
        norm = float(np.linalg.norm(flat))
        if not (math.isfinite(norm) and norm > 0):
            raise ValueError("the belief of a prior must be a finite, non-zero vector (its direction is where probes go)")
        return (math.sqrt(self.confidence) * flat / norm)[:, None]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PriorFactor) and other.belief is self.belief and other.confidence == self.confidence

    def __hash__(self) -> int:
        return hash((id(self.belief), self.confidence))


FAMILIES = (
    Family(
        name="covariance-probe",
        title="Gaussian probes with a covariance",
        estimator=CovarianceProbe,
        summary="Gaussian probes v ~ N(0, s²I + UUᵀ): priors, subspaces, guesses; whitened, unbiased when Σ is invertible.",
        law=r"\mathbb E[g]=\Sigma\nabla,\ \operatorname{Cov}[g]=((\nabla^\top\Sigma\nabla)\Sigma+\Sigma\nabla\nabla^\top\Sigma)/K",
        bias="biased (E[g] = Σ∇) unless whitened; whitened: unbiased",
        cost="K JVPs",
        source="Frye (2022), commentary (sample from a prior); snrkit",
        docs="families/covariance-probes.md",
        order=20,
        timed=(CovarianceProbe.prior(stale_gradient, confidence=0.5),),
    ),
)
"""The registry row of this module."""

__all__ = ["CovarianceProbe", "GaussianFactorLaw", "GaussianFactorSpec", "Factor", "FAMILIES", "stale_gradient"]
