r"""Exact laws of gradient estimates given the true gradient.

A *law* is what an estimator becomes once the true gradient $\nabla$ is fixed: a
distribution over estimates $g$ with closed-form moments and a sampler.

The laws here cover every estimator built from iid probe entries (mean 0, variance 1,
kurtosis $\kappa$), split into blocks $B$ (one JVP each) and averaged over $K$ independent
directions:

$$
g = \frac1K \sum_{k=1}^K \sum_{B} (\nabla_B \cdot v^{(k)}_B)\, v^{(k)}_B .
$$

With $B(i)$ the block of coordinate $i$:

$$
\mathbb E[g] = \nabla, \qquad
\operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K}, \qquad
\operatorname{Cov}[g] = \frac1K\Big(\bigoplus_B \big(\|\nabla_B\|^2 I + \nabla_B\nabla_B^\top\big)
    + (\kappa-3)\operatorname{diag}(\nabla^2)\Big).
$$

The forward gradient of Baydin et al. (2022, "Gradients without backpropagation") is one
block; Yao's partitioned probe (Yao, "Studies on forward mode gradient descent", §III.C) is
$K=1$ with several blocks. The mean is Baydin et al.'s Theorem 1; the variance, covariance
and fourth moment are derived in the docs: [Derivations](../derivations.md).

Examples:
    >>> import jax.numpy as jnp, snrkit as sk
    >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))   # Gaussian, K = 1
    >>> law.var().tolist(), law.cov().tolist()
    ([34.0, 41.0], [[34.0, 12.0], [12.0, 41.0]])
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

DEFAULT_COV_MAX_BYTES = 1 << 30
"""`Law.cov()` refuses to allocate more than this by default (1 GiB)."""

# Above this many entries the (n, blocks) matrix that turns block sums into one matmul is
# too large; a segment sum is used instead.
_MAX_BLOCK_MATRIX_ENTRIES = 1 << 24


class Law(ABC):
    """The exact law of an estimate given the true gradient.

    Subclasses supply the flat moments (`flat_mean`, `flat_var`, `flat_cov`,
    `flat_fourth_central_moment`) and a sampler; this class turns them into pytrees shaped
    like the gradient. Everything flat is in `jax.flatten_util.ravel_pytree` order. A law
    is obtained from an estimator, e.g. [`ForwardGradient.given`][snrkit.estimators.ForwardGradient].

    Args:
        grad: the true gradient, any pytree of float arrays.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.ForwardGradient().given({"b": jnp.array([1.0]), "w": jnp.array([2.0, 2.0])})
        >>> isinstance(law, sk.Law), law.num_coordinates
        (True, 3)
        >>> law.var()["w"].tolist()   # ‖∇‖² + ∇ᵢ² = 9 + 4
        [13.0, 13.0]
    """

    grad: PyTree
    """The true gradient, as given."""

    def __init__(self, grad: PyTree):
        self.grad = grad
        self._flat_grad, self._unravel = ravel(grad)

    # -- sizes and plumbing -------------------------------------------------------------
    @property
    def num_coordinates(self) -> int:
        """Number of coordinates $n$ of the gradient (all leaves together).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given({"w": jnp.zeros((2, 3)), "b": jnp.ones(3)}).num_coordinates
            9
        """
        return int(self._flat_grad.size)

    @property
    def dtype(self) -> jnp.dtype:
        """Dtype of the estimates (the gradient's, after ravel's promotion).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> str(sk.ForwardGradient().given(jnp.ones(2, jnp.bfloat16)).dtype)
            'bfloat16'
        """
        return self._flat_grad.dtype

    def unravel(self, flat: jax.Array) -> PyTree:
        """Turn a flat array of shape `(..., n)` into a pytree shaped like the gradient.

        Args:
            flat: array whose last axis holds the $n$ coordinates in ravel order; leading
                axes are kept in front of each leaf's shape.

        Returns:
            A pytree shaped like the gradient.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given({"b": jnp.ones(1), "w": jnp.ones((2, 2))})
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

    # -- what subclasses provide ------------------------------------------------------------
    @property
    @abstractmethod
    def sampler(self) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
        """A hashable function `(sampling_args, key, indices) -> (len(indices), n)` samples.

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
            >>> some.shape, bool(np.allclose(some, np.asarray(law.sample_flat(key, 4))[[3, 2]]))
            ((2, 2), True)
        """

    @property
    @abstractmethod
    def sampling_args(self) -> Any:
        """The arrays `sampler` needs (passed as arguments so jit does not bake them in).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sorted(sk.ForwardGradient().given(jnp.array([3.0, 4.0])).sampling_args)
            ['grad']
        """

    @abstractmethod
    def flat_mean(self) -> jax.Array:
        r"""$\mathbb E[g]$, flat (ravel order).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given({"w": jnp.array([3.0, 4.0])}).flat_mean().tolist()
            [3.0, 4.0]
        """

    @abstractmethod
    def flat_var(self) -> jax.Array:
        r"""$\operatorname{Var}[g_i]$, flat (ravel order).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given({"w": jnp.array([3.0, 4.0])}).flat_var().tolist()
            [34.0, 41.0]
        """

    @abstractmethod
    def flat_cov(self) -> jax.Array:
        r"""$\operatorname{Cov}[g]$, dense `(n, n)`, without the size check of `cov`.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(jnp.array([3.0, 4.0])).flat_cov().tolist()
            [[34.0, 12.0], [12.0, 41.0]]
        """

    @abstractmethod
    def flat_fourth_central_moment(self) -> jax.Array:
        r"""$\mathbb E[(g_i-\mathbb E g_i)^4]$, flat (ravel order).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given(jnp.array([1.0])).flat_fourth_central_moment().tolist()
            [60.0]
        """

    # -- public moments -------------------------------------------------------------------------
    def mean(self) -> PyTree:
        r"""$\mathbb E[g]$, shaped like the gradient ($\nabla$ itself for the unbiased estimators here).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given({"w": jnp.array([3.0, 4.0])}).mean()["w"].tolist()
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
            >>> sk.ForwardGradient("gaussian").given(grad).var()["w"].tolist()     # 25 + ∇ᵢ²
            [34.0, 41.0]
            >>> sk.ForwardGradient("rademacher").given(grad).var()["w"].tolist()   # 25 − ∇ᵢ²
            [16.0, 9.0]
        """
        return self._unravel(self.flat_var())

    def std(self) -> PyTree:
        r"""Per-coordinate standard deviation $\sqrt{\operatorname{Var}[g_i]}$, shaped like the gradient.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient("rademacher").given(jnp.array([3.0, 4.0])).std().tolist()
            [4.0, 3.0]
        """
        return self._unravel(jnp.sqrt(self.flat_var()))

    def total_variance(self) -> jax.Array:
        r"""$\operatorname{tr}\operatorname{Cov}[g] = \sum_i \operatorname{Var}[g_i]$ (a scalar).

        For the forward gradient this is $(n+\kappa-2)\|\nabla\|^2/K$. The sum is taken in
        float64 and returned in the gradient's dtype.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> float(sk.ForwardGradient().given(jnp.array([3.0, 4.0])).total_variance())  # (2+3−2)·25
            75.0
        """
        return _sum64(self.flat_var())

    def snr(self) -> PyTree:
        r"""Per-coordinate signal-to-noise ratio $\mathrm{SNR}_i = \mathbb E[g_i]^2 / \operatorname{Var}[g_i]$.

        For the unbiased estimators here this is $\nabla_i^2/\operatorname{Var}[g_i]$; for
        the forward gradient, $K\nabla_i^2/(\|\nabla\|^2 + (\kappa-2)\nabla_i^2)$.

        A coordinate with zero variance has SNR `inf` when its mean is non-zero (the
        estimate is exact there) and `NaN` when its mean is zero too (0/0: there is
        neither signal nor noise, so the ratio is undefined). A zero gradient gives NaN
        everywhere.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> snr = sk.ForwardGradient().given(jnp.array([3.0, 4.0])).snr()   # 9/34, 16/41
            >>> [round(x, 4) for x in snr.tolist()]
            [0.2647, 0.3902]
            >>> sk.ForwardGradient().given(jnp.zeros(2)).snr().tolist()
            [nan, nan]
        """
        return self._unravel(_ratio(self.flat_mean() ** 2, self.flat_var()))

    def aggregate_snr(self) -> jax.Array:
        r"""Whole-vector SNR $\|\mathbb E g\|^2 / \operatorname{tr}\operatorname{Cov}[g]$.

        For the forward gradient this is $K/(n+\kappa-2)$ whatever the gradient (NaN for a
        zero gradient).

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient(directions=2).given(jnp.array([3.0, 4.0, 0.0, 1.0]))
            >>> round(float(law.aggregate_snr()), 4)   # 2 / (4 + 3 − 2)
            0.4
        """
        return _ratio(_sum64(self.flat_mean() ** 2), self.total_variance())

    def fourth_central_moment(self) -> PyTree:
        r"""Exact fourth central moment $\mu_4 = \mathbb E[(g_i-\mathbb E g_i)^4]$ per coordinate, shaped like the gradient.

        It sets the noise of a sampled variance: a sample variance over $N$ draws has
        variance $\mu_4/N - \sigma^4 (N-3)/(N(N-1))$. The formula for iid probes is at
        [`BlockProbeLaw.flat_fourth_central_moment`][snrkit.laws.BlockProbeLaw.flat_fourth_central_moment].

        Examples:
            With one coordinate and a Gaussian probe, $g = \nabla v^2$ and
            $\mu_4 = \nabla^4\,\mathbb E[(v^2-1)^4] = 60\nabla^4$:

            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().given({"w": jnp.array([1.0])}).fourth_central_moment()["w"].tolist()
            [60.0]
        """
        return self._unravel(self.flat_fourth_central_moment())

    def projected_variance(self, weights: np.ndarray) -> float:
        r"""$\operatorname{Var}[w\cdot g] = w^\top\operatorname{Cov}[g]\,w$ for flat weights $w$, without forming Cov.

        Args:
            weights: flat weights $w$, one per coordinate in ravel order.

        Returns:
            The variance of the projection, as a Python float.

        Raises:
            NotImplementedError: the law has no closed form for it (the base class).

        Examples:
            >>> import numpy as np, jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
            >>> law.projected_variance(np.array([1.0, 1.0]))   # 34 + 41 + 2·12
            99.0
        """
        raise NotImplementedError(f"{type(self).__name__} has no closed-form projected variance")

    def cov(self, *, max_bytes: int = DEFAULT_COV_MAX_BYTES) -> jax.Array:
        r"""Dense covariance $\operatorname{Cov}[g]$, shape `(n, n)`, in ravel order.

        For iid probes in blocks,
        $\operatorname{Cov}[g] = \frac1K\big(\bigoplus_B(\|\nabla_B\|^2 I + \nabla_B\nabla_B^\top) + (\kappa-3)\operatorname{diag}\nabla^2\big)$
        (derived in the docs: [Derivations](../derivations.md#covariance)).

        Args:
            max_bytes: refuse to allocate more than this (the result and its float64 work arrays).

        Returns:
            The `(n, n)` covariance, in the gradient's dtype.

        Raises:
            ValueError: `n × n` entries would exceed `max_bytes`.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given(jnp.array([3.0, 4.0]))
            >>> law.cov().tolist()    # ‖∇‖² I + ∇∇ᵀ
            [[34.0, 12.0], [12.0, 41.0]]
            >>> law.cov(max_bytes=10)
            Traceback (most recent call last):
            ...
            ValueError: cov() would hold an 2 x 2 matrix (0.0 GiB), more than max_bytes=10. ...
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
        num = _check_num(num, "num")
        return _draw(self.sampler, self.sampling_args, key, jnp.arange(num, dtype=jnp.uint32))

    def sample(self, key: jax.Array, num: int) -> PyTree:
        """`num` independent estimates, as a pytree with a leading axis of size `num`.

        Sample 0 (`jax.tree.map(lambda a: a[0], sample(key, num))`) is the estimate
        `est.estimate(key, ...)` computes with real JVPs: both use the same probes (see
        [`Estimator.estimate`][snrkit.estimators.Estimator.estimate]).

        Args:
            key: a JAX key, e.g. `jax.random.key(0)`.
            num: number of estimates, at least 1.

        Returns:
            A pytree shaped like the gradient with a leading axis of size `num`.

        Examples:
            >>> import jax, jax.numpy as jnp, snrkit as sk
            >>> law = sk.ForwardGradient().given({"b": jnp.ones(3), "w": jnp.ones((2, 3))})
            >>> {name: leaf.shape for name, leaf in law.sample(jax.random.key(0), 10).items()}
            {'b': (10, 3), 'w': (10, 2, 3)}
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
    r"""Static description of an iid-probe estimator: hashable, so it can key jit caches.

    It is the `sampler` of a [`BlockProbeLaw`][snrkit.laws.BlockProbeLaw]: called as
    `spec(args, key, indices)` it draws the estimates
    $g = \frac1K\sum_k v^{(k)} \odot s^{(k)}_{B(i)}$ with $s^{(k)}_B = \nabla_B\cdot v^{(k)}_B$.
    The real estimator uses the same `draw_probes` and `combine`, with JVPs in place of
    `directional_derivatives`.

    Attributes:
        probe: the probe distribution.
        directions: $K$, the number of independent directions averaged.
        num_blocks: number of blocks.
        block_matrix: take block sums as one matmul with an `(n, blocks)` matrix (else a
            segment sum).

    Examples:
        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> law = sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0]))
        >>> spec = law.sampler
        >>> spec.directions, spec.num_blocks
        (1, 2)
        >>> jax.jit(spec)(law.sampling_args, jax.random.key(0), jnp.arange(3, dtype=jnp.uint32)).shape
        (3, 4)
    """

    probe: Probe
    directions: int
    num_blocks: int
    block_matrix: bool

    def directional_derivatives(self, args: dict, probes: jax.Array) -> jax.Array:
        r"""$s^{(k)}_B = \nabla_B\cdot v^{(k)}_B$ for each direction and block: `(..., K, blocks)`.

        Args:
            args: the law's `sampling_args` (`"grad"` and, for several blocks,
                `"block_ids"` or `"block_matrix"`).
            probes: probes of shape `(..., K, n)`.

        Returns:
            The directional derivatives, shape `(..., K, blocks)`.

        Examples:
            >>> import jax.numpy as jnp
            >>> from snrkit.laws import BlockProbeSpec
            >>> from snrkit.probes import get_probe
            >>> spec = BlockProbeSpec(get_probe("rademacher"), 1, 1, block_matrix=False)
            >>> args = {"grad": jnp.array([3.0, 4.0])}
            >>> spec.directional_derivatives(args, jnp.array([[1.0, -1.0]])).tolist()   # 3 − 4
            [[-1.0]]
        """
        grad = args["grad"]
        if self.num_blocks == 1:
            return (probes @ grad)[..., None]
        if self.block_matrix:
            return probes @ args["block_matrix"]
        return _segment_sums(probes * grad, args["block_ids"], self.num_blocks)

    def combine(self, args: dict, probes: jax.Array, derivs: jax.Array) -> jax.Array:
        r"""$g = \frac1K\sum_k v^{(k)} \odot s^{(k)}_{B(i)}$ from probes `(K, n)` and derivatives `(K, blocks)`.

        Args:
            args: the law's `sampling_args` (`"block_ids"` is used for several blocks).
            probes: probes $v^{(k)}$, shape `(..., K, n)`.
            derivs: directional derivatives $s^{(k)}_B$, shape `(..., K, blocks)`.

        Returns:
            The estimate, shape `(..., n)`.

        Examples:
            >>> import jax.numpy as jnp
            >>> from snrkit.laws import BlockProbeSpec
            >>> from snrkit.probes import get_probe
            >>> spec = BlockProbeSpec(get_probe("rademacher"), 1, 1, block_matrix=False)
            >>> spec.combine({}, jnp.array([[1.0, -1.0]]), jnp.array([[-1.0]])).tolist()
            [-1.0, 1.0]
        """
        if self.num_blocks == 1:
            scaled = probes * derivs
        else:
            scaled = probes * jnp.take(derivs, args["block_ids"], axis=-1)
        return jnp.mean(scaled, axis=-2)

    def draw_probes(self, key: jax.Array, index: jax.Array | int, n: int, dtype: jnp.dtype) -> jax.Array:
        """The `(K, n)` probes of sample `index`, drawn from `fold_in(key, index)`.

        Args:
            key: the key of the whole draw.
            index: the sample's index.
            n: number of coordinates.
            dtype: floating dtype of the probes.

        Returns:
            The probes, shape `(K, n)`.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from snrkit.laws import BlockProbeSpec
            >>> from snrkit.probes import get_probe
            >>> spec = BlockProbeSpec(get_probe("gaussian"), 3, 1, block_matrix=False)
            >>> spec.draw_probes(jax.random.key(0), 7, 5, jnp.float32).shape
            (3, 5)
        """
        return self.probe.sample(sample_key(key, index), (self.directions, n), dtype)

    def __call__(self, args: dict, key: jax.Array, indices: jax.Array) -> jax.Array:
        grad = args["grad"]

        def one(index: jax.Array) -> jax.Array:
            probes = self.draw_probes(key, index, grad.size, grad.dtype)
            return self.combine(args, probes, self.directional_derivatives(args, probes))

        return jax.vmap(one)(indices)


