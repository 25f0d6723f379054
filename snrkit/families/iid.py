r"""iid probe entries, split into blocks (one JVP each), averaged over K directions.

$$
g = \frac1K \sum_{k=1}^K \sum_{B} (\nabla_B \cdot v^{(k)}_B)\, v^{(k)}_B ,
\qquad v^{(k)}_i \text{ iid, mean 0, variance 1, kurtosis } \kappa .
$$

With $B(i)$ the block of coordinate $i$:

$$
\begin{aligned}
\mathbb E[g] &= \nabla, \qquad
\operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K},\\
\operatorname{Cov}[g] &= \frac1K\Big(\bigoplus_B \big(\|\nabla_B\|^2 I + \nabla_B\nabla_B^\top\big)
    + (\kappa-3)\operatorname{diag}(\nabla^2)\Big).
\end{aligned}
$$

The forward gradient of Baydin et al. (2022, "Gradients without backpropagation") is one
block ([`ForwardGradient`][snrkit.families.iid.ForwardGradient]); Yao's partitioned probe
(Yao, "Studies on forward mode gradient descent", §III.C) has several
([`Partitioned`][snrkit.families.iid.Partitioned]). The mean is Baydin et al.'s Theorem 1;
the variance, covariance and fourth moment are derived in the docs:
[Derivations](../derivations.md).

Examples:
    >>> import jax.numpy as jnp, snrkit as sk
    >>> law = sk.ForwardGradient().given(
    ...     jnp.array([3.0, 4.0])
    ... )  # Gaussian, K = 1
    >>> law.var().tolist(), law.cov().tolist()
    ([34.0, 41.0], [[34.0, 12.0], [12.0, 41.0]])
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.estimator import Cost, Estimator
from snrkit.core.law import CorrectionTerms, Law
from snrkit.core.numerics import block_sums, sum_of_others
from snrkit.core.problem import ProblemBase
from snrkit.core.spec import ProbeSpec, Structure
from snrkit.core.streamed import (
    Blocks,
    CoordinateVariance,
    StreamedForm,
    no_streamed_form,
)
from snrkit.core.threefry import rolled
from snrkit.core.tree import PyTree, leaf_sizes
from snrkit.core.validation import check_int
from snrkit.families.registry import Family
from snrkit.probes import Probe, get_probe

# Above this many entries the (n, blocks) matrix that turns block sums into one matmul is
# too large; a segment sum is used instead.
_MAX_BLOCK_MATRIX_ENTRIES = 1 << 24


# ----------------------------------------------------------------------------------------
# The spec: how one estimate is drawn
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockProbeSpec(ProbeSpec):
    r"""Draws $g = \frac1K\sum_k v^{(k)} \odot s^{(k)}_{B(i)}$ with $s^{(k)}_B = \nabla_B\cdot v^{(k)}_B$.

    The probes of a sample are one `(K, n)` array of iid entries; JVP $j$ pushes forward
    direction $j \,\mathrm{div}\, b$ restricted to block $j \bmod b$ ($b$ blocks).

    Attributes:
        probe: the probe distribution.
        directions: $K$, the number of independent directions averaged.
        num_blocks: number of blocks $b$.
        block_matrix: the law's sampler takes block sums as one matmul with an
            `(n, blocks)` matrix (else a segment sum); the real estimator never uses it.

    Examples:
        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> law = sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0]))
        >>> spec = law.sampler
        >>> spec.directions, spec.num_blocks, spec.num_jvps
        (1, 2, 2)
        >>> jax.jit(spec)(
        ...     law.sampling_args,
        ...     jax.random.key(0),
        ...     jnp.arange(3, dtype=jnp.uint32),
        ... ).shape
        (3, 4)
    """

    probe: Probe
    directions: int
    num_blocks: int
    block_matrix: bool = False

    @property
    def num_jvps(self) -> int:
        return self.directions * self.num_blocks

    def draw(self, structure: Structure, key: jax.Array, n: int, dtype: jnp.dtype) -> jax.Array:
        """The `(K, n)` probes of one sample."""
        if self.num_blocks > 1:  # each entry feeds every block's tangent: JAX's looped hash, written once
            key = rolled(key)
        return self.probe.sample(key, (self.directions, n), dtype)

    def tangent(self, structure: Structure, probes: jax.Array, j: jax.Array | int) -> jax.Array:
        tangent = probes[j // self.num_blocks]
        if self.num_blocks > 1:
            tangent = jnp.where(structure["block_ids"] == j % self.num_blocks, tangent, 0)
        return tangent

    def tangents(self, structure: Structure, probes: jax.Array) -> jax.Array:
        return probes if self.num_blocks == 1 else super().tangents(structure, probes)

    def derivatives(self, args: Structure, probes: jax.Array) -> jax.Array:
        r"""$s^{(k)}_B = \nabla_B\cdot v^{(k)}_B$ for each direction and block, flat `(K · blocks,)`."""
        grad = args["grad"]
        if self.num_blocks == 1:
            derivs = probes @ grad
        elif self.block_matrix:
            derivs = probes @ args["block_matrix"]
        else:
            derivs = _segment_sums(probes * grad, args["block_ids"], self.num_blocks)
        return derivs.reshape(-1)

    def combine(self, structure: Structure, probes: jax.Array, derivs: jax.Array) -> jax.Array:
        derivs = derivs.reshape(self.directions, self.num_blocks)
        if self.num_blocks == 1:
            scaled = probes * derivs
        else:
            scaled = probes * jnp.take(derivs, structure["block_ids"], axis=-1)
        return jnp.mean(scaled, axis=-2)

    def law_args(self, grad: jax.Array, structure: Structure) -> dict[str, Any]:
        args = {"grad": grad, **structure}
        if self.block_matrix:
            args["block_matrix"] = jax.nn.one_hot(structure["block_ids"], self.num_blocks, dtype=grad.dtype) * grad[:, None]
        return args

    def probe_entries(self, n: int) -> int:
        return self.directions * n


def _segment_sums(x: jax.Array, block_ids: jax.Array, num_blocks: int) -> jax.Array:
    """Sum the last axis of `x` within blocks: `(..., n) -> (..., blocks)`."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    sums = jax.vmap(lambda row: jax.ops.segment_sum(row, block_ids, num_segments=num_blocks))(flat)
    return sums.reshape(*lead, num_blocks)


