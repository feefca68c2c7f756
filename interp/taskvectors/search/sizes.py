"""The size of a task vector is chosen, not fixed: scan a method's ranking at every size.

A method that ranks units (REINFORCE's probabilities, gradient gate logits, attribution
estimates, taskness, the single-unit sweep, prune's elimination order) implies a kept set of
every size: its top-k. :func:`scan_sizes` scores the top-k for every ``k`` on
:func:`~interp.taskvectors.search.base.size_grid` (1, 2, 3, 4, 6, 8, ... up to *all* units) on
the held-out search prompts, beside the set the method kept itself, and keeps the best; the
scanned curve goes into the result's log (``{"scan_units", "scan_held_out_score"}`` rows), and
:func:`size_curve` reads it back as the method's quality-vs-size curve.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from interp.taskvectors.search.base import SearchProblem, SearchResult, best_of, size_grid, top_k_masks


def scan_sizes(problem: SearchProblem, result: SearchResult, max_units: int | None = None) -> SearchResult:
    """``result`` with its kept set replaced by the best top-k of its ranking (held-out), if better.

    Costs ``len(size_grid) x n_held_out`` forwards, counted in ``result.budget`` (``problem``'s budget
    must be the one the result was searched with, or a fresh one: what the scan spends is added).
    """
    ks = size_grid(len(result.scores), max_units)
    before = problem.budget.forwards, problem.budget.select_forwards, problem.budget.seconds
    with problem.budget.timing():
        candidates = top_k_masks(result.scores, ks)
        _, held = best_of(problem, candidates)
    spent = (problem.budget.forwards - before[0], problem.budget.select_forwards - before[1], problem.budget.seconds - before[2])
    if result.budget is not problem.budget:
        result.budget.forwards += spent[0]
        result.budget.select_forwards += spent[1]
        result.budget.seconds += spent[2]
    log = result.log + [{"scan_units": k, "scan_held_out_score": float(s)} for k, s in zip(ks, held)]
    best = int(torch.nan_to_num(held, nan=float("-inf")).argmax())
    own = result.held_out_score if math.isfinite(result.held_out_score) else float("-inf")
    config = {**result.config, "scan_sizes": max_units or "all"}
    if float(held[best]) > own:
        return SearchResult(result.method, candidates[best], result.scores, float(held[best]), result.budget, config, log)
    return SearchResult(result.method, result.mask, result.scores, result.held_out_score, result.budget, config, log)


def size_curve(result: SearchResult) -> pd.DataFrame:
    """A result's quality-vs-size curve: ``units``, ``held_out_score`` (from its size scan, else
    from log rows that have both, e.g. ``prune``'s rounds and the top-k methods' grid)."""
    rows = [{"units": r["scan_units"], "held_out_score": r["scan_held_out_score"]} for r in result.log if "scan_units" in r]
    if not rows:
        rows = [{"units": r["units"], "held_out_score": r["held_out_score"]} for r in result.log
                if "units" in r and "held_out_score" in r]
    return pd.DataFrame(rows, columns=["units", "held_out_score"]).drop_duplicates("units").sort_values("units")
