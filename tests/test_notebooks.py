"""Every notebook in ``notebooks/`` runs top to bottom without an error (on the tiny model).

Marked ``notebooks`` (deselect with ``-m "not notebooks"``); runs by default and in CI. The
kernel is ipykernel's ``python3`` from the interpreter running the tests, started in the
notebooks folder (as JupyterLab does), with the repository root on ``PYTHONPATH`` so that an
uninstalled checkout works too. Executed copies are written under the test's temporary
directory (for a look at the outputs when something fails), never over the notebooks.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600

pytestmark = pytest.mark.notebooks


def test_notebooks_are_built_from_the_script():
    """Each committed notebook is what ``notebooks/build_notebooks.py`` writes from its ``.py`` source (no outputs)."""
    import importlib.util

    pytest.importorskip("nbformat")
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOK_DIR / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.stale() == [], "run: make notebooks (python notebooks/build_notebooks.py)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))  # a user's own kernelspecs cannot interfere
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as error:
        executed = tmp_path / path.name
        nbformat.write(nb, executed)
        pytest.fail(f"{path.name} failed (executed copy: {executed}):\n{error}", pytrace=False)
    finally:
        print(f"{path.name}: {time.perf_counter() - start:.1f} s")
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} has error outputs: {errors}"


def test_notebook_scripts_are_clean_python():
    """Each notebook's source (its jupytext script) compiles and pyflakes finds nothing (unused imports, undefined names)."""
    pyflakes_api = pytest.importorskip("pyflakes.api")
    from pyflakes.reporter import Reporter

    scripts = sorted(p for p in NOTEBOOK_DIR.glob("*.py") if p.name != "build_notebooks.py")
    assert {p.stem for p in scripts} == {p.stem for p in NOTEBOOKS}, "every notebook has a .py source and vice versa"
    for script in scripts:
        out = io.StringIO()
        problems = pyflakes_api.check(script.read_text(), str(script), Reporter(out, out))
        assert problems == 0, out.getvalue()
