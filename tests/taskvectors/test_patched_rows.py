"""Less work, same answer: repeated rows and the unpatched prefix are skipped bit-identically,
at one thread and at two (where MKL's strict reproducibility mode, set by interp.runtime, is
what makes a row's attention independent of its batch)."""

from __future__ import annotations

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_task_prompts
from interp.taskvectors.search import SearchProblem
from interp.taskvectors.search.reinforce import ReinforceConfig, run
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
    prompts = batches[task]
    fast = SearchProblem(model, space, means[task], prompts, prompts, reward=reward, chunk=5)
    plain = SearchProblem(model, space, means[task], prompts, prompts, reward=reward, chunk=5, savings=False)
    with torch_threads(threads):
        got, expected = fast.rewards(prompts, which, masks, reward), plain.rewards(prompts, which, masks, reward)
    assert torch.equal(got.nan_to_num(-9), expected.nan_to_num(-9))
    assert got.std() > 0  # the rows differ
    work = fast.rows.work
    assert work.rows == 20 and work.distinct < 20  # repeats ran once
    assert work.blocks < work.blocks_full  # late-patching and clean rows skipped their prefix
    with torch_threads(threads):
        again = fast.rewards(prompts, which, masks, reward)  # second call: clean cache and decodes reused
    assert torch.equal(again.nan_to_num(-9), expected.nan_to_num(-9))
    if reward == "pixel":
        assert fast.decodes.hits > 0


@pytest.mark.parametrize("threads", [1, 2])
def test_a_prefix_cache_over_its_budget_falls_back_to_whole_forwards(setup, threads) -> None:
    model, batches, means = setup
    space = UnitSpace.for_model(model, "head")
    which, masks = rows_with_repeats(space, 6)
    prompts = batches["lowlight"]
    fast = SearchProblem(model, space, means["lowlight"], prompts, prompts, reward="token", chunk=64)
    fast.rows.prefix_cache_bytes = 0
    plain = SearchProblem(model, space, means["lowlight"], prompts, prompts, reward="token", chunk=64, savings=False)
    with torch_threads(threads):
        got = fast.rewards(prompts, which, masks, "token")
        assert torch.equal(got, plain.rewards(prompts, which, masks, "token"))
    assert fast.rows.work.blocks == fast.rows.work.blocks_full  # no prefix reused


@pytest.mark.slow
def test_a_converging_search_is_bit_identical_and_saves_work(setup) -> None:
    """A whole REINFORCE run with the savings equals the plain one step for step; as the policy
    converges its samples repeat and the saving grows."""
    model, batches, means = setup
    space = UnitSpace.for_model(model, "head")
    train, held_out = batches["lowlight"].select(range(3)), batches["lowlight"].select(range(3, 6))
    cfg = ReinforceConfig(steps=30, samples=24, lr=1.5, eval_every=10)
    problems = [SearchProblem(model, space, means["lowlight"], train, held_out, reward="pixel", chunk=24, savings=s)
                for s in (False, True)]
    plain, fast = (run(problem, cfg, progress=False) for problem in problems)
    assert torch.equal(fast.logits, plain.logits) and torch.equal(fast.best_logits, plain.best_logits)
    assert fast.log == plain.log
    work = problems[1].rows.work
    assert work.distinct < 0.75 * work.rows
    assert problems[1].decodes.hits > 0 and work.blocks < work.blocks_full
