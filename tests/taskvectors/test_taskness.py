"""Taskness (BCSS / WCSS per layer, head and token group) against a brute-force computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.canvas import CanvasGrid, one_shot
from interp.taskvectors.collect import collect
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.stats_file import StatsError
from interp.taskvectors.taskness import taskness, top_units
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model

GRID = CanvasGrid(64, 8)  # 65 slots
SITES = ("encoder.blocks.0.attn.hook_z", "encoder.blocks.1.attn.hook_z", "decoder.blocks.0.attn.hook_z")
HEADS, D = 3, 4
PLANT = ("encoder.blocks.1.attn.hook_z", 2)


def synthetic(seed: int, counts=(5, 8, 3), plant: float = 0.0):
    """Raw per-prompt z ``{site: [prompt, pos, head, d]}``, task labels, and per-task stats."""
    rng = np.random.default_rng(seed)
    layout = one_shot(GRID)
    labels = np.repeat(np.arange(len(counts)), counts)
    raw, stats = {}, []
    for site in SITES:
        n_pos = len(layout.slots(site.split(".")[0]))
        z = rng.normal(size=(len(labels), n_pos, HEADS, D)) + rng.normal(size=(1, n_pos, HEADS, D))
        z += 0.3 * rng.normal(size=(len(counts), 1, HEADS, D))[labels]  # some task signal everywhere
        if plant and site == PLANT[0]:
            z[:, :, PLANT[1]] += plant * rng.normal(size=(len(counts), 1, D))[labels]
        raw[site] = z
    for t in range(len(counts)):
        s = ActivationStats.empty(layout, task=f"task{t}")
        for site in SITES:
            chunk = torch.from_numpy(raw[site][labels == t])
            s.update(site, chunk[:2])  # two batches per task: sums must add up
            s.update(site, chunk[2:])
        s.n_prompts = int((labels == t).sum())
        stats.append(s)
    return raw, labels, stats, layout


def brute_force(raw, labels, layout, site: str, slot_groups: dict[str, list[int]]):
    """Two-pass BCSS / WCSS per (group, head) from the raw prompts (slots pooled by summing)."""
    z = raw[site]  # [prompt, pos, head, d]
    slots = layout.slots(site.split(".")[0])
    out = {}
    for name, group_slots in slot_groups.items():
        positions = [slots.index(s) for s in group_slots if s in slots]
        if not positions:
            continue
        for h in range(HEADS):
            bcss = wcss = 0.0
            for p in positions:
                x = z[:, p, h]  # [prompt, d]
                grand = x.mean(0)
                for t in np.unique(labels):
                    xt = x[labels == t]
                    bcss += len(xt) * ((xt.mean(0) - grand) ** 2).sum()
                    wcss += ((xt - xt.mean(0)) ** 2).sum()
            out[(name, h)] = (bcss, wcss)
    return out


@pytest.mark.parametrize("by", ["group", "slot", "head"])
def test_matches_brute_force(by: str) -> None:
    raw, labels, stats, layout = synthetic(seed=0)
    table = taskness(stats, by=by)
    assert list(table.columns[:4]) == ["site", "stack", "layer", "head"]
    assert {"group", "bcss", "wcss", "taskness", "n_tasks", "n_prompts"} <= set(table.columns)
    assert (table["n_tasks"] == 3).all() and (table["n_prompts"] == 16).all()
    for site in SITES:
        if by == "group":
            groups: dict[str, list[int]] = {}
            for slot, name in enumerate(GRID.slot_quadrant):
                groups.setdefault(name, []).append(slot)
            key = "group"
        elif by == "slot":
            groups, key = {s: [s] for s in range(GRID.num_slots)}, "slot"
        else:
            groups, key = {"all": list(range(GRID.num_slots))}, "group"
        expected = brute_force(raw, labels, layout, site, groups)
        rows = table[table["site"] == site]
        assert len(rows) == len(expected)
        for row in rows.itertuples():
            bcss, wcss = expected[(getattr(row, key), row.head)]
            assert row.bcss == pytest.approx(bcss, rel=1e-9)
            assert row.wcss == pytest.approx(wcss, rel=1e-9)
            assert row.taskness == pytest.approx(bcss / wcss, rel=1e-9)
    # the encoder never sees the target cell one-shot: no rows for it
    if by != "head":
        groups_of = lambda stack: set(table[table["stack"] == stack]["group"])  # noqa: E731
        assert "target" not in groups_of("encoder") and "target" in groups_of("decoder")


def test_planted_head_ranks_first() -> None:
    _, _, stats, _ = synthetic(seed=1, plant=3.0)
    for by in ("group", "head"):
        table = taskness({s.task: s for s in stats}, by=by)
        best = table.sort_values("taskness", ascending=False).iloc[0]
        assert (best["site"], best["head"]) == PLANT
    table = taskness(stats, by="head")
    assert table.attrs["tasks"] == ["task0", "task1", "task2"]
    ordered = table[["stack", "layer", "head"]].apply(tuple, axis=1).tolist()
    assert ordered == [("encoder", 0, h) for h in range(3)] + [("encoder", 1, h) for h in range(3)] + [
        ("decoder", 0, h) for h in range(3)
    ]


def test_top_units_and_errors() -> None:
    model = random_model()  # 4 heads: stats with 4 heads needed for its unit space
    canvases = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a = collect(model, [canvases[:2]], task="a", progress=False)
    b = collect(model, [canvases[2:] * 2 + 1], task="b", progress=False)
    table = taskness([a, b])
    assert len(table) == 2 * 4 * 4 + 2 * 4 * 5  # encoder: cls + 3 cells; decoder: cls + 4 cells
    space = UnitSpace.for_model(model, "group")
    mask = top_units(table, space, 5)
    assert mask.sum() == 5
    chosen = {(u.stack, u.layer, u.head, u.group) for u in (space.unit(i) for i in mask.nonzero().flatten().tolist())}
    eligible = table[[g in space.groups(s) for s, g in zip(table["stack"], table["group"])]]
    best = eligible.sort_values("taskness", ascending=False).head(5)
    assert chosen == set(zip(best["stack"], best["layer"], best["head"], best["group"]))
    head_mask = top_units(taskness([a, b], by="head"), UnitSpace.for_model(model, "head"), 3)
    assert head_mask.sum() == 3
    with pytest.raises(StatsError, match="at least 2 tasks"):
        taskness([a])
    with pytest.raises(StatsError, match="merge shards"):
        taskness([a, a])
    with pytest.raises(Exception, match="layouts"):
        taskness([a, collect(model, [canvases], "zero_shot", task="c", progress=False)])
