"""The papers the claims come from, cited by authors, title, year and a stable link where one exists.

Examples:
    >>> from snrkit.claims.bibliography import REFERENCES
    >>> print(REFERENCES["baydin2022"])
    Baydin, Pearlmutter, Syme, Wood, Torr (2022). Gradients without backpropagation. https://arxiv.org/abs/2202.08587
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One cited work.

    Attributes:
        authors: surnames, in the paper's order.
        title: the title.
        year: year of the version cited (None when undated).
        url: a stable link (arXiv or DOI); empty when none is known.
    """

    authors: str
    title: str
    year: int | None
    url: str = ""

    def __str__(self) -> str:
        year = f" ({self.year})" if self.year else ""
        link = f" {self.url}" if self.url else ""
        return f"{self.authors}{year}. {self.title}.{link}"


REFERENCES: dict[str, Reference] = {
    "baydin2022": Reference(
        "Baydin, Pearlmutter, Syme, Wood, Torr", "Gradients without backpropagation", 2022,
        "https://arxiv.org/abs/2202.08587",
    ),
    "frye2022": Reference("Frye", "Unfavorable SNR in forward gradients (note)", 2022),
    "frye2022thread": Reference(
        "Frye", "Thread on the SNR of forward gradients", 2022,
        "https://threadreaderapp.com/thread/1497129714195992578.html",
    ),
    "daprato": Reference("Daprato, Jain, Hung", "Forward gradients are not all you need", None),
    "yao": Reference("Yao", "Studies on forward mode gradient descent", None),
    "flugel2025": Reference(
        "Flügel, Coquelin, Weiel, Debus, Streit, Götz",
        "Beyond backpropagation: optimization with multi-tangent forward gradients", 2025,
        "https://arxiv.org/abs/2410.17764",
    ),
    "snrkit": Reference("snrkit", "The derivations of the snrkit documentation", None),
}
"""Every cited work by key (the [`Claim.reference`][snrkit.claims.records.Claim.reference] of a claim)."""
