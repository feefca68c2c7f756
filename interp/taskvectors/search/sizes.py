"""The size of a task vector is chosen, not fixed: scan a method's ranking at every size.

A method that ranks units (REINFORCE's probabilities, gradient gate logits, attribution
estimates, taskness, the single-unit sweep, prune's elimination order) implies a kept set of
every size: its top-k. :func:`scan_sizes` scores the top-k for every ``k`` on
:func:`~interp.taskvectors.search.base.size_grid` (1, 2, 3, 4, 6, 8, ... up to *all* units) on
the held-out search prompts, beside the set the method kept itself, and keeps the best; the
scanned curve goes into the result's log (``{"scan_units", "scan_held_out_score"}`` rows), and
:func:`size_curve` reads a log (also one read back from ``log.csv``) as the method's quality-vs-size
curve.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import torch

from interp.taskvectors.search.base import SearchProblem, SearchResult, best_of, size_grid, top_k_masks

#: methods whose own kept set is not a size choice (REINFORCE: p > 0.5; gradient: open gates),
#: so every search of theirs is followed by a size scan of their ranking (the top-k methods scan
#: inside :func:`~interp.taskvectors.search.base.best_top_k`, prune over its rounds)
SCANNED = ("reinforce", "gradient")


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
        return replace(result, mask=candidates[best], held_out_score=float(held[best]), config=config, log=log)
    return replace(result, config=config, log=log)


def size_curve(log: list[dict]) -> pd.DataFrame:
    """A search log's quality-vs-size curve: ``units``, ``held_out_score``, from its size scan
    (``scan_units`` rows), else from rows that have both (prune's rounds, greedy's prefixes, the
    top-k methods' size grid, random's draws); NaN cells (a log read from CSV) are skipped."""
    def ok(r: dict, *keys: str) -> bool:
        return all(k in r and r[k] == r[k] for k in keys)  # present and not NaN

    rows = [{"units": int(r["scan_units"]), "held_out_score": float(r["scan_held_out_score"])} for r in log
            if ok(r, "scan_units", "scan_held_out_score")]
    if not rows:
        rows = [{"units": int(r["units"]), "held_out_score": float(r["held_out_score"])} for r in log
                if ok(r, "units", "held_out_score")]
    table = pd.DataFrame(rows, columns=["units", "held_out_score"])
    return table.groupby("units", as_index=False)["held_out_score"].max().sort_values("units", ignore_index=True)
