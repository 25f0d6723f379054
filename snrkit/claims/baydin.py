"""Claims of Baydin, Pearlmutter, Syme, Wood, Torr (2022), "Gradients without backpropagation"."""

from __future__ import annotations

from snrkit.claims.records import Claim
from snrkit.families.iid import ForwardGradient

CLAIMS = (
    Claim(
        id="baydin-unbiased",
        source="Baydin et al. (2022), Thm 1; restated by Frye, Daprato §1 and Yao eq. (5)",
        reference="baydin2022",
        latex=r"\mathbb{E}[g] = \nabla",
        words="The forward gradient is an unbiased estimate of the gradient.",
        kind="exact identity",
        about="forward gradient computed with jax.jvp (the real estimator), K = 1",
        test="mean",
        estimator=lambda probe: ForwardGradient(probe=probe),
        predict=lambda g: g,
        gradient="network",
    ),
)
