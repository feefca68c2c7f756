"""Scoring prompts under conditions: one-shot, zero-shot, and (later) zero-shot + patches.

A *condition* is a layout plus optional forward hooks. :func:`score_prompts` runs one
condition over a :class:`~interp.data.tasks.PromptBatch` in mini-batches, decodes the
prediction into the target cell and scores it with the task's own metric (IoU or MSE on the
target cell, :mod:`interp.metrics`), returning one value per prompt. :func:`compare_layouts`
tabulates the usual one-shot vs zero-shot comparison, per task.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor

from interp import distributed
from interp.canvas import PromptLayout
from interp.data.tasks import PromptBatch
from interp.hooks import FwdHooks
from interp.metrics import task_metric
from interp.models.mae_vqgan import MAEVQGAN
from interp.scoring import Score, Scorer
from interp.taskvectors.policy import policy_mask, random_like


@torch.no_grad()
def score_condition(
    model: MAEVQGAN,
    prompts: PromptBatch,
    layout: PromptLayout | str,
    fwd_hooks: FwdHooks = (),
    batch_size: int = 64,
    decode: str = "official",
    keep_images: int = 0,
) -> Score:
    """Score every prompt once under one condition (:class:`~interp.scoring.Scorer`, pixel kind).

    ``metric`` [N] is the task metric (NaN for empty IoUs); ``image`` holds the first
    ``keep_images`` official pasted predictions (int32 ``[k, 3, H, W]``) so that nothing has to
    run the forward again to show them.
    """
    scorer = Scorer(model, prompts.task, layout, "pixel", decode, empty_iou=float("nan"))
    device = next(model.parameters()).device
    metrics, images = [], []
    starts = list(range(0, len(prompts), batch_size))
    with model.hooks(fwd_hooks):
        for start in distributed.shard(starts):  # batch k on rank k % world (all of them on one process)
            canvases = prompts.canvases[start : start + batch_size].to(device)
            score = scorer(canvases, model(canvases, scorer.layout))
            metrics.append(score.metric.cpu())
            if start < keep_images:  # the first batches (rank 0 under torchrun) keep their images
                images.append(score.image[: keep_images - start].cpu())
    image = torch.cat(images) if images else None
    if not distributed.active():
        metric = torch.cat(metrics)
        return Score(metric.double(), metric, image)
    # gather whole batches in batch order (the last one padded with NaN), then drop the padding
    local = torch.full((len(metrics), batch_size), float("nan"))
    for i, m in enumerate(metrics):
        local[i, : len(m)] = m
    metric = distributed.gather_rows(local, len(starts)).flatten()[: len(prompts)]
    return Score(metric.double(), metric, image)


def score_prompts(model: MAEVQGAN, prompts: PromptBatch, layout: PromptLayout | str, fwd_hooks: FwdHooks = (),
                  **options: Any) -> Tensor:
    """The task metric of every prompt under one condition, ``[N]`` (NaN for empty IoUs):
    :func:`score_condition`'s ``metric`` (``options``: its ``batch_size``, ``decode``)."""
    return score_condition(model, prompts, layout, fwd_hooks, **options).metric


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


# --------------------------------------------------------------------------------------------
# task vectors


def patch_hooks_for(model: MAEVQGAN, space, parts: Sequence[tuple[object, Tensor]], layout: PromptLayout | str) -> list:
    """Hooks patching each ``(means, mask)`` part in turn (a later part wins where they overlap)."""
    from interp.taskvectors.patching import MeanPatcher

    hooks = []
    for means, mask in parts:
        if mask.any():
            hooks += MeanPatcher(model, means, layout, space).hooks(mask[None])
    return hooks


