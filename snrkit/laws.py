r"""Exact laws of gradient estimates given the true gradient.

A *law* is what an estimator becomes once the true gradient :math:`\nabla` is fixed: a
distribution over estimates :math:`g` with closed-form moments and a sampler.

The laws here cover every estimator built from iid probe entries (mean 0, variance 1,
kurtosis :math:`\kappa`), split into blocks :math:`B` (one JVP each) and averaged over
:math:`K` independent directions:

.. math::

    g = \frac1K \sum_{k=1}^K \sum_{B} (\nabla_B \cdot v^{(k)}_B)\, v^{(k)}_B .

With :math:`B(i)` the block of coordinate :math:`i`:

.. math::

    \mathbb E[g] = \nabla, \qquad
    \operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K}, \qquad
    \operatorname{Cov}[g] = \frac1K\Big(\bigoplus_B \big(\|\nabla_B\|^2 I + \nabla_B\nabla_B^\top\big)
        + (\kappa-3)\operatorname{diag}(\nabla^2)\Big).

The forward gradient of Baydin et al. (2022) is one block; Yao's partitioned probe
(Yao, §III.C) is :math:`K=1` with several blocks. The derivations are in the docs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snrkit._tree import PyTree, check_key, ravel, sample_key
from snrkit.probes import Probe

#: ``cov()`` refuses to allocate more than this by default (1 GiB).
DEFAULT_COV_MAX_BYTES = 1 << 30

# Above this many entries the (n, blocks) matrix that turns block sums into one matmul is
# too large; a segment sum is used instead.
_MAX_BLOCK_MATRIX_ENTRIES = 1 << 24


class Law(ABC):
    """The exact law of an estimate given the true gradient.

    Subclasses supply the flat moments; this class turns them into pytrees shaped like the
    gradient. Everything flat is in :func:`jax.flatten_util.ravel_pytree` order.
    """

    #: the true gradient, as given.
    grad: PyTree

    def __init__(self, grad: PyTree):
        self.grad = grad
        self._flat_grad, self._unravel = ravel(grad)

    # -- sizes and plumbing -------------------------------------------------------------
    @property
    def num_coordinates(self) -> int:
        """Number of coordinates :math:`n` of the gradient."""
        return int(self._flat_grad.size)

    @property
    def dtype(self) -> jnp.dtype:
        """Dtype of the estimates (the gradient's, after ravel's promotion)."""
        return self._flat_grad.dtype

    def unravel(self, flat: jax.Array) -> PyTree:
        """Turn a flat array of shape ``(..., n)`` into a pytree shaped like the gradient."""
        if flat.ndim == 1:
            return self._unravel(flat)
        lead = flat.shape[:-1]
        out = jax.vmap(self._unravel)(flat.reshape(-1, flat.shape[-1]))
        return jax.tree_util.tree_map(lambda x: x.reshape(*lead, *x.shape[1:]), out)

    # -- what subclasses provide ------------------------------------------------------------
    @property
    @abstractmethod
    def sampler(self) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
        """A hashable function ``(sampling_args, key, indices) -> (len(indices), n)`` samples.

        Sample ``i`` uses the key ``fold_in(key, i)`` and nothing else, so any subset of
        sample indices can be drawn in any order with the same result.
        """

    @property
    @abstractmethod
    def sampling_args(self) -> Any:
        """The arrays ``sampler`` needs (passed as arguments so jit does not bake them in)."""

    @abstractmethod
    def flat_mean(self) -> jax.Array:
        """:math:`\\mathbb E[g]`, flat."""

    @abstractmethod
    def flat_var(self) -> jax.Array:
        """:math:`\\operatorname{Var}[g_i]`, flat."""

    @abstractmethod
    def flat_cov(self) -> jax.Array:
        """:math:`\\operatorname{Cov}[g]`, dense ``(n, n)``."""

    @abstractmethod
    def flat_fourth_central_moment(self) -> jax.Array:
        """:math:`\\mathbb E[(g_i-\\mathbb E g_i)^4]`, flat."""

    # -- public moments -------------------------------------------------------------------------
    def mean(self) -> PyTree:
        """:math:`\\mathbb E[g]`, shaped like the gradient."""
        return self._unravel(self.flat_mean())

    def var(self) -> PyTree:
        """Exact per-coordinate variance :math:`\\operatorname{Var}[g_i]`, shaped like the gradient."""
        return self._unravel(self.flat_var())

    def std(self) -> PyTree:
        """Per-coordinate standard deviation, shaped like the gradient."""
        return self._unravel(jnp.sqrt(self.flat_var()))

    def total_variance(self) -> jax.Array:
        """:math:`\\operatorname{tr}\\operatorname{Cov}[g] = \\sum_i \\operatorname{Var}[g_i]` (a scalar)."""
        return _sum64(self.flat_var())

    def snr(self) -> PyTree:
        r"""Per-coordinate signal-to-noise ratio :math:`\mathbb E[g_i]^2 / \operatorname{Var}[g_i]`.

        A coordinate with zero variance has SNR ``inf`` when its mean is non-zero (the
        estimate is exact there) and ``NaN`` when its mean is zero too (0/0: there is
        neither signal nor noise, so the ratio is undefined). A zero gradient gives NaN
        everywhere.
        """
        return self._unravel(_ratio(self.flat_mean() ** 2, self.flat_var()))

    def aggregate_snr(self) -> jax.Array:
        r"""Whole-vector SNR :math:`\|\mathbb E g\|^2 / \operatorname{tr}\operatorname{Cov}[g]`.

        For the forward gradient this is :math:`1/(n+\kappa-2)` whatever the gradient
        (NaN for a zero gradient).
        """
        return _ratio(_sum64(self.flat_mean() ** 2), self.total_variance())

    def fourth_central_moment(self) -> PyTree:
        """Exact :math:`\\mathbb E[(g_i-\\mathbb E g_i)^4]` per coordinate, shaped like the gradient.

        It sets the noise of a sampled variance: a sample variance over :math:`N` draws
        has variance :math:`\\mu_4/N - \\sigma^4 (N-3)/(N(N-1))`.
        """
        return self._unravel(self.flat_fourth_central_moment())

    def projected_variance(self, weights: np.ndarray) -> float:
        """:math:`\\operatorname{Var}[w\\cdot g] = w^\\top\\operatorname{Cov}[g]\\,w` for flat weights ``w``, without forming Cov."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form projected variance")

    def cov(self, *, max_bytes: int = DEFAULT_COV_MAX_BYTES) -> jax.Array:
        """Dense covariance ``(n, n)`` in ravel order.

        Args:
            max_bytes: refuse to allocate more than this (the result and its float64 work arrays).

        Raises:
            ValueError: ``n × n`` entries would exceed ``max_bytes``.
        """
        n = self.num_coordinates
        # The result, plus the float64 outer product and block mask built on the way.
        need = n * n * (jnp.dtype(self.dtype).itemsize + 8 + 8 + 1)
        if need > max_bytes:
            raise ValueError(
                f"cov() would hold an {n} x {n} matrix ({need / 2**30:.1f} GiB), more than "
                f"max_bytes={max_bytes}. Use var() for its diagonal or total_variance() for its "
                f"trace, or pass a larger max_bytes if you really want the dense matrix."
            )
        return self.flat_cov()

    # -- sampling ---------------------------------------------------------------------------
    def sample_flat(self, key: jax.Array, num: int) -> jax.Array:
        """``num`` estimates, flat: shape ``(num, n)``."""
        key = check_key(key)
        num = _check_num(num, "num")
        return _draw(self.sampler, self.sampling_args, key, jnp.arange(num, dtype=jnp.uint32))

    def sample(self, key: jax.Array, num: int) -> PyTree:
        """``num`` independent estimates, as a pytree with a leading axis of size ``num``.

        ``sample(key, num)[0]`` is the estimate ``est.estimate(key, ...)`` computes with
        real JVPs: both use the same probes.
        """
        return self.unravel(self.sample_flat(key, num))


