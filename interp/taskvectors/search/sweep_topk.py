"""``sweep``: every unit patched alone on the training prompts (one batched sweep), units ranked
by that reward, and the top-k with the best held-out score kept (``k`` up to all units)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp.taskvectors.search.base import Checkpoint, SearchProblem, SearchResult, best_top_k, config_dict


@dataclass
class SweepConfig:
    max_units: int | None = field(default=None, metadata={"help": "largest top-k tried on the held-out prompts (none: all units)", "min": 1})
    seed: int = field(default=0, metadata={"help": "unused (deterministic); every method takes a seed"})


Config = SweepConfig


def run(problem: SearchProblem, cfg: SweepConfig = SweepConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    store = Checkpoint.of(checkpoint, "sweep", config_dict(cfg))
    saved = store.load()
    if saved is not None:
        problem.budget.add(saved["budget"])
        single = saved["single"]
    else:
        with problem.budget.timing():
            single = problem.train_score(torch.eye(len(problem.space), dtype=torch.bool))  # [U] each unit alone
        store.save({"single": single}, problem.budget)
    problem.single_unit = single  # the sweep control reuses it
    return best_top_k(problem, "sweep", single, cfg.max_units, config_dict(cfg))
