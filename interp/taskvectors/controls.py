"""Controls for a task vector: what a cheap baseline of the same size finds.

Given a reference unit set (the task vector a search kept) each control is a unit set (or a
few, averaged) that evaluation scores beside it:

* ``random`` — as many units drawn uniformly (mean over ``draws`` sets);
* ``stratified`` — as many units with the reference's composition by (stack, token group);
* ``best_of_random`` — best-of-k random sets of the reference's size, chosen on the same
  held-out search prompts with the same number of held-out forwards the search spent;
* ``taskness`` / ``sweep`` — the top units by taskness / by single-unit effect;
* ``all`` / ``none`` — every unit / no unit (zero-shot).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from interp.data.source import derive_seed
from interp.taskvectors.policy import random_like, stratified_like
from interp.taskvectors.search.base import SearchProblem, top_k_masks
from interp.taskvectors.search.random_sets import RandomConfig
from interp.taskvectors.search.random_sets import run as random_search
from interp.taskvectors.units import UnitSpace

CONTROLS: tuple[str, ...] = ("random", "stratified", "best_of_random", "taskness", "sweep", "all", "none")


def random_sets(n_units: int, k: int, seed: int, draws: int = 3) -> Tensor:
    """``[draws, U]`` sets of ``k`` units drawn uniformly."""
    empty = torch.zeros(n_units, dtype=torch.bool)
    return torch.stack([random_like(empty, derive_seed("control-random", seed, i), k=k) for i in range(draws)])


def stratified_sets(reference: Tensor, space: UnitSpace, seed: int, draws: int = 3) -> Tensor:
    """``[draws, U]`` random sets with as many units per (stack, token group) as ``reference``."""
    return torch.stack([stratified_like(space, reference, derive_seed("control-stratified", seed, i)) for i in range(draws)])


def best_of_random(problem: SearchProblem, k: int, select_forwards: int, seed: int) -> Tensor:
    """The best of as many random ``k``-unit sets as ``select_forwards`` held-out forwards score."""
    draws = max(1, select_forwards // max(len(problem.held_out), 1))
    result = random_search(problem, RandomConfig(draws=draws, units=max(k, 1), seed=seed), progress=False)
    return result.mask


def control_masks(problem: SearchProblem, reference: Tensor, select_forwards: int, seed: int,
                  taskness: Tensor | None = None, sweep: Tensor | None = None, draws: int = 3) -> dict[str, Tensor]:
    """Every control for ``reference`` as ``{name: [sets, U]}`` (scores of several sets are averaged).

    ``taskness`` and ``sweep`` are per-unit scores (higher first); controls without them are left out.
    """
    n, k = len(problem.space), int(reference.sum())
    out: dict[str, Any] = {
        "random": random_sets(n, k, seed, draws),
        "stratified": stratified_sets(reference, problem.space, seed, draws),
        "best_of_random": best_of_random(problem, k, select_forwards, seed)[None],
        "all": torch.ones(1, n, dtype=torch.bool),
        "none": torch.zeros(1, n, dtype=torch.bool),
    }
    if taskness is not None:
        out["taskness"] = top_k_masks(taskness, [k])
    if sweep is not None:
        out["sweep"] = top_k_masks(sweep, [k])
    return {name: out[name] for name in CONTROLS if name in out}