# ----------------------------------------------------------------------------------------
# The law
# ----------------------------------------------------------------------------------------


class BlockProbeLaw(Law):
    r"""Exact law of $g = \frac1K\sum_k\sum_B (\nabla_B\cdot v^{(k)}_B) v^{(k)}_B$ with iid probe entries.

    Built by `given` of [`ForwardGradient`][snrkit.families.iid.ForwardGradient] (one block)
    and [`Partitioned`][snrkit.families.iid.Partitioned]; other families reuse it with their
    own sampler where their estimate has this law. With $B(i)$ the block of
    coordinate $i$ and $\kappa$ the probe's kurtosis,

    $$
    \mathbb E[g] = \nabla,\qquad
    \operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K},\qquad
    \mathrm{SNR}_i = \frac{\nabla_i^2}{\operatorname{Var}[g_i]}.
    $$

    The mean is Baydin et al. (2022), Theorem 1; the rest is derived in the docs:
    [Derivations](../derivations.md).

    Attributes:
        probe: the probe distribution.
        directions: $K$, the number of independent directions averaged.
        block_ids: block of each coordinate (`None` for a single block).
        num_blocks: number of blocks.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0]))
        >>> law
        BlockProbeLaw(n=4, Partitioned(gaussian, K=1, blocks=2))
        >>> law.var().tolist()  # blocks {1, 2} and {3, 4}: ‖∇_B‖² + ∇ᵢ²
        [6.0, 9.0, 34.0, 41.0]
    """

    closed_forms = frozenset({"cov", "fourth_central_moment", "projected_variance"})

    def __init__(self, grad: PyTree, *, spec: ProbeSpec, structure: Structure, probe: Probe, directions: int,
                 num_blocks: int = 1, scale: float = 1.0, estimator: Estimator | None = None):
        super().__init__(grad, spec=spec, structure=structure, scale=scale, estimator=estimator)
        self.probe = probe
        self.directions = directions
        self.num_blocks = num_blocks
        self.block_ids = None if num_blocks == 1 else np.asarray(structure["block_ids"])

    @property
    def block_sizes(self) -> np.ndarray:
        """Number of coordinates in each block.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.Partitioned(blocks=3).given(jnp.ones(7)).block_sizes.tolist()
            [3, 2, 2]
        """
        if self.block_ids is None:
            return np.array([self.num_coordinates])
        return np.bincount(self.block_ids, minlength=self.num_blocks)

    def _exact(self, kernel: Any) -> jax.Array:
        ids = None if self.block_ids is None else jnp.asarray(self.block_ids, jnp.int32)
        return self._on_grad64(kernel, self.num_blocks, self.probe, self.directions, arrays=(ids,))

    def _flat_mean64(self) -> jax.Array:
        r"""$\mathbb E[g] = \nabla$ (Baydin et al. 2022, Theorem 1; any iid probe with mean 0, variance 1).

        Each block is unbiased, $\mathbb E[(\nabla_B\cdot v_B)v_B] = \mathbb E[v_Bv_B^\top]\nabla_B = \nabla_B$,
        so the sum over blocks and the mean over directions are too.
        """
        return self._grad64()

    def _flat_var64(self) -> jax.Array:
        r"""$\operatorname{Var}[g_i] = (\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K$.

        Derived in the docs: [Derivations](../derivations.md#blocks). For $\kappa < 2$ it is
        computed as $(\sum_{j\in B(i), j\ne i}\nabla_j^2 + (\kappa-1)\nabla_i^2)/K$, a sum of
        non-negative terms, so a dominant $\nabla_i$ loses no digits.
        """
        return self._exact(_exact_var)

    @staticmethod
    def coordinate_variance(probe: Probe, directions: int) -> CoordinateVariance:
        r"""$\operatorname{Var}[g_i] = (\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K$ from $\nabla_i^2$ and a block total.

        The one formula of this law's variance, in memory and streamed
        ([`snrkit.ondisk`][snrkit.ondisk]). For $\kappa < 2$ it takes
        $O_i = \sum_{j\in B(i), j\ne i}\nabla_j^2$ and computes
        $(O_i + (\kappa-1)\nabla_i^2)/K$, a sum of non-negative terms, so a dominant
        $\nabla_i$ loses no digits; otherwise $S_{B(i)} = \|\nabla_{B(i)}\|^2$.

        Args:
            probe: the probe distribution ($\kappa$ = `probe.m4`).
            directions: $K$.

        Examples:
            >>> import numpy as np, snrkit as sk
            >>> from snrkit.families.iid import BlockProbeLaw
            >>> f = BlockProbeLaw.coordinate_variance(sk.probes.get_probe("rademacher"), 1)
            >>> f.statistic, f(np.array([9.0, 16.0]), np.array([16.0, 9.0])).tolist()
            ('others', [16.0, 9.0])
        """
        m4 = probe.m4
        if m4 < 2.0:
            # Σ_{j≠i}∇_j² + (κ−1)∇_i², both non-negative: ‖∇_B‖² − (2−κ)∇_i² would cancel at a
            # dominant ∇_i (Rademacher).
            return CoordinateVariance("others", lambda x, others: (others + (m4 - 1.0) * x) / directions)
        return CoordinateVariance("sums", lambda x, norm: (norm + (m4 - 2.0) * x) / directions)

    def _flat_fourth64(self) -> jax.Array:
        r"""Exact fourth central moment $\mathbb E[(g_i-\nabla_i)^4]$ of each coordinate.

        With $d = g_i - \nabla_i = \nabla_i(v_i^2-1) + v_i S$,
        $S = \sum_{j\in B(i), j\neq i}\nabla_j v_j$ independent of $v_i$, and a symmetric
        probe with even moments $m_4, m_6, m_8$, one direction gives

        $$
        \mu_4 = \nabla_i^4 (m_8 - 4m_6 + 6m_4 - 3)
              + 6\nabla_i^2 (m_6 - 2m_4 + 1)\, R_2
              + m_4 \big(3R_2^2 + (m_4-3) R_4\big),
        $$

        $R_p = \sum_{j\in B(i), j\ne i}\nabla_j^p$. The mean of $K$ iid copies has
        $(\mu_4 + 3(K-1)\sigma^4)/K^3$, with $\sigma^2$ the variance of one direction.
        Derived in the docs: [Derivations](../derivations.md#fourth-moment).
        """
        return self._exact(_exact_fourth)

    def _flat_cov64(self) -> jax.Array:
        r"""$\frac1K\big(\bigoplus_B(\|\nabla_B\|^2 I + \nabla_B\nabla_B^\top) + (\kappa-3)\operatorname{diag}\nabla^2\big)$.

        Coordinates in different blocks are uncorrelated. Derived in the docs:
        [Derivations](../derivations.md#covariance).
        """
        return self._exact(_exact_cov)

    def _projected_variance64(self, weights: np.ndarray) -> float:
        r"""$w^\top\operatorname{Cov}[g]\,w$ in $O(n)$, from the block structure of the covariance.

        $$
        w^\top\operatorname{Cov}[g]\,w = \frac1K\Big(\sum_B \big(\|\nabla_B\|^2\|w_B\|^2 + (\nabla_B\cdot w_B)^2\big)
            + (\kappa-3)\sum_i w_i^2\nabla_i^2\Big).
        $$
        """
        g = np.asarray(self._flat_grad, np.float64)
        w = weights
        ids = np.zeros(g.size, np.int64) if self.block_ids is None else self.block_ids
        norms = np.bincount(ids, weights=g * g, minlength=self.num_blocks)
        w_norms = np.bincount(ids, weights=w * w, minlength=self.num_blocks)
        dots = np.bincount(ids, weights=g * w, minlength=self.num_blocks)
        total = norms @ w_norms + dots @ dots + (self.probe.m4 - 3.0) * np.sum(w * w * g * g)
        return float(total / self.directions)

    def correction_terms(self) -> CorrectionTerms:
        r"""The two terms of the exact law: $\nabla_i^2/K$ and $\|\nabla_{B(i)}\|^2/K$.

        A claim missing the $(\kappa-2)\nabla_i^2$ term is corrected by $a \approx \kappa-2$
        on the first; one with the wrong norm by the second.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> terms = (
            ...     sk.Partitioned(blocks=2)
            ...     .given(jnp.array([1.0, 2.0, 3.0, 4.0]))
            ...     .correction_terms()
            ... )
            >>> {name: column.tolist() for name, column in terms.columns.items()}
            {'∇_i²': [1.0, 4.0, 9.0, 16.0], '‖∇_B(i)‖²': [5.0, 5.0, 25.0, 25.0]}
        """
        g = np.asarray(self._flat_grad, np.float64)
        ids = np.zeros(g.size, np.int64) if self.block_ids is None else self.block_ids
        norms = np.bincount(ids, weights=g * g)[ids]
        k, c2 = self.directions, self.scale**2
        norm_name = "‖∇‖²" if self.num_blocks == 1 else "‖∇_B(i)‖²"
        note = ("" if k == 1 else f"all over K={k}") + ("" if c2 == 1 else f", times {c2:g}")
        return CorrectionTerms({"∇_i²": c2 * g * g / k, norm_name: c2 * norms / k}, note=note.lstrip(", "))


