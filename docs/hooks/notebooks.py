"""MkDocs hook: every notebook of `notebooks/` as a page of the site, executed at build time.

- `notebooks.md`: the list of notebooks (title and summary from each notebook's first
  Markdown cell) with their pages and download links;
- `notebooks/<name>.md`: the notebook executed in quick mode (`SNRKIT_QUICK=1`), converted
  to Markdown here: Markdown cells as they are (their `$...$` math goes through the site's
  math renderer), code cells as Python blocks, text outputs as plain blocks, PNG outputs as
  image files of the site, HTML outputs (pandas tables) inline;
- `notebooks/<name>.ipynb`: the committed notebook (without outputs), for download;
- the navigation's "Notebooks" entry becomes a section holding the list and one page per
  notebook, so adding a notebook needs no edit of `mkdocs.yml`.

**Execution.** Each notebook runs top to bottom in a fresh kernel of the interpreter that
runs MkDocs (a kernelspec written to a private folder, so no user-installed kernel can be
picked up), with `notebooks/` as working directory, quick mode on, headless inline figures
at 120 dpi, and IPython's and Jupyter's per-user folders redirected to that private
folder. A cell that raises, and an error output of a cell that does not stop (a figure
that fails to draw), fail the build with the notebook and cell named; so does a notebook
that writes a file next to itself. The test suite builds the site once per session (the
`built_site` fixture of `tests/conftest.py`), so that build is where `make test` executes
the notebooks; `tests/test_notebooks.py` reads its pages and tests this hook on notebooks
made for it, without executing the notebooks again.

**Cache.** Executing the three notebooks takes about 80 s on 2 idle cores, so an executed
notebook is kept in `~/.cache/snrkit/docs-notebooks/` (`$XDG_CACHE_HOME` is honoured) under
a key that hashes the notebook, every file of the `snrkit` package, this hook's execution
settings, the Python version, the name and version of every installed distribution and the
`JAX_*`, `XLA_*` and `SNRKIT_*` variables the kernel inherits. Any change to
what a run could depend on misses the cache and executes again (a run during which a
source changed is not kept); only runs without errors are stored, so a failing notebook
fails every build. Delete the folder (or set `SNRKIT_NOTEBOOK_CACHE` to another one) to
force a fresh run. With the cache warm, a build takes about as long as without notebooks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
PACKAGE_DIR = ROOT / "snrkit"
PAGE = "notebooks.md"
SITE_DIR = "notebooks"
SECTION = "Notebooks"
INDEX_TITLE = "All notebooks"
CACHE_ENV = "SNRKIT_NOTEBOOK_CACHE"
#: Seconds one cell may take (the longest quick-mode cell takes 10 to 30 s on 2 cores).
CELL_TIMEOUT = 600
#: A name no user-level kernelspec will have, so only the spec written here can match it.
KERNEL_NAME = "snrkit-docs-notebook"
#: The kernel's environment beyond the build's own. The inline backend renders every figure a
#: cell shows (unlike Agg), so a figure that fails to draw shows up as an error output.
KERNEL_ENV = {"SNRKIT_QUICK": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
#: IPython kernel configuration: figures as PNG at the style guide's 120 dpi; the kernel's own
#: log from errors up (its warning about local TCP sockets is the normal Jupyter set-up).
KERNEL_CONFIG = (
    'c.InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "dpi": 120}\n'
    'c.IPKernelApp.log_level = "ERROR"\n'
)
#: Output formats, most preferred first.
MIME_ORDER = ("image/png", "text/html", "text/markdown", "text/plain")
INTRO = """# Notebooks

Each notebook tells one story with plots and runs top to bottom on the embedded digits data.
The pages below are the notebooks executed in quick mode (`SNRKIT_QUICK=1`: fewer samples,
fewer widths) when this site was built, so their figures and tables come from the code shown.
To run them yourself, download them and, after `make install`, open them with any Jupyter
front end (the kernel is `.venv`); they are committed without outputs.
"""

log = logging.getLogger(f"mkdocs.hooks.{__name__}")


def title_and_summary(path: Path) -> tuple[str, str]:
    """The `#` heading of a notebook's first Markdown cell and the paragraph after it."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    markdown = next((c for c in cells if c["cell_type"] == "markdown"), None)
    text = _source(markdown).strip() if markdown else ""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise PluginError(f"notebook {path.name}: its first Markdown cell must start with a '# title' line")
    paragraph = text.split("\n\n")[1] if "\n\n" in text else ""
    return lines[0][2:].strip(), " ".join(paragraph.split())


# ----------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where executed notebooks are kept between builds."""
    # the user's own cache folder, not a shared temporary one another user could plant pages in
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snrkit" / "docs-notebooks"
    return Path(os.environ.get(CACHE_ENV) or default)


