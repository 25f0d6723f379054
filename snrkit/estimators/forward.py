r"""The forward gradient of Baydin et al. (2022), averaged over K directions.

$$
g = \frac1K \sum_{k=1}^K (\nabla\cdot v^{(k)})\, v^{(k)}, \quad v^{(k)}_i \text{ iid, mean 0, variance 1.}
$$
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snrkit._tree import PyTree
from snrkit.estimators.base import BlockProbeEstimator, check_directions
from snrkit.probes import Probe, get_probe


@dataclass(frozen=True)
class ForwardGradient(BlockProbeEstimator):
    r"""Mean of `directions` independent forward gradients $(\nabla\cdot v)v$.

    The forward gradient of Baydin et al. (2022), "Gradients without backpropagation":
    one Jacobian-vector product per direction, no backpropagation. With $K$ directions,
    $n$ coordinates and probe kurtosis $\kappa = \mathbb E[v^4]$, its exact law is

    $$
    \mathbb E[g] = \nabla,\qquad
    \operatorname{Var}[g_i] = \frac{\|\nabla\|^2 + (\kappa-2)\nabla_i^2}{K},\qquad
    \operatorname{tr}\operatorname{Cov}[g] = \frac{(n+\kappa-2)\|\nabla\|^2}{K},\qquad
    \mathrm{SNR}_i = \frac{\nabla_i^2}{\operatorname{Var}[g_i]}.
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
        >>> law.var().tolist()   # ‖∇‖² + ∇ᵢ² = 25 + (9, 16)
        [34.0, 41.0]
        >>> float(law.total_variance())   # (n + κ − 2)‖∇‖² = 3 · 25
        75.0
        >>> sk.ForwardGradient("rademacher", directions=4).given(jnp.array([3.0, 4.0])).var().tolist()
        [4.0, 2.25]
    """

    probe: str | Probe = "gaussian"
    directions: int = 1

    def __post_init__(self) -> None:
        get_probe(self.probe)
        check_directions(self.directions)

    def block_assignment(self, tree: PyTree, n: int) -> tuple[np.ndarray | None, int]:
        """One block holding every coordinate: `(None, 1)`.

        Args:
            tree: the gradient or the parameters (unused).
            n: their number of coordinates (unused).

        Returns:
            `(None, 1)`.

        Examples:
            >>> import jax.numpy as jnp, snrkit as sk
            >>> sk.ForwardGradient().block_assignment(jnp.ones(3), 3)
            (None, 1)
        """
        return None, 1