@partial(jax.jit, static_argnums=(2, 3, 4))
def _exact_var(g: jax.Array, ids: jax.Array | None, num_blocks: int, probe: Probe, k: int) -> jax.Array:
    return BlockProbeLaw.coordinate_variance(probe, k).in_memory(g, ids, num_blocks)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _exact_fourth(g: jax.Array, ids: jax.Array | None, num_blocks: int, probe: Probe, k: int) -> jax.Array:
    g2, g4 = g**2, g**4
    r2 = sum_of_others(g2, ids, num_blocks)
    r4 = sum_of_others(g4, ids, num_blocks)
    m4, m6, m8 = probe.m4, probe.m6, probe.m8
    mu4 = g4 * (m8 - 4 * m6 + 6 * m4 - 3) + 6 * g2 * (m6 - 2 * m4 + 1) * r2 + m4 * (3 * r2**2 + (m4 - 3) * r4)
    var1 = r2 + g2 + (m4 - 2.0) * g2
    return (mu4 + 3 * (k - 1) * var1**2) / k**3


@partial(jax.jit, static_argnums=(2, 3, 4))
def _exact_cov(g: jax.Array, ids: jax.Array | None, num_blocks: int, probe: Probe, k: int) -> jax.Array:
    same = jnp.ones((g.size, g.size), bool) if ids is None else ids[:, None] == ids[None, :]
    norms = block_sums(g**2, ids, num_blocks)
    cov = jnp.where(same, jnp.outer(g, g), 0.0) + jnp.diag(norms + (probe.m4 - 3.0) * g**2)
    return cov / k


