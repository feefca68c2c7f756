"""REINFORCE: finds planted units, resumes to the same result, runs on a model."""

from __future__ import annotations

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_task_prompts
from interp.taskvectors.search import SearchProblem
from interp.taskvectors.search.reinforce import ReinforceConfig, reinforce_loop, run_multitask
from interp.taskvectors.collect import collect
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model

PLANTED = torch.zeros(60, dtype=torch.bool)
PLANTED[[3, 17, 25, 40]] = True


def planted_losses(samples: torch.Tensor) -> torch.Tensor:
    """Each planted unit lowers the loss by 1, every other unit raises it by 0.3."""
    return -(samples & PLANTED).sum(1).double() + 0.3 * (samples & ~PLANTED).sum(1).double()


def accuracy(mask: torch.Tensor) -> float:
    return float((mask == PLANTED).double().mean())


def test_finds_planted_units() -> None:
    state = reinforce_loop(60, planted_losses, accuracy, ReinforceConfig(steps=120, samples=64, eval_every=20), progress=False)
    probs = torch.sigmoid(state.logits)
    assert probs[PLANTED].min() > 0.95 and probs[~PLANTED].max() < 0.05
    assert state.best_score == 1.0
    assert torch.equal(torch.sigmoid(state.best_logits) > 0.5, PLANTED)


def test_threshold_selection_scores_the_thresholded_policy() -> None:
    seen = []

    def record(mask: torch.Tensor) -> float:
        seen.append(mask.clone())
        return accuracy(mask)

    cfg = ReinforceConfig(steps=60, samples=64, eval_every=20, select="threshold")
    state = reinforce_loop(60, planted_losses, record, cfg, progress=False)
    assert not seen[0].any()  # logits start at -1: p = 0.27 < 0.5, the thresholded set is empty
    assert [row["eval_units"] for row in state.log if "eval_units" in row] == [int(m.sum()) for m in seen]
    assert torch.equal(seen[-1], PLANTED) and state.best_score == 1.0
    with pytest.raises(ValueError, match="select must be"):
        ReinforceConfig(select="best")


def test_multitask_groups_are_normalised_separately() -> None:
    """Group 1's losses are 1000x larger; per-group z-scoring still lets group 0 steer."""
    def losses(samples):
        loss = planted_losses(samples)
        loss[1::2] *= 1000
        return loss

    state = reinforce_loop(60, losses, None, ReinforceConfig(steps=120, samples=64), groups=2, progress=False)
    assert torch.equal(torch.sigmoid(state.logits) > 0.5, PLANTED)


def test_killed_run_resumes_to_the_same_result(tmp_path) -> None:
    cfg = ReinforceConfig(steps=40, samples=32, eval_every=10)
    full = reinforce_loop(60, planted_losses, accuracy, cfg, progress=False)

    calls = {"n": 0}

    def dies_at_step_25(samples):
        calls["n"] += 1
        if calls["n"] == 26:
            raise KeyboardInterrupt("killed")
        return planted_losses(samples)

    with pytest.raises(KeyboardInterrupt):
        reinforce_loop(60, dies_at_step_25, accuracy, cfg, checkpoint=tmp_path / "policy.pt", progress=False)
    resumed = reinforce_loop(60, planted_losses, accuracy, cfg, checkpoint=tmp_path / "policy.pt", progress=False)
    assert torch.equal(resumed.logits, full.logits)
    assert torch.equal(resumed.best_logits, full.best_logits)
    assert resumed.log == full.log


@pytest.mark.parametrize("reward", ["pixel", "token"])
def test_search_runs_on_a_model(tmp_path, reward) -> None:
    model = random_model(with_vqgan=True)
    source = SyntheticPascal(seed=5, size_per_split=40)
    batches = build_task_prompts(source, fold=0, n=6, grid=model.grid, seed=0, split="val", tasks=("segmentation", "lowlight"))
    space = UnitSpace.for_model(model, "group")
    problems = {}
    for task, batch in batches.items():
        means = collect(model, [batch.canvases], layout="one_shot", task=task, progress=False)
        problems[task] = SearchProblem(model, space, means, batch.select(range(3)), batch.select(range(3, 6)), reward=reward)
    cfg = ReinforceConfig(steps=3, samples=8, eval_every=2)
    result = run_multitask(problems, cfg, checkpoint=tmp_path / "p.pt", progress=False)
    assert result.logits.shape == (len(space),) and len(result.log) == 3
    assert (tmp_path / "p.pt").exists()
    assert [row["step"] for row in result.log if "eval_score" in row] == [0, 2]
    assert torch.equal(result.mask, result.best_logits > 0)
    again = run_multitask(problems, cfg, checkpoint=tmp_path / "p.pt", progress=False)  # resumed: nothing left to do
    assert torch.equal(again.logits, result.logits) and again.log == result.log


def test_a_checkpoint_over_another_number_of_units_is_named(tmp_path) -> None:
    from interp.errors import CheckpointError

    cfg = ReinforceConfig(steps=2, samples=8, eval_every=1)
    reinforce_loop(60, planted_losses, accuracy, cfg, checkpoint=tmp_path / "p.pt", progress=False)
    state = torch.load(tmp_path / "p.pt", weights_only=True)
    state["logits"], state["best_logits"] = state["logits"][:7], state["best_logits"][:7]
    torch.save(state, tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match="60 units"):
        reinforce_loop(60, planted_losses, accuracy, cfg, progress=False,
                       checkpoint=tmp_path / "p.pt")