def evaluate_task_vectors(
    model: MAEVQGAN,
    space,
    means: Mapping[str, object],
    probabilities: Mapping[str, Tensor],
    prompts: Mapping[str, PromptBatch],
    threshold: float = 0.5,
    sampled: int = 3,
    seed: int = 0,
    batch_size: int = 64,
    controls: int = 3,
    extra_controls: Mapping[str, Mapping[str, Tensor]] | None = None,
    examples: dict[str, dict[str, Tensor]] | None = None,
    n_examples: int = 4,
) -> pd.DataFrame:
    """Per task: one-shot, zero-shot, zero-shot + task vector (thresholded policy, and the
    mean over ``sampled`` draws from it), zero-shot + as many random units (the control: the
    mean over ``controls`` random unit sets, so one lucky draw does not decide it).
    ``extra_controls[task][name]`` (``[sets, U]`` bool, e.g. from
    :func:`interp.taskvectors.controls.control_masks`) add conditions ``zero_shot+control:<name>``.

    ``examples``, if given, is filled with ``{task: {condition: image}}``: the first
    ``n_examples`` official pasted predictions (int32) of one-shot, zero-shot and zero-shot + tv,
    from the same forwards that were scored."""
    rows = []
    keep = n_examples if examples is not None else 0
    for task, batch in prompts.items():
        kept = policy_mask(probabilities[task], threshold)
        shown: dict[str, Score] = {}

        def patched(mask: Tensor, keep_images: int = 0) -> Score:
            hooks = patch_hooks_for(model, space, [(means[task], mask)], "zero_shot")
            return score_condition(model, batch, "zero_shot", hooks, batch_size, keep_images=keep_images)

        for name, layout in (("one_shot", "one_shot"), ("zero_shot", "zero_shot")):
            shown[name] = score_condition(model, batch, layout, batch_size=batch_size, keep_images=keep)
        shown["zero_shot+tv"] = patched(kept, keep)
        if examples is not None:
            examples[task] = {name: score.image for name, score in shown.items()}
        conditions: dict[str, Tensor] = {
            **{name: score.metric for name, score in shown.items()},
            "zero_shot+random": torch.stack([patched(random_like(kept, seed + i)).metric for i in range(controls)]).nanmean(0),
        }
        if sampled:
            g = torch.Generator().manual_seed(seed)
            draws = [torch.bernoulli(probabilities[task].double(), generator=g).bool() for _ in range(sampled)]
            conditions["zero_shot+tv_sampled"] = torch.stack([patched(d).metric for d in draws]).nanmean(0)
        for name, sets in (extra_controls or {}).get(task, {}).items():
            conditions[f"zero_shot+control:{name}"] = torch.stack([patched(m).metric for m in sets]).nanmean(0)
        for condition, scores in conditions.items():
            row = summarize(task, condition, scores)
            row["units"] = (float(torch.stack([d.sum() for d in draws]).double().mean()) if condition == "zero_shot+tv_sampled" else int(kept.sum())) if "+" in condition else 0  # sampled: mean units of the draws
            rows.append(row)
    return pd.DataFrame(rows)


def evaluate_composition(
    model: MAEVQGAN,
    space,
    composite: PromptBatch,
    parts: Mapping[str, tuple[object, Tensor]],
    threshold: float = 0.5,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Patch two (or more) tasks' vectors together and score the composite task.

    ``parts`` maps each component task to its ``(means, probabilities)``; conditions are
    zero-shot, each component alone, and all of them together (later parts win on overlap).
    """
    masks = {task: (means, policy_mask(probs, threshold)) for task, (means, probs) in parts.items()}
    conditions = {
        "one_shot": score_prompts(model, composite, "one_shot", batch_size=batch_size),
        "zero_shot": score_prompts(model, composite, "zero_shot", batch_size=batch_size),
    }
    for task, part in masks.items():
        hooks = patch_hooks_for(model, space, [part], "zero_shot")
        conditions[f"zero_shot+tv[{task}]"] = score_prompts(model, composite, "zero_shot", hooks, batch_size=batch_size)
    conditions[f"zero_shot+tv[{'+'.join(masks)}]"] = score_prompts(
        model, composite, "zero_shot", patch_hooks_for(model, space, list(masks.values()), "zero_shot"), batch_size=batch_size
    )
    return pd.DataFrame([summarize(composite.task, c, s) for c, s in conditions.items()])
