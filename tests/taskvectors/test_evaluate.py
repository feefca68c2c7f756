"""Evaluation of task vectors: the conditions score what they say, the control averages draws."""

from __future__ import annotations

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_task_prompts
from interp.taskvectors.evaluate import evaluate_task_vectors, score_condition, score_masks, score_prompts
from interp.taskvectors.patching import merge_means, patch_hooks
from interp.taskvectors.policy import random_like
from interp.taskvectors.collect import collect
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model


@pytest.fixture(scope="module")
def setup():
    model = random_model(3, with_vqgan=True)
    prompts = build_task_prompts(SyntheticPascal(seed=0, size_per_split=40), fold=0, n=4, grid=model.grid, seed=0, tasks=("lowlight",))
    means = {"lowlight": collect(model, [prompts["lowlight"].canvases], "one_shot", task="lowlight", progress=False)}
    return model, prompts, means, UnitSpace.for_model(model, "group")


def test_random_like_draws_as_many_units() -> None:
    mask = torch.zeros(50, dtype=torch.bool)
    mask[[1, 7, 9]] = True
    drawn = [random_like(mask, seed) for seed in range(3)]
    assert all(int(d.sum()) == 3 for d in drawn)
    assert not torch.equal(drawn[0], drawn[1])
    assert torch.equal(random_like(mask, 0), drawn[0])


def test_conditions_and_the_averaged_control(setup) -> None:
    model, prompts, means, space = setup
    policy = torch.full((len(space),), 0.1)
    policy[:20] = 0.9  # 20 units kept by the 0.5 threshold
    table = evaluate_task_vectors(model, space, means, {"lowlight": policy}, prompts, sampled=0, seed=5, controls=2)
    row = table.set_index("condition")["mean"]
    assert set(row.index) == {"one_shot", "zero_shot", "zero_shot+tv", "zero_shot+random"}
    batch = prompts["lowlight"]

    def patched(mask):
        return score_prompts(model, batch, "zero_shot", patch_hooks(model, means["lowlight"], "zero_shot", space, mask[None]))

    assert row["zero_shot"] == pytest.approx(float(score_prompts(model, batch, "zero_shot").double().mean()))
    assert row["zero_shot+tv"] == pytest.approx(float(patched(policy > 0.5).double().mean()))
    kept = policy > 0.5
    control = torch.stack([patched(random_like(kept, 5)), patched(random_like(kept, 6))]).mean(0)
    assert row["zero_shot+random"] == pytest.approx(float(control.double().mean()))
    assert row["zero_shot+tv"] != row["zero_shot"]
    assert (table.loc[table["condition"].str.contains("\\+"), "units"] == 20).all()


def test_sampled_rows_report_the_mean_units_of_their_draws(setup) -> None:
    model, prompts, means, space = setup
    policy = torch.full((len(space),), 0.3)
    table = evaluate_task_vectors(model, space, means, {"lowlight": policy}, prompts, sampled=3, seed=5, controls=1)
    g = torch.Generator().manual_seed(5)
    draws = [torch.bernoulli(policy.double(), generator=g).bool() for _ in range(3)]
    units = table.set_index("condition")["units"]
    assert units["zero_shot+tv_sampled"] == pytest.approx(float(sum(d.sum() for d in draws)) / 3) and units["zero_shot+tv"] == 0


def test_patched_conditions_through_the_engine_equal_plain_hooks(setup) -> None:
    """score_masks (distinct rows once, the clean prefix reused, decodes cached) gives the plain
    hooked forward's metric bit for bit, images included."""
    model, prompts, means, space = setup
    batch = prompts["lowlight"]
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(3, len(space), generator=g) < 0.2
    masks[1] = False
    masks[2, : len(space) // 2] = False  # decoder-side units only: a late first patch
    scores = score_masks(model, space, means["lowlight"], batch, masks, batch_size=3, keep_images=2)
    for mask, score in zip(masks, scores):
        hooks = patch_hooks(model, means["lowlight"], "zero_shot", space, mask[None])
        plain = score_condition(model, batch, "zero_shot", hooks, batch_size=64, keep_images=2)
        assert torch.equal(score.metric.nan_to_num(-9), plain.metric.nan_to_num(-9))
        assert torch.equal(score.image, plain.image)


def test_merged_means_patch_like_one_part_after_the_other(setup) -> None:
    model, prompts, means, space = setup
    batch = prompts["lowlight"]
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(len(space), generator=g) < 0.3, torch.rand(len(space), generator=g) < 0.3
    other = {site: means["lowlight"].mean(site) * 0.5 + 0.1 for site in space.site_index()}
    merged, union = merge_means(space, [(means["lowlight"], a), (other, b)])
    assert torch.equal(union, a | b)
    hooks = patch_hooks(model, means["lowlight"], "zero_shot", space, a[None]) + patch_hooks(model, other, "zero_shot", space, b[None])
    plain = score_prompts(model, batch, "zero_shot", hooks)
    assert torch.equal(score_masks(model, space, merged, batch, union[None])[0].metric.nan_to_num(-9), plain.nan_to_num(-9))


def test_intervention_kinds_reach_every_patch(setup) -> None:
    from interp.taskvectors.patching import Intervention

    model, prompts, means, space = setup
    policy = torch.full((len(space),), 0.1)
    policy[:20] = 0.9

    def run(kind, **kw):
        return evaluate_task_vectors(model, space, means, {"lowlight": policy}, prompts, sampled=0, seed=5, controls=1,
                                     intervention=kind, **kw).set_index("condition")

    replace, scaled = run(None), run(Intervention("scaled", 1.0))
    assert scaled["mean"].equals(replace["mean"])  # scaled(1) is replace, bit for bit, in every condition
    assert scaled.loc["zero_shot+tv", "intervention"] == "scaled(a=1)" and replace.loc["zero_shot", "intervention"] == ""
    base = {"lowlight": collect(model, [prompts["lowlight"].canvases], "zero_shot", task="lowlight", progress=False)}
    add = run(Intervention("add", 0.0), base_means=base)
    assert add.loc["zero_shot+tv", "mean"] == add.loc["zero_shot", "mean"]  # add(0) patches nothing
    assert run(Intervention("add", 1.0), base_means=base).loc["zero_shot+tv", "mean"] != replace.loc["zero_shot+tv", "mean"]
