"""Weight-space vs activation-space task vectors on MAE-VQGAN (``interp compare-weights``).

**Data.** Everything comes from the same source and fold as the activation pipeline
(:mod:`interp.pipeline`): the *train* split for fine-tuning, coefficient search and aTLAS
(pairs cut by :func:`interp.weights.mae.split_train_pairs`: a training pool and a validation
slice used only to pick coefficients), and the pipeline's held-out *val* prompts
(:func:`interp.pipeline.eval_prompts`) for the final numbers.

**Methods compared** (:data:`METHODS`, one function each below, all scored zero-shot on the
held-out prompts with the task's pixel metric, IoU or MSE on the target cell, except the
one-shot reference):

====================  ========================================================================
``zero_shot``          the base model, query only
``one_shot``           the base model with an example pair (the in-context reference)
``finetuned``          theta_t, the per-task fine-tune (the weight-space upper bound)
``task_arithmetic``    theta_0 + lambda_t tau_t, lambda_t chosen on the validation slice
``task_addition``      theta_0 + lambda sum_t tau_t, one lambda for all tasks (mean normalised
                       validation score, the official "normalised accuracy")
``atlas``              aTLAS: theta_0 + sum_t Lambda_t (x) tau_t, one coefficient per parameter
                       block and task vector, learned with cross-entropy on a few train prompts
``atlas_loo``          the same without the task's own vector (can the others compose it?)
``basis_ae``           theta_0 + lambda tau_t recovered from an AE/Gram basis of M = T // 2 vectors
``basis_pca``          the same with a PCA basis
``activation_tv``      zero-shot + the mean-activation task vector of an activation-pipeline run
====================  ========================================================================

Each row also carries what the method costs: ``storage_floats`` (floats kept beside theta_0 to
run the method on that task; shared objects, such as the T task vectors aTLAS mixes, are
counted in full and named in ``notes``) and ``train_seconds`` (measured wall-clock to produce
it from theta_0, prerequisites such as the fine-tunes included, with the breakdown in
``notes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from interp.comparison.activation import activation_rows
from interp.comparison.store import AtlasSetup, FineTunes, Timer, finetune_tasks, fit_atlas, mean_zero_shot_score
from interp.comparison.table import make_row, sorted_table, summary_table
from interp.data.source import PromptSource
from interp.data.tasks import PromptBatch
from interp.metrics import task_metric
from interp.models.mae_vqgan import MAEVQGAN
from interp.pipeline import PipelineConfig, eval_prompts
from interp.run import RunDir
from interp.taskvectors.evaluate import score_prompts
from interp.weights.arithmetic import TaskVector
from interp.weights.basis_build import build_basis
from interp.weights.mae import DEFAULT_TASKS, FinetuneConfig, mae_parameter_names, normalised, prompts_for, split_train_pairs, weights_applied
from interp.weights.search import search_coefficient

Rows = list[dict[str, Any]]


@dataclass
class CompareConfig:
    """Sizes of the weight-space side of the comparison (the held-out prompts come from the
    pipeline config given to :func:`compare`)."""

    tasks: tuple[str, ...] = DEFAULT_TASKS
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    n_val: int = 32  # validation slice (train split) for coefficient search and aTLAS selection
    n_pool: int = 0  # fine-tuning pool size (0: the whole train split of the fold minus n_val)
    coefs: tuple[float, ...] = tuple(float(c) for c in np.round(np.linspace(0.0, 1.5, 16), 2))
    atlas_prompts: int = 16
    atlas_steps: int = 100
    atlas_lr: float = 0.1
    basis_steps: int = 4000
    threshold: float = 0.5  # activation policy: units with probability above it are patched
    batch_size: int = 64
    seed: int = 0


@dataclass
class Comparison:
    """Everything the methods share: the base model, the prompts, the fine-tunes."""

    model: MAEVQGAN
    cfg: CompareConfig
    run: RunDir | None
    progress: bool
    pool: dict[str, PromptBatch]  # train split: fine-tuning pool per task
    val: dict[str, PromptBatch]  # train split: validation slice per task
    held_out: dict[str, PromptBatch]  # val split: the reported numbers
    n_pool: int
    finetunes: FineTunes
    finetuned_val: dict[str, float] = field(default_factory=dict)  # mean val score of theta_t (addition's reference)

    @property
    def tasks(self) -> list[str]:
        return list(self.cfg.tasks)

    @property
    def vectors(self) -> dict[str, TaskVector]:
        return self.finetunes.vectors

    @property
    def dim(self) -> int:
        """D, the floats in one task vector."""
        return next(iter(self.vectors.values())).numel()

    def held(self, task: str, layout: str = "zero_shot") -> Tensor:
        """Per-prompt scores of the (current) model on the task's held-out prompts."""
        return score_prompts(self.model, self.held_out[task], layout, (), batch_size=self.cfg.batch_size)

    def held_with(self, vector: Mapping[str, Tensor], coef: float, task: str) -> Tensor:
        """Held-out scores of ``theta_0 + coef * vector``."""
        with weights_applied(self.model, vector, coef):
            return self.held(task)

    def val_score(self, model: MAEVQGAN, task: str) -> float:
        return mean_zero_shot_score(model, self.val[task], self.cfg.batch_size)

    def pick_lambda(self, vector: TaskVector, task: str, name: str) -> tuple[float, float]:
        """The coefficient of ``vector`` best on the validation slice, and the search's seconds."""
        higher = task_metric(task).higher_is_better
        with Timer() as timer:
            coef, table = search_coefficient(self.model, vector, lambda m: self.val_score(m, task), list(self.cfg.coefs),
                                             higher_is_better=higher, progress=False)
        if self.run is not None:
            self.run.write_table(f"search/{name}_{task}", table)
        return coef, timer.seconds


