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
        folder = run / "reinforce" / task / "seed0"
        folder.mkdir(parents=True)
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

    comparison = []
    for task, metric, higher in (("segmentation", "iou", True), ("lowlight", "mse", False)):
        for k, (condition, kind, forwards) in enumerate((("reinforce", "method", 2000.0), ("attribution", "method", 40.0),
                                                          ("control:random", "control", np.nan), ("control:taskness", "control", np.nan))):
            comparison.append({"task": task, "condition": condition, "kind": kind, "metric": metric, "higher_is_better": higher,
                               "diff_zero_shot": 0.1 * k, "ci_low_zero_shot": 0.1 * k - 0.05, "ci_high_zero_shot": 0.1 * k + 0.05,
                               "strongest_control": "control:taskness", "units": 12.0, "forwards": forwards, "seconds": 1.0})
    pd.DataFrame(comparison).to_csv(run / "search_comparison.csv", index=False)

    (run / "prompts").mkdir()
    canvases = torch.randn(2, 3, 64, 64)
    save_file({"canvases": canvases, "prediction.zero_shot": torch.rand(2, 3, 64, 64)},
              str(run / "prompts" / "segmentation.safetensors"))
    return run


EXPECTED = {"results", "results_composition", "taskness", "reinforce_segmentation", "reinforce_lowlight",
            "reinforce_curves", "sweep_segmentation", "sweep_lowlight", "prompts", "search_comparison"}


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
    for note in ("no manifest.json", "skip taskness: no taskness.csv", "skip sweep: no sweep.csv", "no <method>/<task>/seed0/policy"):
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
    found, probabilities, meta = read_policy_file(run / "reinforce" / "segmentation" / "seed0" / "policy.safetensors")
    assert found == space and meta["which"] == "best_logits"
    assert torch.all((probabilities > 0) & (probabilities < 1))
    with pytest.raises(ValueError, match="lacks"):
        policy_space({"granularity": "group"}, 7)
    with pytest.raises(ValueError, match="logits"):
        policy_space(space.to_dict(), len(space) + 1)



def test_a_run_with_nothing_to_draw_is_an_error(tmp_path: Path, capsys) -> None:
    from interp import cli

    run = tmp_path / "empty"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    with pytest.raises(FigureError, match="nothing to draw.*interp collect"):
        write_run_figures(run, formats=("html",))
    assert cli.main(["figures", str(run), "--formats", "html"]) == 1
    err = capsys.readouterr().err
    assert "holds nothing to draw" in err and "Traceback" not in err and not (run / "figures").exists()


def test_search_comparison_figure(tmp_path: Path, model) -> None:
    run = make_run(tmp_path, model)
    [(stem, fig)] = figures.search_comparison_figures(run)
    assert stem == "search_comparison"
    points = {t.name: t for t in fig.data if t.mode == "markers"}
    methods = {points[m].marker.color for m in ("reinforce", "attribution")}
    assert len(methods) == 2 and not methods & {"#F0E442", "#000000"}  # distinct, visible method colours
    assert {points[c].marker.symbol for c in ("control: random", "control: taskness")} == {"diamond-open", "square-open"}
    controls = [points[c].x[0] for c in ("control: random", "control: taskness")]
    assert controls[0] != controls[1] and max(controls) < 40  # side by side, left of the cheapest search
    assert [fig.layout[a].title.text for a in ("yaxis", "yaxis2")] == ["Δ mIoU vs zero-shot (95% CI)", "Δ MSE vs zero-shot (95% CI)"]
    assert "strongest control" in {t.name for t in fig.data if t.showlegend}
    assert fig.layout.legend.yref == "container"  # under the panels


def test_sweep_colour_bar_reads_the_metric_and_marks_noise(tmp_path: Path, model) -> None:
    run = make_run(tmp_path, model)
    table = pd.read_csv(run / "sweep.csv")
    table["sem"] = 0.5
    table.to_csv(run / "sweep.csv", index=False)
    built = dict(figures.sweep_figures(run))
    low, seg = built["sweep_lowlight"], built["sweep_segmentation"]
    bar = low.layout.coloraxis.colorbar.title.text
    assert bar.startswith("Δ MSE (lower better)") and "blue = helps" in bar and "−MSE" not in bar
    assert "Δ mIoU (higher better)" in seg.layout.coloraxis.colorbar.title.text
    z = np.concatenate([np.asarray(t.z, dtype=float).ravel() for t in low.data if t.type == "heatmap"])
    deltas = table[table.task == "lowlight"]["delta"].to_numpy()
    assert np.nanmax(z) == pytest.approx(-deltas.min())  # Δ MSE = −Δ(−MSE)
    assert low.layout.coloraxis.colorscale[0][1] != seg.layout.coloraxis.colorscale[0][1]  # reversed: blue = lower MSE
    beyond = (np.abs(deltas) > 1.0).sum()
    assert sum(len(t.x) for t in low.data if t.type == "scatter") == beyond
    from interp.viz.paper import paper_figure

    paper = paper_figure(low, "column")
    assert "blue = helps" in paper.layout.coloraxis.colorbar.title.text  # kept in paper mode (no title there)


def test_policy_maps_mark_the_kept_units(tmp_path: Path, model) -> None:
    run = make_run(tmp_path, model)
    built = dict(figures.reinforce_figures(run))
    fig = built["reinforce_segmentation"]
    _, probabilities, _ = read_policy_file(run / "reinforce" / "segmentation" / "seed0" / "policy.safetensors")
    kept = int((probabilities > 0.5).sum())
    assert sum(len(t.x) for t in fig.data if t.type == "scatter") == kept
    assert f"{kept} of {len(probabilities)}" in fig.layout.title.text
    assert [t.name for t in fig.data if t.type == "scatter" and t.showlegend] == [
        f"kept: probability > 0.5 ({kept} of {len(probabilities)} units)"]
    assert fig.layout.coloraxis.colorscale[0][1] != "#ffffff"  # probability 0 is not the white background
