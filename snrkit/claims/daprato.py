"""Claims of Daprato, Jain, Hung, "Forward gradients are not all you need"."""

from __future__ import annotations

from snrkit.claims.predictions import sum_of_other_squares
from snrkit.claims.records import Claim
from snrkit.families.iid import ForwardGradient

CLAIMS = (
    Claim(
        id="daprato-variance",
        source="Daprato, Jain, Hung, §3.1",
        reference="daprato",
        latex=r"\operatorname{Var}[g_k] = \sum_{j\neq k}\nabla_j^2",
        words="Each entry's variance is the sum of the other entries' squares.",
        kind="exact identity",
        about="forward gradient, Gaussian probe, K = 1",
        test="entry-variance",
        estimator=lambda probe: ForwardGradient(probe=probe),
        predict=sum_of_other_squares,
    ),
)