@partial(jax.jit, static_argnums=0)
def _draw(sampler: Callable, args: Any, key: jax.Array, indices: jax.Array) -> jax.Array:
    return sampler(args, key, indices)


def _check_num(num: Any, name: str) -> int:
    if isinstance(num, bool) or not isinstance(num, int | np.integer):
        raise TypeError(f"{name} must be a positive int, got {num!r}")
    if num < 1:
        raise ValueError(f"{name} must be at least 1, got {num}")
    return int(num)


def _ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    # IEEE division already gives x/0 = inf and 0/0 = NaN, which is the documented SNR.
    return num / den


def _sum64(x: jax.Array) -> jax.Array:
    with jax.enable_x64(True):
        return _sum64_jit(x)


@jax.jit
def _sum64_jit(x: jax.Array) -> jax.Array:
    return jnp.sum(x.astype(jnp.float64)).astype(x.dtype)


# ----------------------------------------------------------------------------------------
# iid probes in blocks, averaged over K directions
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockProbeSpec:
    """Static description of an iid-probe estimator: hashable, so it can key jit caches."""

    probe: Probe
    directions: int
    num_blocks: int
    # True when block sums are taken as one matmul with an (n, blocks) matrix.
    block_matrix: bool

    def directional_derivatives(self, args: dict, probes: jax.Array) -> jax.Array:
        """:math:`\\nabla_B\\cdot v_B` for each direction and block: ``(..., K, blocks)``."""
        grad = args["grad"]
        if self.num_blocks == 1:
            return (probes @ grad)[..., None]
        if self.block_matrix:
            return probes @ args["block_matrix"]
        return _segment_sums(probes * grad, args["block_ids"], self.num_blocks)

    def combine(self, args: dict, probes: jax.Array, derivs: jax.Array) -> jax.Array:
        """:math:`g = \\frac1K\\sum_k v^{(k)} \\odot s^{(k)}_{B(i)}` from probes ``(K, n)`` and derivatives ``(K, blocks)``."""
        if self.num_blocks == 1:
            scaled = probes * derivs
        else:
            scaled = probes * jnp.take(derivs, args["block_ids"], axis=-1)
        return jnp.mean(scaled, axis=-2)

    def draw_probes(self, key: jax.Array, index: jax.Array | int, n: int, dtype: jnp.dtype) -> jax.Array:
        """The ``(K, n)`` probes of sample ``index``."""
        return self.probe.sample(sample_key(key, index), (self.directions, n), dtype)

    def __call__(self, args: dict, key: jax.Array, indices: jax.Array) -> jax.Array:
        grad = args["grad"]

        def one(index: jax.Array) -> jax.Array:
            probes = self.draw_probes(key, index, grad.size, grad.dtype)
            return self.combine(args, probes, self.directional_derivatives(args, probes))

        return jax.vmap(one)(indices)


