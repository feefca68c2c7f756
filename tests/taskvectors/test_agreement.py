"""Reward agreement: a reward agrees with itself, a planted anti-correlated reward is warned
about, and the measurement runs through the search problem's scoring engine."""

from __future__ import annotations

import warnings

import pytest
import torch

from interp.taskvectors.agreement import (
    MIN_PEARSON, RewardDisagreement, pearson, random_masks, ranks, reward_agreement, sign_agreement, spearman, warn_if_low,
)
from interp.taskvectors.search import SearchProblem
from tests.taskvectors.search.test_planted import build_planted


@pytest.fixture(scope="module")
def planted():
    model, space, means, train, held_out, reward_for, mask = build_planted()
    metric = reward_for(held_out)  # the planted task's "official" reward: minus the KL to the planted prediction

    def anti(logits, canvases, rows):  # a training reward that is exactly the opposite of the metric
        return -metric(logits, canvases, rows)

    def noisy(logits, canvases, rows):  # the metric plus a small monotone distortion: agrees
        value = metric(logits, canvases, rows)
        return value + 0.1 * value.pow(3)

    problem = SearchProblem(model, space, means, train, held_out, reward=anti, select_reward=metric)
    return problem, metric, anti, noisy


def test_a_reward_agrees_with_itself_and_opposite_one_is_warned(planted) -> None:
    problem, metric, anti, noisy = planted
    before = (problem.budget.forwards, problem.budget.select_forwards)
    same, opposite, close = reward_agreement(problem, [metric, anti, noisy], metric, n_masks=12, batch=4,
                                             names=["metric", "token", "close"])
    assert (problem.budget.forwards, problem.budget.select_forwards) == before  # the search's budget is untouched
    assert same.forwards == 3 * 12 * len(problem.held_out)  # the metric is scored once, reused for itself
    assert same.pearson == pytest.approx(1.0, abs=1e-12) and same.spearman == pytest.approx(1.0, abs=1e-12)
    assert same.sign_agreement == 1.0 and not same.low and same.warning() is None
    assert opposite.pearson == pytest.approx(-1.0, abs=1e-12) and opposite.sign_agreement == 0.0 and opposite.low
    assert close.spearman == pytest.approx(1.0, abs=1e-12) and close.pearson > MIN_PEARSON and not close.low
    with pytest.warns(RewardDisagreement, match="token reward agrees poorly"):
        warn_if_low(opposite)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_low(same)


def test_token_and_soft_rewards_against_pixel_on_a_random_model() -> None:
    from interp.data.synthetic import SyntheticPascal
    from interp.data.tasks import build_prompts
    from interp.taskvectors.collect import collect
    from interp.taskvectors.units import UnitSpace
    from tests.conftest import random_model

    model = random_model(with_vqgan=True)
    space = UnitSpace.for_model(model, "group")
    prompts = build_prompts(SyntheticPascal(seed=3), "lowlight", 0, 6, model.grid, seed=0, split="trn")
    means = collect(model, [prompts.canvases], "one_shot", task="lowlight", progress=False)
    problem = SearchProblem(model, space, means, prompts.select(range(3)), prompts.select(range(3, 6)))
    rows = reward_agreement(problem, ["token", "soft", "pixel"], "pixel", n_masks=6, batch=3)
    assert [r.reward for r in rows] == ["token", "soft", "pixel"] and all(r.task == "lowlight" for r in rows)
    assert rows[2].pearson == pytest.approx(1.0) and rows[2].sign_agreement == 1.0
    assert all(-1.0 <= r.pearson <= 1.0 and 0.0 <= r.sign_agreement <= 1.0 for r in rows[:2])
    assert rows[0].forwards == 3 * 6 * 3 and problem.budget.forwards == 0


def test_statistics() -> None:
    assert ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0) and spearman(x, x.exp()) == pytest.approx(1.0)
    assert pearson(x, torch.ones(5)) != pearson(x, torch.ones(5))  # constant: NaN
    groups = torch.tensor([0, 0, 1, 1])
    assert sign_agreement(torch.tensor([1.0, 2.0, 5.0, 3.0]), torch.tensor([0.0, 1.0, 0.0, 1.0]), groups) == 0.5
    masks = random_masks(200, 5, seed=1)
    assert masks[0].sum() == 0 and masks[-1].sum() == 200 and 60 < masks[2].sum() < 140


