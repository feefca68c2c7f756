"""Choosing a task vector's scaling coefficient on a validation metric (the official grid search)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from interp.weights.arithmetic import TaskVector, named_tensors


def default_coefficients() -> np.ndarray:
    """0, 0.05, ..., 1: the official evaluation grid (21 points in [0, 1])."""
    return np.linspace(0.0, 1.0, 21)


def search_coefficient(
    pretrained: nn.Module,
    task_vector: TaskVector,
    evaluate: Callable[[nn.Module], float | Mapping[str, float]],
    coefs: Sequence[float] | np.ndarray | None = None,
    higher_is_better: bool = True,
    metric: str | None = None,
    constraint: Callable[[Mapping[str, float]], bool] | None = None,
    progress: bool = True,
) -> tuple[float, pd.DataFrame]:
    """Pick the scaling coefficient of ``task_vector`` on a validation metric.

    ``evaluate(model)`` returns a score, or a dict of scores (then ``metric`` names the one to
    optimise, and ``constraint(scores)`` can rule a coefficient out, e.g. a control-task accuracy
    above 95% of the pretrained one, as in the official negation experiments). The model is
    copied once and re-weighted in place for each coefficient, so memory stays at one model.

    Returns ``(best_coef, table)`` with one row per coefficient (``coef``, the scores,
    ``admissible``); raises if no coefficient is admissible.
    """
    grid = default_coefficients() if coefs is None else np.asarray(list(coefs), dtype=float)
    if grid.size == 0:
        raise ValueError("search_coefficient: coefs is empty; pass e.g. np.linspace(0, 1, 11)")
    work = copy.deepcopy(pretrained)
    tensors = named_tensors(work)
    task_vector.apply_to(work, 0.0, inplace=True)  # validates keys and shapes before any evaluation
    originals = {k: tensors[k].detach().clone() for k in task_vector}
    rows = []
    for coef in tqdm(grid, desc="coefficient search", disable=not progress):
        with torch.no_grad():
            for key, delta in task_vector.items():
                t = tensors[key]
                t.copy_(originals[key] + float(coef) * delta.to(t.device, t.dtype))
        result = evaluate(work)
        scores = dict(result) if isinstance(result, Mapping) else {"score": float(result)}
        key = metric or ("score" if "score" in scores else None)
        if key is None or key not in scores:
            raise ValueError(
                f"search_coefficient: evaluate returned {sorted(scores)}; pass metric= naming the score to optimise"
            )
        rows.append({"coef": float(coef), **{k: float(v) for k, v in scores.items()},
                     "admissible": bool(constraint(scores)) if constraint else True})
    table = pd.DataFrame(rows)
    column = metric or "score"
    ok = table[table["admissible"]]
    if ok.empty:
        raise ValueError("search_coefficient: no coefficient satisfies the constraint; widen the grid or relax it")
    best = ok[column].idxmax() if higher_is_better else ok[column].idxmin()
    table.attrs["metric"] = column
    return float(table.loc[best, "coef"]), table
