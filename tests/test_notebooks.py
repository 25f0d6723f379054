"""The notebooks in notebooks/ run top to bottom, and are committed without outputs.

Execution runs each notebook in quick mode (``SNRKIT_QUICK=1``) in a fresh kernel of *this*
interpreter, with the notebooks' folder as working directory, and fails on any cell error.
A notebook's statistical statements come from snrkit's own tests (fixed keys, false-failure
rate 1e-6), and its cells assert the documented guarantees they show, so a run also checks the story.
Together the three take about 80 s on 2 idle CPU cores (about 160 s on a busy machine), so the
execution tests are marked slow.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
REQUIRED = (
    "01-verify-a-derivation.ipynb",
    "02-snr-vs-parameter-count.ipynb",
    "03-bring-your-own-model.ipynb",
)
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: Packages a notebook imports beyond snrkit's own dependencies.
EXTRA_IMPORTS = {"03-bring-your-own-model.ipynb": ("equinox",)}
QUICK_LINE = 'QUICK = os.environ.get("SNRKIT_QUICK", "0") == "1"'
#: Seconds one cell may take (the longest quick-mode cell takes 10 to 30 s on 2 cores).
CELL_TIMEOUT = 600
#: A name no user-level kernelspec will have, so only the spec written here can match it.
KERNEL_NAME = "snrkit-notebook-test"
#: The inline backend renders figures headlessly, like Agg. Unlike plain Agg it also renders
#: every figure a cell shows, so a figure that fails to draw (e.g. bad mathtext in a label)
#: shows up as an error output; with Agg, plt.show() does nothing and such errors pass silently.
MPL_BACKEND = "module://matplotlib_inline.backend_inline"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def test_required_notebooks_exist():
    """The three notebooks the docs point to are there."""
    missing = [name for name in REQUIRED if not (NOTEBOOK_DIR / name).is_file()]
    assert not missing, f"missing notebooks in {NOTEBOOK_DIR}: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    """No outputs and no execution counts (readable diffs), a python3 kernelspec, and a quick-mode switch.

    Strip outputs before committing (in Jupyter: Edit > Clear Outputs of All Cells); the first code cell
    reads SNRKIT_QUICK so the execution test below can run the notebook in quick mode.
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


@pytest.fixture(scope="module")
def kernel_home(tmp_path_factory):
    """A private Jupyter data dir holding one kernelspec that runs this interpreter."""
    home = tmp_path_factory.mktemp("jupyter")
    spec_dir = home / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"snrkit tests ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return home


@pytest.fixture
def kernel_env(kernel_home, monkeypatch):
    """Environment of the notebook kernel: quick mode, headless plots, nothing read from or written to ~.

    JUPYTER_PATH comes first in jupyter_core's search path (before the user, environment and
    system folders), so the spec above is found whatever else is installed.
    """
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(kernel_home), os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(kernel_home / "runtime"))  # connection files
    monkeypatch.setenv("IPYTHONDIR", str(kernel_home / "ipython"))  # no user startup files, no history in ~
    monkeypatch.setenv("SNRKIT_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", MPL_BACKEND)
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS") or "cpu")
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert Path(spec.resource_dir).parent.parent == kernel_home
    assert spec.argv[0] == sys.executable
    return KERNEL_NAME


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_quick_mode(path, kernel_env):
    """Every cell runs without error in quick mode, within the per-cell timeout, and writes nothing next to the notebook.

    Errors that do not stop a cell (a figure that fails to render in the display hook) are
    errors too.
    """
    # Imported, not skipped when absent: the `notebooks` extra that `make test` installs has them.
    import nbclient
    import nbformat

    for module in EXTRA_IMPORTS.get(path.name, ()):
        importlib.import_module(module)
    nb = nbformat.read(path, as_version=4)
    before = _snapshot(NOTEBOOK_DIR)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_env,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError, with the traceback, on the first failing cell
    errors = [
        (index, output.get("ename"), output.get("evalue"))
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: error outputs {errors}"
    assert _snapshot(NOTEBOOK_DIR) == before, f"{path.name} wrote into {NOTEBOOK_DIR}"