# ----------------------------------------------------------------------------------------
# The estimators
# ----------------------------------------------------------------------------------------


class _BlockProbeEstimator(Estimator):
    """What `ForwardGradient` and `Partitioned` share: iid probes in blocks; they differ in `block_assignment`."""

    probe: str | Probe
    directions: int

    @abstractmethod
    def block_assignment(self, tree: PyTree, n: int) -> tuple[np.ndarray | None, int]:
        """Flat `int32` block ids `0..blocks-1` and the number of blocks; `(None, 1)` for one block."""

    @abstractmethod
    def streamed_blocks(self, sizes: tuple[int, ...]) -> Blocks:
        """The blocks of `block_assignment` as [`Blocks`][snrkit.core.streamed.Blocks], without an n-long array."""

    def streamed_form(self, sizes: tuple[int, ...]) -> StreamedForm:
        r"""The law's variance as a [`StreamedForm`][snrkit.core.streamed.StreamedForm], for gradients streamed from disk.

        $\operatorname{Var}[g_i] = (\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K$ needs
        only block totals of $\nabla^2$ (see
        [`BlockProbeLaw.coordinate_variance`][snrkit.families.iid.BlockProbeLaw.coordinate_variance]).

        Args:
            sizes: the number of coordinates of each leaf of the gradient, in ravel order.

        Raises:
            ValueError: more blocks than coordinates.
            NoStreamedForm: explicit block ids (one id per coordinate, in memory).

        Examples:
            >>> import snrkit as sk
            >>> form = sk.Partitioned(blocks="leaves").streamed_form((2, 3))
            >>> form.blocks.bounds, form.variance.statistic
            ((0, 2, 5), 'sums')
        """
        return StreamedForm(self.family, self.streamed_blocks(tuple(sizes)),
                            BlockProbeLaw.coordinate_variance(self.probe_distribution, self.directions))

    @property
    def probe_distribution(self) -> Probe:
        """The [`Probe`][snrkit.probes.Probe] behind `probe`.

        Examples:
            >>> import snrkit as sk
            >>> sk.ForwardGradient(probe="uniform").probe_distribution.m4
            1.8
        """
        return get_probe(self.probe)

    def _plan(self, problem: ProblemBase) -> tuple[BlockProbeSpec, Structure]:
        ids, num_blocks = self.block_assignment(problem.tree, problem.num_coordinates)
        structure = {} if ids is None else {"block_ids": jnp.asarray(ids, dtype=jnp.int32)}
        return BlockProbeSpec(self.probe_distribution, self.directions, num_blocks), structure

    def _law(self, problem: ProblemBase) -> BlockProbeLaw:
        spec, structure = self._plan(problem)
        n = problem.num_coordinates
        use_matrix = spec.num_blocks > 1 and n * spec.num_blocks <= _MAX_BLOCK_MATRIX_ENTRIES
        spec = dataclasses.replace(spec, block_matrix=use_matrix)
        return BlockProbeLaw(problem.gradient(), spec=spec, structure=structure, probe=spec.probe,
                             directions=spec.directions, num_blocks=spec.num_blocks, estimator=self)


