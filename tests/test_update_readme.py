"""scripts/update_readme.py: marked README sections are regenerated from run outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_renders_demo_table_from_csv(tmp_path) -> None:
    update_readme = _module()
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "results.csv").write_text(
        "task,condition,metric,higher_is_better,mean,sem,n\n"
        "lowlight,one_shot,mse,False,0.5,0.01,10\nlowlight,zero_shot,mse,False,1.25,0.02,10\n"
        "lowlight,zero_shot+tv,mse,False,0.6049,0.02,10\nlowlight,zero_shot+random,mse,False,0.8,0.02,10\n"
    )
    text = "intro\n<!-- BEGIN table:demo -->\nold numbers\n<!-- END table:demo -->\n<!-- BEGIN table:weights -->\nkept\n<!-- END table:weights -->\n"
    new, updated, skipped = update_readme.update(text, root=tmp_path)
    assert updated == ["demo"] and skipped == ["weights (runs/weights/comparison.csv missing)"]
    assert "old numbers" not in new and "kept" in new and new.startswith("intro\n")
    assert "| lowlight (MSE ↓) | 0.500 | 1.250 | 0.605 | 0.800 |" in new
    assert update_readme.update(new, root=tmp_path)[0] == new  # idempotent


def test_every_readme_section_has_a_renderer() -> None:
    update_readme = _module()
    names = [m["name"] for m in update_readme.SECTION.finditer((ROOT / "README.md").read_text())]
    assert names and set(names) <= set(update_readme.RENDERERS)
