"""Claims of Flügel, Coquelin, Weiel, Debus, Streit, Götz (2025), "Beyond backpropagation: optimization
with multi-tangent forward gradients", as implemented in the authors' code (`scaling_correction_factor`).

The code scales an aggregated multi-tangent forward gradient by 1/ℓ, ℓ the expected length
of the aggregate relative to the gradient, so that the estimate has the gradient's expected
length. Each claim says that, after the scaling, E‖g‖ = ‖∇‖.
"""

from __future__ import annotations

import numpy as np

from snrkit.claims.records import Claim
from snrkit.families.multitangent import MultiTangent

K = 4
"""Tangents of the claims."""
RESOLUTION = 0.1
"""The claims are about lengths to a few percent: they hold only if a 10 % error would surely
(with probability 1 − alpha) have been seen. Smaller errors are still refuted when the samples
show them, as the ~5 % of the unit-tangent mean."""


def _length(grad: np.ndarray) -> np.ndarray:
    return np.array([np.linalg.norm(grad)])


CLAIMS = (
    Claim(
        id="flugel-projection-length",
        source="Flügel et al. (2025), authors' code: scaling_correction_factor, orthogonal projection",
        reference="flugel2025",
        latex=r"\mathbb E\big\|P_V\nabla\big\| = \frac{\mathbb E\chi_K}{\mathbb E\chi_n}\|\nabla\|",
        words="The projection onto the span of K tangents has expected length E χ_K / E χ_n times the gradient's, "
        "so scaling by the inverse restores the gradient's length.",
        kind="exact identity",
        about=f"multi-tangent forward gradient, orthogonal projection on K = {K} Gaussian tangents, scaled by E χ_n / E χ_K",
        test="expected-norm",
        estimator=lambda probe: MultiTangent(directions=K, aggregation="projection", scale="peer"),
        predict=_length,
        gradient="network",
        probes=(),
        resolution=RESOLUTION,
    ),
    Claim(
        id="flugel-mean-length",
        source="Flügel et al. (2025), authors' code: scaling_correction_factor, mean of unit tangents (K ≥ 2)",
        reference="flugel2025",
        latex=r"\mathbb E\Big\|\frac1K\sum_k (\nabla\cdot v_k)v_k\Big\| = \frac1n\sqrt{\frac{n+K}{1+K}}\,\|\nabla\|,\quad \|v_k\| = 1",
        words="The mean of K forward gradients along unit-length tangents has expected length √((n+K)/(1+K))/n times "
        "the gradient's, so scaling by the inverse restores the gradient's length.",
        kind="exact identity",
        about=f"multi-tangent forward gradient, mean over K = {K} unit-length tangents, scaled by n √((1+K)/(n+K))",
        test="expected-norm",
        estimator=lambda probe: MultiTangent(directions=K, aggregation="mean", tangents="unit", scale="peer"),
        predict=_length,
        gradient="network",
        probes=(),
        resolution=RESOLUTION,
    ),
)
