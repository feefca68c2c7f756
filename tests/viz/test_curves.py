"""REINFORCE training curves and the results bar chart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from interp.taskvectors.search.reinforce import ReinforceConfig, reinforce_loop
from interp.viz.curves import reinforce_curves, results_bars


@pytest.fixture(scope="module")
def log() -> list[dict]:
    """A real (model-free) REINFORCE log: the loss counts active units."""
    cfg = ReinforceConfig(steps=7, samples=16, eval_every=3)
    state = reinforce_loop(6, lambda s: s.double().sum(1), lambda m: -float(m.sum()), cfg, progress=False)
    return state.log


def test_curves_from_policy_log(log) -> None:
    fig = reinforce_curves(log, title="search", smooth=3)
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    eval_trace = next(t for t in fig.data if t.name.endswith("held-out"))
    assert list(eval_trace.x) == [0, 3, 6]  # evaluated every 3 steps
    assert [fig.layout[a].title.text for a in ("yaxis", "yaxis2", "yaxis3")] == ["train loss ↓", "held-out score ↑", "active units"]
    units = next(t for t in fig.data if t.name.endswith("expected units"))
    assert len(units.x) == 7 and units.y[0] == pytest.approx(6 * torch.sigmoid(torch.tensor(-1.0)).item(), rel=0.5)


def test_curves_overlay_and_errors(log) -> None:
    logs = {"segmentation": pd.DataFrame(log), "lowlight": log}
    fig = reinforce_curves(logs, overlay=True)
    legend = [t.name for t in fig.data if t.showlegend]
    assert legend[:2] == ["segmentation", "lowlight"]  # colours are tasks; grey entries say what each mark is
    assert legend[2:] == ["training loss", "held-out score (each evaluation)", "best so far", "units in the evaluated set",
                          "expected active units"]
    columns = reinforce_curves(logs)  # one column per task: their losses differ in scale and sign
    assert {t.xaxis for t in columns.data if t.name == "lowlight"} == {"x2"}
    assert [a.text for a in columns.layout.annotations] == ["segmentation", "lowlight"]
    with pytest.raises(ValueError, match="no column.*expected_units"):
        reinforce_curves(pd.DataFrame(log).drop(columns="expected_units"))
    with pytest.raises(TypeError, match="PolicyState.log"):
        reinforce_curves(42)


def _results() -> pd.DataFrame:
    rows = []
    for task, metric, higher in (("segmentation", "iou", True), ("lowlight", "mse", False), ("colorization", "mse", False)):
        for k, condition in enumerate(("zero_shot+random", "zero_shot", "one_shot", "zero_shot+tv")):
            rows.append(dict(task=task, condition=condition, metric=metric, higher_is_better=higher,
                             mean=0.1 * (k + 1), sem=0.01 * (k + 1), n=10))
    return pd.DataFrame(rows)


def test_results_bars_one_panel_per_task() -> None:
    """Each task has its own axis (a far-off zero-shot does not flatten the others), ±1 sem bars, units under the bars."""
    table = _results().assign(units=lambda t: np.where(t.condition.str.contains(r"\+"), 12.0, 0.0))
    table.loc[(table.task == "lowlight") & (table.condition == "zero_shot"), "mean"] = 2.07
    fig = results_bars(table, title="results")
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 3 * 4  # three task panels x four conditions
    first_panel = [t.name for t in bars if t.xaxis == "x"]
    assert first_panel == ["one-shot", "zero-shot", "zero-shot + task vector", "zero-shot + random units"]
    titles = [fig.layout[a].title.text for a in ("yaxis", "yaxis2", "yaxis3")]
    assert titles == ["mIoU ↑ ± sem", "MSE ↓ ± sem", "MSE ↓ ± sem"]  # error bars named
    assert [a.text for a in fig.layout.annotations] == ["segmentation", "lowlight", "colorization"]
    assert list(fig.layout.xaxis2.ticktext) == ["", "", "12", "12"] and fig.layout.xaxis2.title.text == "units patched"
    assert all(fig.layout[k].tickangle == 0 for k in fig.layout if k.startswith("xaxis"))  # nothing rotated
    domains = sorted(tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("xaxis"))
    gaps = [(b[0] - a[1]) * fig.layout.width for a, b in zip(domains, domains[1:])]
    assert all(40 <= g <= 90 for g in gaps), gaps  # room for the tick labels and axis title, no wide empty gap
    legend = fig.layout.legend  # under the axes, in a margin made for it: never over the title
    assert (legend.yref, legend.y, legend.yanchor) == ("container", 0, "bottom") and fig.layout.margin.b > 40
    tv = next(t for t in bars if t.xaxis == "x2" and t.name == "zero-shot + task vector")
    assert list(tv.x) == ["zero_shot+tv"] and np.allclose(tv.error_y.array, [0.04])
    assert sum(t.showlegend for t in bars) == 4  # one legend entry per condition
    assert "sem, n=10" in tv.hovertext[0] and "12 units patched" in tv.hovertext[0]


def test_composition_bars_are_named_on_the_axis_in_the_results_colours() -> None:
    from interp.viz.style import CONDITION_COLORS

    rows = [("one_shot", 0.5), ("zero_shot", 2.0), ("zero_shot+tv[inpainting]", 0.7), ("zero_shot+tv[inpainting+lowlight]", 0.6)]
    table = pd.DataFrame({"task": "inpainting_lowlight", "condition": [c for c, _ in rows], "mean": [m for _, m in rows],
                          "sem": 0.05, "metric": "mse", "higher_is_better": False})
    fig = results_bars(table, bar_names="axis")
    assert fig.layout.showlegend is False
    assert list(fig.layout.yaxis.ticktext) == ["one-shot", "zero-shot", "+ TV inpainting", "+ TV inpainting<br>+ lowlight"]
    assert fig.layout.yaxis.autorange == "reversed" and {t.orientation for t in fig.data} == {"h"}  # named at the left, unrotated
    assert fig.layout.xaxis.title.text == "MSE ↓ ± sem"
    colours = {t.y[0]: t.marker.color for t in fig.data}
    assert colours["zero_shot+tv[inpainting+lowlight]"] == colours["zero_shot+tv[inpainting]"] == CONDITION_COLORS["zero_shot+tv"]
    assert colours["one_shot"] == CONDITION_COLORS["one_shot"]


def test_results_bars_inputs() -> None:
    minimal = pd.DataFrame({"task": ["segmentation", "lowlight"], "condition": ["one_shot"] * 2, "mean": [0.5, 0.2]})
    fig = results_bars(minimal)  # metric looked up from the task
    assert fig.layout.yaxis.title.text == "mIoU ↑ ± sem"
    with pytest.raises(ValueError, match="no column.*mean"):
        results_bars(minimal.drop(columns="mean"))
    with pytest.raises(ValueError, match="appear more than once"):
        results_bars(pd.concat([minimal, minimal]))
    with pytest.raises(ValueError, match="condition.*'few_shot'"):
        results_bars(minimal, conditions=["few_shot"])


def test_held_out_mse_is_shown_as_mse(log) -> None:
    """A search maximises -MSE; the figure shows MSE ↓ (positive), its best so far as the running minimum."""
    frame = pd.DataFrame(log)
    frame["eval_score"] = -frame["eval_score"].abs() - 0.1
    fig = reinforce_curves({"lowlight": frame, "segmentation": pd.DataFrame(log)})
    held_out = next(t for t in fig.data if t.name == "lowlight held-out")
    best = next(t for t in fig.data if t.name == "lowlight best so far")
    shown = -frame["eval_score"].dropna().to_numpy()
    assert list(held_out.y) == list(shown) and list(best.y) == list(pd.Series(shown).cummin())
    assert fig.layout.yaxis3.title.text == "held-out MSE ↓" and fig.layout.yaxis4.title.text == "held-out mIoU ↑"


def test_task_colours_are_distinct_and_visible() -> None:
    """Every task has its own colour, never yellow (invisible on white) or black (reads as an axis)."""
    from interp.data.registry import TASKS
    from interp.viz.style import task_color

    colours = [task_color(t) for t in TASKS]
    assert len(set(colours)) == len(TASKS) and not {"#F0E442", "#000000"} & set(colours)


def test_curves_wrap_tasks_into_blocks(log) -> None:
    """``wrap=2``: four tasks as two blocks of two columns (the column-width layout), titles per task, one step title."""
    from interp.viz.paper import paper_figure

    tasks = ("segmentation", "lowlight", "inpainting", "colorization")
    fig = reinforce_curves({t: pd.DataFrame(log) for t in tasks}, wrap=2)
    axes = {t: {tr.xaxis for tr in fig.data if tr.name and tr.name.startswith(t)} for t in tasks}
    assert axes["segmentation"] == {"x", "x3", "x5"} and axes["colorization"] == {"x8", "x10", "x12"}  # 6 rows x 2 cols
    assert [a.text for a in fig.layout.annotations] == list(tasks)
    assert [fig.layout[f"xaxis{i}"].title.text for i in (5, 6, 11, 12)] == [None, None, "step", "step"]
    bars = results_bars(_results(), title="results")  # legend room made once, also when paper mode redoes it
    once = bars.layout.margin.b - 40
    paper = paper_figure(bars, "page")
    assert paper.layout.margin.b - paper.layout.meta["legend_below_px"] <= 40 and once > 0
    with pytest.raises(ValueError, match="wrap"):
        reinforce_curves({t: pd.DataFrame(log) for t in tasks}, wrap=0)


def test_curves_at_column_width_space_blocks_and_tick_the_last_step() -> None:
    """Four 400-step searches at 3.3 in: blocks further apart than rows (titles clear of the ticks
    above), at least three step ticks reaching the last step, distinct line styles, legend under the panels."""
    from interp.viz.paper import paper_figure

    steps = np.arange(400)
    frame = pd.DataFrame({"step": steps, "train_loss": 1 / (steps + 1), "expected_units": 50 - steps / 10,
                          "eval_score": np.where(steps % 50 == 0, 0.5, np.nan), "eval_units": np.where(steps % 50 == 0, 40, np.nan)})
    tasks = ("segmentation", "lowlight", "inpainting", "colorization")
    fig = paper_figure(reinforce_curves({t: frame for t in tasks}, wrap=2), "column")
    rows = sorted({tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("yaxis")}, key=lambda d: -d[1])
    gaps = [a[0] - b[1] for a, b in zip(rows, rows[1:])]
    assert gaps[2] > 2 * max(gaps[0], gaps[1], gaps[3], gaps[4])  # between the blocks, not within
    ticks = list(fig.layout.xaxis11.tickvals)
    assert len(ticks) >= 3 and ticks[-1] == 400 and all(fig.layout[k].tickangle in (None, 0) for k in fig.layout if k.startswith("xaxis"))
    styles = {t.name: t.line.dash for t in fig.data if t.legendgroup == "marks" and t.mode == "lines"}
    assert styles["training loss"] != styles["expected active units"]
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 0
