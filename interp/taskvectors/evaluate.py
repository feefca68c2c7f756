"""Scoring prompts under conditions: one-shot, zero-shot, and (later) zero-shot + patches.

A *condition* is a layout plus optional forward hooks. :func:`score_prompts` runs one
condition over a :class:`~interp.data.tasks.PromptBatch` in mini-batches, decodes the
prediction into the target cell and scores it with the task's own metric (IoU or MSE on the
target cell, :mod:`interp.metrics`), returning one value per prompt. :func:`compare_layouts`
tabulates the usual one-shot vs zero-shot comparison, per task.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor

from interp.canvas import PromptLayout, get_layout, normalize
from interp.data.tasks import PromptBatch
from interp.hooks import FwdHooks
from interp.metrics import task_metric, task_score
from interp.models.mae_vqgan import MAEVQGAN


@torch.no_grad()
def score_prompts(
    model: MAEVQGAN,
    prompts: PromptBatch,
    layout: PromptLayout | str,
    fwd_hooks: FwdHooks = (),
    batch_size: int = 64,
) -> Tensor:
    """The task metric of every prompt under one condition, ``[N]`` (NaN for empty IoUs)."""
    layout = get_layout(layout, model.grid)
    device = next(model.parameters()).device
    scores = []
    with model.hooks(fwd_hooks):
        for start in range(0, len(prompts), batch_size):
            canvases = prompts.canvases[start : start + batch_size].to(device)
            predicted = model.predict_canvas(canvases, layout)
            scores.append(task_score(prompts.task, normalize(predicted), canvases, model.grid).cpu())
    return torch.cat(scores)


def summarize(task: str, condition: str, scores: Tensor) -> dict:
    """One table row: mean and standard error of a condition's scores (NaNs dropped)."""
    valid = scores[~scores.isnan()].double()
    n = int(valid.numel())
    sem = float(valid.std() / n**0.5) if n > 1 else float("nan")
    metric = task_metric(task)
    return {
        "task": task, "condition": condition, "metric": metric.name,
        "higher_is_better": metric.higher_is_better, "mean": float(valid.mean()) if n else float("nan"),
        "sem": sem, "n": n,
    }


def compare_layouts(
    model: MAEVQGAN,
    prompts: Mapping[str, PromptBatch],
    layouts: Sequence[str] = ("one_shot", "zero_shot"),
    batch_size: int = 64,
) -> pd.DataFrame:
    """Per task and layout, the mean task metric over the prompts (a tidy DataFrame)."""
    rows = [
        summarize(task, layout, score_prompts(model, batch, layout, batch_size=batch_size))
        for task, batch in prompts.items()
        for layout in layouts
    ]
    return pd.DataFrame(rows)


def relative_gain(table: pd.DataFrame, better: str = "one_shot", worse: str = "zero_shot") -> pd.Series:
    """Per task, how much ``better`` improves on ``worse`` relative to ``worse`` (positive = better).

    IoU: ``(iou_better - iou_worse) / iou_worse``; MSE: ``(mse_worse - mse_better) / mse_worse``.
    """
    wide = table.pivot(index="task", columns="condition", values="mean")
    higher = table.groupby("task")["higher_is_better"].first()
    gain = (wide[better] - wide[worse]) / wide[worse].abs()
    return gain.where(higher, -gain)
