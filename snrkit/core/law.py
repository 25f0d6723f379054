r"""The exact law of an estimate once the problem is fixed: the base class every family's law extends.

A *law* is what an estimator becomes once the true gradient $\nabla$ (and whatever else
its family needs) is fixed: a distribution over estimates $g$ with closed-form moments
and a sampler that draws the same probes as the real estimator.

**What a family provides** (float64, flat in ravel order, for scale 1):

- required: `_flat_mean64` ($\mathbb E[g]$) and `_flat_var64` ($\operatorname{Var}[g_i]$);
- optional, declared in `closed_forms`: `_flat_cov64` (`"cov"`), `_flat_fourth64`
  (`"fourth_central_moment"`, $\mathbb E[(g_i-\mathbb E g_i)^4]$) and
  `_projected_variance64` (`"projected_variance"`, $w^\top\operatorname{Cov}[g]\,w$);
- optionally `correction_terms` (the basis of "what the truth is instead").

**What every law gets here**, whatever its family: `mean`, `var`, `std`, `bias`
($\mathbb E[g]-\nabla$), `mse` ($\mathrm{bias}_i^2 + \operatorname{Var}[g_i]$),
`total_variance`, `total_mse`, `snr` ($\mathbb E[g_i]^2/\operatorname{Var}[g_i]$, from the
mean of the estimate, not from $\nabla$), `aggregate_snr`, `floor` and `efficiency`, and the
samplers `sample`/`sample_flat`. A law with a `scale` $c$ multiplies every estimate by $c$:
the mean by $c$, (co)variances by $c^2$, the fourth moment by $c^4$.

Moments are computed in float64 and returned in the gradient's dtype where they fit (see
[`snrkit.core.precision`][snrkit.core.precision]).

Examples:
    >>> import jax.numpy as jnp, snrkit as sk
    >>> law = sk.ForwardGradient().given(
    ...     jnp.array([3.0, 4.0])
    ... )  # Gaussian, K = 1
    >>> law.var().tolist(), law.bias().tolist(), float(law.efficiency())
    ([34.0, 41.0], [0.0, 0.0], 0.3333333432674408)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.precision import fit
from snrkit.core.spec import ProbeSpec, Structure
from snrkit.core.tree import PyTree, ravel
from snrkit.core.validation import check_int, check_key

if TYPE_CHECKING:
    from snrkit.core.estimator import Estimator

DEFAULT_COV_MAX_BYTES = 1 << 30
"""`Law.cov()` refuses to allocate more than this by default (1 GiB)."""

CLOSED_FORMS = ("cov", "fourth_central_moment", "projected_variance")
"""The optional closed forms a law may declare in `closed_forms`."""


class MissingClosedForm(NotImplementedError):
    """A law was asked for an optional closed form its family does not have."""


@dataclass(frozen=True)
class CorrectionTerms:
    r"""The basis a family offers for "what the truth is instead" of a refuted claim.

    A refuted per-entry claim $c_i$ is corrected by a least-squares fit of the truth as
    $c_i + \sum_t a_t\,b_{t,i}$ over entries, with the basis columns $b_t$ (already divided
    by whatever the family divides its variance by).

    Attributes:
        columns: name (how the term is written, e.g. `"∇_i²"`) -> flat basis column.
        note: appended to the fitted terms, e.g. `"all over K=4"`; empty for none.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> terms = (
        ...     sk.ForwardGradient(directions=4)
        ...     .given(jnp.array([3.0, 4.0]))
        ...     .correction_terms()
        ... )
        >>> list(terms.columns), terms.note
        (['∇_i²', '‖∇‖²'], 'all over K=4')
    """

    columns: Mapping[str, np.ndarray]
    note: str = ""


class Law(ABC):
    """The exact law of an estimate: moments, derived quantities and a sampler.

    Built by an estimator's `given(problem)`; see the module docs for what a family
    provides and what every law gets. Everything flat is in
    `jax.flatten_util.ravel_pytree` order.

    Args:
        grad: the true gradient $\\nabla$, any pytree of float arrays.
        spec: the [`ProbeSpec`][snrkit.core.spec.ProbeSpec] that draws the estimates.
        structure: the arrays `spec` needs besides the gradient.
        scale: every estimate is multiplied by this constant.
        estimator: the estimator the law belongs to (for `describe`).

    Attributes:
        grad: the true gradient, as given.
        closed_forms: the optional closed forms this law has (a subset of
            [`CLOSED_FORMS`][snrkit.core.law.CLOSED_FORMS]).

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.ForwardGradient().given(
        ...     {"b": jnp.array([1.0]), "w": jnp.array([2.0, 2.0])}
        ... )
        >>> isinstance(law, sk.Law), law.num_coordinates, law.has("cov")
        (True, 3, True)
        >>> law.var()["w"].tolist()  # ‖∇‖² + ∇ᵢ² = 9 + 4
        [13.0, 13.0]
    """

    closed_forms: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        grad: PyTree,
        *,
        spec: ProbeSpec,
        structure: Structure | None = None,
        scale: float = 1.0,
        estimator: Estimator | None = None,
    ):
        self.grad = grad
        self._flat_grad, self._unravel = ravel(grad)
        self._spec = spec
        self._structure = dict(structure or {})
        self._args = spec.law_args(self._flat_grad, self._structure)
        self.scale = float(scale)
        self.estimator = estimator

    # -- sizes and plumbing -------------------------------------------------------------
    @property
    def num_coordinates(self) -> int:
        """Number of coordinates $n$ of the gradient (all leaves together).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(
            ...     {"w": jnp.zeros((2, 3)), "b": jnp.ones(3)}
            ... ).num_coordinates
            9
        """
        return int(self._flat_grad.size)

    @property
    def dtype(self) -> jnp.dtype:
        """Dtype of the estimates (the gradient's, after ravel's promotion).

        Moments are returned in it where they fit (see
        [`snrkit.core.precision`][snrkit.core.precision]).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> str(sk.ForwardGradient().given(jnp.ones(2, jnp.bfloat16)).dtype)
            'bfloat16'
        """
        return self._flat_grad.dtype

    @property
    def num_jvps(self) -> int:
        """$J$: the directional derivatives (JVPs) behind one estimate; the $K$ of the floor.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.Partitioned(blocks=3, directions=2).given(jnp.ones(6)).num_jvps
            6
        """
        return self._spec.num_jvps

    def has(self, name: str) -> bool:
        """Whether the law has the optional closed form `name` (one of [`CLOSED_FORMS`][snrkit.core.law.CLOSED_FORMS]).

        Statistics that need one (the exact noise of a sampled variance needs the fourth
        central moment) fall back to the sampled moments when it is missing.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(jnp.ones(2)).has("fourth_central_moment")
            True
        """
        if name not in CLOSED_FORMS:
            raise ValueError(f"unknown closed form {name!r}; the optional ones are {', '.join(CLOSED_FORMS)}")
        return name in self.closed_forms

    def unravel(self, flat: jax.Array) -> PyTree:
        """Turn a flat array of shape `(..., n)` into a pytree shaped like the gradient.

        Args:
            flat: array whose last axis holds the $n$ coordinates in ravel order; leading
                axes are kept in front of each leaf's shape.

        Returns:
            A pytree shaped like the gradient.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given(
            ...     {"b": jnp.ones(1), "w": jnp.ones((2, 2))}
            ... )
            >>> law.unravel(jnp.arange(5.0))["w"].tolist()
            [[1.0, 2.0], [3.0, 4.0]]
            >>> law.unravel(jnp.zeros((7, 5)))["w"].shape
            (7, 2, 2)
        """
        if flat.ndim == 1:
            return self._unravel(flat)
        lead = flat.shape[:-1]
        out = jax.vmap(self._unravel)(flat.reshape(-1, flat.shape[-1]))
        return jax.tree_util.tree_map(lambda x: x.reshape(*lead, *x.shape[1:]), out)

    def describe(self) -> dict[str, object]:
        """The estimator's description (label, family, params), for tables and sweeps.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient(directions=4).given(jnp.ones(2)).describe()["label"]
            'ForwardGradient(gaussian, K=4)'
        """
        if self.estimator is None:
            return {"label": type(self).__name__, "family": "", "params": "{}"}
        return self.estimator.describe()

    # -- what a family provides (float64, flat, scale 1) ------------------------------------
    @abstractmethod
    def _flat_mean64(self) -> jax.Array:
        r"""$\mathbb E[g]$ for scale 1, float64, flat."""

    @abstractmethod
    def _flat_var64(self) -> jax.Array:
        r"""$\operatorname{Var}[g_i]$ for scale 1, float64, flat."""

    def _flat_cov64(self) -> jax.Array:
        raise self._missing("cov")

    def _flat_fourth64(self) -> jax.Array:
        raise self._missing("fourth_central_moment")

    def _projected_variance64(self, weights: np.ndarray) -> float:
        raise self._missing("projected_variance")

    def correction_terms(self) -> CorrectionTerms:
        """The basis of corrections to a refuted per-entry claim (none by default).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> list(
            ...     sk.ForwardGradient()
            ...     .given(jnp.array([1.0, 2.0]))
            ...     .correction_terms()
            ...     .columns
            ... )
            ['∇_i²', '‖∇‖²']
        """
        return CorrectionTerms({})

    def _closed(self, name: str, form: Callable[..., Any]) -> Callable[..., Any]:
        """`form` if the law declares the closed form `name`, else a clear error: declaration and behaviour agree."""
        if name not in self.closed_forms:
            raise self._missing(name)
        return form

    def _missing(self, name: str) -> MissingClosedForm:
        return MissingClosedForm(
            f"{type(self).__name__} has no closed-form {name.replace('_', ' ')}; check law.has({name!r}) "
            f"first, or estimate it from samples (snrkit.monte_carlo)."
        )

    # -- flat moments (scaled, in the narrowest dtype that holds them) ----------------------
    def _mean64(self) -> jax.Array:
        return _times(self._flat_mean64(), self.scale)

    def _var64(self) -> jax.Array:
        return _times(self._flat_var64(), self.scale**2)

    def _grad64(self) -> jax.Array:
        with jax.enable_x64(True):
            return jnp.asarray(self._flat_grad, jnp.float64)

    def _on_grad64(self, kernel: Callable[..., jax.Array], *statics: Any, arrays: tuple = ()) -> jax.Array:
        """`kernel(∇ in float64, *arrays, *statics)`, widened inside the one compiled call.

        A float64 copy of the gradient made beforehand is written to fresh memory and read
        back, which took about a third of `var()`'s time at $n = 10^7$ on a CPU.
        """
        with jax.enable_x64(True):
            return _widened_call(kernel, statics, self._flat_grad, *arrays)

    def _fit(self, x64: jax.Array) -> jax.Array:
        return fit(x64, self.dtype)

    def flat_mean(self) -> jax.Array:
        r"""$\mathbb E[g]$, flat (ravel order).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(
            ...     {"w": jnp.array([3.0, 4.0])}
            ... ).flat_mean().tolist()
            [3.0, 4.0]
        """
        return self._fit(self._mean64())

    def flat_var(self) -> jax.Array:
        r"""$\operatorname{Var}[g_i]$, flat (ravel order).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(
            ...     {"w": jnp.array([3.0, 4.0])}
            ... ).flat_var().tolist()
            [34.0, 41.0]
        """
        return self._fit(self._var64())

    def flat_cov(self) -> jax.Array:
        r"""$\operatorname{Cov}[g]$, dense `(n, n)`, without the size check of `cov`.

        Raises:
            MissingClosedForm: the family has no closed-form covariance.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(jnp.array([3.0, 4.0])).flat_cov().tolist()
            [[34.0, 12.0], [12.0, 41.0]]
        """
        return self._fit(_times(self._closed("cov", self._flat_cov64)(), self.scale**2))

    def flat_fourth_central_moment(self) -> jax.Array:
        r"""$\mathbb E[(g_i-\mathbb E g_i)^4]$, flat (ravel order).

        Raises:
            MissingClosedForm: the family has no closed-form fourth moment.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(
            ...     jnp.array([1.0])
            ... ).flat_fourth_central_moment().tolist()
            [60.0]
        """
        return self._fit(_times(self._closed("fourth_central_moment", self._flat_fourth64)(), self.scale**4))

    # -- public moments, shaped like the gradient ---------------------------------------------
    def mean(self) -> PyTree:
        r"""$\mathbb E[g]$, shaped like the gradient ($\nabla$ itself for an unbiased estimator).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given({"w": jnp.array([3.0, 4.0])}).mean()[
            ...     "w"
            ... ].tolist()
            [3.0, 4.0]
        """
        return self._unravel(self.flat_mean())

    def var(self) -> PyTree:
        r"""Exact per-coordinate variance $\operatorname{Var}[g_i]$, shaped like the gradient.

        For iid probes in blocks, averaged over $K$ directions,
        $\operatorname{Var}[g_i] = (\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K$
        (derived in the docs: [Derivations](../derivations.md#blocks)).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> grad = {"w": jnp.array([3.0, 4.0])}
            >>> sk.ForwardGradient("gaussian").given(grad).var()[
            ...     "w"
            ... ].tolist()  # 25 + ∇ᵢ²
            [34.0, 41.0]
            >>> sk.ForwardGradient("rademacher").given(grad).var()[
            ...     "w"
            ... ].tolist()  # 25 − ∇ᵢ²
            [16.0, 9.0]
        """
        return self._unravel(self.flat_var())

    def std(self) -> PyTree:
        r"""Per-coordinate standard deviation $\sqrt{\operatorname{Var}[g_i]}$, shaped like the gradient.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient("rademacher").given(
            ...     jnp.array([3.0, 4.0])
            ... ).std().tolist()
            [4.0, 3.0]
        """
        return self._unravel(self._fit(_sqrt(self._var64())))

    def bias(self) -> PyTree:
        r"""$\mathbb E[g] - \nabla$ per coordinate, shaped like the gradient (zero for an unbiased estimator).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(
            ...     jnp.array([2.0, 4.0])
            ... ).bias().tolist()  # unbiased
            [0.0, 0.0]
        """
        return self._unravel(self._fit(_sub(self._mean64(), self._grad64())))

    def mse(self) -> PyTree:
        r"""Mean squared error per coordinate, $\mathbb E[(g_i-\nabla_i)^2] = \mathrm{bias}_i^2 + \operatorname{Var}[g_i]$.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(
            ...     jnp.array([3.0, 4.0])
            ... ).mse().tolist()  # unbiased: the variance
            [34.0, 41.0]
        """
        return self._unravel(self._fit(self._mse64()))

    def _mse64(self) -> jax.Array:
        return _mse(self._mean64(), self._grad64(), self._var64())

    def total_variance(self) -> jax.Array:
        r"""$\operatorname{tr}\operatorname{Cov}[g] = \sum_i \operatorname{Var}[g_i]$ (a scalar).

        For the forward gradient this is $(n+\kappa-2)\|\nabla\|^2/K$. The sum is taken in
        float64.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> float(
            ...     sk.ForwardGradient().given(jnp.array([3.0, 4.0])).total_variance()
            ... )  # (2+3−2)·25
            75.0
        """
        return self._fit(_sum(self._var64()))

    def total_mse(self) -> jax.Array:
        r"""$\mathbb E\|g-\nabla\|^2 = \|\mathbb E g - \nabla\|^2 + \operatorname{tr}\operatorname{Cov}[g]$ (a scalar).

        For an unbiased estimator it is the total variance; for the plain projection onto
        $K$ random orthonormal directions it is $(1-K/n)\|\nabla\|^2$.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> float(
            ...     sk.ForwardGradient().given(jnp.array([3.0, 4.0])).total_mse()
            ... )  # unbiased: (n+1)‖∇‖²
            75.0
        """
        return self._fit(_sum(self._mse64()))

    def snr(self) -> PyTree:
        r"""Per-coordinate signal-to-noise ratio $\mathrm{SNR}_i = \mathbb E[g_i]^2 / \operatorname{Var}[g_i]$.

        The signal is the mean of the estimate, not $\nabla$: a biased estimator's SNR says
        how well its samples pin down what it estimates, and `mse`/`efficiency` say how
        far that is from $\nabla$. For the forward gradient,
        $K\nabla_i^2/(\|\nabla\|^2 + (\kappa-2)\nabla_i^2)$.

        A coordinate with zero variance has SNR `inf` when its mean is non-zero (the
        estimate is exact there) and `NaN` when its mean is zero too (0/0: there is
        neither signal nor noise, so the ratio is undefined). A zero gradient gives NaN
        everywhere.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> snr = (
            ...     sk.ForwardGradient().given(jnp.array([3.0, 4.0])).snr()
            ... )  # 9/34, 16/41
            >>> [round(x, 4) for x in snr.tolist()]
            [0.2647, 0.3902]
            >>> sk.ForwardGradient().given(jnp.zeros(2)).snr().tolist()
            [nan, nan]
        """
        return self._unravel(self._fit(_ratio(_square(self._mean64()), self._var64())))

    def aggregate_snr(self) -> jax.Array:
        r"""Whole-vector SNR $\|\mathbb E g\|^2 / \operatorname{tr}\operatorname{Cov}[g]$.

        For the forward gradient this is $K/(n+\kappa-2)$ whatever the gradient (NaN for a
        zero gradient).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient(directions=2).given(
            ...     jnp.array([3.0, 4.0, 0.0, 1.0])
            ... )
            >>> round(float(law.aggregate_snr()), 4)  # 2 / (4 + 3 − 2)
            0.4
        """
        return self._fit(_ratio(_sum(_square(self._mean64())), _sum(self._var64())))

    def floor(self) -> jax.Array:
        r"""The least total variance of an unbiased estimator with as many JVPs: $\max(0, n/J - 1)\,\|\nabla\|^2$.

        Any estimator that is linear in $J$ directional derivatives and unbiased for every
        gradient has, averaged over rotations of the gradient, total variance at least
        this; unbiased orthogonal frames reach it for every gradient (derived in the
        docs: [The floor](../derivations.md#floor)). $J$ is
        [`num_jvps`][snrkit.core.law.Law.num_jvps].

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> float(
            ...     sk.ForwardGradient(directions=2)
            ...     .given(jnp.array([3.0, 4.0, 0.0, 0.0]))
            ...     .floor()
            ... )  # (4/2 − 1) · 25
            25.0
        """
        return self._fit(self._floor64())

    def _floor64(self) -> jax.Array:
        return _floor(self._grad64(), self.num_coordinates, self.num_jvps)

    def efficiency(self) -> jax.Array:
        r"""The floor over the total MSE: $\max(0, n/J-1)\|\nabla\|^2 \,/\, \mathbb E\|g-\nabla\|^2$.

        At most 1 for an unbiased estimator whose law does not change when the gradient is
        rotated (iid Gaussian probes: $(n-J)/(n+1)$ for $J$ directions); an estimator that
        exploits structure (blocks aligned with a concentrated gradient, a good prior,
        accepting bias) can exceed 1 on a given gradient. It is 1 when both are zero (the
        estimate is exact with $J \ge n$ JVPs), `inf` when only the MSE is, and NaN for a
        zero gradient.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> grad = jnp.array([3.0, 4.0, 0.0, 1.0])
            >>> round(
            ...     float(sk.ForwardGradient(directions=2).given(grad).efficiency()), 4
            ... )  # (4−2)/(4+1)
            0.4
            >>> float(
            ...     sk.ForwardGradient("rademacher").given(grad).efficiency()
            ... )  # (n−1)‖∇‖²: on the floor
            1.0
        """
        return self._fit(_efficiency(self._floor64(), _sum(self._mse64()), _sum(_square(self._grad64()))))

    def fourth_central_moment(self) -> PyTree:
        r"""Exact fourth central moment $\mu_4 = \mathbb E[(g_i-\mathbb E g_i)^4]$ per coordinate, shaped like the gradient.

        It sets the noise of a sampled variance: a sample variance over $N$ draws has
        variance $\mu_4/N - \sigma^4 (N-3)/(N(N-1))$.

        Raises:
            MissingClosedForm: the family has no closed form for it (check `has`).

        Examples:
            With one coordinate and a Gaussian probe, $g = \nabla v^2$ and
            $\mu_4 = \nabla^4\,\mathbb E[(v^2-1)^4] = 60\nabla^4$:

            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(
            ...     {"w": jnp.array([1.0])}
            ... ).fourth_central_moment()["w"].tolist()
            [60.0]
        """
        return self._unravel(self.flat_fourth_central_moment())

    def projected_variance(self, weights: Any) -> float:
        r"""$\operatorname{Var}[w\cdot g] = w^\top\operatorname{Cov}[g]\,w$ for flat weights $w$, without forming Cov.

        Args:
            weights: flat weights $w$, one finite number per coordinate in ravel order.

        Returns:
            The variance of the projection, as a Python float (computed in float64).

        Raises:
            ValueError: `weights` has the wrong length or non-finite entries.
            MissingClosedForm: the family has no closed form for it (check `has`).

        Examples:
            >>> import numpy as np, jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
            >>> law.projected_variance(np.array([1.0, 1.0]))  # 34 + 41 + 2·12
            99.0
        """
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.num_coordinates,):
            raise ValueError(
                f"weights must be flat with one entry per coordinate, shape ({self.num_coordinates},); got shape "
                f"{w.shape}. Flatten a pytree with jax.flatten_util.ravel_pytree."
            )
        if not np.all(np.isfinite(w)):
            raise ValueError("weights has NaN or inf entries; pass finite weights")
        return float(self._closed("projected_variance", self._projected_variance64)(w)) * self.scale**2

    def cov(self, *, max_bytes: int = DEFAULT_COV_MAX_BYTES) -> jax.Array:
        r"""Dense covariance $\operatorname{Cov}[g]$, shape `(n, n)`, in ravel order.

        For iid probes in blocks,
        $\operatorname{Cov}[g] = \frac1K\big(\bigoplus_B(\|\nabla_B\|^2 I + \nabla_B\nabla_B^\top) + (\kappa-3)\operatorname{diag}\nabla^2\big)$
        (derived in the docs: [Derivations](../derivations.md#covariance)).

        Args:
            max_bytes: refuse to allocate more than this (the result and its float64 work arrays).

        Returns:
            The `(n, n)` covariance.

        Raises:
            TypeError: `max_bytes` is not an int.
            ValueError: `n × n` entries would exceed `max_bytes`.
            MissingClosedForm: the family has no closed-form covariance (check `has`).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
            >>> law.cov().tolist()  # ‖∇‖² I + ∇∇ᵀ
            [[34.0, 12.0], [12.0, 41.0]]
            >>> law.cov(max_bytes=10)
            Traceback (most recent call last):
            ...
            ValueError: cov() would hold an 2 x 2 matrix (0.0 GiB), ...
        """
        max_bytes = check_int(max_bytes, "max_bytes", hint="a memory budget in bytes, e.g. 1 << 30")
        self._closed("cov", self._flat_cov64)
        n = self.num_coordinates
        # The result, plus the float64 work arrays built on the way.
        need = n * n * (jnp.dtype(self.dtype).itemsize + 8 + 8 + 1)
        if need > max_bytes:
            raise ValueError(
                f"cov() would hold an {n} x {n} matrix ({need / 2**30:.1f} GiB), more than "
                f"max_bytes={max_bytes}. Use var() for its diagonal or total_variance() for its "
                f"trace, or pass a larger max_bytes if you really want the dense matrix."
            )
        return self.flat_cov()

    # -- sampling ---------------------------------------------------------------------------
    @property
    def sampler(self) -> ProbeSpec:
        """The hashable [`ProbeSpec`][snrkit.core.spec.ProbeSpec], called as `sampler(sampling_args, key, indices)`.

        Sample `i` uses the key `fold_in(key, i)` and nothing else, so any subset of
        sample indices can be drawn in any order with the same result (up to float
        rounding). It is hashable because [`monte_carlo`][snrkit.montecarlo.monte_carlo]
        passes it to `jax.jit` as a static argument.

        Examples:
            Samples 3 and 2, drawn on their own, are rows 3 and 2 of `sample_flat`:

            >>> import jax, jax.numpy as jnp, numpy as np, snrkit as sk
            >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
            >>> key, draw = jax.random.key(0), jax.jit(law.sampler)
            >>> some = draw(law.sampling_args, key, jnp.array([3, 2], dtype=jnp.uint32))
            >>> (
            ...     some.shape,
            ...     bool(
            ...         np.allclose(some, np.asarray(law.sample_flat(key, 4))[[3, 2]])
            ...     ),
            ... )
            ((2, 2), True)
        """
        return self._spec

    @property
    def sampling_args(self) -> dict[str, Any]:
        """The arrays `sampler` needs: `"grad"` (flat) and the family's structure.

        Passed as arguments so that jit does not bake them into the compiled sampler.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sorted(sk.ForwardGradient().given(jnp.array([3.0, 4.0])).sampling_args)
            ['grad']
        """
        return self._args

    def sample_flat(self, key: jax.Array, num: int) -> jax.Array:
        """`num` independent estimates, flat: shape `(num, n)`.

        Args:
            key: a JAX key, e.g. `jax.random.key(0)`.
            num: number of estimates, at least 1.

        Returns:
            The estimates in ravel order, in the gradient's dtype.

        Examples:
            >>> import jax, jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given({"w": jnp.array([3.0, 4.0])})
            >>> law.sample_flat(jax.random.key(0), 5).shape
            (5, 2)
        """
        key = check_key(key)
        num = check_int(num, "num")
        return draw_samples(self.sampler, self.sampling_args, key, jnp.arange(num, dtype=jnp.uint32))

    def sample(self, key: jax.Array, num: int) -> PyTree:
        """`num` independent estimates, as a pytree with a leading axis of size `num`.

        Sample `i` is the estimate `est.estimates(key, num, ...)[i]` computes with real
        JVPs: both use the same probes (see
        [`Estimator.estimates`][snrkit.core.estimator.Estimator.estimates]).

        Args:
            key: a JAX key, e.g. `jax.random.key(0)`.
            num: number of estimates, at least 1.

        Returns:
            A pytree shaped like the gradient with a leading axis of size `num`.

        Examples:
            >>> import jax, jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given(
            ...     {"b": jnp.ones(3), "w": jnp.ones((2, 3))}
            ... )
            >>> {
            ...     name: leaf.shape
            ...     for name, leaf in law.sample(jax.random.key(0), 10).items()
            ... }
            {'b': (10, 3), 'w': (10, 2, 3)}
        """
        return self.unravel(self.sample_flat(key, num))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.num_coordinates}, {self.describe()['label']})"


@partial(jax.jit, static_argnums=0)
def draw_samples(sampler: Callable, args: Any, key: jax.Array, indices: jax.Array) -> jax.Array:
    """`sampler(args, key, indices)`, compiled once per sampler and shapes."""
    return sampler(args, key, indices)


# Small float64 kernels: each runs with x64 enabled for that call only.
def _x64(fn: Callable) -> Callable:
    compiled = jax.jit(fn)

    def run(*args: Any) -> jax.Array:
        with jax.enable_x64(True):
            return compiled(*[jnp.asarray(a, jnp.float64) if isinstance(a, jax.Array) else a for a in args])

    return run


@partial(jax.jit, static_argnums=(0, 1))
def _widened_call(kernel: Callable[..., jax.Array], statics: tuple, g: jax.Array, *arrays: Any) -> jax.Array:
    return kernel(g.astype(jnp.float64), *arrays, *statics)


_scaled = _x64(lambda x, c: x * c)


def _times(x: jax.Array, c: float) -> jax.Array:
    # times 1 is exact: skip a pass that writes n fresh float64 values
    return x if c == 1.0 else _scaled(x, c)


_sqrt = _x64(jnp.sqrt)
_sub = _x64(lambda a, b: a - b)
_square = _x64(jnp.square)
_sum = _x64(jnp.sum)
# IEEE division gives x/0 = inf and 0/0 = NaN, which is the documented SNR.
_ratio = _x64(lambda a, b: a / b)
_mse = _x64(lambda mean, grad, var: (mean - grad) ** 2 + var)


@_x64
def _floor_impl(grad: jax.Array, n: jax.Array, jvps: jax.Array) -> jax.Array:
    return jnp.maximum(0.0, n / jvps - 1.0) * jnp.sum(grad**2)


def _floor(grad: jax.Array, n: int, jvps: int) -> jax.Array:
    with jax.enable_x64(True):
        return _floor_impl(grad, jnp.float64(n), jnp.float64(jvps))


@_x64
def _efficiency(floor: jax.Array, total_mse: jax.Array, norm_sq: jax.Array) -> jax.Array:
    # Both zero: exact with J >= n JVPs, as the floor itself: 1. A zero gradient: no signal, NaN.
    value = jnp.where(total_mse > 0, floor / jnp.where(total_mse > 0, total_mse, 1.0), jnp.where(floor > 0, jnp.inf, 1.0))
    return jnp.where(norm_sq > 0, value, jnp.nan)


__all__ = ["Law", "CorrectionTerms", "MissingClosedForm", "CLOSED_FORMS", "DEFAULT_COV_MAX_BYTES", "draw_samples"]
