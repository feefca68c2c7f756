"""``random``: best-of-k random unit sets, scored on the held-out search prompts.

``draws`` distinct sets of ``units`` units each (or, with ``units=None``, sizes cycling over
the top-k size grid up to ``max_units``), drawn uniformly or from given per-unit ``weights``
(the stratified control); the set with the best held-out score is kept. This is the
matched-budget control of every search: give it the search's held-out forwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.data.source import derive_seed
from interp.taskvectors.search.base import Checkpoint, SearchProblem, SearchResult, config_dict, size_grid


@dataclass
class RandomConfig:
    draws: int = field(default=40, metadata={"help": "random unit sets scored on the held-out prompts", "min": 1})
    units: int | None = field(default=None, metadata={"help": "units per set (none: sizes cycle over the top-k size grid)", "min": 1})
    max_units: int | None = field(default=32, metadata={"help": "largest set size on the grid (none: all units)", "min": 1})
    sets_per_batch: int = field(default=8, metadata={"help": "sets scored (and checkpointed) together", "min": 1})
    seed: int = field(default=0, metadata={"help": "seed of the draws"})


Config = RandomConfig


def draw_sets(n_units: int, sizes: list[int], seed: int, weights: Tensor | None = None, tries: int = 20) -> Tensor:
    """``[len(sizes), U]`` distinct random sets (where the space allows), set ``i`` of ``sizes[i]`` units."""
    generator = torch.Generator().manual_seed(derive_seed("random-sets", seed))
    w = torch.ones(n_units, dtype=torch.float64) if weights is None else weights.double().clamp_min(0)
    out, seen = torch.zeros(len(sizes), n_units, dtype=torch.bool), set()
    for i, k in enumerate(sizes):
        for _ in range(tries):
            idx = torch.multinomial(w, min(k, int((w > 0).sum())), replacement=False, generator=generator)
            mask = torch.zeros(n_units, dtype=torch.bool)
            mask[idx] = True
            if mask.numpy().tobytes() not in seen:
                break
        seen.add(mask.numpy().tobytes())
        out[i] = mask
    return out


def run(problem: SearchProblem, cfg: RandomConfig = RandomConfig(), checkpoint: str | Path | None = None,
        progress: bool = True, weights: Tensor | None = None) -> SearchResult:
    store = Checkpoint.of(checkpoint, "random", config_dict(cfg))
    n_units = len(problem.space)
    grid = [cfg.units] if cfg.units else size_grid(n_units, cfg.max_units)
    sizes = [grid[i % len(grid)] for i in range(cfg.draws)]
    sets = draw_sets(n_units, sizes, cfg.seed, weights)
    scores = torch.full((cfg.draws,), float("nan"), dtype=torch.float64)
    done = 0
    saved = store.load()
    if saved is not None:
        problem.budget.add(saved["budget"])
        done = saved["done"]
        scores[:done] = saved["scores"][:done]  # only the sets scored so far are saved (no NaN placeholders)
    bar = tqdm(total=cfg.draws, initial=done, desc="random", disable=not progress)
    while done < cfg.draws:
        with problem.budget.timing():
            part = slice(done, min(done + cfg.sets_per_batch, cfg.draws))
            scores[part] = problem.held_out_score(sets[part])
            done = part.stop
        bar.update(part.stop - part.start)
        store.save({"scores": scores[:done].clone(), "done": done}, problem.budget)
    bar.close()
    best = int(torch.nan_to_num(scores, nan=float("-inf")).argmax())
    ranking = sets[best].double()
    log = [{"draw": i, "units": int(sets[i].sum()), "held_out_score": float(s)} for i, s in enumerate(scores)]
    return SearchResult("random", sets[best], ranking, float(scores[best]), problem.budget, config_dict(cfg), log)
