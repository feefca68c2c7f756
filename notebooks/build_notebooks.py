"""Write the tutorial notebooks (``notebooks/*.ipynb``) from their sources, the jupytext scripts beside them.

The source of every notebook is the percent-format script of the same name
(``notebooks/02_where_task_vectors_sit.py`` -> ``02_where_task_vectors_sit.ipynb``): plain Python
that reviews, lints and diffs as code (``# %%`` starts a code cell, ``# %% [markdown]`` a text
cell). Edit the ``.py``, then

    python notebooks/build_notebooks.py          # rewrites every notebooks/*.ipynb (make notebooks)
    python notebooks/build_notebooks.py --check  # exit 1 if a notebook differs from its script (or holds outputs)

The ``.ipynb`` are committed without outputs so that JupyterLab opens them directly;
``tests/test_notebooks.py`` checks they match and executes them all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def sources() -> list[Path]:
    """The notebook scripts of this folder (every ``*.py`` but this builder)."""
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)


def build(script: Path) -> nbformat.NotebookNode:
    """The notebook of one percent script: its cells, no outputs, stable cell ids."""
    nb = jupytext.read(script, fmt="py:percent")
    nb.metadata = nbformat.from_dict(METADATA)
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding changes nothing
        cell.metadata = nbformat.from_dict({})
        cell["id"] = f"{script.stem[:2]}-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nb


def _content(nb: nbformat.NotebookNode) -> tuple:
    """What a review sees: kernel, and each cell's type, source, outputs and execution count."""
    cells = [(c.cell_type, c.source, c.get("outputs", []), c.get("execution_count")) for c in nb.cells]
    return nb.metadata.get("kernelspec"), cells


def stale() -> list[str]:
    """Notebooks missing or differing from their script, and notebooks that have no script."""
    out = []
    for script in sources():
        path = script.with_suffix(".ipynb")
        if not path.exists() or _content(nbformat.read(path, as_version=4)) != _content(build(script)):
            out.append(path.name)
    scripts = {s.stem for s in sources()}
    out += [p.name + " (no .py source)" for p in sorted(HERE.glob("*.ipynb")) if p.stem not in scripts]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook differs from its script")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        if out_of_date:
            print(f"out of date: {out_of_date}; run python notebooks/build_notebooks.py", file=sys.stderr)
            return 1
        return 0
    for script in sources():
        path = script.with_suffix(".ipynb")
        path.write_text(nbformat.writes(build(script)) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