def test_pick_reward_takes_the_cheapest_that_agrees() -> None:
    from interp.taskvectors.agreement import Agreement, pick_reward

    def row(reward, r):
        return Agreement("inpainting", reward, "pixel", r, r, 0.5, 8, 4, 0)

    assert pick_reward([row("token", 0.9), row("soft", 0.95)]) == "token"
    assert pick_reward([row("token", 0.3), row("soft", 0.95)]) == "pixel"  # forward-only: the official reward
    assert pick_reward([row("token", 0.3), row("soft", 0.95)], differentiable=True) == "soft"
    assert pick_reward([row("token", 0.3), row("soft", 0.1)], differentiable=True) == "token"  # best of the two
    assert pick_reward([row("token", float("nan"))]) == "pixel" and pick_reward([]) == "pixel"


def test_search_agreement_is_measured_once_per_run_and_warns(tmp_path) -> None:
    from interp.data.synthetic import SyntheticPascal
    from interp.data.tasks import build_prompts
    from interp.run import RunDir
    from interp.taskvectors.agreement import search_agreement
    from interp.taskvectors.collect import collect
    from interp.taskvectors.units import UnitSpace
    from tests.conftest import random_model

    model = random_model(with_vqgan=True)
    space = UnitSpace.for_model(model, "group")
    prompts = build_prompts(SyntheticPascal(seed=3), "colorization", 0, 5, model.grid, seed=0, split="trn")
    means = collect(model, [prompts.canvases], "one_shot", task="colorization", progress=False)
    problem = SearchProblem(model, space, means, prompts.select(range(2)), prompts.select(range(2, 5)), reward="pixel")
    run = RunDir(tmp_path / "run")
    run.path.mkdir(parents=True)
    official = search_agreement(problem, run, n_masks=4, batch=2)  # the metric itself: nothing to measure
    assert (official.pearson, official.masks, official.forwards) == (1.0, 0, 0) and not (run.path / "agreement.csv").exists()
    problem.reward = "token"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RewardDisagreement)  # a random model: any agreement
        first = search_agreement(problem, run, n_masks=4, batch=2)
    assert first.reward == "token" and first.forwards == 2 * 4 * 3 and (run.path / "agreement.csv").exists()
    problem.rewards = None  # a second search reads the run's table, scores nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RewardDisagreement)
        again = search_agreement(problem, run, n_masks=4, batch=2)
    assert again.pearson == pytest.approx(first.pearson, nan_ok=True) and again.masks == 4
    # a recorded low agreement is warned about at every search start
    import pandas as pd

    table = pd.read_csv(run.path / "agreement.csv")
    table.loc[0, "pearson"] = -0.3
    table.to_csv(run.path / "agreement.csv", index=False)
    with pytest.warns(RewardDisagreement, match="Pearson -0.30"):
        assert search_agreement(problem, run, n_masks=4).low


def test_auto_reward_falls_back_to_the_official_one_when_the_token_reward_disagrees(tmp_path) -> None:
    import pandas as pd

    from interp.data.synthetic import SyntheticPascal
    from interp.data.tasks import build_prompts
    from interp.run import RunDir
    from interp.taskvectors.agreement import Agreement, choose_reward, record
    from interp.taskvectors.collect import collect
    from interp.taskvectors.units import UnitSpace
    from tests.conftest import random_model

    model = random_model(with_vqgan=True)
    space = UnitSpace.for_model(model, "group")
    prompts = build_prompts(SyntheticPascal(seed=3), "inpainting", 0, 5, model.grid, seed=0, split="trn")
    means = collect(model, [prompts.canvases], "one_shot", task="inpainting", progress=False)
    problem = SearchProblem(model, space, means, prompts.select(range(2)), prompts.select(range(2, 5)), reward="auto")
    run = RunDir(tmp_path / "run")
    run.path.mkdir(parents=True)
    # planted measurements: the token reward disagrees, the soft one agrees
    record(run, [Agreement("inpainting", "token", "pixel", -0.4, -0.3, 0.55, 24, 3, 100),
                 Agreement("inpainting", "soft", "pixel", 0.9, 0.9, 0.9, 24, 3, 100)])
    chosen = choose_reward(problem, run)
    assert problem.reward == "pixel" and chosen.pearson == 1.0
    chosen = choose_reward(problem, run, differentiable=True)
    assert problem.reward == "soft" and chosen.pearson == 0.9
    table = pd.read_csv(run.path / "agreement.csv")
    table.loc[table.reward == "token", "pearson"] = 0.8
    table.to_csv(run.path / "agreement.csv", index=False)
    assert choose_reward(problem, run).reward == "token" and problem.reward == "token"
