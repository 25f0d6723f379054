"""MkDocs hook: the Bibliography page, generated from `snrkit.claims.bibliography.REFERENCES`.

One section per work, its anchor the work's key (`bibliography.md#frye2022`), so a docs page
cites a paper by linking there and the page cannot drift from what the claims and the report
cite. Each entry lists the registered claims taken from it, linked to the claims ledger.
"""

from __future__ import annotations

from mkdocs.structure.files import File, Files

from snrkit.claims import CLAIMS
from snrkit.claims.bibliography import REFERENCES

PAGE = "bibliography.md"


def render() -> str:
    """The Markdown of the Bibliography page."""
    lines = [
        "# Bibliography",
        "",
        "Every work snrkit cites, with a stable link where one exists. The claims, these pages and "
        "the report (`make report`) share these entries (`snrkit.claims.bibliography.REFERENCES`); "
        "a claim names its entry by key (`Claim.reference`). Equation and section numbers in the "
        "claims are the works' own.",
    ]
    for key, ref in REFERENCES.items():
        cited_by = [f"[`{claim_id}`](claims.md#{claim_id})" for claim_id, claim in CLAIMS.items() if claim.reference == key]
        lines += ["", f"## {ref.short}: {ref.title} {{ #{key} }}", "", ref.markdown()]
        if cited_by:
            lines += ["", "Claims from it: " + ", ".join(cited_by) + "."]
    return "\n".join(lines) + "\n"


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, PAGE, content=render()))
    return files
