"""``sweep``: every unit patched alone on the training prompts (one batched sweep), units ranked
by that reward, and the top-k with the best held-out score kept (``k`` up to all units)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp.taskvectors.search.base import SearchProblem, SearchResult, best_top_k, config_dict, ranking


@dataclass
class SweepConfig:
    max_units: int | None = field(default=None, metadata={"help": "largest top-k tried on the held-out prompts (none: all units)", "min": 1})
    seed: int = field(default=0, metadata={"help": "unused (deterministic); every method takes a seed"})


Config = SweepConfig


def run(problem: SearchProblem, cfg: SweepConfig = SweepConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    eye = torch.eye(len(problem.space), dtype=torch.bool)
    single = ranking(problem, "sweep", cfg, checkpoint, lambda: problem.train_score(eye))  # [U] each unit alone
    problem.single_unit = single  # the sweep control reuses it
    return best_top_k(problem, "sweep", single, cfg.max_units, config_dict(cfg))
