"""snrkit's own exact laws of iid-probe estimators, verified like any published claim (derived in the docs)."""

from __future__ import annotations

from snrkit.claims.records import Claim
from snrkit.families.iid import ForwardGradient, Partitioned

CLAIMS = (
    Claim(
        id="snrkit-variance",
        source="snrkit (derivation in the docs)",
        reference="snrkit",
        latex=r"\operatorname{Var}[g_i] = \big(\|\nabla\|^2 + (\kappa-2)\nabla_i^2\big)/K",
        words="Each entry's variance is the squared norm plus (κ−2) times its own square, over K.",
        kind="exact identity",
        about="forward gradient, iid probe of kurtosis κ, K directions",
        test="entry-variance",
        estimator=lambda probe: ForwardGradient(probe=probe),
    ),
    Claim(
        id="snrkit-partition-variance",
        source="snrkit (derivation in the docs)",
        reference="snrkit",
        latex=r"\operatorname{Var}[g_i] = \|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2",
        words="With a partitioned probe, the norm is that of the entry's own block.",
        kind="exact identity",
        about="partitioned probe, K = 4 blocks",
        test="entry-variance",
        estimator=lambda probe: Partitioned(blocks=4, probe=probe),
        gradient="network",
    ),
)
