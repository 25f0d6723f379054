"""snrkit's own laws of the families beyond iid probes, verified like any published claim (derived in the docs).

The floor of linear unbiased estimators and the exact laws of orthogonal frames and of
Gaussian probes with a covariance (a prior built from the stale gradient the default
problems carry).
"""

from __future__ import annotations

import numpy as np

from snrkit.claims.records import Claim
from snrkit.families.covariance import CovarianceProbe, stale_gradient
from snrkit.families.orthogonal import OrthogonalFrames

K = 4
"""Directions of the orthogonal-frame claims."""
CONFIDENCE = 0.5
"""ρ of the prior probe: directions off the stale gradient are damped to 1 − ρ."""


PRIOR = CovarianceProbe.prior(stale_gradient, confidence=CONFIDENCE)
"""A Gaussian probe of covariance (1 − ρ)I + ρ b̂b̂ᵀ, b the gradient of 10 training steps earlier."""

CLAIMS = (
    Claim(
        id="snrkit-floor",
        source="snrkit (derivation in the docs: Orthogonal frames, the floor)",
        reference="snrkit",
        latex=r"\operatorname{tr}\operatorname{Cov}\big[\tfrac nK QQ^\top\nabla\big] = \Big(\frac nK - 1\Big)\|\nabla\|^2",
        words="Unbiased orthogonal frames reach the floor: the least total variance of any linear unbiased "
        "estimator with K JVPs (averaged over rotations of the gradient).",
        kind="exact identity",
        about=f"orthogonal frames, K = {K} Haar directions, scaled by n/K",
        test="total-variance",
        estimator=lambda probe: OrthogonalFrames(directions=K),
        predict=lambda g: np.array([(g.size / K - 1) * (g @ g)]),
        probes=(),
    ),
    Claim(
        id="snrkit-orthogonal-variance",
        source="snrkit (derivation in the docs: Orthogonal frames)",
        reference="snrkit",
        latex=r"\operatorname{Var}[g_i] = \frac{n-K}{K(n+2)}\Big[2\nabla_i^2 + \frac{n}{n-1}\sum_{j\ne i}\nabla_j^2\Big]",
        words="Each entry's variance under unbiased orthogonal frames.",
        kind="exact identity",
        about=f"orthogonal frames, K = {K} Haar directions, scaled by n/K",
        test="entry-variance",
        estimator=lambda probe: OrthogonalFrames(directions=K),
        probes=(),
    ),
    Claim(
        id="snrkit-covariance-variance",
        source="snrkit (derivation in the docs: Gaussian probes with a covariance)",
        reference="snrkit",
        latex=r"\operatorname{Var}[g_i] = \big((\nabla^\top\Sigma\nabla)\Sigma_{ii} + (\Sigma\nabla)_i^2\big)/K",
        words="Each entry's variance under Gaussian probes of covariance Σ (here a prior from a stale gradient).",
        kind="exact identity",
        about=f"Gaussian probe, Σ = (1−ρ)I + ρ b̂b̂ᵀ with b the gradient 10 steps earlier, ρ = {CONFIDENCE}, K = 1",
        test="entry-variance",
        estimator=lambda probe: PRIOR,
        probes=(),
    ),
    Claim(
        id="snrkit-covariance-bias",
        source="snrkit (derivation in the docs: Gaussian probes with a covariance)",
        reference="snrkit",
        latex=r"\mathbb E[g] - \nabla = (\Sigma - I)\nabla",
        words="A probe sampled from a prior is biased towards the prior: its mean is Σ∇, not ∇.",
        kind="exact identity",
        about=f"Gaussian probe, Σ = (1−ρ)I + ρ b̂b̂ᵀ with b the gradient 10 steps earlier, ρ = {CONFIDENCE}, K = 1",
        test="bias",
        estimator=lambda probe: PRIOR,
        probes=(),
    ),
)
