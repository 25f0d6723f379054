"""Every work snrkit cites: authors, title, year and a stable link, in one place.

The claims name their paper by key ([`Claim.reference`][snrkit.claims.records.Claim.reference]);
the docs' [Bibliography](../bibliography.md) page and the report are generated from the same
[`REFERENCES`][snrkit.claims.bibliography.REFERENCES]. A work with no public version, or no
known year, says so in its `note` rather than carrying a guessed link or date.

Examples:
    >>> from snrkit.claims.bibliography import REFERENCES
    >>> baydin, daprato = REFERENCES["baydin2022"], REFERENCES["daprato"]
    >>> baydin.short, baydin.url
    ('Baydin et al. (2022)', 'https://arxiv.org/abs/2202.08587')
    >>> daprato.short, daprato.year, daprato.url  # no date, no public version
    ('Daprato et al.', None, '')
    >>> print(REFERENCES["isserlis1918"].url)
    https://doi.org/10.1093/biomet/12.1-2.134
"""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One cited work.

    Attributes:
        authors: surnames, in the work's order ("et al." where the full list is not known).
        title: the title (for an untitled work, a description in brackets).
        year: year of the version cited; None when the work carries no date.
        url: a stable link (arXiv, DOI, or the author's own copy); empty when none is known.
        note: what a reader needs besides the link: the venue, what kind of document it is,
            and, when there is no link or no year, that none is known.
    """

    authors: str
    title: str
    year: int | None
    url: str = ""
    note: str = ""

    @property
    def short(self) -> str:
        """In-text form: first author ("et al." for three or more) and the year, if known."""
        names = [name.strip() for name in self.authors.split(",")]
        if len(names) >= 3 or names[-1].endswith("et al."):
            who = f"{names[0].removesuffix(' et al.')} et al."
        else:
            who = " and ".join(names)
        return f"{who} ({self.year})" if self.year else who

    def __str__(self) -> str:
        year = f" ({self.year})" if self.year else ""
        parts = [f"{self.authors}{year}. {self.title}.", self.url, f"{self.note}." if self.note else ""]
        return " ".join(part for part in parts if part)

    def markdown(self) -> str:
        """The entry in Markdown: the title in italics, the link clickable."""
        year = f" ({self.year})" if self.year else ""
        link = f" <{self.url}>." if self.url else ""
        note = f" {self.note}." if self.note else ""
        return f"{self.authors}{year}. *{self.title}*.{link}{note}"

    def html(self) -> str:
        """The entry in HTML (escaped), for the self-contained report."""
        year = f" ({self.year})" if self.year else ""
        link = f' <a href="{html.escape(self.url)}">{html.escape(self.url)}</a>.' if self.url else ""
        note = f" {html.escape(self.note)}." if self.note else ""
        return f"{html.escape(self.authors)}{year}. <em>{html.escape(self.title)}</em>.{link}{note}"


REFERENCES: dict[str, Reference] = {
    "baydin2022": Reference(
        "Baydin, Pearlmutter, Syme, Wood, Torr", "Gradients without backpropagation", 2022,
        "https://arxiv.org/abs/2202.08587",
    ),
    "frye2022": Reference(
        "Frye", "Unfavorable SNR in forward gradients", 2022,
        "https://charlesfrye.github.io/pdfs/SNR-Forward-Gradients.pdf",
        "Note, February 2022, on the author's website; no arXiv or DOI version",
    ),
    "frye2022thread": Reference(
        "Frye", "[Thread on the variance and SNR of forward gradients]", 2022,
        "https://threadreaderapp.com/thread/1497129714195992578.html",
        "Untitled Twitter thread that announces the note above, as kept by Thread Reader; no archival version",
    ),
    "daprato": Reference(
        "Daprato, Jain, Hung", "Forward gradients are not all you need", None,
        note="Undated report (it cites work of 2022); no public version is known: no arXiv id, DOI or stable URL",
    ),
    "yao": Reference(
        "Yao", "Studies on forward mode gradient descent", None,
        note="Undated report, Department of Computer Science, EPFL (it cites work of 2022); no public version is "
        "known: no arXiv id, DOI or stable URL",
    ),
    "flugel2025": Reference(
        "Flügel, Coquelin, Weiel, Debus, Streit, Götz",
        "Beyond backpropagation: optimization with multi-tangent forward gradients", 2025,
        "https://arxiv.org/abs/2410.17764",
        "In IJCNN 2025, DOI 10.1109/IJCNN64981.2025.11227446",
    ),
    "singhal2023": Reference("Singhal et al.", "How to guess a gradient", 2023, "https://arxiv.org/abs/2312.04709"),
    "wang2025": Reference(
        "Wang, Markou, Campbell", "Towards scalable backpropagation-free gradient estimation", 2025,
        "https://arxiv.org/abs/2511.03110",
    ),
    "isserlis1918": Reference(
        "Isserlis",
        "On a formula for the product-moment coefficient of any order of a normal frequency distribution in any "
        "number of variables", 1918,
        "https://doi.org/10.1093/biomet/12.1-2.134",
        "Biometrika 12(1-2), 134-139",
    ),
    "he2015": Reference(
        "He, Zhang, Ren, Sun",
        "Delving deep into rectifiers: surpassing human-level performance on ImageNet classification", 2015,
        "https://arxiv.org/abs/1502.01852",
    ),
    "snrkit": Reference(
        "snrkit", "The exact law", None,
        note="snrkit's own results, proved step by step on the page The exact law of this documentation",
    ),
}
"""Every cited work by key (the [`Claim.reference`][snrkit.claims.records.Claim.reference] of a claim)."""
