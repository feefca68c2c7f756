"""Matched budgets: every method configured to spend about the same number of forward passes.

A method's cost is counted in prompt-forwards (:class:`~interp.taskvectors.search.base.Budget`);
a prompt-backward counts as ``backward_cost`` forwards, measured on the problem itself
(:func:`backward_cost`: the time of a gated forward + backward over the training prompts, less
a forward's, over a forward's). :func:`budget_config` sizes a method's own knob to a budget
``F`` from its cost model (training prompts ``T``, held-out prompts ``H``, units ``U``, ``G``
sizes on the size grid, the final size scan ``G x H`` included):

=============  =============================================================================
``reinforce``  ``steps = (F - G H) / (samples + H / eval_every)``
``gradient``   ``steps = (F - G H) / (T samples (1 + c) + H / eval_every)``
``random``     ``draws = F / H``
``prune``      the smallest ``drop`` (finest elimination) whose rounds fit; then larger blocks
``greedy``     the largest ``max_units`` (pool = its double) that fits
=============  =============================================================================

``attribution`` (one forward and backward), ``taskness`` (no training forward) and ``sweep``
(``U`` rows) have a fixed cost and run as they are: they spend less than the budget, and the
comparison reports what they spent. :func:`effective_forwards` is the cost a result is
reported at (forwards + ``c`` x backwards).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import torch

from interp.taskvectors.search.base import Budget, SearchProblem, size_grid

#: methods whose cost does not scale with a budget
FIXED_COST = ("attribution", "taskness", "sweep")


def backward_cost(problem: SearchProblem, repeats: int = 2) -> float:
    """A prompt-backward's cost in prompt-forwards on this problem (gated relaxed patch, training
    prompts; the median of ``repeats`` timings, so noisy on a loaded machine). The problem's budget
    is left as it was."""
    saved = Budget(**vars(problem.budget))
    forward, both = [], []
    try:
        for _ in range(repeats):
            gates = torch.full((len(problem.space),), 0.5, device=problem.device, requires_grad=True)
            start = time.perf_counter()
            with torch.no_grad():
                problem.gated_rewards(gates.detach())
            forward.append(time.perf_counter() - start)
            start = time.perf_counter()
            problem.gated_rewards(gates).mean().backward()
            both.append(time.perf_counter() - start)
    finally:
        problem.budget = saved
    f, b = sorted(forward)[len(forward) // 2], sorted(both)[len(both) // 2]
    return max(0.0, (b - f) / max(f, 1e-9))


def effective_forwards(budget: Budget, cost: float) -> float:
    """What a search spent, in forwards: forwards + ``cost`` x backwards."""
    return budget.forwards + cost * budget.backwards


def prune_cost(n_units: int, n_train: int, n_held: int, drop: float, block: int = 1, min_units: int = 1) -> int:
    """Forwards :mod:`~interp.taskvectors.search.prune` spends with these options."""
    total, n, rounds = n_train, n_units, 1  # the full set's training reward
    while n > min_units:
        total += math.ceil(n / block) * n_train + n_train
        n -= min(max(1, math.floor(drop * n)), n - min_units)
        rounds += 1
    return total + rounds * n_held


def greedy_cost(n_units: int, n_train: int, n_held: int, pool: int, max_units: int) -> int:
    """Forwards :mod:`~interp.taskvectors.search.greedy` spends at most with these options."""
    rounds = min(max_units, pool)
    return n_units * n_train + n_train + sum(pool - i for i in range(rounds)) * n_train + rounds * n_held


def budget_config(method: str, cfg: Any, problem: SearchProblem, forwards: float, cost: float) -> Any:
    """``cfg`` (the method's Config) with its size knob set so the method spends about ``forwards``."""
    T, H, U = len(problem.train), len(problem.held_out), len(problem.space)
    scan = len(size_grid(U)) * H
    if method == "reinforce":
        per_step = cfg.samples + H / max(cfg.eval_every, 1)
        return replace(cfg, steps=max(1, int((forwards - scan) // per_step)))
    if method == "gradient":
        per_step = T * cfg.samples * (1 + cost) + H / max(cfg.eval_every, 1)
        return replace(cfg, steps=max(1, int((forwards - scan) // per_step)))
    if method == "random":
        return replace(cfg, draws=max(1, int(forwards // H)))
    if method == "prune":
        for block in (1, 2, 4, 8, 16, 32):
            for drop in (0.05, 0.1, 0.15, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8):
                if prune_cost(U, T, H, drop, block, cfg.min_units) <= forwards:
                    return replace(cfg, drop=drop, block=block)
        return replace(cfg, drop=0.8, block=32)
    if method == "greedy":
        best = 1
        for m in range(1, U + 1):
            if greedy_cost(U, T, H, min(2 * m, U), m) > forwards:
                break
            best = m
        return replace(cfg, max_units=best, pool=min(2 * best, U))
    return cfg
