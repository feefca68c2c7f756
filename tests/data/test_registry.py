"""The task registry: one entry per task, read by prompts, metrics and the CLI; no other module
lists task names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from interp.canvas import CanvasGrid
from interp.data import registry
from interp.data.registry import REGISTRY, TASKS, Task, composite_of, composites, get_task, selection
from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_task_prompts
from interp.metrics import task_metric

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_and_parts_come_from_the_registry() -> None:
    assert [t for t in TASKS if task_metric(t).name == "iou"] == ["segmentation", "segmentation_inpainting"]
    assert all(task_metric(t).higher_is_better == (get_task(t).metric == "iou") for t in TASKS)
    assert {t: task_metric(t).region for t in TASKS} == dict.fromkeys(TASKS, "target")
    assert composites() == {"inpainting_lowlight": ("inpainting", "lowlight"),
                            "segmentation_inpainting": ("segmentation", "inpainting")}
    assert composite_of(("lowlight", "inpainting")) == "inpainting_lowlight"
    assert composite_of(("identity", "lowlight")) is None
    assert all(p in REGISTRY for parts in composites().values() for p in parts)
    assert all(t in REGISTRY for name in registry.SELECTIONS for t in selection(name))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")


def test_a_new_task_is_one_entry(monkeypatch) -> None:
    """An entry added to the registry is built into prompts and scored with its metric."""
    darken = Task("darken", lambda x: (x.support, 0.25 * x.support, x.query, 0.25 * x.query))
    monkeypatch.setitem(REGISTRY, "darken", darken)
    grid = CanvasGrid(64, 8)
    source = SyntheticPascal(seed=3, size_per_split={"trn": 40, "val": 40})
    batches = build_task_prompts(source, 0, 2, grid, seed=1, split="val", tasks=("identity", "darken"))
    assert torch.allclose(batches["darken"].cells.target, 0.25 * batches["identity"].cells.target)
    assert task_metric("darken").name == "mse"


def _constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_other_module_names_a_task() -> None:
    names = set(TASKS)
    found = [f"{path.relative_to(ROOT)}:{line} {value!r}"
             for path in sorted((ROOT / "interp").rglob("*.py")) if path.name != "registry.py"
             for line, value in _constants(path) if value in names]
    assert not found, "task names outside interp/data/registry.py (read the registry instead): " + ", ".join(found)
