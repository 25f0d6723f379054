"""Claims of Yao, "Studies on forward mode gradient descent" (§III)."""

from __future__ import annotations

import numpy as np

from snrkit.claims.predictions import homogeneous, homogeneous_sigma2, sum_of_other_squares
from snrkit.claims.records import Claim
from snrkit.families.iid import ForwardGradient, Partitioned

K = 4
"""The K of eqs. (7)-(9) the claims are verified at: directions averaged, or blocks."""
K_COMPARISON = 2
"""The K of the §III.C comparison: blocks against averaged directions (same JVPs)."""

CLAIMS = (
    Claim(
        id="yao-eq6",
        source="Yao, eq. (6)",
        reference="yao",
        latex=r"\operatorname{Var}[\hat g_i] = \sum_{j\neq i} g_j^2",
        words="Each entry's variance is the sum of the other entries' squares.",
        kind="exact identity",
        about="forward gradient, Gaussian probe, K = 1",
        test="entry-variance",
        estimator=lambda probe: ForwardGradient(probe=probe),
        predict=sum_of_other_squares,
    ),
    Claim(
        id="yao-eq7",
        source="Yao, eq. (7)",
        reference="yao",
        latex=r"\operatorname{Var}[\hat g_i^{avg}] = \frac1K\sum_{j\neq i} g_j^2",
        words="Averaging K directions divides eq. (6) by K.",
        kind="exact identity",
        about=f"forward gradient, Gaussian probe, K = {K} directions",
        test="entry-variance",
        estimator=lambda probe: ForwardGradient(probe=probe, directions=K),
        predict=lambda g: sum_of_other_squares(g) / K,
    ),
    Claim(
        id="yao-eq8",
        source="Yao, eq. (8)",
        reference="yao",
        latex=r"\operatorname{Var}[\hat g_i^{avg}] = \frac{n-1}{K}\sigma^2",
        words="K directions, homogeneous entries (∇_i² = σ²): (n−1)σ²/K.",
        kind="exact identity",
        about=f"forward gradient, Gaussian probe, K = {K} directions, homogeneous entries",
        test="entry-variance",
        estimator=lambda probe: ForwardGradient(probe=probe, directions=K),
        predict=lambda g: np.full_like(g, (g.size - 1) * homogeneous_sigma2(g) / K),
        gradient="homogeneous",
        conditions=homogeneous,
    ),
    Claim(
        id="yao-eq9",
        source="Yao, eq. (9)",
        reference="yao",
        latex=r"\operatorname{Var}[\hat g_i^{sum}] = \frac{n-K}{K}\sigma^2",
        words="A K-block partition, homogeneous entries: (n−K)σ²/K.",
        kind="exact identity",
        about=f"partitioned probe, Gaussian, K = {K} blocks, homogeneous entries",
        test="entry-variance",
        estimator=lambda probe: Partitioned(blocks=K, probe=probe),
        predict=lambda g: np.full_like(g, (g.size - K) * homogeneous_sigma2(g) / K),
        gradient="homogeneous",
        conditions=homogeneous,
    ),
    Claim(
        id="yao-partition-beats-directions",
        source="Yao, §III.C",
        reference="yao",
        latex=r"\operatorname{tr}\operatorname{Cov}[\hat g^{sum}_{K\,\mathrm{blocks}}] < \operatorname{tr}\operatorname{Cov}[\hat g^{avg}_{K\,\mathrm{directions}}]",
        words="A K-block partition has lower variance than averaging K directions (same K JVPs).",
        kind="comparison between estimators",
        about=f"partitioned probe with K = {K_COMPARISON} blocks vs K = {K_COMPARISON} averaged directions, Gaussian",
        test="comparison",
        estimator=lambda probe: Partitioned(blocks=K_COMPARISON, probe=probe),
        compare_with=lambda probe: ForwardGradient(probe=probe, directions=K_COMPARISON),
    ),
)