@dataclass(frozen=True)
class ForwardGradient(_BlockProbeEstimator):
    r"""Mean of `directions` independent forward gradients $(\nabla\cdot v)v$.

    The forward gradient of Baydin et al. (2022), "Gradients without backpropagation":
    one Jacobian-vector product per direction, no backpropagation. With $K$ directions,
    $n$ coordinates and probe kurtosis $\kappa = \mathbb E[v^4]$, its exact law is

    $$
    \begin{aligned}
    \mathbb E[g] &= \nabla,\qquad
    \operatorname{Var}[g_i] = \frac{\|\nabla\|^2 + (\kappa-2)\nabla_i^2}{K},\\
    \operatorname{tr}\operatorname{Cov}[g] &= \frac{(n+\kappa-2)\|\nabla\|^2}{K},\qquad
    \mathrm{SNR}_i = \frac{\nabla_i^2}{\operatorname{Var}[g_i]}.
    \end{aligned}
    $$

    Gaussian probes ($\kappa=3$) give $\|\nabla\|^2+\nabla_i^2$; Rademacher ($\kappa=1$)
    give $\sum_{j\ne i}\nabla_j^2$. The mean is Baydin et al.'s Theorem 1; the variance is
    derived in the docs: [Derivations](../derivations.md).

    Args:
        probe: `"gaussian"`, `"rademacher"`, `"uniform"` or a [`Probe`][snrkit.probes.Probe].
        directions: $K \ge 1$, the number of independent probes averaged.

    Raises:
        ValueError: unknown probe name, or `directions < 1`.
        TypeError: `probe` or `directions` has the wrong type.

    Examples:
        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> law = sk.ForwardGradient("gaussian").given(jnp.array([3.0, 4.0]))
        >>> law.var().tolist()  # ‖∇‖² + ∇ᵢ² = 25 + (9, 16)
        [34.0, 41.0]
        >>> float(law.total_variance())  # (n + κ − 2)‖∇‖² = 3 · 25
        75.0
        >>> sk.ForwardGradient("rademacher", directions=4).given(
        ...     jnp.array([3.0, 4.0])
        ... ).var().tolist()
        [4.0, 2.25]
    """

    family = "forward-gradient"

    probe: str | Probe = "gaussian"
    directions: int = 1

    def __post_init__(self) -> None:
        get_probe(self.probe)
        check_int(self.directions, "directions", hint="the number K of probes averaged")

    def block_assignment(self, tree: PyTree, n: int) -> tuple[np.ndarray | None, int]:
        """One block holding every coordinate: `(None, 1)`.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().block_assignment(jnp.ones(3), 3)
            (None, 1)
        """
        return None, 1

    def streamed_blocks(self, sizes: tuple[int, ...]) -> Blocks:
        """One block holding every coordinate."""
        return Blocks.one(sum(sizes))

    def params(self) -> dict[str, Any]:
        return {"probe": self.probe_distribution.name, "directions": self.directions}

    @property
    def label(self) -> str:
        return f"ForwardGradient({self.probe_distribution.name}, K={self.directions})"

    def _shape_free_cost(self) -> Cost:
        return Cost.of_directions(self.directions)


