"""Stages that look inside a run's task vectors: the code lens, path patching, zero-shot statistics.

    lens   -> lens/<task>.csv, lens/<task>.safetensors   per-layer metric; the strip's images
    paths  -> paths/<task>.csv                           encoder head x decoder head path effects
    (add)  -> stats_zero_shot/<task>.safetensors         zero-shot means the ``add`` intervention subtracts

They read what ``collect`` and ``search`` wrote (the task's statistics and its policy) and score
held-out prompts (the val split, as ``evaluate`` does). The figures are drawn from these files by
:mod:`interp.viz.figures` (group ``lens``), so a style change needs no recomputation.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import torch

from interp.data.source import PromptSource
from interp.models.protocol import PromptModel
from interp.pipeline import PipelineConfig, check_reused, collect_provenance, eval_prompts, select_prompts
from interp.provenance import check_resume, normalized
from interp.run import RunDir
from interp.taskvectors.lens import lens_scores, solved_at
from interp.taskvectors.patching import Intervention, MeanPatcher
from interp.taskvectors.paths import path_effects
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.collect import collect as collect_stats


def zero_shot_stats(run: RunDir, model: PromptModel, source: PromptSource, cfg: PipelineConfig, task: str,
                    force: bool = False, batch_size: int = 64) -> ActivationStats:
    """The task's zero-shot means (``stats_zero_shot/<task>.safetensors``): the prompts ``collect``
    averaged (the official selection), run under the zero-shot layout. Reused when made with this
    config (else a :class:`~interp.provenance.ResumeConflict`); ``force`` collects again."""
    path = run.file(f"stats_zero_shot/{task}.safetensors")
    made_by = {**collect_provenance(model, source, task, cfg), "stage": "collect_zero_shot"}
    if path.exists() and not force:
        stats = ActivationStats.load(path, model=model)
        check_resume(stats.extra.get("provenance"), made_by, path, run.path)
        return stats
    prompts = select_prompts(model, source, task, cfg)
    batches = [prompts.canvases[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    device = model.device
    stats = collect_stats(model, [b.to(device) for b in batches], "zero_shot", task=task, dataset=source.name,
                          seed=cfg.seed, progress=False)
    stats.extra["provenance"] = normalized(made_by)
    stats.save(path)
    return stats


def task_vector(run: RunDir, model: PromptModel, source: PromptSource, cfg: PipelineConfig, task: str,
                method: str = "reinforce", threshold: float | None = None, intervention: Intervention | None = None,
                force: bool = False) -> tuple[MeanPatcher, torch.Tensor]:
    """The task's patcher (its statistics, its policy's unit space, the intervention) and the
    policy's kept units ``[units]``: its kept set, the one ``interp evaluate`` scores (with
    ``threshold``: the units whose probability is above it)."""
    stats = run.load_stats([task], model, layout="one_shot")[task]
    policy = run.load_policies([task], method)[task]
    check_reused(run, model, source, {task: stats}, dataclasses.replace(cfg, tasks=(task,)), {task: policy})  # this model, data, fold, sizes
    intervention = intervention or Intervention()
    base = zero_shot_stats(run, model, source, cfg, task, force) if intervention.needs_base else None
    policy.space.check_model(model)
    patcher = MeanPatcher(model, stats, "zero_shot", policy.space, intervention, base)
    return patcher, policy.mask(threshold)


def stage_lens(run: RunDir, model: PromptModel, source: PromptSource, cfg: PipelineConfig, task: str,
               method: str = "reinforce", threshold: float | None = None, intervention: Intervention | None = None,
               n_prompts: int = 16, prompt: int = 0, encoder: bool = True, force: bool = False) -> pd.DataFrame:
    """The code lens of a task over ``n_prompts`` held-out prompts -> ``lens/<task>.csv`` (per
    condition and readout: mean, sem, n) and ``lens/<task>.safetensors`` (prompt ``prompt``'s
    canvas and each condition's predicted canvases per readout)."""
    patcher, mask = task_vector(run, model, source, cfg, task, method, threshold, intervention, force)
    prompts = eval_prompts(model, source, [task], cfg)[task]
    if not 0 <= prompt < min(n_prompts, len(prompts)):
        raise ValueError(f"--prompt {prompt} is not among the {min(n_prompts, len(prompts))} prompts scored")
    order = [prompt] + [i for i in range(min(n_prompts, len(prompts))) if i != prompt]
    batch = prompts.select(order)
    hooks = patcher.hooks(mask[None]) if bool(mask.any()) else []
    result = lens_scores(model, batch, hooks, encoder=encoder, keep_images=1)
    table = result.table().assign(intervention=patcher.intervention.label, units=int(mask.sum()), method=method)
    solved = solved_at(table)
    table["solved_at"] = table["condition"].map(solved)
    run.write_table(f"lens/{task}", table)
    tensors = {"canvas": batch.canvases[0]}
    tensors.update({f"images.{c}": images[:, 0] for c, images in result.images.items()})
    run.write_tensors(f"lens/{task}", tensors, {"task": task, "labels": json.dumps(result.labels),
                                                "prompt": str(prompt), "grid": json.dumps(dataclasses.asdict(model.grid))})
    return table


def stage_paths(run: RunDir, model: PromptModel, source: PromptSource, cfg: PipelineConfig, task: str,
                method: str = "reinforce", threshold: float | None = None, intervention: Intervention | None = None,
                n_prompts: int = 8, max_senders: int | None = 16, force: bool = False) -> pd.DataFrame:
    """Path patching of the task vector's encoder heads through each decoder head over
    ``n_prompts`` held-out prompts -> ``paths/<task>.csv``."""
    patcher, mask = task_vector(run, model, source, cfg, task, method, threshold, intervention, force)
    prompts = eval_prompts(model, source, [task], cfg)[task]
    batch = prompts.select(list(range(min(n_prompts, len(prompts)))))
    table = path_effects(patcher, batch, mask, max_senders=max_senders).assign(method=method)
    run.write_table(f"paths/{task}", table)
    return table


#: the interventions :func:`stage_interventions` compares by default
DEFAULT_KINDS = (Intervention(), Intervention("scaled", 0.5), Intervention("scaled", 2.0),
                 Intervention("add", 0.5), Intervention("add", 1.0), Intervention("add", 2.0))


def stage_interventions(run: RunDir, model: PromptModel, source: PromptSource, cfg: PipelineConfig,
                        kinds: tuple[Intervention, ...] = DEFAULT_KINDS, method: str = "reinforce",
                        threshold: float | None = None, force: bool = False) -> pd.DataFrame:
    """Per task, the task vector's units (the ``method`` policy's kept set, or above ``threshold``) patched with
    each intervention kind on the held-out prompts -> ``interventions.csv``: one row per (task,
    kind) with mean, sem, n, the zero-shot and one-shot means beside it, and ``best`` marking
    the kind with the best mean (in the metric's direction) per task."""
    from interp.taskvectors.evaluate import score_prompts, summarize

    prompts = eval_prompts(model, source, list(cfg.tasks), cfg)
    rows = []
    for task in cfg.tasks:
        batch = prompts[task]
        base = {name: summarize(task, name, score_prompts(model, batch, name))["mean"] for name in ("zero_shot", "one_shot")}
        recollect = force  # the zero-shot statistics: collected again at most once per task
        for kind in kinds:
            patcher, mask = task_vector(run, model, source, cfg, task, method, threshold, kind, recollect and kind.needs_base)
            recollect = recollect and not kind.needs_base
            hooks = patcher.hooks(mask[None]) if bool(mask.any()) else []
            row = summarize(task, f"zero_shot+tv:{kind.label}", score_prompts(model, batch, "zero_shot", hooks))
            rows.append({**row, "intervention": kind.kind, "alpha": kind.alpha, "units": int(mask.sum()),
                         "zero_shot": base["zero_shot"], "one_shot": base["one_shot"]})
    table = pd.DataFrame(rows)
    signed = table["mean"].where(table["higher_is_better"], -table["mean"])
    table["best"] = signed.eq(signed.groupby(table["task"]).transform("max"))
    run.write_table("interventions", table)
    return table
