"""The notebooks in notebooks/ are committed without outputs, and the docs build executes them.

The docs hook (`docs/hooks/notebooks.py`) runs every notebook in quick mode (`SNRKIT_QUICK=1`)
in a fresh kernel of *this* interpreter and fails the build on any cell error; the suite builds
the site once (the `built_site` fixture), so that build is where `make test` executes the
notebooks. The tests here do not execute them again: they check the committed files, read the
pages of that one build, and test the hook itself on notebooks made for it (a failing cell, a
notebook that writes next to itself, the conversion of each kind of output, the cache).
"""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
REQUIRED = (
    "01-verify-a-derivation.ipynb",
    "02-snr-vs-parameter-count.ipynb",
    "03-bring-your-own-model.ipynb",
)
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
QUICK_LINE = 'QUICK = os.environ.get("SNRKIT_QUICK", "0") == "1"'
#: The smallest valid PNG (1×1, grey): enough for the hook, which only copies the bytes.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)


def _hook():
    spec = importlib.util.spec_from_file_location("docs_hook_notebooks", ROOT / "docs" / "hooks" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _hook()


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return hook._source(cell)


def test_required_notebooks_exist():
    """The three notebooks the docs point to are there."""
    missing = [name for name in REQUIRED if not (NOTEBOOK_DIR / name).is_file()]
    assert not missing, f"missing notebooks in {NOTEBOOK_DIR}: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    """No outputs and no execution counts (readable diffs), a python3 kernelspec, and a quick-mode switch.

    Strip outputs before committing (in Jupyter: Edit > Clear Outputs of All Cells); the first code cell
    reads SNRKIT_QUICK so the docs build can run the notebook in quick mode.
    """
    nb = _load(path)
    dirty = [
        index
        for index, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing "
        "(Jupyter: Edit > Clear Outputs of All Cells, then save)"
    )
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    code = _code_cells(nb)
    assert code, f"{path.name} has no code cells"
    assert QUICK_LINE in _source(code[0]), f"{path.name}: the first code cell should read {QUICK_LINE!r}"


# ----------------------------------------------------------------------------------------
# The pages of the one site build of the session
# ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_page_shows_the_executed_notebook(built_site, path):
    """Each notebook is a page with its code, its outputs (every figure as an image file of the
    site, tables inline) and a link to the notebook, which is in the site for download."""
    folder = built_site / "notebooks"
    page = (folder / path.stem / "index.html").read_text(encoding="utf-8")
    nb = _load(path)
    title = _source(next(c for c in nb["cells"] if c["cell_type"] == "markdown")).splitlines()[0][2:]
    assert f">{html.escape(title, quote=False)}" in page, f"{path.name}: its title is not on its page"
    assert f'href="../{path.name}"' in page and (folder / path.name).is_file(), f"{path.name}: no download link"
    images = re.findall(r'<img[^>]*src="([^"]+\.png)"', page)
    assert images, f"{path.name}: its page shows no figure"
    for src in images:
        assert (folder / path.stem / src).resolve().read_bytes()[:8] == PNG[:8], f"{path.name}: {src} is not a PNG"
    last_code = _source(_code_cells(nb)[-1]).splitlines()[0]
    assert last_code in html.unescape(re.sub(r"<[^>]+>", "", page)), f"{path.name}: its last cell's code is not on its page"


@pytest.mark.slow
def test_notebook_index_lists_every_notebook(built_site):
    """The Notebooks page lists each notebook with its page and its download link, and the
    navigation holds a page per notebook."""
    index = (built_site / "notebooks" / "index.html").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        title, _ = hook.title_and_summary(path)
        assert html.escape(title, quote=False) in index, title
        assert f'href="{path.stem}/"' in index and f'href="{path.name}"' in index, path.name
    home = (built_site / "index.html").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f'href="notebooks/{path.stem}/"' in home, f"the navigation lacks {path.stem}"


# ----------------------------------------------------------------------------------------
# The hook, on notebooks made for it
# ----------------------------------------------------------------------------------------


def _notebook(folder: Path, *sources: str) -> Path:
    path = folder / "made.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_failing_cell_fails_the_build_naming_notebook_and_cell(tmp_path):
    """A cell that raises stops the run with a PluginError naming the notebook, the cell and the error.

    The first cell checks the kernel's set-up (quick mode, the notebook's folder as working
    directory, this interpreter); were any of those wrong, it would be the one named.
    """
    path = _notebook(
        tmp_path,
        "import os, sys\n"
        f"assert os.environ['SNRKIT_QUICK'] == '1' and os.getcwd() == {str(tmp_path)!r}\n"
        f"assert sys.executable == {sys.executable!r}",
        "1 / 0",
    )
    with pytest.raises(hook.PluginError, match=r"made\.ipynb: cell 2 of 2 failed in quick mode(?s:.*)ZeroDivisionError"):
        hook.execute(path)


def test_a_notebook_that_writes_next_to_itself_fails_the_build(tmp_path):
    path = _notebook(tmp_path, "open('left-behind.csv', 'w').close()")
    with pytest.raises(hook.PluginError, match=r"made\.ipynb changed files .*left-behind\.csv"):
        hook.execute(path)


def test_markdown_of_an_executed_notebook():
    """Each kind of output becomes what a reader of the page needs: the title then the download
    link, code as Python, a print's pieces as one plain block, a PNG as an image file, a pandas
    table as a plain HTML table the theme styles, text results as plain blocks."""
    table = (
        '<div>\n<style scoped>\n    .dataframe tbody tr th { vertical-align: top; }\n</style>\n'
        '<table border="1" class="dataframe">\n  <thead>\n    <tr><th>p</th></tr>\n  </thead>\n'
        "  <tbody>\n    <tr><td>0.5</td></tr>\n  </tbody>\n</table>\n</div>"
    )
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "# A story\n\nIts summary, with $x^2$."},
            {"cell_type": "code", "source": "print('a')\nprint('b')", "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "a\n"},
                {"output_type": "stream", "name": "stdout", "text": ["b\n"]},
            ]},
            {"cell_type": "code", "source": "fig", "outputs": [
                {"output_type": "display_data", "data": {
                    "image/png": base64.b64encode(PNG).decode(), "text/plain": "<Figure>"}},
                {"output_type": "execute_result", "data": {"text/html": table, "text/plain": "   p\n0  0.5"}},
                {"output_type": "execute_result", "data": {"text/plain": "```quoted```"}},
            ]},
            {"cell_type": "markdown", "source": "Done."},
        ]
    }
    page, images = hook.to_markdown(nb, "story.ipynb")
    blocks = page.strip().split("\n\n")
    assert blocks[0] == "# A story"
    assert blocks[1].startswith("[Download `story.ipynb`](story.ipynb)")
    assert blocks[2] == "Its summary, with $x^2$."
    assert blocks[3] == "```python\nprint('a')\nprint('b')\n```"
    assert blocks[4] == "```text\na\nb\n```"
    assert blocks[6] == "![figure of cell 3](story/cell-2-0.png)"
    assert images == {"story/cell-2-0.png": PNG}
    assert blocks[7] == "<div><table><thead><tr><th>p</th></tr></thead><tbody><tr><td>0.5</td></tr></tbody></table></div>"
    assert blocks[8] == "````text\n```quoted```\n````"  # a fence longer than the text's backticks
    assert blocks[9] == "Done."
    assert len(blocks) == 10


def test_cache_reuses_a_run_only_while_nothing_it_depends_on_changes(tmp_path, monkeypatch):
    """A second build reuses the executed notebook; a changed notebook or package source runs
    it again; a run that fails leaves nothing behind, so the next build fails too."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "module.py").write_text("X = 1\n", encoding="utf-8")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    path = _notebook(folder, "1 + 1")
    monkeypatch.setattr(hook, "PACKAGE_DIR", package)
    monkeypatch.setenv(hook.CACHE_ENV, str(tmp_path / "cache"))
    runs = []

    def fake_execute(notebook):
        runs.append(notebook)
        return {"cells": [], "run": len(runs)}

    monkeypatch.setattr(hook, "execute", fake_execute)
    assert hook.executed(path)["run"] == 1
    assert hook.executed(path)["run"] == 1, "an unchanged notebook ran again"
    (package / "module.py").write_text("X = 2\n", encoding="utf-8")
    assert hook.executed(path)["run"] == 2, "a changed package source reused a stale run"
    _notebook(folder, "1 + 2")
    assert hook.executed(path)["run"] == 3, "a changed notebook reused a stale run"
    assert len(list((tmp_path / "cache").glob("made-*.ipynb"))) == 1, "stale runs are kept"

    def failing_execute(notebook):
        raise hook.PluginError("made.ipynb: cell 1 of 1 failed")

    monkeypatch.setattr(hook, "execute", failing_execute)
    _notebook(folder, "1 / 0")
    for _ in range(2):
        with pytest.raises(hook.PluginError, match="cell 1 of 1 failed"):
            hook.executed(path)