def _segment_sums(x: jax.Array, block_ids: jax.Array, num_blocks: int) -> jax.Array:
    """Sum the last axis of `x` within blocks: `(..., n) -> (..., blocks)`."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    sums = jax.vmap(lambda row: jax.ops.segment_sum(row, block_ids, num_segments=num_blocks))(flat)
    return sums.reshape(*lead, num_blocks)


class BlockProbeLaw(Law):
    r"""Exact law of $g = \frac1K\sum_k\sum_B (\nabla_B\cdot v^{(k)}_B) v^{(k)}_B$ with iid probe entries.

    Built by `given` of [`ForwardGradient`][snrkit.estimators.ForwardGradient] (one block)
    and of [`Partitioned`][snrkit.estimators.Partitioned]. With $B(i)$ the block of
    coordinate $i$ and $\kappa$ the probe's kurtosis,

    $$
    \mathbb E[g] = \nabla,\qquad
    \operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K},\qquad
    \mathrm{SNR}_i = \frac{\nabla_i^2}{\operatorname{Var}[g_i]}.
    $$

    The mean is Baydin et al. (2022), Theorem 1; the rest is derived in the docs:
    [Derivations](../derivations.md).

    Args:
        grad: the true gradient, any pytree of float arrays.
        probe: the probe distribution.
        directions: $K \ge 1$.
        block_ids: block of each coordinate, flat in ravel order, ids `0..num_blocks-1`
            (`None` for a single block).
        num_blocks: number of blocks.

    Attributes:
        probe: the probe distribution.
        directions: $K$, the number of independent directions averaged.
        block_ids: block of each coordinate (`None` for a single block).
        num_blocks: number of blocks.

    Examples:
        >>> import jax.numpy as jnp, snrkit as sk
        >>> law = sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0]))
        >>> law
        BlockProbeLaw(n=4, probe='gaussian', directions=1, blocks=2)
        >>> law.var().tolist()    # blocks {1, 2} and {3, 4}: ‖∇_B‖² + ∇ᵢ²
        [6.0, 9.0, 34.0, 41.0]
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
        """The [`BlockProbeSpec`][snrkit.laws.BlockProbeSpec] that draws the estimates.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient(directions=3).given(jnp.ones(2)).sampler.directions
            3
        """
        return self._spec

    @property
    def sampling_args(self) -> dict:
        """`{"grad": flat gradient}`, plus `"block_ids"` (and `"block_matrix"`) for several blocks.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sorted(sk.Partitioned(blocks=2).given(jnp.ones(4)).sampling_args)
            ['block_ids', 'block_matrix', 'grad']
        """
        return self._args

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

    def _exact(self, name: str) -> jax.Array:
        ids = None if self.block_ids is None else self._args["block_ids"]
        # float64 inside the jitted function only (sums of squares over 10^7 entries need
        # it); the result is cast back in the same pass, so only the gradient's dtype is
        # ever written to memory.
        with jax.enable_x64(True):
            return _EXACT[name](self._flat_grad, ids, self.num_blocks, self.probe, self.directions)

    def flat_mean(self) -> jax.Array:
        r"""$\mathbb E[g] = \nabla$ (Baydin et al. 2022, Theorem 1; any iid probe with mean 0, variance 1).

        Each block is unbiased, $\mathbb E[(\nabla_B\cdot v_B)v_B] = \mathbb E[v_Bv_B^\top]\nabla_B = \nabla_B$,
        so the sum over blocks and the mean over directions are too.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0])).flat_mean().tolist()
            [1.0, 2.0, 3.0]
        """
        return self._flat_grad

    def flat_var(self) -> jax.Array:
        r"""$\operatorname{Var}[g_i] = (\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K$, flat.

        Derived in the docs: [Derivations](../derivations.md#blocks). For $\kappa < 2$ it is
        computed as $(\sum_{j\in B(i), j\ne i}\nabla_j^2 + (\kappa-1)\nabla_i^2)/K$, a sum of
        non-negative terms, so a dominant $\nabla_i$ loses no digits.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> law = sk.Partitioned(blocks=2, probe="rademacher").given(jnp.array([1.0, 2.0, 3.0, 4.0]))
            >>> law.flat_var().tolist()    # the other entry of the block, squared
            [4.0, 1.0, 16.0, 9.0]
        """
        return self._exact("var")

    def flat_fourth_central_moment(self) -> jax.Array:
        r"""Exact fourth central moment $\mathbb E[(g_i-\nabla_i)^4]$ of each coordinate, flat.

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

        Examples:
            One coordinate, Gaussian probe: $\mu_4 = 60$, $\sigma^2 = 2$, so $K=2$ gives
            $(60 + 3\cdot 4)/8 = 9$:

            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient(directions=2).given(jnp.array([1.0])).flat_fourth_central_moment().tolist()
            [9.0]
        """
        return self._exact("fourth")

    def projected_variance(self, weights: np.ndarray) -> float:
        r"""$\operatorname{Var}[w\cdot g] = w^\top\operatorname{Cov}[g]\,w$ in $O(n)$, from the block structure of the covariance.

        $$
        w^\top\operatorname{Cov}[g]\,w = \frac1K\Big(\sum_B \big(\|\nabla_B\|^2\|w_B\|^2 + (\nabla_B\cdot w_B)^2\big)
            + (\kappa-3)\sum_i w_i^2\nabla_i^2\Big).
        $$

        Args:
            weights: flat weights $w$, one per coordinate in ravel order.

        Returns:
            The variance of the projection, computed in float64.

        Examples:
            >>> import numpy as np, jax.numpy as jnp, snrkit as sk
            >>> law = sk.Partitioned(blocks=2).given(jnp.array([1.0, 2.0, 3.0, 4.0]))
            >>> w = np.array([1.0, 1.0, 1.0, 1.0])
            >>> law.projected_variance(w), float(w @ np.asarray(law.cov()) @ w)
            (118.0, 118.0)
        """
        g = np.asarray(self._flat_grad, np.float64)
        w = np.asarray(weights, np.float64)
        ids = np.zeros(g.size, np.int64) if self.block_ids is None else np.asarray(self.block_ids)
        norms = np.bincount(ids, weights=g * g, minlength=self.num_blocks)
        w_norms = np.bincount(ids, weights=w * w, minlength=self.num_blocks)
        dots = np.bincount(ids, weights=g * w, minlength=self.num_blocks)
        total = norms @ w_norms + dots @ dots + (self.probe.m4 - 3.0) * np.sum(w * w * g * g)
        return float(total / self.directions)

    def flat_cov(self) -> jax.Array:
        r"""$\operatorname{Cov}[g] = \frac1K\big(\bigoplus_B(\|\nabla_B\|^2 I + \nabla_B\nabla_B^\top) + (\kappa-3)\operatorname{diag}\nabla^2\big)$, dense.

        Coordinates in different blocks are uncorrelated. Derived in the docs:
        [Derivations](../derivations.md#covariance). Use `cov()`, which checks the size first.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> law = sk.Partitioned(blocks=2, probe="rademacher").given(jnp.array([1.0, 2.0, 3.0, 4.0]))
            >>> law.flat_cov().tolist()
            [[4.0, 2.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 16.0, 12.0], [0.0, 0.0, 12.0, 9.0]]
        """
        return self._exact("cov")


def _block_power_sums(g: jax.Array, ids: jax.Array | None, num_blocks: int, power: int) -> jax.Array:
    r"""$\sum_{j\in B(i)} \nabla_j^p$, broadcast back to every coordinate (a scalar for one block)."""
    x = g**power
    if ids is None:
        return jnp.sum(x)
    return jax.ops.segment_sum(x, ids, num_segments=num_blocks)[ids]


def _sum_of_others(x: jax.Array, ids: jax.Array | None, num_blocks: int) -> jax.Array:
    r"""$\sum_{j\in B(i), j\ne i} x_j$ for non-negative `x`, without cancellation.

    `Σ_B − x_i` loses every digit at a block's dominant entry (e.g. ∇ = (1, 1e-6)), so
    there the sum is taken over the other entries directly; elsewhere `x_i` is at most
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
