"""Every search method recovers a planted task vector: a small model and task built so that
patching a known unit set solves the task exactly (and no other set does)."""

from __future__ import annotations

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_prompts
from interp.errors import ResumeConflict
from interp.taskvectors.search import METHODS, SearchProblem, method_config, run_search
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model

PLANTED = [9, 11, 14]  # head units: decoder L0 H1, L0 H3, L1 H2 (encoder heads barely move this random model)
SCALE = 2.0  # magnitude of the planted means


def build_planted(units=PLANTED):
    """(model, space, means, train, held_out, reward): the task is 'predict what the model
    predicts when exactly PLANTED is patched'; the reward is minus the KL to that prediction."""
    model = random_model(seed=3)
    space = UnitSpace.for_model(model, "head")
    generator = torch.Generator().manual_seed(0)
    mae = model.config.mae
    shape = {"encoder": (mae.num_heads, mae.embed_dim // mae.num_heads),
             "decoder": (mae.decoder_num_heads, mae.decoder_embed_dim // mae.decoder_num_heads)}
    means = {site: SCALE * torch.randn(model.grid.num_slots, *shape[site.split(".")[0]], generator=generator)
             for site in space.sites}
    source = SyntheticPascal(seed=7)
    prompts = build_prompts(source, "lowlight", 0, 12, model.grid, seed=1, split="trn")
    train, held_out = prompts.select(range(8)), prompts.select(range(8, 12))
    mask = torch.zeros(len(space), dtype=torch.bool)
    mask[units] = True
    from interp.taskvectors.patching import MeanPatcher

    patcher = MeanPatcher(model, means, "zero_shot", space)
    with torch.no_grad():
        targets = {id(b): torch.log_softmax(patcher.forward(b.canvases, mask[None]), -1) for b in (train, held_out)}

    def reward_for(batch):
        def reward(logits, canvases, rows):
            target = targets[id(batch)][rows.cpu()]
            return -(target.exp() * (target - torch.log_softmax(logits, -1))).sum(-1).mean(-1)
        return reward

    return model, space, means, train, held_out, reward_for, mask


@pytest.fixture(scope="module")
def planted():
    return build_planted()


def problem_for(planted, taskness=None) -> SearchProblem:
    model, space, means, train, held_out, reward_for, _ = planted
    problem = SearchProblem(model, space, means, train, held_out, reward="token", select_reward="token", taskness=taskness)
    # the planted task is scored by KL to its own prediction, on each prompt batch
    problem._reward_fn = lambda kind, prompts: reward_for(prompts)  # noqa: SLF001 - test objective
    return problem


SETTINGS = {
    "reinforce": {"steps": 60, "samples": 64, "eval_every": 5, "select": "threshold", "lr": 0.2},
    "gradient": {"steps": 60, "eval_every": 5, "lr": 0.2, "sparsity": 1e-3},
    "attribution": {},
    "greedy": {"pool": 16},
    "random": {"draws": 400, "units": 3},
    "taskness": {},
    "prune": {},
    "sweep": {},
}


@pytest.mark.parametrize("method", list(METHODS))
def test_method_recovers_planted_units(planted, method: str) -> None:
    mask = planted[-1]
    taskness = mask.double() + 0.1 * torch.rand(len(mask), generator=torch.Generator().manual_seed(1))
    problem = problem_for(planted, taskness if method == "taskness" else None)
    result = run_search(method, problem, method_config(method, **SETTINGS[method]), progress=False)
    assert result.mask.tolist() == mask.tolist(), f"{method} kept {result.mask.nonzero().flatten().tolist()}"
    assert result.held_out_score == pytest.approx(0.0, abs=1e-5)
    assert result.budget.forwards > 0 and result.budget.seconds > 0
    assert result.budget.select_forwards <= result.budget.forwards


@pytest.mark.parametrize("method", ["gradient", "greedy", "random", "prune"])
def test_killed_search_resumes_to_the_same_result(planted, method: str, tmp_path) -> None:
    cfg = method_config(method, **{**SETTINGS[method], "steps": 12, "draws": 40})
    full = run_search(method, problem_for(planted), cfg, progress=False)
    problem = problem_for(planted)
    calls = [0]

    def dies_after_a_few(score):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] > 3:
                raise KeyboardInterrupt
            return score(*args, **kwargs)
        return wrapped

    problem.mean_rewards = dies_after_a_few(problem.mean_rewards)
    problem.gated_rewards = dies_after_a_few(problem.gated_rewards)
    with pytest.raises(KeyboardInterrupt):
        run_search(method, problem, cfg, checkpoint=tmp_path / "ckpt.pt", progress=False)
    resumed = run_search(method, problem_for(planted), cfg, checkpoint=tmp_path / "ckpt.pt", progress=False)
    assert torch.equal(resumed.mask, full.mask) and torch.allclose(resumed.scores, full.scores)
    assert resumed.budget.forwards == full.budget.forwards
    other = method_config(method, **{**SETTINGS[method], "steps": 13, "draws": 41, "pool": 15, "drop": 0.3})
    with pytest.raises(ResumeConflict, match="made with another config"):
        run_search(method, problem_for(planted), other, checkpoint=tmp_path / "ckpt.pt", progress=False)