class BlockIds:
    """An explicit block id per coordinate (flat, in ravel order), hashable by value.

    [`Partitioned`][snrkit.families.iid.Partitioned] wraps explicit `blocks` in it, so
    that the estimator stays a hashable frozen dataclass. Ids need not be contiguous:
    the law renumbers them `0..blocks-1` in sorted order.

    Args:
        ids: integer block ids, one per coordinate: a flat array in ravel order, or a
            pytree of int arrays shaped like the gradient (flattened in ravel order).

    Attributes:
        ids: the flat, read-only `int64` ids.

    Raises:
        ValueError: `ids` is empty.
        TypeError: the ids are not integers.

    Examples:
        >>> import numpy as np
        >>> from snrkit.families.iid import BlockIds
        >>> ids = BlockIds({"b": np.array([5]), "w": np.array([[0, 0], [5, 7]])})
        >>> ids, ids.ids.tolist()
        (BlockIds(n=5, blocks=3), [5, 0, 0, 5, 7])
        >>> ids == BlockIds(np.array([5, 0, 0, 5, 7]))
        True
    """

    __slots__ = ("ids",)

    def __init__(self, ids: Any):
        leaves = jax.tree_util.tree_leaves(ids)
        if not leaves:
            raise ValueError("blocks is an empty array; give one integer block id per coordinate")
        flat = np.concatenate([np.ravel(np.asarray(leaf)) for leaf in leaves])
        if not np.issubdtype(flat.dtype, np.integer):
            raise TypeError(
                f"explicit blocks must be integer block ids (one per coordinate), got dtype {flat.dtype}; "
                f"pass e.g. np.array([0, 0, 1, 1])"
            )
        flat = flat.astype(np.int64)
        flat.setflags(write=False)
        self.ids = flat

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockIds) and np.array_equal(self.ids, other.ids)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def fingerprint(self) -> str:
        """A short hash of the ids (identifies them in sweep rows)."""
        return hashlib.sha1(self.ids.tobytes()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"BlockIds(n={self.ids.size}, blocks={np.unique(self.ids).size})"


@dataclass(frozen=True)
class Partitioned(_BlockProbeEstimator):
    r"""One probe partitioned into blocks; each block's forward gradient is computed with its own JVP and summed.

    Yao's partitioned probe (Yao, "Studies on forward mode gradient descent", §III.C),
    averaged over $K$ independent directions. Exact law, with $B(i)$ the block of
    coordinate $i$ and $\kappa$ the probe's kurtosis (derived in the docs:
    [Derivations](../derivations.md)):

    $$
    \begin{aligned}
    \mathbb E[g] &= \nabla,\qquad
    \operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K},\\
    \operatorname{tr}\operatorname{Cov}[g] &= \frac1K\Big(\sum_B |B|\,\|\nabla_B\|^2 + (\kappa-2)\|\nabla\|^2\Big).
    \end{aligned}
    $$

    $\mathrm{SNR}_i = \nabla_i^2/\operatorname{Var}[g_i]$. Yao's eq. (9) states
    $(n-b)\sigma^2/b$ for $b$ equal blocks of homogeneous entries ($\nabla_j^2 = \sigma^2$);
    the Gaussian truth there is $(n/b+1)\sigma^2$.

    Args:
        blocks: an int $b$ (that many contiguous, near-equal blocks in ravel order:
            coordinate $i$ of $n$ is in block $\lfloor ib/n\rfloor$), `"leaves"` (one block
            per pytree leaf), or an integer block id per coordinate (a flat array in ravel
            order, or a pytree of int arrays shaped like the gradient; see
            [`BlockIds`][snrkit.families.iid.BlockIds]).
        probe: `"gaussian"`, `"rademacher"`, `"uniform"` or a [`Probe`][snrkit.probes.Probe].
        directions: $K$, the number of independent partitioned estimates averaged.

    Raises:
        ValueError: `blocks < 1` or an unknown string; unknown probe; `directions < 1`.
            (More blocks than coordinates is reported by `given`.)
        TypeError: `blocks`, `probe` or `directions` has the wrong type.

    Examples:
        >>> import jax.numpy as jnp, numpy as np, snrkit as sk
        >>> law = sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0]))
        >>> law.var().tolist()  # ‖∇_B‖² + ∇ᵢ²: blocks {1, 2} and {3, 4}
        [6.0, 9.0, 34.0, 41.0]
        >>> grad = {"b": jnp.array([1.0, 2.0]), "w": jnp.array([3.0, 4.0])}
        >>> sk.Partitioned(blocks="leaves").given(grad).num_blocks
        2
        >>> sk.Partitioned(blocks=np.array([0, 1, 0, 1])).given(
        ...     jnp.array([1.0, 2.0, 3.0, 4.0])
        ... ).var().tolist()
        [11.0, 24.0, 19.0, 36.0]
    """

    family = "partitioned"

    blocks: int | str | Any = 2
    probe: str | Probe = "gaussian"
    directions: int = 1

    def __post_init__(self) -> None:
        get_probe(self.probe)
        check_int(self.directions, "directions", hint="the number K of partitioned estimates averaged")
        blocks = self.blocks
        if isinstance(blocks, str):
            if blocks != "leaves":
                raise ValueError(f"blocks={blocks!r} is not understood; pass an int, 'leaves' or one block id per coordinate")
        elif blocks is None or isinstance(blocks, bool | float):
            raise TypeError(
                f"blocks must be an int (that many contiguous blocks), 'leaves' or an array of integer block ids, "
                f"got {blocks!r}"
            )
        elif isinstance(blocks, int | np.integer):
            object.__setattr__(self, "blocks", check_int(blocks, "blocks", hint="the number of blocks"))
        elif not isinstance(blocks, BlockIds):
            object.__setattr__(self, "blocks", BlockIds(blocks))

    def block_assignment(self, tree: PyTree, n: int) -> tuple[np.ndarray | None, int]:
        r"""The block of each coordinate: contiguous ($\lfloor ib/n\rfloor$), per leaf, or explicit.

        Args:
            tree: the gradient or the parameters (its leaves define `"leaves"` blocks).
            n: their number of coordinates.

        Returns:
            Flat `int32` block ids `0..blocks-1` in ravel order and the number of blocks;
            `(None, 1)` when everything falls in one block.

        Raises:
            ValueError: more blocks than coordinates, or explicit ids of the wrong length.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> ids, num = sk.Partitioned(blocks=3).block_assignment(jnp.ones(7), 7)
            >>> ids.tolist(), num
            ([0, 0, 0, 1, 1, 2, 2], 3)
            >>> sk.Partitioned(blocks=8).block_assignment(jnp.ones(7), 7)
            Traceback (most recent call last):
            ...
            ValueError: blocks=8 is more than the 7 coordinates of the gradient; ...
        """
        blocks = self.blocks
        if isinstance(blocks, int):
            _check_blocks_fit(blocks, n)
            ids = (np.arange(n, dtype=np.int64) * blocks) // n
        elif blocks == "leaves":
            sizes = [s for s in leaf_sizes(tree) if s > 0]
            ids = np.repeat(np.arange(len(sizes)), sizes)
        else:
            if blocks.ids.size != n:
                raise ValueError(
                    f"blocks gives {blocks.ids.size} block ids but the gradient has {n} coordinates; "
                    f"give exactly one id per coordinate, in ravel order."
                )
            _, ids = np.unique(blocks.ids, return_inverse=True)
        num_blocks = int(ids.max()) + 1
        if num_blocks == 1:
            return None, 1
        return ids.astype(np.int32), num_blocks

    def streamed_blocks(self, sizes: tuple[int, ...]) -> Blocks:
        r"""The blocks of `block_assignment`, computed from global indices: contiguous or per leaf.

        Raises:
            ValueError: more blocks than coordinates.
            NoStreamedForm: explicit block ids.

        Examples:
            >>> import snrkit as sk
            >>> sk.Partitioned(blocks=3).streamed_blocks((4, 3))
            Blocks(n=7, num_blocks=3, bounds=None)
        """
        blocks, n = self.blocks, sum(sizes)
        if isinstance(blocks, int):
            _check_blocks_fit(blocks, n)
            return Blocks.contiguous(blocks, n)
        if blocks == "leaves":
            return Blocks.leaves(sizes)
        raise no_streamed_form(
            self,
            "explicit block ids hold one id per coordinate in memory; streamed laws take blocks=<int> "
            "(contiguous blocks) or blocks='leaves' (save the gradient with one leaf per block)",
        )

    @property
    def _blocks_text(self) -> int | str:
        """`blocks` as it appears in params and labels: explicit ids by their fingerprint."""
        return self.blocks if isinstance(self.blocks, int | str) else f"explicit:{self.blocks.fingerprint}"

    def params(self) -> dict[str, Any]:
        return {"blocks": self._blocks_text, "probe": self.probe_distribution.name, "directions": self.directions}

    @property
    def label(self) -> str:
        return f"Partitioned({self.probe_distribution.name}, K={self.directions}, blocks={self._blocks_text})"

    def _shape_free_cost(self) -> Cost:
        if not isinstance(self.blocks, int):
            return super()._shape_free_cost()
        return Cost(jvps=self.directions * self.blocks, memory=self.directions + 1.0)


def _check_blocks_fit(blocks: int, n: int) -> None:
    if blocks > n:
        raise ValueError(
            f"blocks={blocks} is more than the {n} coordinates of the gradient; use at most "
            f"{n} blocks (blocks={n} gives g_i = ∇_i v_i²: exact for Rademacher probes, not for Gaussian ones)."
        )


FAMILIES = (
    Family(
        name="forward-gradient",
        title="Forward gradient",
        estimator=ForwardGradient,
        summary="The forward gradient (∇·v)v with iid probe entries, averaged over K directions.",
        law=r"\mathbb E[g]=\nabla,\ \operatorname{Var}[g_i]=(\|\nabla\|^2+(\kappa-2)\nabla_i^2)/K",
        bias="unbiased",
        cost="K JVPs",
        source="Baydin et al. (2022), Theorem 1",
        docs="derivations.md",
        order=0,
        sweep=(
            ForwardGradient(probe="gaussian", directions=1),
            ForwardGradient(probe="rademacher", directions=1),
            ForwardGradient(probe="gaussian", directions=4),
            ForwardGradient(probe="rademacher", directions=4),
        ),
    ),
    Family(
        name="partitioned",
        title="Partitioned probe",
        estimator=Partitioned,
        summary="One probe split into blocks, one JVP per block, the blocks' forward gradients summed.",
        law=r"\mathbb E[g]=\nabla,\ \operatorname{Var}[g_i]=(\|\nabla_{B(i)}\|^2+(\kappa-2)\nabla_i^2)/K",
        bias="unbiased",
        cost="K × blocks JVPs",
        source="Yao, §III.C",
        docs="derivations.md#blocks",
        order=1,
        sweep=(Partitioned(blocks=4, probe="gaussian"), Partitioned(blocks=4, probe="rademacher")),
    ),
)
"""The registry rows of this module (see [`snrkit.families`][snrkit.families])."""

__all__ = ["ForwardGradient", "Partitioned", "BlockIds", "BlockProbeLaw", "BlockProbeSpec", "FAMILIES"]
