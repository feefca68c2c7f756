"""Matched budgets: the cost models are what the methods spend."""

from __future__ import annotations

import pytest

from interp.taskvectors.search import method_config, run_search
from interp.taskvectors.search.budgets import backward_cost, budget_config, effective_forwards, prune_cost
from tests.taskvectors.search.test_planted import build_planted, problem_for


@pytest.fixture(scope="module")
def planted():
    return build_planted()


@pytest.mark.parametrize("method", ["prune", "random", "greedy"])
def test_configured_method_spends_about_the_budget(planted, method) -> None:
    problem = problem_for(planted)
    budget = 900
    cfg = budget_config(method, method_config(method), problem, budget, cost=2.0)
    result = run_search(method, problem, cfg, progress=False)
    assert budget * 0.5 <= result.budget.forwards <= budget, (cfg, result.budget)


def test_prune_cost_model_is_exact(planted) -> None:
    problem = problem_for(planted)
    cfg = method_config("prune", drop=0.3, block=2)
    result = run_search("prune", problem, cfg, progress=False)
    assert result.budget.forwards == prune_cost(len(problem.space), len(problem.train), len(problem.held_out), 0.3, 2)


def test_backward_cost_is_measured_and_leaves_the_budget(planted) -> None:
    problem = problem_for(planted)
    cost = backward_cost(problem)
    assert 0.0 < cost < 20.0 and problem.budget.forwards == 0 and problem.budget.backwards == 0
    problem.budget.forwards, problem.budget.backwards = 10, 4
    assert effective_forwards(problem.budget, 1.5) == 16.0
