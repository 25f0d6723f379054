"""MkDocs hook: the Notebooks page, listed from `notebooks/*.ipynb` so it cannot drift.

Each notebook's title and summary are its first Markdown cell (a `#` heading and the
paragraph after it); the notebooks themselves are copied into the site for download.
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

PAGE = "notebooks.md"
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
INTRO = """# Notebooks

Each notebook tells one story with plots and runs top to bottom on the embedded digits data.
The test suite executes all of them in quick mode (`SNRKIT_QUICK=1`, fewer samples), so they
cannot rot. After `make install`, open them with any Jupyter (the kernel is `.venv`); they are
committed without outputs.
"""


def title_and_summary(path: Path) -> tuple[str, str]:
    """The `#` heading of a notebook's first Markdown cell and the paragraph after it."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    markdown = next((c for c in cells if c["cell_type"] == "markdown"), None)
    text = "".join(markdown["source"]) if markdown else ""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise PluginError(f"notebook {path.name}: its first Markdown cell must start with a '# title' line")
    paragraph = text.strip().split("\n\n")[1] if "\n\n" in text.strip() else ""
    return lines[0][2:].strip(), " ".join(paragraph.split())


def on_files(files: Files, config) -> Files:
    notebooks = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if not notebooks:
        raise PluginError(f"no notebooks in {NOTEBOOK_DIR}")
    lines = [INTRO]
    for path in notebooks:
        title, summary = title_and_summary(path)
        files.append(File.generated(config, f"notebooks/{path.name}", abs_src_path=str(path)))
        lines += [f"## {title}", "", summary, "", f"[Download `{path.name}`](notebooks/{path.name})", ""]
    files.append(File.generated(config, PAGE, content="\n".join(lines)))
    return files
