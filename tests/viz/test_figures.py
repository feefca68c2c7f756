"""``interp figures RUN_DIR``: every figure from a tiny synthetic run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from interp.taskvectors.units import UnitSpace
from interp.viz import figures
from interp.viz.export import chrome_available
from interp.viz.figures import FigureError, policy_space, read_policy_file, write_run_figures
from interp.viz.heatmaps import policy_frame
from tests.conftest import random_model

TASKS = ("segmentation", "lowlight")
CONDITIONS = ("one_shot", "zero_shot", "zero_shot+tv", "zero_shot+random")


@pytest.fixture(scope="module")
def model():
    return random_model(0)


def _log(steps: int = 12) -> pd.DataFrame:
    rows = []
    for s in range(steps):
        row = {"step": s, "train_loss": 1.0 / (s + 1), "expected_units": 10.0 - s / 2}
        if s % 5 == 0:
            row.update(eval_score=0.1 * s, eval_units=9 - s // 2)
        rows.append(row)
    return pd.DataFrame(rows)


def make_run(root: Path, model) -> Path:
    """A run directory in the layout `interp demo` writes, with small random contents."""
    from interp.models import save_model

    run = root / "run"
    (run / "reinforce").mkdir(parents=True)
    save_model(model, run / "model.safetensors")
    (run / "manifest.json").write_text(json.dumps({"command": "interp demo", "config": {"model": "model.safetensors"}}))
    rng = np.random.default_rng(0)
    rows = [
        {"task": t, "condition": c, "metric": m, "higher_is_better": h, "mean": rng.uniform(0.1, 0.9), "sem": 0.02, "n": 8}
        for t, m, h in (("segmentation", "iou", True), ("lowlight", "mse", False))
        for c in CONDITIONS
    ]
    rows.append({"task": "inpainting_lowlight", "condition": "zero_shot+tv[inpainting+lowlight]", "metric": "mse",
                 "higher_is_better": False, "mean": 0.4, "sem": 0.03, "n": 8})
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)

    space = UnitSpace.for_model(model, "group")
    one_shot = UnitSpace.for_model(model, "group", layout="one_shot", enc_groups=("cls", "example_input", "query"))
    taskness = policy_frame(one_shot, torch.rand(len(one_shot)), value="taskness")
    taskness.loc[0, "taskness"] = np.inf  # zero within-task variance
    taskness.assign(bcss=1.0, wcss=1.0).to_csv(run / "taskness.csv", index=False)

    for task in TASKS:
        folder = run / "reinforce" / task
        folder.mkdir()
        logits = torch.randn(len(space))
        meta = space.to_dict()
        save_file({"logits": logits, "best_logits": logits + 1}, str(folder / "policy.safetensors"),
                  metadata={"task": task, "space": json.dumps(meta)})
        _log().to_csv(folder / "log.csv", index=False)

    head_space = UnitSpace.for_model(model, "head")
    sweep = pd.concat([
        pd.DataFrame({"task": t, "unit": range(len(head_space)), "stack": [u.stack for u in head_space.units],
                      "layer": [u.layer for u in head_space.units], "head": [u.head for u in head_space.units],
                      "group": None, "metric": "iou" if t == "segmentation" else "-mse",
                      "delta": rng.normal(size=len(head_space))})
        for t in TASKS
    ])
    sweep.to_csv(run / "sweep.csv", index=False)

    (run / "prompts").mkdir()
    canvases = torch.randn(2, 3, 64, 64)
    save_file({"canvases": canvases, "prediction.zero_shot": torch.rand(2, 3, 64, 64)},
              str(run / "prompts" / "segmentation.safetensors"))
    return run


EXPECTED = {"results", "results_composition", "taskness", "reinforce_segmentation", "reinforce_lowlight",
            "reinforce_curves", "sweep_segmentation", "sweep_lowlight", "prompts"}


def test_every_figure_as_html(tmp_path: Path, model, capsys) -> None:
    run = make_run(tmp_path, model)
    written = write_run_figures(run, formats=("html",))
    assert {p.stem for p in written} == EXPECTED
    assert all(p.suffix == ".html" and p.parent == run / "figures" and p.stat().st_size > 1000 for p in written)
    html = (run / "figures" / "taskness.html").read_text()
    assert "example input" in html and "inf" in html  # facets by group; the infinite taskness is labelled
    assert "written to" in capsys.readouterr().out


def test_missing_inputs_are_skipped_with_a_note(tmp_path: Path, capsys) -> None:
    run = tmp_path / "partial"
    run.mkdir()
    pd.DataFrame({"task": ["lowlight"], "condition": ["zero_shot"], "mean": [0.3]}).to_csv(run / "results.csv", index=False)
    written = write_run_figures(run, formats=("html",))
    assert [p.name for p in written] == ["results.html"]
    out = capsys.readouterr().out
    for note in ("no manifest.json", "skip taskness: no taskness.csv", "skip sweep: no sweep.csv", "no reinforce/"):
        assert note in out
    with pytest.raises(FileNotFoundError, match="run directory"):
        write_run_figures(tmp_path / "nowhere")


def test_broken_input_fails_after_writing_the_rest(tmp_path: Path, model) -> None:
    run = make_run(tmp_path, model)
    (run / "sweep.csv").write_text("stack,layer\nencoder,0\n")
    with pytest.raises(FigureError, match="sweep.*delta"):
        write_run_figures(run, formats=("html",), only=["results", "sweep"])
    assert (run / "figures" / "results.html").exists()


def test_static_files_only_with_chrome(tmp_path: Path, model, capsys, monkeypatch) -> None:
    run = make_run(tmp_path, model)
    monkeypatch.setattr(figures, "chrome_available", lambda: False)
    written = write_run_figures(run, only=["results"])
    assert [p.suffix for p in written] == [".html", ".html"]
    assert "apt-get install chromium" in capsys.readouterr().out
    assert not list((run / "figures").glob("*.png"))
    monkeypatch.undo()
    if not chrome_available():
        pytest.skip("kaleido or Chromium absent here: static export is checked where they are (CI)")
    written = write_run_figures(run, formats=("png",), only=["results"])  # PDF/SVG: the same kaleido call
    assert [p.suffix for p in written] == [".png", ".png"]
    png = (run / "figures" / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_policy_space_from_metadata(tmp_path: Path, model) -> None:
    run = make_run(tmp_path, model)
    space = UnitSpace.for_model(model, "group")
    rebuilt = policy_space(json.loads(json.dumps(space.to_dict())), len(space))
    assert rebuilt == space
    found, probabilities, meta = read_policy_file(run / "reinforce" / "segmentation" / "policy.safetensors")
    assert found == space and meta["which"] == "best_logits"
    assert torch.all((probabilities > 0) & (probabilities < 1))
    with pytest.raises(ValueError, match="lacks"):
        policy_space({"granularity": "group"}, 7)
    with pytest.raises(ValueError, match="logits"):
        policy_space(space.to_dict(), len(space) + 1)

