"""``prune``: backward elimination from every unit, batched.

Start from the full set (patching every unit is often the strongest single control). Each
round scores, on the training prompts and the training reward, the set with one block of
remaining units removed, for every block at once (one batched call through the scoring
engine), and drops the ``drop`` fraction of remaining units whose removal hurts least (the
least useful chunk). Blocks are single units by default; ``block > 1`` groups the remaining
units, in their current usefulness order, into blocks of that many (fewer forwards on large
unit spaces). Rounds continue down to one unit; every round's kept set is then scored on the
held-out search prompts, and the best one is the task vector. ``log`` holds the
quality-vs-size curve (units, training reward, held-out score per round) and ``scores`` ranks
units by how late they were eliminated.

Cost: a round costs ``blocks x n_train`` forwards; with ``drop = 0.25`` about four times the
cost of the first round in all, plus one held-out pass per round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.taskvectors.search.base import Checkpoint, SearchProblem, SearchResult, best_of, config_dict


@dataclass
class PruneConfig:
    drop: float = field(default=0.25, metadata={"help": "share of the remaining units removed per round (at least one)", "above": 0.0})
    block: int = field(default=1, metadata={"help": "units removed together when a removal is scored (larger: fewer forwards)", "min": 1})
    min_units: int = field(default=1, metadata={"help": "stop when this many units remain", "min": 1})
    seed: int = field(default=0, metadata={"help": "unused (deterministic); every method takes a seed"})

    def __post_init__(self) -> None:
        if not 0 < self.drop < 1:
            raise ValueError(f"drop must be in (0, 1), got {self.drop}")
        if self.block < 1 or self.min_units < 1:
            raise ValueError(f"block and min_units must be >= 1, got {self.block}, {self.min_units}")


Config = PruneConfig


def run(problem: SearchProblem, cfg: PruneConfig = PruneConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    store = Checkpoint.of(checkpoint, "prune", config_dict(cfg))
    n_units = len(problem.space)
    saved = store.load()
    if saved is not None:
        problem.budget.add(saved["budget"])
        kept, usefulness = saved["kept"], saved["usefulness"]
        order, trace = list(saved["order"]), [tuple(t) for t in saved["trace"]]
    else:
        kept = torch.ones(n_units, dtype=torch.bool)
        usefulness = torch.zeros(n_units, dtype=torch.float64)  # -(training reward without the unit's block)
        order: list[int] = []  # units in the order they were removed
        with problem.budget.timing():
            trace = [(n_units, float(problem.train_score(kept[None])[0]))]  # (units, training reward) per round
    bar = tqdm(total=len(_rounds(n_units, cfg)), initial=len(trace) - 1, desc="prune", disable=not progress)
    while int(kept.sum()) > cfg.min_units:
        with problem.budget.timing():
            remaining = kept.nonzero().flatten()
            blocks = _blocks(remaining, usefulness, cfg.block)
            masks = kept.expand(len(blocks), -1).clone()
            for i, block in enumerate(blocks):
                masks[i, block] = False
            without = problem.train_score(masks)  # [blocks] training reward with each block removed
            for i, block in enumerate(blocks):
                usefulness[block] = -float(without[i])
            # the blocks whose removal leaves the reward highest are the least useful
            n_drop = min(max(1, math.floor(cfg.drop * len(remaining))), len(remaining) - cfg.min_units)
            ranked = torch.sort(torch.nan_to_num(without, nan=float("inf")), descending=True, stable=True).indices.tolist()
            dropped: list[int] = []
            for i in ranked:
                if len(dropped) >= n_drop:
                    break
                dropped += blocks[i][: n_drop - len(dropped)].tolist()
            kept[dropped] = False
            order += dropped
            trace.append((int(kept.sum()), float(problem.train_score(kept[None])[0])))
        bar.update(1)
        store.save({"kept": kept, "usefulness": usefulness, "order": order, "trace": trace}, problem.budget)
    bar.close()
    with problem.budget.timing():
        sets = _kept_sets(n_units, order, [units for units, _ in trace])
        best, held = best_of(problem, sets)
    ranking = torch.zeros(n_units, dtype=torch.float64)  # eliminated later = ranked higher
    ranking[order] = torch.arange(1, len(order) + 1, dtype=torch.float64)
    ranking[kept] = len(order) + 1
    log = [{"units": units, "train_reward": reward, "held_out_score": float(h)} for (units, reward), h in zip(trace, held)]
    return SearchResult("prune", sets[best], ranking, float(held[best]), problem.budget, config_dict(cfg), log)


def _rounds(n_units: int, cfg: PruneConfig) -> list[int]:
    """Remaining units after each round."""
    sizes, n = [], n_units
    while n > cfg.min_units:
        n -= min(max(1, math.floor(cfg.drop * n)), n - cfg.min_units)
        sizes.append(n)
    return sizes


def _blocks(remaining: torch.Tensor, usefulness: torch.Tensor, block: int) -> list[torch.Tensor]:
    """The remaining units in blocks of ``block``, least useful (last round) first."""
    if block == 1:
        return [remaining[i : i + 1] for i in range(len(remaining))]
    ordered = remaining[torch.sort(usefulness[remaining], stable=True).indices]
    return [ordered[i : i + block] for i in range(0, len(ordered), block)]


def _kept_sets(n_units: int, order: list[int], sizes: list[int]) -> torch.Tensor:
    """``[rounds + 1, U]``: the full set, then the set kept after each round."""
    sets = torch.ones(len(sizes), n_units, dtype=torch.bool)
    removed = 0
    for i, size in enumerate(sizes):
        removed = n_units - size
        sets[i, order[:removed]] = False
    return sets
