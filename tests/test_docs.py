"""The documentation builds, its examples run, and its ledger page cannot go stale.

* The site builds with `mkdocs build --strict`: a broken link, a docstring that no longer
  matches its signature, or a missing page fails the suite, not just `make docs`.
* Every ```python block of the README, Getting started and the how-to guides runs, in page
  order, in one namespace per page: a documented example that no longer works fails.
* The ledger hook refuses verdicts that do not match `snrkit.claims.CLAIMS`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PAGES = [
    ROOT / "README.md",
    ROOT / "docs" / "getting-started.md",
    ROOT / "docs" / "contributing.md",
    ROOT / "docs" / "derivations.md",
    *sorted((ROOT / "docs" / "howto").glob("*.md")),
    *sorted((ROOT / "docs" / "families").glob("*.md")),
]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


def load_hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_site_builds_strict(built_site):
    """`mkdocs build --strict` succeeds on the committed docs, ledger and notebooks (the
    `built_site` fixture fails the session's first user when it does not)."""
    ledger = (built_site / "claims" / "index.html").read_text(encoding="utf-8")
    for claim_id in load_hook("ledger").claims.CLAIMS:
        assert f'id="{claim_id}"' in ledger, claim_id
    for page in ("reference/core", "reference/families", "families", "contributing"):
        assert (built_site / page / "index.html").is_file(), page
    families = (built_site / "families" / "index.html").read_text(encoding="utf-8")
    for row in load_hook("families").FAMILIES.values():
        assert row.estimator.__name__ in families, row.name


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page, tmp_path, monkeypatch):
    """The page's Python examples run top to bottom (cwd is a temporary folder)."""
    blocks = python_blocks(page)
    assert blocks, f"{page.name} has no ```python examples"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{page.relative_to(ROOT)} (block {number})", "exec"), namespace)  # noqa: S102 (our own docs)


def test_ledger_rejects_stale_verdicts(tmp_path):
    """Verdicts missing a registered claim, or of a claim changed since, fail the build with the fix."""
    hook = load_hook("ledger")
    committed = hook.DEFAULT_DIR
    hook.load_ledger(committed)  # the committed ledger is current

    dropped = tmp_path / "dropped"
    shutil.copytree(committed, dropped)
    frame = pd.read_csv(dropped / "claims.csv")
    frame[frame["id"] != "frye-eq5"].to_csv(dropped / "claims.csv", index=False)
    with pytest.raises(hook.PluginError, match=r"stale.*frye-eq5.*make ledger"):
        hook.load_ledger(dropped)

    changed = tmp_path / "changed"
    shutil.copytree(committed, changed)
    provenance = json.loads((changed / "run.json").read_text(encoding="utf-8"))
    provenance["claims"]["yao-eq6"] = "0" * 16
    (changed / "run.json").write_text(json.dumps(provenance), encoding="utf-8")
    with pytest.raises(hook.PluginError, match=r"changed.*yao-eq6"):
        hook.load_ledger(changed)

    with pytest.raises(hook.PluginError, match="lacks claims.csv"):
        hook.load_ledger(tmp_path / "empty")


def test_docstring_links_into_the_docs_resolve():
    """Links from docstrings to a docs page's section name an anchor that page defines.

    mkdocs validates anchors in pages, not in docstrings rendered by mkdocstrings.
    """
    link = re.compile(r"\]\(\.\./([\w/-]+\.md)#([\w-]+)\)")
    checked = 0
    for module in sorted((ROOT / "snrkit").rglob("*.py")):
        for page, anchor in link.findall(module.read_text(encoding="utf-8")):
            text = (ROOT / "docs" / page).read_text(encoding="utf-8")
            assert f"{{ #{anchor} }}" in text, f"{module.name} links to {page}#{anchor}, which {page} does not define"
            checked += 1
    assert checked, "no docstring links into the docs were found; the pattern is out of date"


def test_claim_fingerprint_sees_every_change():
    """A changed source, statement or prediction changes the fingerprint the ledger is checked with."""
    from snrkit.claims import CLAIMS

    claim = CLAIMS["daprato-variance"]
    assert dataclasses.replace(claim, source=claim.source + " ").fingerprint() != claim.fingerprint()
    assert dataclasses.replace(claim, latex=claim.latex + " ").fingerprint() != claim.fingerprint()
    wrong = dataclasses.replace(claim, predict=lambda g: 1.0001 * claim.predict(g))
    assert wrong.fingerprint() != claim.fingerprint()
    assert dataclasses.replace(claim).fingerprint() == claim.fingerprint()
