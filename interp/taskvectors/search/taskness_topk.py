"""``taskness``: the top-k units by taskness (between- over within-task variance), ``k`` chosen
by held-out score on a size grid. No gradient, no search: the cheapest baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from interp.taskvectors.search.base import SearchProblem, SearchResult, best_of, config_dict, size_grid, top_k_masks


@dataclass
class TasknessConfig:
    max_units: int | None = None  # largest top-k tried (default: all units)
    seed: int = 0  # unused (deterministic)


Config = TasknessConfig


def run(problem: SearchProblem, cfg: TasknessConfig = TasknessConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    if problem.taskness is None:
        raise ValueError("the taskness method needs per-unit taskness: build the SearchProblem with "
                         "taskness=unit_taskness(table, space) (the pipeline's taskness.csv)")
    scores = problem.taskness.double()
    with problem.budget.timing():
        ks = size_grid(len(scores), cfg.max_units)
        candidates = top_k_masks(scores, ks)
        best, held = best_of(problem, candidates)
    log = [{"units": k, "held_out_score": float(s)} for k, s in zip(ks, held)]
    return SearchResult("taskness", candidates[best], scores, float(held[best]), problem.budget, config_dict(cfg), log)
