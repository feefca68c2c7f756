"""The explorer's compare slot (set A vs B), attention view and unit grid, driven without a browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets", reason="the patch explorer needs ipywidgets (pip install ipywidgets)")
pytest.importorskip("anywidget", reason="the explorer's unit grid needs anywidget (pip install anywidget)")

from interp.canvas import CanvasGrid, get_layout, one_shot, zero_shot  # noqa: E402
from interp.taskvectors.units import UnitSpace  # noqa: E402
from interp.viz.explorer import NO_POLICY, PatchExplorer  # noqa: E402
from interp.viz.explorer.attention import canvas_map, head_pattern  # noqa: E402
from interp.viz.explorer.compare import Comparison  # noqa: E402
from interp.viz.explorer.grid import HEIGHT_PX, WIDTH_PX, cell_px, grid_blocks, grid_size  # noqa: E402
from tests.viz.test_explorer import setup  # noqa: E402,F401  (the module fixture: model, prompts, means, policy)


@pytest.fixture(scope="module")
def explorer(setup, tmp_path_factory):  # noqa: F811
    model, prompts, means, policy = setup
    space = UnitSpace.for_model(model, "group")
    ex = PatchExplorer(model, prompts, means, {"segmentation": (space, policy)},
                       export_dir=tmp_path_factory.mktemp("figures"), formats=("html",))
    with ex.hold():
        ex.controls["policy"].value = NO_POLICY
        ex.controls["encoder"].value = ex.controls["decoder"].value = False
    return ex


def _units(ex, *wanted):
    return [i for i, u in enumerate(ex.space().units) if (u.stack, u.layer, u.head, u.group) in wanted]


def test_compare_pinned_set_against_the_edited_one(explorer) -> None:
    ex = explorer
    with ex.hold():
        ex.controls["task"].value = "lowlight"  # MSE: any change of the prediction changes the metric
    assert not ex.compare.active and "nothing pinned" in ex.compare_summary.value
    a_units = _units(ex, ("encoder", 0, 1, "query"), ("decoder", 1, 2, "target"))
    for i in a_units:
        ex.toggle(i)
    ex.compare.pin()
    assert ex.compare.mask().nonzero().flatten().tolist() == a_units
    assert [i for i, c in enumerate(ex.grid.pinned) if c == "1"] == a_units  # A outlined on the grid
    extra = _units(ex, ("decoder", 0, 3, "target"), ("encoder", 1, 0, "query"))
    for i in extra:
        ex.toggle(i)  # B = A + two units
    b_units = sorted(a_units + extra)
    assert ex.current_mask().nonzero().flatten().tolist() == b_units and ex.compare.mask().sum() == len(a_units)

    result = ex.compare.result()
    p = ex.predictor
    a, b = ex.compare.mask(), ex.current_mask()
    one_a = p.predict(ex.task, ex.index, ex.layout, ex.task, a)[1]
    one_b = p.predict(ex.task, ex.index, ex.layout, ex.task, b)[1]
    assert result.prompt == pytest.approx({"A": one_a, "B": one_b, "diff": one_b - one_a}, nan_ok=True)
    sa, sb = p.prompt_scores(ex.task, ex.layout, ex.task, a), p.prompt_scores(ex.task, ex.layout, ex.task, b)
    assert len(sa) == len(ex.prompts[ex.task]) and not torch.equal(sa, sb)  # the extra units change the scores
    assert result.prompt_set["diff"][0] == pytest.approx(float((sb - sa).nanmean()))
    assert result.prompt_set["A"][0] == pytest.approx(float(sa.nanmean()))
    cells = ex.compare.predictions()
    assert torch.equal(cells["B"], ex.predictions()["patched"]) and not torch.equal(cells["A"], cells["B"])
    table = ex.compare_summary.value
    assert f"A: pinned selection ({len(a_units)} units)" in table and f"({len(b_units)} units)" in table and "B − A" in table
    assert "MSE ↓" in table and ("B better" in table or "B worse" in table)

    state = json.loads(json.dumps(ex.state()))  # A travels in the saved state
    ex.compare.clear()
    assert not ex.compare.active and set(ex.grid.pinned) == {"0"}
    ex.load_state(state)
    assert ex.compare.mask().nonzero().flatten().tolist() == a_units

    with ex.hold():  # A follows a layout change by unit name
        ex.controls["layout"].value = "one_shot"
    names = {(u.stack, u.layer, u.head, u.group) for u in (ex.space().unit(i) for i in ex.compare.mask().nonzero().flatten().tolist())}
    assert names == {("encoder", 0, 1, "query"), ("decoder", 1, 2, "target")}
    with ex.hold():
        ex.controls["layout"].value = "zero_shot"


def test_compare_policy_as_a_and_direction(explorer, setup) -> None:  # noqa: F811
    _, _, _, policy = setup
    explorer.compare.pin_policy("segmentation", threshold=0.7)
    assert torch.equal(explorer.compare.mask(), policy > 0.7) and explorer.compare.pinned.label == "segmentation > 0.70"
    with pytest.raises(KeyError, match="no policy"):
        explorer.compare.pin_policy("colour")
    explorer.compare.clear()
    iou = Comparison("iou", True, {}, {})
    mse = Comparison("mse", False, {}, {})
    assert (iou.verdict(0.1), iou.verdict(-0.1), mse.verdict(-0.1), mse.verdict(0.1), mse.verdict(0.0)) == (
        "B better", "B worse", "B better", "B worse", "same")
    assert mse.verdict(-0.1, sem=0.06) == "B better (within noise)" and mse.verdict(-0.1, sem=0.04) == "B better"


def _manual_pattern(model, canvas, layout, stack, layer, head):
    """softmax(q k^T / sqrt(d_head)) from the attention module's own qkv weights and its input."""
    attn = getattr(model, stack).blocks[layer].attn
    seen = {}
    handle = attn.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0].detach()))
    try:
        with torch.no_grad():
            model(canvas, layout)
    finally:
        handle.remove()
    x = seen["x"][0].double()  # [pos, d_model]
    d_model = x.shape[-1]
    d = attn.d_head
    w, b = attn.qkv.weight.double(), attn.qkv.bias.double()
    q = x @ w[head * d:(head + 1) * d].T + b[head * d:(head + 1) * d]
    k = x @ w[d_model + head * d:d_model + (head + 1) * d].T + b[d_model + head * d:d_model + (head + 1) * d]
    return torch.softmax(q @ k.T / d**0.5, dim=-1)