def cache_key(path: Path) -> str:
    """A hash of everything an execution of the notebook at `path` could depend on."""
    digest = hashlib.sha256()
    digest.update(path.read_bytes())
    for source in sorted(PACKAGE_DIR.rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts:
            digest.update(str(source.relative_to(PACKAGE_DIR)).encode())
            digest.update(source.read_bytes())
    versions = sorted(f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions())
    # the kernel inherits the environment: what JAX, XLA or snrkit read from it changes a run
    inherited = sorted(
        f"{name}={value}" for name, value in os.environ.items()
        if name.startswith(("JAX_", "XLA_", "SNRKIT_")) and name != CACHE_ENV
    )
    settings = [
        sys.version, KERNEL_CONFIG, json.dumps(KERNEL_ENV, sort_keys=True), str(CELL_TIMEOUT), *versions, *inherited,
    ]
    digest.update("\n".join(settings).encode())
    return digest.hexdigest()[:20]


def executed(path: Path) -> dict:
    """The notebook at `path` with its outputs, from the cache or from a fresh run.

    Raises:
        PluginError: a cell failed, or the notebook wrote next to itself.
    """
    key = cache_key(path)
    cached = cache_dir() / f"{path.stem}-{key}.ipynb"
    with contextlib.suppress(OSError, ValueError):  # none, unreadable or cut short: run it
        nb = json.loads(cached.read_text(encoding="utf-8"))
        log.info(f"notebook {path.name}: outputs from {cached}")
        return nb
    start = time.perf_counter()
    nb = execute(path)
    log.info(f"notebook {path.name}: executed in quick mode in {time.perf_counter() - start:.0f} s")
    if cache_key(path) != key:  # a source changed during the run: its outputs may be of either version
        return nb
    with contextlib.suppress(OSError):  # a cache that cannot be written costs the next build a run
        cached.parent.mkdir(parents=True, exist_ok=True)
        for stale in cached.parent.glob(f"{path.stem}-{'?' * len(key)}.ipynb"):
            stale.unlink(missing_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(nb), encoding="utf-8")
        os.replace(partial, cached)  # whole files only: another build may read it at the same time
    return nb


def execute(path: Path) -> dict:
    """Run the notebook at `path` in quick mode in a fresh kernel; its cells with their outputs.

    Raises:
        PluginError: a cell raised, a cell has an error output, or the run wrote into the
            notebook's folder.
    """
    try:
        import nbclient
        import nbformat
    except ImportError as error:
        raise PluginError(
            f"the notebooks hook needs nbclient and nbformat ({error}); install the `notebooks` extra: "
            "`make install`, or `pip install -e \".[docs,notebooks]\"`"
        ) from error
    nb = nbformat.read(path, as_version=4)
    before = _snapshot(path.parent)
    with tempfile.TemporaryDirectory(prefix="snrkit-kernel-") as home, _kernel_environment(Path(home)):
        client = nbclient.NotebookClient(
            nb, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT, startup_timeout=300,  # a busy machine starts kernels slowly
            resources={"metadata": {"path": str(path.parent)}},  # the kernel's working directory
        )
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as error:
            index = next((i for i, cell in enumerate(nb.cells) if _has_error(cell)), None)
            where = f"cell {index + 1} of {len(nb.cells)}" if index is not None else "a cell"
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the traceback's terminal colours
            raise PluginError(f"notebook {path.name}: {where} failed in quick mode:\n{text}") from None
        except nbclient.exceptions.CellTimeoutError as error:
            raise PluginError(f"notebook {path.name}: a cell ran longer than {CELL_TIMEOUT} s: {error}") from None
    failed = [f"cell {i + 1}: {out.get('ename')}: {out.get('evalue')}" for i, cell in enumerate(nb.cells)
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    if failed:
        raise PluginError(f"notebook {path.name}: error outputs in quick mode: {'; '.join(failed)}")
    written = sorted(set(_snapshot(path.parent).items()) ^ set(before.items()))
    if written:
        raise PluginError(
            f"notebook {path.name} changed files in {path.parent}: {sorted({name for name, _ in written})}; "
            "notebooks must not write next to themselves"
        )
    return json.loads(nbformat.writes(nb))


@contextlib.contextmanager
def _kernel_environment(home: Path) -> Iterator[None]:
    """A kernelspec of this interpreter in `home`, found first; the kernel's environment.

    `JUPYTER_PATH` comes first in jupyter_core's search path, so the spec written here is
    found whatever else is installed; the runtime (connection files) and IPython folders
    are in `home` too, so nothing is read from or written to the user's folders. The build's
    environment is restored afterwards.
    """
    spec_dir = home / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"snrkit docs ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    profile = home / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(KERNEL_CONFIG, encoding="utf-8")
    overrides = {
        **KERNEL_ENV,
        "JUPYTER_PATH": os.pathsep.join(filter(None, [str(home), os.environ.get("JUPYTER_PATH")])),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS") or "cpu",
    }
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _has_error(cell: dict) -> bool:
    return any(out.get("output_type") == "error" for out in cell.get("outputs", []))


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# ----------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------


def to_markdown(nb: dict, name: str) -> tuple[str, dict[str, bytes]]:
    """The page of an executed notebook and the images it shows.

    Args:
        nb: the executed notebook (nbformat 4, as JSON).
        name: the notebook's file name; the page links to it for download and its images are
            named `<stem>/cell-<cell>-<output>.png`, relative to the page.

    Returns:
        The Markdown of the page, and `{image path relative to the page: PNG bytes}`.
    """
    stem = Path(name).stem
    blocks: list[str] = []
    images: dict[str, bytes] = {}
    for index, cell in enumerate(nb["cells"]):
        source = _source(cell).strip("\n")
        if cell["cell_type"] == "markdown":
            if not blocks and source.startswith("# "):  # the title, then the download link
                title, _, rest = source.partition("\n")
                blocks += [title, f"[Download `{name}`]({name}) (executed here in quick mode, `SNRKIT_QUICK=1`)"]
                source = rest.strip("\n")
            blocks.append(source)
        elif cell["cell_type"] == "code":
            if source:
                blocks.append(_fence(source, "python"))
            for number, output in enumerate(_merge_streams(cell.get("outputs", []))):
                image_path = f"{stem}/cell-{index}-{number}.png"
                block, image = _output(output, image_path, f"figure of cell {index + 1}")
                if image is not None:
                    images[image_path] = image
                blocks.append(block)
    return "\n\n".join(block for block in blocks if block) + "\n", images


def _merge_streams(outputs: list[dict]) -> list[dict]:
    """The outputs with consecutive chunks of one stream joined: the kernel sends a print's
    text in pieces as they are flushed."""
    merged: list[dict] = []
    for output in outputs:
        previous = merged[-1] if merged else {}
        if output.get("output_type") == "stream" and previous.get("output_type") == "stream" \
                and previous.get("name") == output.get("name"):
            merged[-1] = {**previous, "text": _text(previous["text"]) + _text(output["text"])}
        else:
            merged.append(output)
    return merged


def _output(output: dict, image_path: str, alt: str) -> tuple[str, bytes | None]:
    """The Markdown of one output, and the PNG it shows (if any) as the file `image_path`."""
    kind = output.get("output_type")
    if kind == "stream":
        return _fence(_text(output.get("text", "")).rstrip("\n"), "text"), None
    if kind not in ("execute_result", "display_data"):
        return "", None
    data = output.get("data", {})
    mime = next((m for m in MIME_ORDER if m in data), None)
    if mime == "image/png":
        return f"![{alt}]({image_path})", base64.b64decode(_text(data[mime]))
    if mime == "text/html":
        return _html_block(_text(data[mime]).strip()), None
    if mime == "text/markdown":
        return _text(data[mime]).strip(), None
    if mime == "text/plain":
        return _fence(_text(data[mime]).rstrip("\n"), "text"), None
    return "", None


def _html_block(markup: str) -> str:
    """HTML on one line, so Markdown passes it through as one block; a pandas table without
    its scoped style sheet and table class, so the theme styles it like the site's other tables."""
    markup = re.sub(r"<style scoped>.*?</style>", "", markup, flags=re.DOTALL)
    markup = re.sub(r'\s(?:border="1"|class="dataframe")', "", markup)
    return "".join(line.strip() for line in markup.splitlines())


def _fence(text: str, language: str) -> str:
    """A fenced block longer than any run of backticks in `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _source(cell: dict) -> str:
    return _text(cell["source"])


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


# ----------------------------------------------------------------------------------------
# MkDocs events
# ----------------------------------------------------------------------------------------


def _notebooks() -> list[Path]:
    notebooks = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if not notebooks:
        raise PluginError(f"no notebooks in {NOTEBOOK_DIR}")
    return notebooks


def on_config(config):
    """Turn the nav's "Notebooks" entry into a section: the list, then one page per notebook."""
    position = next((i for i, entry in enumerate(config["nav"] or []) if isinstance(entry, dict) and SECTION in entry), None)
    if position is None:
        raise PluginError(f"mkdocs.yml needs a nav entry {SECTION!r} (e.g. `- {SECTION}: {PAGE}`) for the notebook pages")
    entry = config["nav"][position][SECTION]
    pages = list(entry) if isinstance(entry, list) else [{INDEX_TITLE: entry}]
    listed = {next(iter(p.values())) if isinstance(p, dict) else p for p in pages}
    for path in _notebooks():
        page = f"{SITE_DIR}/{path.stem}.md"
        if page not in listed:
            pages.append({title_and_summary(path)[0]: page})
    config["nav"][position] = {SECTION: pages}
    return config


def on_files(files: Files, config) -> Files:
    lines = [INTRO]
    for path in _notebooks():
        title, summary = title_and_summary(path)
        page, images = to_markdown(executed(path), path.name)
        files.append(File.generated(config, f"{SITE_DIR}/{path.name}", abs_src_path=str(path)))
        files.append(File.generated(config, f"{SITE_DIR}/{path.stem}.md", content=page))
        for image, content in images.items():
            files.append(File.generated(config, f"{SITE_DIR}/{image}", content=content))
        lines += [
            f"## [{title}]({SITE_DIR}/{path.stem}.md)", "", summary, "",
            f"[Read it executed]({SITE_DIR}/{path.stem}.md) · [Download `{path.name}`]({SITE_DIR}/{path.name})", "",
        ]
    files.append(File.generated(config, PAGE, content="\n".join(lines)))
    return files