def compare(
    model: MAEVQGAN,
    source: PromptSource,
    pipeline: PipelineConfig,
    cfg: CompareConfig = CompareConfig(),
    run: RunDir | None = None,
    activation_run: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The comparison table (:data:`COLUMNS`, one row per task and method of :data:`METHODS`).

    ``run`` (optional) receives the task vectors (``task_vectors/<task>.safetensors``, skipped
    when present: resume), fine-tune logs, coefficient searches, aTLAS coefficients, the bases
    and ``comparison.csv`` / ``.md``. ``activation_run`` is a pipeline / demo run directory
    with ``stats/`` and ``reinforce/``; where it is missing or does not fit the model, the
    ``activation_tv`` rows say so and hold no number.
    """
    c = prepare(model, source, pipeline, cfg, run, progress)
    rows = (base_rows(c) + finetuned_rows(c) + task_arithmetic_rows(c) + task_addition_rows(c) + atlas_rows(c)
            + basis_rows(c, "basis_ae", "ae") + basis_rows(c, "basis_pca", "pca"))
    rows += [make_row(task, "activation_tv", *rest) for task, *rest in
             activation_rows(c.model, activation_run, c.held_out, c.tasks, cfg.threshold, cfg.batch_size)]
    table = sorted_table(rows, c.tasks)
    if run is not None:
        run.write_table("comparison", table)
        run.write_table("comparison_summary", summary_table(table))
    return table


def prepare(model: MAEVQGAN, source: PromptSource, pipeline: PipelineConfig, cfg: CompareConfig,
            run: RunDir | None, progress: bool) -> Comparison:
    """Prompts of every split, then the fine-tunes (resumed from ``run`` where stored)."""
    tasks = list(cfg.tasks)
    if len(tasks) < 2:
        raise ValueError("the comparison needs at least two tasks (addition, aTLAS and bases mix task vectors)")
    model = model.eval()
    keys = mae_parameter_names(model)
    grid, fold = model.grid, pipeline.fold
    pool_pairs, val_pairs = split_train_pairs(source, fold, cfg.n_val, cfg.n_pool, seed=cfg.seed)
    pool = prompts_for(source, pool_pairs, tasks, fold, grid, seed=cfg.seed + 10)
    val = prompts_for(source, val_pairs, tasks, fold, grid, seed=cfg.seed + 11)
    held_out = eval_prompts(model, source, tasks, pipeline)
    finetunes = finetune_tasks(model, pool, tasks, cfg.finetune, keys, run, progress)
    if run is not None:
        run.write_table("task_vector_cosines", pd.DataFrame(
            [{"task": a, **{b: round(finetunes.vectors[a].cosine(finetunes.vectors[b]), 4) for b in tasks}} for a in tasks]))
    return Comparison(model, cfg, run, progress, pool, val, held_out, len(pool_pairs), finetunes)


def base_rows(c: Comparison) -> Rows:
    """``zero_shot`` and ``one_shot``: the base model without and with an example pair."""
    rows = []
    for task in c.tasks:
        rows.append(make_row(task, "zero_shot", c.held(task), 0, 0.0, "base model, query only"))
        rows.append(make_row(task, "one_shot", c.held(task, "one_shot"), 0, 0.0, "base model with an example pair (reference)"))
    return rows


def finetuned_rows(c: Comparison) -> Rows:
    """``finetuned``: theta_t (also records its validation score, addition's reference)."""
    fcfg, rows = c.cfg.finetune, []
    note = f"{fcfg.steps} steps x {fcfg.batch_size} prompts, pool {c.n_pool}"
    for task in c.tasks:
        with weights_applied(c.model, c.vectors[task]):
            c.finetuned_val[task] = c.val_score(c.model, task)
            scores = c.held(task)
        seconds = c.finetunes.seconds[task]
        rows.append(make_row(task, "finetuned", scores, c.dim, seconds, f"theta_t: {note}; {seconds:.1f} s"))
    return rows


def task_arithmetic_rows(c: Comparison) -> Rows:
    """``task_arithmetic``: one vector, its lambda on the validation slice."""
    rows, search_note = [], f"{len(c.cfg.coefs)} coefs x {c.cfg.n_val} val prompts"
    for task in c.tasks:
        coef, secs = c.pick_lambda(c.vectors[task], task, "task_arithmetic")
        ft = c.finetunes.seconds[task]
        rows.append(make_row(task, "task_arithmetic", c.held_with(c.vectors[task], coef, task), c.dim + 1, ft + secs,
                             f"lambda={coef:g}; fine-tune {ft:.1f} s + search ({search_note}) {secs:.1f} s"))
    return rows


def task_addition_rows(c: Comparison) -> Rows:
    """``task_addition``: the sum of all task vectors, one lambda for every task (mean
    normalised validation score; needs :func:`finetuned_rows` first)."""
    tasks, total = c.tasks, sum(c.vectors.values())

    def addition_score(m: MAEVQGAN) -> dict[str, float]:
        scores = {t: c.val_score(m, t) for t in tasks}
        scores["normalised"] = float(np.nanmean([normalised(t, scores[t], c.finetuned_val[t]) for t in tasks]))
        return scores

    with Timer() as timer:
        coef, table = search_coefficient(c.model, total, addition_score, list(c.cfg.coefs), metric="normalised", progress=False)
    if c.run is not None:
        c.run.write_table("search/task_addition", table)
    ft_total = sum(c.finetunes.seconds.values())
    return [make_row(task, "task_addition", c.held_with(total, coef, task), c.dim + 1, ft_total + timer.seconds,
                     f"lambda={coef:g} for all {len(tasks)} tasks (mean normalised val score); shared by all tasks; "
                     f"{len(tasks)} fine-tunes {ft_total:.1f} s + search {timer.seconds:.1f} s") for task in tasks]


def atlas_rows(c: Comparison) -> Rows:
    """``atlas`` and ``atlas_loo``: learned block-wise coefficients, with and without the task's own vector."""
    cfg, rows = c.cfg, []
    setup = AtlasSetup(cfg.atlas_steps, cfg.atlas_lr, cfg.atlas_prompts, cfg.n_val, cfg.batch_size)
    for task in c.tasks:
        for method, members in (("atlas", c.tasks), ("atlas_loo", [t for t in c.tasks if t != task])):
            fit = fit_atlas(c.model, {t: c.vectors[t] for t in members}, c.pool[task], c.val[task], task, setup,
                            c.run, f"atlas/{method}_{task}", c.progress, reuse=not c.finetunes.fresh)
            pre = sum(c.finetunes.seconds[t] for t in members)
            rows.append(make_row(
                task, method, c.held_with(fit.vector, 1.0, task), len(members) * c.dim + fit.n_blocks * len(members),
                pre + fit.seconds,
                f"{len(members)} task vectors ({', '.join(members)}) x {fit.n_blocks} blocks; {cfg.atlas_steps} steps on "
                f"{cfg.atlas_prompts} train prompts ({fit.seconds:.1f} s){fit.note} + fine-tunes {pre:.1f} s"))
    return rows


def basis_rows(c: Comparison, method: str, kind: str) -> Rows:
    """``basis_ae`` / ``basis_pca``: each task's vector recovered from a basis of M = T // 2
    vectors, then scaled by a lambda chosen on the validation slice."""
    tasks, D = c.tasks, c.dim
    T, M = len(tasks), max(1, len(tasks) // 2)
    with Timer() as timer:
        basis = build_basis(c.vectors, M=M, method=kind, steps=c.cfg.basis_steps, seed=c.cfg.seed, model="mae_vqgan", progress=False)
    if c.run is not None:
        basis.save(c.run.path / "bases" / kind)
    errors = basis.relative_errors([c.vectors[t] for t in basis.task_names])
    shared = M * D + (D if kind == "pca" else 0)
    ft_total = sum(c.finetunes.seconds.values())
    rows = []
    for task in tasks:
        recovered = basis.recover(task)
        coef, secs = c.pick_lambda(recovered, task, method)
        rows.append(make_row(
            task, method, c.held_with(recovered, coef, task), shared + M + 1, ft_total + timer.seconds + secs,
            f"M={M} of T={T}; lambda={coef:g}; relative recovery error {errors[task]:.3f}; basis shared by all tasks"
            f"{' (+ mean vector)' if kind == 'pca' else ''}; fine-tunes {ft_total:.1f} s + basis {timer.seconds:.1f} s "
            f"+ search {secs:.1f} s"))
    return rows
