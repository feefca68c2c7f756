"""``greedy``: forward selection from the single-unit sweep, batched.

Score every unit alone on the training prompts (one batched sweep), keep the ``pool`` best as
candidates, then repeatedly add the candidate that most improves the training reward of the
current set (all candidates of a round in batched forwards), until none improves it or
``max_units`` are chosen. The prefix with the best held-out score is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.taskvectors.search.base import Checkpoint, SearchProblem, SearchResult, best_of, config_dict


@dataclass
class GreedyConfig:
    pool: int = field(default=24, metadata={"help": "candidates kept from the single-unit sweep", "min": 1})
    max_units: int = field(default=16, metadata={"help": "most units added", "min": 1})
    tol: float = field(default=0.0, metadata={"help": "an added unit must raise the training reward by more than this", "min": 0})
    seed: int = field(default=0, metadata={"help": "unused (deterministic); every method takes a seed"})


Config = GreedyConfig


def run(problem: SearchProblem, cfg: GreedyConfig = GreedyConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    store = Checkpoint.of(checkpoint, "greedy", config_dict(cfg))
    n_units = len(problem.space)
    saved = store.load()
    if saved is not None:
        problem.budget.add(saved["budget"])
        single, chosen, trace, done = saved["single"], list(saved["chosen"]), list(saved["trace"]), saved["done"]
    else:
        with problem.budget.timing():
            single = problem.train_score(torch.eye(n_units, dtype=torch.bool))  # [U] each unit alone
            problem.single_unit = single  # the sweep control reuses it
        chosen, trace, done = [], [], False
        store.save({"single": single, "chosen": chosen, "trace": trace, "done": done}, problem.budget)
    pool = torch.sort(-single, stable=True).indices[: cfg.pool].tolist()
    if not trace:
        with problem.budget.timing():
            trace = [float(problem.train_score(torch.zeros(1, n_units, dtype=torch.bool))[0])]
    bar = tqdm(total=cfg.max_units, initial=len(chosen), desc="greedy", disable=not progress)
    while not done and len(chosen) < min(cfg.max_units, len(pool)):
        with problem.budget.timing():
            options = [u for u in pool if u not in chosen]
            masks = torch.zeros(len(options), n_units, dtype=torch.bool)
            masks[:, chosen] = True
            masks[torch.arange(len(options)), options] = True
            scores = problem.train_score(masks)
            best = int(torch.nan_to_num(scores, nan=float("-inf")).argmax())
            if float(scores[best]) > trace[-1] + cfg.tol:
                chosen.append(options[best])
                trace.append(float(scores[best]))
            else:
                done = True
        bar.update(1)
        store.save({"single": single, "chosen": chosen, "trace": trace, "done": done}, problem.budget)
    bar.close()
    if not chosen:  # no unit helps on the training prompts: keep the best single unit
        chosen = pool[:1]
    with problem.budget.timing():
        prefixes = torch.zeros(len(chosen), n_units, dtype=torch.bool)
        for i in range(len(chosen)):
            prefixes[i, chosen[: i + 1]] = True
        best, held = best_of(problem, prefixes)
    ranking = single.clone() - single.abs().max() - 1  # unchosen units after every chosen one
    ranking[chosen] = torch.arange(len(chosen), 0, -1, dtype=ranking.dtype)
    log = [{"units": i + 1, "unit": u, "train_reward": t, "held_out_score": float(h)}
           for i, (u, t, h) in enumerate(zip(chosen, trace[1:] + [float("nan")], held))]
    return SearchResult("greedy", prefixes[best], ranking, float(held[best]), problem.budget, config_dict(cfg), log)
