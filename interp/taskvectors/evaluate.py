"""Scoring prompts under conditions: one-shot, zero-shot, and zero-shot + task vectors.

A *condition* is a layout plus optional forward hooks. :func:`score_prompts` runs one
condition over a :class:`~interp.data.tasks.PromptBatch` in mini-batches, decodes the
prediction into the target cell and scores it with the task's own metric (IoU or MSE on the
target cell, :mod:`interp.metrics`), returning one value per prompt. :func:`compare_layouts`
tabulates the usual one-shot vs zero-shot comparison, per task. Patched conditions (a unit set
with a task's means) go through the one scoring engine of every search,
:class:`~interp.taskvectors.patched_rows.PatchedRows` (:func:`score_masks`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp import distributed
from interp.canvas import PromptLayout
from interp.data.tasks import PromptBatch
from interp.hooks import FwdHooks
from interp.metrics import task_metric
from interp.models.decode_cache import DecodeCache
from interp.models.protocol import PromptModel
from interp.scoring import Score, Scorer
from interp.taskvectors.patched_rows import PatchedRows
from interp.taskvectors.patching import Intervention, Means, MeanPatcher, merge_means
from interp.taskvectors.policy import Policy, policy_mask, random_like
from interp.taskvectors.units import UnitSpace


@torch.no_grad()
def score_condition(
    model: PromptModel,
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
    device = model.device
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


def score_prompts(model: PromptModel, prompts: PromptBatch, layout: PromptLayout | str, fwd_hooks: FwdHooks = (),
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
    model: PromptModel,
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
# task vectors: patched conditions through the one scoring engine


@torch.no_grad()
def score_masks(model: PromptModel, space: UnitSpace, means: Means, prompts: PromptBatch, masks: Tensor,
                batch_size: int = 64, keep_images: int = 0, decode: str = "official",
                intervention: Intervention | None = None, base_means: Means | None = None) -> list[Score]:
    """Every prompt under each unit set of ``masks [K, U]`` (zero-shot + the means patched by
    ``intervention``, default replace; ``add`` subtracts the zero-shot ``base_means``), scored
    with the official pixel metric through :class:`~interp.taskvectors.patched_rows.PatchedRows`
    (distinct rows once, the clean prefix reused, each code grid decoded once). One :class:`Score`
    per set: ``metric [N]`` (NaN for empty IoUs) and the first ``keep_images`` images."""
    masks = torch.as_tensor(masks).bool().reshape(-1, len(space))
    patcher = MeanPatcher(model, means, "zero_shot", space, intervention, base_means)
    rows = PatchedRows(patcher, batch_size)
    decoder = DecodeCache(model.decode_codes)
    scorer = Scorer(model, prompts.task, patcher.layout, "pixel", decode, empty_iou=float("nan"), decoder=decoder)
    n = len(prompts)
    which = torch.arange(n).repeat(len(masks))
    every = masks.repeat_interleave(n, dim=0)
    if distributed.active():  # rows split over ranks; images from a second small call on each rank
        mine = distributed.shard_indices(len(which))
        with distributed.local():
            local = rows.score(prompts, which[mine], every[mine], scorer).metric if len(mine) else torch.empty(0, dtype=torch.float64)
            shown = rows.score(prompts, torch.arange(min(keep_images, n)).repeat(len(masks)),
                               masks.repeat_interleave(min(keep_images, n), dim=0), scorer, keep_images) if keep_images else None
        metric = distributed.gather_rows(local, len(which))
        images = None if shown is None else shown.image
    else:
        score = rows.score(prompts, which, every, scorer, keep_images)
        metric, images = score.metric, score.image
    k = min(keep_images, n)
    return [Score(metric[i * n : (i + 1) * n], metric[i * n : (i + 1) * n],
                  None if images is None else images[i * k : (i + 1) * k]) for i in range(len(masks))]


def evaluate_task_vectors(
    model: PromptModel,
    space: UnitSpace,
    means: Mapping[str, Means],
    policies: Mapping[str, Policy | Tensor],
    prompts: Mapping[str, PromptBatch],
    threshold: float | None = None,
    sampled: int = 3,
    seed: int = 0,
    batch_size: int = 64,
    controls: int = 3,
    extra_controls: Mapping[str, Mapping[str, Tensor]] | None = None,
    examples: dict[str, dict[str, Tensor]] | None = None,
    n_examples: int = 4,
    baselines: bool = True,
    intervention: Intervention | None = None,
    base_means: Mapping[str, Means] | None = None,
    bootstrap: int = 2000,
) -> pd.DataFrame:
    """Per task: one-shot, zero-shot (``baselines``), zero-shot + task vector (the policy's kept
    set, and the mean over ``sampled`` draws from it), zero-shot + as many random units (the
    control: the mean over ``controls`` random unit sets, so one lucky draw does not decide it).
    ``policies[task]`` is a :class:`Policy` or per-unit keep probabilities; ``threshold`` (default:
    the policy's kept set, else 0.5). ``extra_controls[task][name]`` (``[sets, U]`` bool, e.g. from
    :func:`interp.taskvectors.controls.control_masks`) add conditions ``zero_shot+control:<name>``.
    ``units`` is the size of what each condition patches (the mean over its sets);
    ``intervention`` (default replace) is what every patch of the table does (task vector and
    controls alike; column ``intervention``); ``add`` subtracts each task's ``base_means[task]``.
    ``diff_zero_shot`` and its 95% paired ``bootstrap`` interval (``ci_low_zero_shot``,
    ``ci_high_zero_shot``) compare each condition with zero-shot prompt by prompt, in the metric's
    better direction (positive: better); ``diff_strongest_control`` (and its interval) likewise with
    the control that scores best on these prompts (``strongest_control``: random units or an extra
    control such as every unit).

    ``examples``, if given, is filled with ``{task: {condition: image}}``: the first
    ``n_examples`` official pasted predictions (int32) of one-shot, zero-shot and zero-shot + tv,
    from the same forwards that were scored."""
    rows = []
    keep = n_examples if examples is not None else 0
    for task, batch in prompts.items():
        policy = policies[task]
        probabilities = policy.probabilities() if isinstance(policy, Policy) else policy
        kept = policy.mask(threshold) if isinstance(policy, Policy) else policy_mask(policy, 0.5 if threshold is None else threshold)
        sets: dict[str, Tensor] = {"zero_shot+tv": kept[None], "zero_shot+random": torch.stack(
            [random_like(kept, seed + i) for i in range(controls)])}
        if sampled:
            g = torch.Generator().manual_seed(seed)
            sets["zero_shot+tv_sampled"] = torch.stack([torch.bernoulli(probabilities.double(), generator=g).bool()
                                                        for _ in range(sampled)])
        for name, masks in (extra_controls or {}).get(task, {}).items():
            sets[f"zero_shot+control:{name}"] = masks
        names = [name for name, masks in sets.items() for _ in masks]
        base = (base_means or {}).get(task) if intervention is not None and intervention.needs_base else None
        scores = score_masks(model, space, means[task], batch, torch.cat(list(sets.values())), batch_size,
                             keep_images=keep, intervention=intervention, base_means=base)
        shown: dict[str, Score] = {}
        for name in ("one_shot", "zero_shot"):  # zero-shot is every paired difference's reference
            if baselines or name == "zero_shot":
                shown[name] = score_condition(model, batch, name, batch_size=batch_size, keep_images=keep)
        shown["zero_shot+tv"] = scores[0]
        if examples is not None:
            examples[task] = {name: score.image for name, score in shown.items() if baselines or "+" in name}
        conditions: dict[str, tuple[Tensor, float]] = {name: (shown[name].metric, 0.0) for name in shown if "+" not in name}
        for name, masks in sets.items():
            mine = [s.metric for s, owner in zip(scores, names) if owner == name]
            conditions[name] = (torch.stack(mine).nanmean(0), float(masks.sum(1).double().mean()))
        sign = 1.0 if task_metric(task).higher_is_better else -1.0
        controls_here = [c for c in conditions if c == "zero_shot+random" or c.startswith("zero_shot+control:")]
        strongest = max(controls_here, key=lambda c: sign * float(conditions[c][0].double().nanmean()))
        for condition, (metric, units) in conditions.items():
            if "+" not in condition and not baselines:
                continue
            row = summarize(task, condition, metric)
            row["units"] = units
            row["intervention"] = (intervention or Intervention()).label if "+" in condition else ""
            # paired over prompts, in the metric's better direction (> 0: better than the reference)
            for name, reference in (("zero_shot", "zero_shot"), ("strongest_control", strongest)):
                diff = sign * (metric.double() - conditions[reference][0].double())
                low, high = paired_bootstrap(diff, bootstrap, seed)
                row.update({f"diff_{name}": float(diff.nanmean()), f"ci_low_{name}": low, f"ci_high_{name}": high})
            row["strongest_control"] = strongest
            rows.append(row)
    return pd.DataFrame(rows)


def paired_bootstrap(diff: Tensor, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-prompt differences ``diff [N]``, resampling prompts (NaN dropped)."""
    d = diff[~diff.isnan()].double().numpy()
    if len(d) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def evaluate_composition(
    model: PromptModel,
    space: UnitSpace,
    composite: PromptBatch,
    parts: Mapping[str, tuple[Means, Policy | Tensor]],
    threshold: float | None = None,
    batch_size: int = 64,
    baselines: bool = True,
) -> pd.DataFrame:
    """Patch two (or more) tasks' vectors together and score the composite task.

    ``parts`` maps each component task to its ``(means, policy or probabilities)``; conditions are
    zero-shot, each component alone, and all of them together (later parts win on overlap).
    """
    masks = {task: (means, policy.mask(threshold) if isinstance(policy, Policy) else policy_mask(policy, 0.5 if threshold is None else threshold))
             for task, (means, policy) in parts.items()}
    conditions = {}
    if baselines:
        conditions["one_shot"] = score_prompts(model, composite, "one_shot", batch_size=batch_size)
        conditions["zero_shot"] = score_prompts(model, composite, "zero_shot", batch_size=batch_size)
    for task, (means, mask) in masks.items():
        conditions[f"zero_shot+tv[{task}]"] = score_masks(model, space, means, composite, mask[None], batch_size)[0].metric
    merged, union = merge_means(space, list(masks.values()))
    conditions[f"zero_shot+tv[{'+'.join(masks)}]"] = score_masks(model, space, merged, composite, union[None], batch_size)[0].metric
    return pd.DataFrame([summarize(composite.task, c, s) for c, s in conditions.items()])
