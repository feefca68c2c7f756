"""``reinforce``: the official REINFORCE search (:mod:`interp.taskvectors.reinforce`) on a
:class:`SearchProblem`, counting its forwards and seconds.

Sample ``i`` of a step is scored on training prompt ``i mod n`` with the problem's train
reward; every ``eval_every`` steps the policy (thresholded or sampled, ``select``) is scored
on the held-out prompts and the best kept. The kept task vector is the best policy's units
with ``p > 0.5``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import Tensor

from interp.io import atomic_write
from interp.taskvectors.reinforce import ReinforceConfig, reinforce_loop
from interp.taskvectors.search.base import Budget, SearchProblem, SearchResult, SearchResumeError, config_dict

Config = ReinforceConfig


def run(problem: SearchProblem, cfg: ReinforceConfig = ReinforceConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    config = config_dict(cfg)
    sidecar = _Sidecar(Path(checkpoint) if checkpoint is not None else None, config)
    n_train = len(problem.train)
    started = time.perf_counter() - sidecar.seconds

    def losses(samples: Tensor) -> Tensor:
        which = torch.arange(len(samples)) % n_train
        loss = -problem.rewards(problem.train, which, samples, problem.reward)
        sidecar.record(time.perf_counter() - started)
        return loss

    def evaluate(mask: Tensor) -> float:
        return float(problem.held_out_score(mask[None])[0])

    state = reinforce_loop(len(problem.space), losses, evaluate, cfg, checkpoint=checkpoint, progress=progress)
    # what the run spent, also over resumes (every log row is one step; eval rows scored the held-out set)
    evals = sum("eval_score" in row for row in state.log)
    n_held = len(problem.held_out)
    budget = Budget(forwards=len(state.log) * cfg.samples + evals * n_held, select_forwards=evals * n_held)
    mask = state.best_logits > 0
    score = state.best_score
    if cfg.select != "threshold" or not torch.isfinite(torch.tensor(score)):
        score = float(problem.held_out_score(mask[None])[0])
        budget.forwards += n_held
        budget.select_forwards += n_held
    budget.seconds = time.perf_counter() - started
    sidecar.record(budget.seconds)
    return SearchResult("reinforce", mask, torch.sigmoid(state.best_logits), score, budget, config, state.log)


class _Sidecar:
    """The loop's checkpoint holds no config or time: ``<checkpoint>.search.json`` records both,
    and a resume with another config is refused."""

    def __init__(self, path: Path | None, config: dict) -> None:
        self.path = None if path is None else path.with_suffix(path.suffix + ".search.json")
        self.config, self.seconds = json.loads(json.dumps(config)), 0.0
        if self.path is not None and self.path.exists() and path.exists():
            saved = json.loads(self.path.read_text())
            if saved["config"] != self.config:
                raise SearchResumeError(
                    f"{path} was written by REINFORCE with {saved['config']}, this search uses {self.config}",
                    fix="use another checkpoint path, or delete it to start over")
            self.seconds = float(saved["seconds"])

    def record(self, seconds: float) -> None:
        if self.path is not None:
            with atomic_write(self.path) as tmp:
                tmp.write_text(json.dumps({"config": self.config, "seconds": seconds}) + "\n")
