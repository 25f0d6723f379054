r"""The forward gradient of Baydin et al. (2022), averaged over K directions.

.. math:: g = \frac1K \sum_{k=1}^K (\nabla\cdot v^{(k)})\, v^{(k)}, \quad v^{(k)}_i \text{ iid, mean 0, variance 1.}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snrkit._tree import PyTree
from snrkit.estimators.base import BlockProbeEstimator, check_directions
from snrkit.probes import Probe, get_probe


@dataclass(frozen=True)
class ForwardGradient(BlockProbeEstimator):
    r"""Mean of ``directions`` independent forward gradients :math:`(\nabla\cdot v)v`.

    Exact law (derivation in the docs; Baydin et al. 2022 for the mean):

    .. math::

        \mathbb E[g] = \nabla,\qquad
        \operatorname{Var}[g_i] = \frac{\|\nabla\|^2 + (\kappa-2)\nabla_i^2}{K},\qquad
        \operatorname{tr}\operatorname{Cov}[g] = \frac{(n+\kappa-2)\|\nabla\|^2}{K}.

    Gaussian probes (:math:`\kappa=3`) give :math:`\|\nabla\|^2+\nabla_i^2`; Rademacher
    (:math:`\kappa=1`) give :math:`\sum_{j\ne i}\nabla_j^2`.

    Args:
        probe: ``"gaussian"``, ``"rademacher"``, ``"uniform"`` or a :class:`~snrkit.probes.Probe`.
        directions: :math:`K \ge 1`, the number of independent probes averaged.

    Example:
        >>> import jax, jax.numpy as jnp, snrkit as sk
        >>> law = sk.ForwardGradient("gaussian").given(jnp.array([3.0, 4.0]))
        >>> law.var()   # ||∇||² + ∇_i² = 25 + (9, 16)
        Array([34., 41.], dtype=float32)
    """

    probe: str | Probe = "gaussian"
    directions: int = 1

    def __post_init__(self) -> None:
        get_probe(self.probe)
        check_directions(self.directions)

    def block_assignment(self, tree: PyTree, n: int) -> tuple[np.ndarray | None, int]:
        return None, 1