def _segment_sums(x: jax.Array, block_ids: jax.Array, num_blocks: int) -> jax.Array:
    """Sum the last axis of ``x`` within blocks: ``(..., n) -> (..., blocks)``."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    sums = jax.vmap(lambda row: jax.ops.segment_sum(row, block_ids, num_segments=num_blocks))(flat)
    return sums.reshape(*lead, num_blocks)


class BlockProbeLaw(Law):
    r"""Exact law of :math:`g = \frac1K\sum_k\sum_B (\nabla_B\cdot v^{(k)}_B) v^{(k)}_B` with iid probe entries.

    Built by :meth:`snrkit.ForwardGradient.given` (one block) and
    :meth:`snrkit.Partitioned.given`.

    Attributes:
        probe: the probe distribution.
        directions: :math:`K`, the number of independent directions averaged.
        block_ids: block of each coordinate (``None`` for a single block).
        num_blocks: number of blocks.
    """

    def __init__(self, grad: PyTree, *, probe: Probe, directions: int, block_ids: np.ndarray | None, num_blocks: int):
        super().__init__(grad)
        self.probe = probe
        self.directions = directions
        self.block_ids = block_ids
        self.num_blocks = num_blocks
        n = self.num_coordinates
        use_matrix = num_blocks > 1 and n * num_blocks <= _MAX_BLOCK_MATRIX_ENTRIES
        self._spec = BlockProbeSpec(probe, directions, num_blocks, use_matrix)
        args: dict[str, jax.Array] = {"grad": self._flat_grad}
        if num_blocks > 1:
            ids = jnp.asarray(block_ids, dtype=jnp.int32)
            args["block_ids"] = ids
            if use_matrix:
                args["block_matrix"] = jax.nn.one_hot(ids, num_blocks, dtype=self.dtype) * self._flat_grad[:, None]
        self._args = args

    def __repr__(self) -> str:
        return (
            f"BlockProbeLaw(n={self.num_coordinates}, probe={self.probe.name!r}, "
            f"directions={self.directions}, blocks={self.num_blocks})"
        )

    @property
    def sampler(self) -> BlockProbeSpec:
        return self._spec

    @property
    def sampling_args(self) -> dict:
        return self._args

    @property
    def block_sizes(self) -> np.ndarray:
        """Number of coordinates in each block."""
        if self.block_ids is None:
            return np.array([self.num_coordinates])
        return np.bincount(self.block_ids, minlength=self.num_blocks)

    def _exact(self, name: str) -> jax.Array:
        ids = None if self.block_ids is None else self._args["block_ids"]
        # float64 inside the jitted function only (sums of squares over 10^7 entries need
        # it); the result is cast back in the same pass, so only the gradient's dtype is
        # ever written to memory.
        with jax.enable_x64(True):
            return _EXACT[name](self._flat_grad, ids, self.num_blocks, self.probe, self.directions)

    def flat_mean(self) -> jax.Array:
        r""":math:`\mathbb E[g] = \nabla` (Baydin et al. 2022, Thm 1; any iid probe with mean 0, variance 1)."""
        return self._flat_grad

    def flat_var(self) -> jax.Array:
        r""":math:`\operatorname{Var}[g_i] = (\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K`."""
        return self._exact("var")

    def flat_fourth_central_moment(self) -> jax.Array:
        r"""Exact fourth central moment of each coordinate.

        With :math:`d = g_i - \nabla_i = \nabla_i(v_i^2-1) + v_i S`,
        :math:`S = \sum_{j\in B(i), j\neq i}\nabla_j v_j` independent of :math:`v_i`, and a
        symmetric probe with even moments :math:`m_4, m_6, m_8`, one direction gives

        .. math::

            \mu_4 = \nabla_i^4 (m_8 - 4m_6 + 6m_4 - 3)
                  + 6\nabla_i^2 (m_6 - 2m_4 + 1)\, R_2
                  + m_4 \big(3R_2^2 + (m_4-3) R_4\big),

        :math:`R_p = \sum_{j\in B(i), j\ne i}\nabla_j^p`. The mean of :math:`K` iid copies has
        :math:`(\mu_4 + 3(K-1)\sigma^4)/K^3`.
        """
        return self._exact("fourth")

    def projected_variance(self, weights: np.ndarray) -> float:
        r""":math:`\frac1K\Big(\sum_B \big(\|\nabla_B\|^2\|w_B\|^2 + (\nabla_B\cdot w_B)^2\big) + (\kappa-3)\sum_i w_i^2\nabla_i^2\Big)`, in O(n)."""
        g = np.asarray(self._flat_grad, np.float64)
        w = np.asarray(weights, np.float64)
        ids = np.zeros(g.size, np.int64) if self.block_ids is None else np.asarray(self.block_ids)
        norms = np.bincount(ids, weights=g * g, minlength=self.num_blocks)
        w_norms = np.bincount(ids, weights=w * w, minlength=self.num_blocks)
        dots = np.bincount(ids, weights=g * w, minlength=self.num_blocks)
        total = norms @ w_norms + dots @ dots + (self.probe.m4 - 3.0) * np.sum(w * w * g * g)
        return float(total / self.directions)

    def flat_cov(self) -> jax.Array:
        r""":math:`\frac1K\big(\bigoplus_B(\|\nabla_B\|^2 I + \nabla_B\nabla_B^\top) + (\kappa-3)\operatorname{diag}\nabla^2\big)`."""
        return self._exact("cov")


def _block_power_sums(g: jax.Array, ids: jax.Array | None, num_blocks: int, power: int) -> jax.Array:
    """:math:`\\sum_{j\\in B(i)} \\nabla_j^p`, broadcast back to every coordinate (a scalar for one block)."""
    x = g**power
    if ids is None:
        return jnp.sum(x)
    return jax.ops.segment_sum(x, ids, num_segments=num_blocks)[ids]


def _sum_of_others(x: jax.Array, ids: jax.Array | None, num_blocks: int) -> jax.Array:
    """:math:`\\sum_{j\\in B(i), j\\ne i} x_j` for non-negative ``x``, without cancellation.

    ``Σ_B − x_i`` loses every digit at a block's dominant entry (e.g. ∇ = (1, 1e-6)), so
    there the sum is taken over the other entries directly; elsewhere ``x_i`` is at most
    the block's largest entry, which stays in the sum, so the subtraction loses at most
    one bit.
    """
    n = x.shape[0]
    block = jnp.zeros(n, jnp.int32) if ids is None else ids
    segments = 1 if ids is None else num_blocks
    top = jax.ops.segment_max(x, block, num_segments=segments)[block]
    index = jnp.arange(n)
    first_top = jax.ops.segment_min(jnp.where(x == top, index, n), block, num_segments=segments)[block]
    is_top = index == first_top
    total = jax.ops.segment_sum(x, block, num_segments=segments)[block]
    without_top = jax.ops.segment_sum(jnp.where(is_top, 0.0, x), block, num_segments=segments)[block]
    return jnp.where(is_top, without_top, total - x)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _exact_var(grad: jax.Array, ids: jax.Array | None, num_blocks: int, probe: Probe, k: int) -> jax.Array:
    if probe.m4 < 2.0:
        # Written as Σ_{j≠i}∇_j² + (κ−1)∇_i², both non-negative: ‖∇_B‖² − (2−κ)∇_i² would
        # cancel at a dominant ∇_i (Rademacher).
        g2 = grad.astype(jnp.float64) ** 2
        return ((_sum_of_others(g2, ids, num_blocks) + (probe.m4 - 1.0) * g2) / k).astype(grad.dtype)
    # Both terms are non-negative, so the gradient's dtype loses nothing after the sum of
    # squares (taken in float64), and the elementwise pass runs at float32 speed.
    norms = _block_power_sums(grad.astype(jnp.float64), ids, num_blocks, 2).astype(grad.dtype)
    return (norms + (probe.m4 - 2.0) * grad**2) / k


@partial(jax.jit, static_argnums=(2, 3, 4))
def _exact_fourth(grad: jax.Array, ids: jax.Array | None, num_blocks: int, probe: Probe, k: int) -> jax.Array:
    g = grad.astype(jnp.float64)
    g2, g4 = g**2, g**4
    r2 = _sum_of_others(g2, ids, num_blocks)
    r4 = _sum_of_others(g4, ids, num_blocks)
    m4, m6, m8 = probe.m4, probe.m6, probe.m8
    mu4 = g4 * (m8 - 4 * m6 + 6 * m4 - 3) + 6 * g2 * (m6 - 2 * m4 + 1) * r2 + m4 * (3 * r2**2 + (m4 - 3) * r4)
    var1 = r2 + g2 + (m4 - 2.0) * g2
    return ((mu4 + 3 * (k - 1) * var1**2) / k**3).astype(grad.dtype)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _exact_cov(grad: jax.Array, ids: jax.Array | None, num_blocks: int, probe: Probe, k: int) -> jax.Array:
    g = grad.astype(jnp.float64)
    same = jnp.ones((g.size, g.size), bool) if ids is None else ids[:, None] == ids[None, :]
    norms = _block_power_sums(g, ids, num_blocks, 2)
    cov = jnp.where(same, jnp.outer(g, g), 0.0) + jnp.diag(norms + (probe.m4 - 3.0) * g**2)
    return (cov / k).astype(grad.dtype)


_EXACT = {"var": _exact_var, "fourth": _exact_fourth, "cov": _exact_cov}


__all__ = ["Law", "BlockProbeLaw", "BlockProbeSpec", "DEFAULT_COV_MAX_BYTES"]
