"""``taskness``: the top-k units by taskness (between- over within-task variance), ``k`` chosen
by held-out score on a size grid. No gradient, no search: the cheapest baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from interp.taskvectors.search.base import SearchProblem, SearchResult, best_top_k, config_dict


@dataclass
class TasknessConfig:
    max_units: int | None = field(default=None, metadata={"help": "largest top-k tried on the held-out prompts (none: all units)", "min": 1})
    seed: int = field(default=0, metadata={"help": "unused (deterministic); every method takes a seed"})


Config = TasknessConfig


def run(problem: SearchProblem, cfg: TasknessConfig = TasknessConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    if problem.taskness is None:
        raise ValueError("the taskness method needs per-unit taskness: build the SearchProblem with "
                         "taskness=unit_taskness(table, space) (the pipeline's taskness.csv)")
    return best_top_k(problem, "taskness", problem.taskness.double(), cfg.max_units, config_dict(cfg))
