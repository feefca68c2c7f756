"""Sizes scanned up to every unit: a ranking whose own kept set is too small is fixed by the scan."""

from __future__ import annotations

import torch

from interp.taskvectors.search import Budget, SearchResult
from interp.taskvectors.search.sizes import scan_sizes, size_curve
from tests.taskvectors.search.test_planted import build_planted, problem_for


def test_scan_finds_the_planted_size_from_a_ranking() -> None:
    planted = build_planted()
    problem = problem_for(planted)
    mask = planted[-1]
    scores = mask.double() * 2 + torch.rand(len(mask), generator=torch.Generator().manual_seed(0))
    one = torch.zeros_like(mask)
    one[int(scores.argmax())] = True
    own = float(problem.held_out_score(one[None])[0])
    result = SearchResult("reinforce", one, scores, own, Budget(forwards=7), {"steps": 1})
    scanned = scan_sizes(problem, result)
    assert scanned.mask.tolist() == mask.tolist() and scanned.held_out_score > own
    assert scanned.config["scan_sizes"] == "all" and scanned.budget.forwards > 7
    curve = size_curve(scanned.log)
    assert curve["units"].max() == len(mask) and 3 in curve["units"].tolist()  # every size up to all units
    assert curve.set_index("units").loc[3, "held_out_score"] == scanned.held_out_score
    # a kept set better than every top-k stays
    kept = scan_sizes(problem, SearchResult("x", mask, -scores, scanned.held_out_score + 1, Budget(), {}))
    assert kept.mask.tolist() == mask.tolist()