@pytest.mark.parametrize("stack,layer,head,layout", [("encoder", 1, 2, "zero_shot"), ("decoder", 1, 1, "one_shot")])
def test_head_pattern_is_the_softmax_of_scaled_scores(setup, stack, layer, head, layout) -> None:  # noqa: F811
    model, prompts, _, _ = setup
    canvas = prompts["segmentation"].canvases[:1]
    lay = get_layout(layout, model.grid)
    pattern = head_pattern(model, canvas, lay, stack, layer, head)
    n = len(lay.slots(stack))
    assert pattern.shape == (n, n) and pattern.dtype == torch.float64
    assert torch.allclose(pattern.sum(-1), torch.ones(n, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(pattern, _manual_pattern(model, canvas, lay, stack, layer, head), atol=1e-5)
    grid_map, cls = canvas_map(pattern[0], lay, stack)
    seen = ~np.isnan(grid_map)
    assert seen.sum() == n - 1 and grid_map[seen].sum() + cls == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="outside"):
        head_pattern(model, canvas, lay, stack, layer, 99)


def test_attention_view_unpatched_and_patched(explorer) -> None:
    ex = explorer
    with ex.hold():
        ex.controls["task"].value, ex.controls["layout"].value = "segmentation", "zero_shot"
    ex.clicked = {("encoder", 0, h, g): True for h in range(4) for g in ("cls", "query")}
    ex.update()
    assert ex.current_mask().nonzero().flatten().tolist() == _units(ex, *ex.clicked)
    target = _units(ex, ("decoder", 1, 3, "target"))[0]
    ex.grid.click(target, inspect=True)  # a shift-click: that head in the attention tab
    assert ex.attention.choice()[:3] == ("decoder", 1, 3) and ex.tabs.selected_index == 2
    ring = [i for i, c in enumerate(ex.grid.inspect) if c == "1"]
    assert ring == _units(ex, *[("decoder", 1, 3, g) for g in ("cls", "query", "target")])
    patterns = ex.attention.patterns()
    assert not torch.allclose(patterns["unpatched"], patterns["patched"])  # encoder L0 patched: the decoder attends otherwise
    fig = ex.attention.last_figure
    assert [t.type for t in fig.data].count("heatmap") == 4 and "decoder L1 H3" in fig.layout.title.text
    ex.attention.select("encoder", 0, 1)  # the patched layer itself: its pattern comes before the patch
    same = ex.attention.patterns()
    assert torch.equal(same["unpatched"], same["patched"])
    ex.tabs.selected_index = 0


@pytest.mark.parametrize("layout,enc_groups", [(zero_shot, ("cls", "query")),
                                               (one_shot, ("cls", "example_input", "example_output", "query"))])
def test_grid_of_the_official_model_fits_and_covers_every_unit(layout, enc_groups) -> None:
    lay = layout(CanvasGrid())
    space = UnitSpace("group", 24, 8, 16, layout=lay, enc_groups=enc_groups, dec_groups=tuple(lay.token_groups("decoder")))
    blocks = grid_blocks(space)
    indices = sorted(i for b in blocks for row in b["units"] for i in row if i >= 0)
    assert indices == list(range(len(space))) and len(space) in (1152, 2176)
    assert all(len(b["layers"]) == (24 if b["stack"] == "encoder" else 8) and b["heads"] == 16 for b in blocks)
    px = cell_px(blocks)
    width, height = grid_size(blocks, px)
    assert px >= 7 and width <= WIDTH_PX and height <= HEIGHT_PX
    assert grid_size(blocks, 16)[1] > HEIGHT_PX  # full-size cells would not fit: the size is chosen


def test_explorer_on_the_official_unit_spaces() -> None:
    """24 + 8 layers of 16 heads (narrow, so it runs in a second): 1152 / 2176 units on one grid, 16 head toggles."""
    import dataclasses

    from interp.data.synthetic import SyntheticPascal
    from interp.data.tasks import build_task_prompts
    from interp.models.mae_vqgan import MAEVQGAN
    from interp.models.presets import random_config
    from interp.taskvectors.collect import collect

    config = random_config(with_vqgan=True)
    config = dataclasses.replace(config, mae=dataclasses.replace(config.mae, depth=24, num_heads=16, decoder_depth=8,
                                                                 decoder_num_heads=16))
    torch.manual_seed(0)
    model = MAEVQGAN(config).eval()
    prompts = build_task_prompts(SyntheticPascal(seed=0, size_per_split=40), fold=0, n=2, grid=model.grid, seed=0,
                                 tasks=("lowlight",))
    means = {t: collect(model, [b.canvases], "one_shot", task=t, progress=False) for t, b in prompts.items()}
    ex = PatchExplorer(model, prompts, means, formats=("html",))
    assert len(ex.space()) == len(ex.grid.mask) == 1152 and len(ex.grid.blocks) == 5
    assert len(ex.controls["heads"].toggles) == 16 and ex.controls["heads"].value == tuple(range(16))
    last = len(ex.space()) - 1  # decoder L7 H15 target
    ex.grid.click(last)
    assert ex.grid.patched() == [last] and "1 of 1152 units patched" in ex.summary.value and ex.status.value == ""
    with ex.hold():
        ex.controls["layout"].value = "one_shot"
    assert len(ex.grid.mask) == 2176 and len(ex.grid.blocks) == 9
    width, height = grid_size(ex.grid.blocks, ex.grid.cell_px)
    assert width <= WIDTH_PX and height <= HEIGHT_PX
    ex.controls["heads"].toggles[3].value = False  # one head off: the preset loses that head everywhere
    assert 3 not in ex.controls["heads"].value
    ex.attention.select("encoder", 23, 15)
    assert ex.attention.patterns()["unpatched"].shape == (1 + 3 * 16, 1 + 3 * 16)  # CLS + three visible 4x4 cells


def test_unit_effects_from_a_sweep_table_and_on_demand(explorer) -> None:
    import pandas as pd

    from interp.taskvectors.sweep import sweep
    from interp.viz.explorer.effects import UnitEffects

    ex = explorer
    with ex.hold():
        ex.controls["task"].value = "lowlight"
        ex.controls["layout"].value = "zero_shot"
    ex.effects = UnitEffects()
    ex.controls["colour"].value = "effect"
    assert ex.unit_effects() is None and not ex.sweep_button.disabled and "sweep this task" in ex.legend.value
    ex.sweep_task(progress=False)  # the sweep engine, every head alone on this task's prompts
    head_space = UnitSpace.for_model(ex.model, "head")
    table = sweep(ex.model, head_space, ex.means["lowlight"], ex.prompts["lowlight"], progress=False)
    by_head = {(r.stack, r.layer, r.head): r.delta for r in table.itertuples()}
    values = ex.unit_effects()
    assert values == pytest.approx([by_head[u.stack, u.layer, u.head] for u in ex.space().units])  # each group: its head's
    assert ex.sweep_button.disabled and len(ex.grid.colours) == len(ex.space()) and "effect alone" in ex.grid.tips[0]
    best = table.sort_values("delta", ascending=False).iloc[0]
    assert f"largest effects alone on lowlight: {best.stack} L{best.layer} H{best['head']} {best.delta:+.3f}" in ex.legend.value
    for mark in ("patched", "set by hand", "in set A", "attention tab", "blue helps"):
        assert mark in ex.legend.value  # every mark of the grid is in the legend
    ex.controls["colour"].value = "patched"
    assert ex.grid.colours == [] and "blue helps" not in ex.legend.value

    # a run's sweep.csv at group granularity is matched by group too
    groups = pd.DataFrame([{"task": "segmentation", "stack": u.stack, "layer": u.layer, "head": u.head, "group": u.group,
                            "delta": float(i), "metric": "iou", "n_prompts": 16} for i, u in enumerate(ex.space().units)])
    effects = UnitEffects(groups)
    assert effects.values("segmentation", ex.space()).tolist() == [float(i) for i in range(len(ex.space()))]
    assert effects.values("lowlight", ex.space()) is None and "16 prompts" in effects.describe("segmentation")
    with pytest.raises(ValueError, match="lacks column"):
        UnitEffects(groups.drop(columns="delta"))


def test_paired_interval_against_zero_shot(explorer) -> None:
    from interp.viz.explorer.predict import paired_interval, t_quantile

    assert [round(t_quantile(df), 3) for df in (1, 2, 7, 31)] == [12.706, 4.303, 2.365, 2.040]  # Student's t tables
    ex = explorer
    with ex.hold():
        ex.controls["task"].value = "lowlight"
    ex.toggle(_units(ex, ("decoder", 1, 2, "target"))[0])
    p = ex.predictor
    zero = p.prompt_scores("lowlight", "zero_shot", "lowlight", None)
    patched = p.prompt_scores("lowlight", ex.layout, "lowlight", ex.current_mask())
    d = (patched - zero).numpy()
    half = t_quantile(len(d) - 1) * d.std(ddof=1) / len(d) ** 0.5
    mean, low, high, n = ex.intervals()["patched"]
    assert n == len(d) and mean == pytest.approx(d.mean()) and (low, high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert paired_interval(patched, zero)[1:3] == pytest.approx((low, high))
    assert "paired vs zero-shot (95% t interval" in ex.summary.value and f"[{low:+.3f}, {high:+.3f}]" in ex.summary.value
    ex.toggle(_units(ex, ("decoder", 1, 2, "target"))[0])


def test_difference_view_and_prompt_canvas(explorer) -> None:
    from interp.viz.explorer.render import DIFF_COLOUR, DIFF_FULL, difference, prompt_canvas

    target = torch.zeros(3, 4, 4)
    cell = target.clone()
    cell[:, 0, 0] = 1.0  # off by 1 (>= DIFF_FULL): full colour; the rest equal: white
    cell[:, 0, 1] = DIFF_FULL / 2
    d = difference(cell, target)
    assert d[:, 1, 1].tolist() == [1.0, 1.0, 1.0] and d[:, 0, 0].tolist() == pytest.approx(list(DIFF_COLOUR))
    assert d[:, 0, 1].tolist() == pytest.approx([0.5 + 0.5 * c for c in DIFF_COLOUR])
    ex = explorer
    ex.controls["show"].value = "difference"
    assert "|zero-shot − target|" in ex.image_titles["zero_shot"].value and "target" in ex.image_titles["target"].value
    cells = ex.predictions()
    canvas = prompt_canvas(cells)
    c = cells["query"].shape[-1]
    assert canvas.shape == (3, 2 * c, 2 * c) and torch.equal(canvas[:, c:, :c], cells["query"])
    ex.controls["show"].value = "images"
