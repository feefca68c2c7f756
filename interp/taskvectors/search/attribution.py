"""``attribution``: attribution patching, then the best top-k by held-out score.

The first-order estimate of patching unit ``u`` alone is ``(mean - z) . dR/dz`` summed over
the unit's cells: exactly ``dR/dg_u`` of the relaxed patch ``z + g (mean - z)`` at ``g = 0``,
so one forward and one backward over the training prompts give every unit's estimate. Units
are ranked by it, and the top-k (``k`` on a size grid) with the best held-out score is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from interp.taskvectors.search.base import (
    SearchProblem, SearchResult, best_top_k, config_dict, ranking,
)


@dataclass
class AttributionConfig:
    max_units: int | None = field(default=None, metadata={"help": "largest top-k tried on the held-out prompts (none: all units)", "min": 1})
    seed: int = field(default=0, metadata={"help": "unused (deterministic); every method takes a seed"})


Config = AttributionConfig


def estimates(problem: SearchProblem) -> Tensor:
    """Every unit's first-order effect on the mean training reward, ``[U]`` (one forward + backward)."""
    gates = torch.zeros(len(problem.space), dtype=torch.float32, device=problem.device, requires_grad=True)
    reward = problem.gated_rewards(gates).mean()
    (grad,) = torch.autograd.grad(reward, gates)
    problem.count_backward(len(problem.train))
    return grad.detach().double().cpu()


def run(problem: SearchProblem, cfg: AttributionConfig = AttributionConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    scores = ranking(problem, "attribution", cfg, checkpoint, lambda: estimates(problem))
    return best_top_k(problem, "attribution", scores, cfg.max_units, config_dict(cfg))
