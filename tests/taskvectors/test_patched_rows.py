"""Less work, same answer: repeated rows and the unpatched prefix are skipped bit-identically,
at one thread and at two (where MKL's strict reproducibility mode, set by interp.runtime, is
what makes a row's attention independent of its batch)."""

from __future__ import annotations

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_task_prompts
from interp.taskvectors.reinforce import PatchedScorer, ReinforceConfig, TaskSearch, search
from interp.taskvectors.collect import collect
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model, torch_threads


@pytest.fixture(scope="module")
def setup():
    model = random_model(seed=4, with_vqgan=True)
    source = SyntheticPascal(seed=6, size_per_split=40)
    batches = build_task_prompts(source, fold=0, n=6, grid=model.grid, seed=0, split="val",
                                 tasks=("segmentation", "lowlight"))
    means = {task: collect(model, [b.canvases], layout="one_shot", task=task, progress=False) for task, b in batches.items()}
    return model, batches, means


def rows_with_repeats(space: UnitSpace, n_prompts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose first patched block ranges over the whole model (and none), with repeats."""
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(12, len(space), generator=g) < 0.05
    depth = [0 if u.stack == "encoder" else 100 for u in space.units]
    late = torch.tensor([d + u.layer for d, u in zip(depth, space.units)])
    masks[3] = late == int(late.max())  # last decoder block only
    masks[4] = (late >= 100) & (torch.rand(len(space), generator=g) < 0.3)  # decoder only
    masks[5] = False  # nothing patched
    masks = torch.cat([masks, masks[:6], masks[2:4]])  # repeats of the same sets ...
    which = torch.arange(len(masks)) % n_prompts
    which[12:18] = which[:6]  # ... on the same prompts
    return which, masks


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("reward", ["pixel", "token"])
@pytest.mark.parametrize("task", ["segmentation", "lowlight"])
def test_savings_give_bit_identical_rewards(setup, reward, task, threads) -> None:
    model, batches, means = setup
    space = UnitSpace.for_model(model, "group")
    which, masks = rows_with_repeats(space, len(batches[task]))
    fast = PatchedScorer(model, space, means[task], "zero_shot", reward, chunk=5)
    plain = PatchedScorer(model, space, means[task], "zero_shot", reward, chunk=5, savings=False)
    with torch_threads(threads):
        got, expected = fast.rewards(batches[task], which, masks), plain.rewards(batches[task], which, masks)
    assert torch.equal(got.nan_to_num(-9), expected.nan_to_num(-9))
    assert got.std() > 0  # the rows differ
    work = fast.rows.work
    assert work.rows == 20 and work.distinct < 20  # repeats ran once
    assert work.blocks < work.blocks_full  # late-patching and clean rows skipped their prefix
    with torch_threads(threads):
        again = fast.rewards(batches[task], which, masks)  # second call: clean cache and decodes reused
    assert torch.equal(again.nan_to_num(-9), expected.nan_to_num(-9))
    if reward == "pixel":
        assert fast.decoder.hits > 0


@pytest.mark.parametrize("threads", [1, 2])
def test_a_prefix_cache_over_its_budget_falls_back_to_whole_forwards(setup, threads) -> None:
    model, batches, means = setup
    space = UnitSpace.for_model(model, "head")
    which, masks = rows_with_repeats(space, 6)
    fast = PatchedScorer(model, space, means["lowlight"], "zero_shot", "token", chunk=64)
    fast.rows.prefix_cache_bytes = 0
    plain = PatchedScorer(model, space, means["lowlight"], "zero_shot", "token", chunk=64, savings=False)
    with torch_threads(threads):
        got = fast.rewards(batches["lowlight"], which, masks)
        assert torch.equal(got, plain.rewards(batches["lowlight"], which, masks))
    assert fast.rows.work.blocks == fast.rows.work.blocks_full  # no prefix reused


@pytest.mark.slow
def test_a_converging_search_is_bit_identical_and_saves_work(setup, monkeypatch) -> None:
    """A whole REINFORCE run with the savings equals the plain one step for step; as the policy
    converges its samples repeat and the saving grows."""
    model, batches, means = setup
    space = UnitSpace.for_model(model, "head")
    tasks = {"lowlight": TaskSearch(means["lowlight"], batches["lowlight"].select(range(3)),
                                    batches["lowlight"].select(range(3, 6)))}
    cfg = ReinforceConfig(steps=30, samples=24, lr=1.5, eval_every=10, reward="pixel", chunk=24)
    made: list[PatchedScorer] = []
    real_init = PatchedScorer.__init__

    def record(self, *args, savings: bool = True, **kwargs) -> None:
        real_init(self, *args, savings=savings and not plain_run, **kwargs)
        made.append(self)

    monkeypatch.setattr(PatchedScorer, "__init__", record)
    plain_run = True
    plain = search(model, space, tasks, cfg, progress=False)
    plain_run = False
    fast = search(model, space, tasks, cfg, progress=False)
    assert torch.equal(fast.logits, plain.logits) and torch.equal(fast.best_logits, plain.best_logits)
    assert fast.log == plain.log
    train = made[2]  # the fast run's training scorer
    assert train.rows.work.distinct < 0.75 * train.rows.work.rows
    assert train.decoder.hits > 0 and train.rows.work.blocks < train.rows.work.blocks_full
