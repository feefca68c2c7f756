"""Weight-space task vectors of MAE-VQGAN, and their comparison with activation-space ones.

**Fine-tuning per task.** A copy of the base model is trained on canvases of *one* task in the
*zero-shot* layout: the encoder sees only the query cell, and the labels are the VQGAN codes
of the hidden target cell (cross-entropy on those patches, as ``interp.train._masked_loss``).
No example pair is ever shown, so whatever lets the model do the task must go into its
weights. Only the MAE (encoder + decoder) trains; the VQGAN stays frozen and is not part of
the task vector, nor are the fixed sin-cos position tables (``requires_grad=False``). The
task vector is ``tau_t = theta_t - theta_0`` over those parameters (:func:`mae_task_vector`).

**Data.** Everything comes from the same source and fold as the activation pipeline
(:mod:`interp.pipeline`): the *train* split for fine-tuning, coefficient search and aTLAS,
and the pipeline's held-out *val* prompts (:func:`interp.pipeline.eval_prompts`) for the
final numbers. Train-split pairs are cut once (:func:`split_train_pairs`): the last ``n_val``
pairs are a validation slice used only to pick coefficients; the rest is the training pool.

**Methods compared** (:data:`METHODS`, all scored zero-shot on the held-out prompts with the
task's pixel metric, IoU or MSE on the target cell, except the one-shot reference):

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

import copy
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.canvas import zero_shot
from interp.data.source import Pair, PromptSource
from interp.data.tasks import PromptBatch, build_task_prompts
from interp.metrics import task_metric
from interp.models.mae_vqgan import MAEVQGAN
from interp.pipeline import PipelineConfig, eval_prompts
from interp.run import RunDir, atomic_path, write_json
from interp.taskvectors.evaluate import score_prompts, summarize
from interp.train import _masked_loss
from interp.weights.arithmetic import TaskVector, search_coefficient
from interp.weights.atlas import AtlasModel, train_atlas
from interp.weights.bases import build_basis

#: the methods of :func:`compare`, in table order
METHODS: tuple[str, ...] = (
    "zero_shot", "one_shot", "finetuned", "task_arithmetic", "task_addition",
    "atlas", "atlas_loo", "basis_ae", "basis_pca", "activation_tv",
)  # fmt: skip
#: the columns of the comparison table
COLUMNS: tuple[str, ...] = (
    "task", "method", "metric", "value", "sem", "n", "storage_floats", "train_seconds", "notes",
)  # fmt: skip
DEFAULT_TASKS: tuple[str, ...] = ("segmentation", "lowlight", "inpainting", "colorization", "identity")


# --------------------------------------------------------------------------------------------
# which weights are the MAE's


def is_mae_key(name: str) -> bool:
    """State-dict names of the MAE part (everything but the VQGAN tokenizer)."""
    return not name.startswith("vqgan.")


def mae_parameter_names(model: nn.Module) -> list[str]:
    """Trainable MAE parameters: what fine-tuning changes and a task vector holds.

    The VQGAN is excluded, and so are frozen parameters (the fixed sin-cos position tables),
    whose delta is always zero.
    """
    return [n for n, p in model.named_parameters() if is_mae_key(n) and p.requires_grad]


def weights_fingerprint(model: nn.Module, keys: Sequence[str] | None = None) -> str:
    """Short SHA-256 of the MAE weights (``keys``): stored beside task vectors, checked on resume."""
    import hashlib

    keys = list(keys) if keys is not None else mae_parameter_names(model)
    state = model.state_dict()
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def mae_task_vector(base: nn.Module, finetuned: nn.Module, name: str | None = None, keys: Sequence[str] | None = None) -> TaskVector:
    """``theta_ft - theta_0`` over the MAE's trainable parameters (``keys``, default from ``base``)."""
    keys = list(keys) if keys is not None else mae_parameter_names(base)
    return TaskVector.from_modules(base, finetuned, name=name).select(keys)


# --------------------------------------------------------------------------------------------
# data


def split_train_pairs(source: PromptSource, fold: int, n_val: int, n_pool: int = 0, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(training pool, validation slice) of train-split pairs: every entry of the fold once,
    the last ``n_val`` held back for coefficient search; ``n_pool > 0`` caps the pool."""
    entries = source.entries(fold, "trn")
    if len(entries) <= n_val:
        raise ValueError(f"the train split of fold {fold} has {len(entries)} entries; need more than n_val={n_val}")
    pairs = source.sample_pairs(fold, "trn", len(entries), seed)
    pool, val = pairs[: len(pairs) - n_val], pairs[len(pairs) - n_val :]
    return (pool[:n_pool] if n_pool > 0 else pool), val


def prompts_for(source: PromptSource, pairs: Sequence[Pair], tasks: Sequence[str], fold: int, grid, seed: int) -> dict[str, PromptBatch]:
    """Prompts of several tasks over the same pairs (train split)."""
    return build_task_prompts(source, fold, len(pairs), grid, seed=seed, split="trn", tasks=tuple(tasks), pairs=pairs)


@torch.no_grad()
def target_codes(model: MAEVQGAN, canvases: Tensor, batch_size: int = 256) -> Tensor:
    """VQGAN codes of whole canvases ``[N, num_patches]`` (the labels), computed once."""
    if model.vqgan is None:
        raise RuntimeError("fine-tuning on codes needs a model with its VQGAN")
    device = next(model.parameters()).device
    out = [model.vqgan.encode_to_codes(canvases[i : i + batch_size].to(device)).cpu() for i in range(0, len(canvases), batch_size)]
    return torch.cat(out)


def zero_shot_loss(model: nn.Module, canvases: Tensor, codes: Tensor, layout=None) -> Tensor:
    """Cross-entropy of the target cell's codes in a zero-shot forward (query only)."""
    layout = layout or zero_shot(model.grid)
    return _masked_loss(model(canvases, layout), codes, layout)


# --------------------------------------------------------------------------------------------
# fine-tuning


@dataclass
class FinetuneConfig:
    """Per-task fine-tuning of the MAE (AdamW, linear warm-up then cosine decay)."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0  # a decay would add a task-independent shrinkage to every vector
    warmup: int = 20
    grad_clip: float | None = 1.0
    seed: int = 0


@dataclass
class FinetuneResult:
    model: MAEVQGAN
    task_vector: TaskVector
    log: pd.DataFrame
    seconds: float


def finetune_task(
    base: MAEVQGAN,
    prompts: PromptBatch,
    cfg: FinetuneConfig = FinetuneConfig(),
    codes: Tensor | None = None,
    keys: Sequence[str] | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune a copy of ``base`` on ``prompts`` of one task in the zero-shot layout.

    Each step draws ``cfg.batch_size`` prompts of the pool (seeded by ``cfg.seed`` and the
    step); ``codes`` are the pool's target codes (computed with the frozen VQGAN if not given).
    Only ``keys`` (default: :func:`mae_parameter_names`) train. ``base`` is not modified.
    """
    keys = list(keys) if keys is not None else mae_parameter_names(base)
    if codes is None:
        codes = target_codes(base, prompts.canvases)
    device = next(base.parameters()).device
    model = copy.deepcopy(base)
    model.requires_grad_(False)
    named = dict(model.named_parameters())
    params = [named[k] for k in keys]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
    layout = zero_shot(model.grid)
    generator = torch.Generator().manual_seed(cfg.seed)
    n = len(prompts)
    model.train()
    if model.vqgan is not None:
        model.vqgan.eval()
    rows = []
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"fine-tune {prompts.task}", disable=not progress)
    for step in bar:
        rate = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1)) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in optimizer.param_groups:
            group["lr"] = rate
        index = torch.randperm(n, generator=generator)[: min(cfg.batch_size, n)]
        loss = zero_shot_loss(model, prompts.canvases[index].to(device), codes[index].to(device), layout)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        rows.append({"step": step, "loss": float(loss.detach()), "lr": rate})
        bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}")
    seconds = time.perf_counter() - start
    model.requires_grad_(False).eval()
    for p in params:  # the same trainable set as the base, so the copy behaves like it
        p.requires_grad_(True)
    tv = mae_task_vector(base, model, name=prompts.task, keys=keys)
    return FinetuneResult(model.eval(), tv, pd.DataFrame(rows), seconds)


# --------------------------------------------------------------------------------------------
# scoring helpers


def _mean_score(model: MAEVQGAN, prompts: PromptBatch, batch_size: int) -> float:
    return float(score_prompts(model, prompts, "zero_shot", batch_size=batch_size).nanmean())


def normalised(task: str, score: float, reference: float) -> float:
    """A score relative to a reference, 1 = as good, higher is better (IoU ratio, inverse MSE ratio)."""
    if task_metric(task).higher_is_better:
        return score / reference if reference else float("nan")
    return reference / score if score else float("nan")


@contextmanager
def weights_applied(model: nn.Module, vector: Mapping[str, Tensor], coef: float = 1.0) -> Iterator[nn.Module]:
    """``model`` re-weighted in place to ``theta + coef * vector`` inside the block, restored
    exactly (from saved copies of the touched tensors) on exit: no copy of the whole model."""
    tensors = dict(model.named_parameters())
    saved = {k: tensors[k].detach().clone() for k in vector}
    try:
        with torch.no_grad():
            for key, delta in vector.items():
                tensors[key].add_(delta.to(tensors[key].device, tensors[key].dtype), alpha=float(coef))
        yield model
    finally:
        with torch.no_grad():
            for key, value in saved.items():
                tensors[key].copy_(value)


class _Timer:
    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


# --------------------------------------------------------------------------------------------
# the comparison


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
    bs = cfg.batch_size
    rows: list[dict] = []
    coef_grid = list(cfg.coefs)

    def row(task: str, method: str, scores: Tensor | None, storage: int, seconds: float, notes: str) -> None:
        if scores is None:
            rows.append({"task": task, "method": method, "metric": task_metric(task).name, "value": float("nan"),
                         "sem": float("nan"), "n": 0, "storage_floats": storage, "train_seconds": seconds, "notes": notes})
            return
        s = summarize(task, method, scores)
        rows.append({"task": task, "method": method, "metric": s["metric"], "value": s["mean"], "sem": s["sem"],
                     "n": s["n"], "storage_floats": int(storage), "train_seconds": round(float(seconds), 2), "notes": notes})

    def held(m: MAEVQGAN, task: str, layout: str = "zero_shot", hooks=()) -> Tensor:
        return score_prompts(m, held_out[task], layout, hooks, batch_size=bs)

    def held_with(vector: Mapping[str, Tensor], coef: float, task: str) -> Tensor:
        with weights_applied(model, vector, coef):
            return held(model, task)

    # --- fine-tunes (resumable) ----------------------------------------------------------------
    tvs: dict[str, TaskVector] = {}
    ft_seconds: dict[str, float] = {}
    ft_val: dict[str, float] = {}
    fcfg = cfg.finetune
    base_id = weights_fingerprint(model, keys)
    fresh = False
    for i, task in enumerate(tasks):
        path = run.path / "task_vectors" / f"{task}.safetensors" if run else None
        ft_cfg = FinetuneConfig(**{**asdict(fcfg), "seed": fcfg.seed + i})
        if path is not None and path.exists():
            meta = _tv_metadata(path)
            if meta.get("base") != base_id:
                raise ValueError(
                    f"{path} was fine-tuned from other base weights ({meta.get('base')}, this model is {base_id}); "
                    "use a new --out directory, or delete task_vectors/ there to fine-tune again"
                )
            if json.loads(meta.get("config", "{}")) != json.loads(json.dumps(asdict(ft_cfg))):
                raise ValueError(
                    f"{path} was fine-tuned with other settings ({meta.get('config')}, now {asdict(ft_cfg)}); "
                    "use a new --out directory, or delete task_vectors/ there to fine-tune again"
                )
            loaded = TaskVector.load(path, device=next(model.parameters()).device)
            if set(loaded) != set(keys):
                raise ValueError(f"{path} holds other parameters than this model's trainable MAE ones; use a new --out")
            tvs[task] = loaded.select(keys)  # the model's order (safetensors sorts names)
            ft_seconds[task] = float(meta.get("seconds", "nan"))
            continue
        fresh = True  # new task vectors: cached aTLAS coefficients no longer apply
        result = finetune_task(model, pool[task], ft_cfg, keys=keys, progress=progress)
        tvs[task], ft_seconds[task] = result.task_vector, result.seconds
        if run is not None:
            meta = {"task": task, "base": base_id, "seconds": f"{result.seconds:.3f}", "config": json.dumps(asdict(ft_cfg)),
                    "pool": str(len(pool[task])), "final_loss": f"{result.log['loss'].iloc[-5:].mean():.5f}",
                    "keys": "trainable MAE parameters (VQGAN and fixed position tables excluded)"}
            with atomic_path(path) as tmp:
                result.task_vector.save(tmp, metadata=meta)
            run.write_table(f"finetune/{task}_log", result.log)
    D = next(iter(tvs.values())).numel()
    T = len(tasks)
    ft_total = sum(ft_seconds.values())
    ft_note = f"{fcfg.steps} steps x {fcfg.batch_size} prompts, pool {len(pool_pairs)}"
    if run is not None:
        run.write_table("task_vector_cosines", pd.DataFrame(
            [{"task": a, **{b: round(tvs[a].cosine(tvs[b]), 4) for b in tasks}} for a in tasks]))

    # --- base model and fine-tuned models -------------------------------------------------------
    for task in tasks:
        row(task, "zero_shot", held(model, task), 0, 0.0, "base model, query only")
        row(task, "one_shot", held(model, task, "one_shot"), 0, 0.0, "base model with an example pair (reference)")
    for task in tasks:
        with weights_applied(model, tvs[task]):
            ft_val[task] = _mean_score(model, val[task], bs)
            scores = held(model, task)
        row(task, "finetuned", scores, D, ft_seconds[task], f"theta_t: {ft_note}; {ft_seconds[task]:.1f} s")

    # --- task arithmetic: one vector, lambda on the validation slice -----------------------------
    def pick_lambda(vector: TaskVector, task: str, name: str) -> tuple[float, float]:
        higher = task_metric(task).higher_is_better
        with _Timer() as timer:
            coef, table = search_coefficient(model, vector, lambda m: _mean_score(m, val[task], bs), coef_grid,
                                             higher_is_better=higher, progress=False)
        if run is not None:
            run.write_table(f"search/{name}_{task}", table)
        return coef, timer.seconds

    search_note = f"{len(coef_grid)} coefs x {len(val_pairs)} val prompts"
    for task in tasks:
        coef, secs = pick_lambda(tvs[task], task, "task_arithmetic")
        row(task, "task_arithmetic", held_with(tvs[task], coef, task), D + 1, ft_seconds[task] + secs,
            f"lambda={coef:g}; fine-tune {ft_seconds[task]:.1f} s + search ({search_note}) {secs:.1f} s")

    # --- multi-task addition: one lambda for every task ------------------------------------------
    total = sum(tvs.values())

    def addition_score(m: MAEVQGAN) -> dict[str, float]:
        scores = {t: _mean_score(m, val[t], bs) for t in tasks}
        scores["normalised"] = float(np.nanmean([normalised(t, scores[t], ft_val[t]) for t in tasks]))
        return scores

    with _Timer() as timer:
        coef, table = search_coefficient(model, total, addition_score, coef_grid, metric="normalised", progress=False)
    if run is not None:
        run.write_table("search/task_addition", table)
    for task in tasks:
        row(task, "task_addition", held_with(total, coef, task), D + 1, ft_total + timer.seconds,
            f"lambda={coef:g} for all {T} tasks (mean normalised val score); shared by all tasks; "
            f"{T} fine-tunes {ft_total:.1f} s + search {timer.seconds:.1f} s")

    # --- aTLAS per task (with and without the task's own vector) ---------------------------------
    for task in tasks:
        for method, members in (("atlas", tasks), ("atlas_loo", [t for t in tasks if t != task])):
            learned, secs, n_blocks, final = _atlas(model, {t: tvs[t] for t in members}, pool[task], val[task], task,
                                                   cfg, run, f"atlas/{method}_{task}", progress,
                                                   reuse=not fresh)
            pre = sum(ft_seconds[t] for t in members)
            row(task, method, held_with(learned, 1.0, task), len(members) * D + n_blocks * len(members), pre + secs,
                f"{len(members)} task vectors ({', '.join(members)}) x {n_blocks} blocks; {cfg.atlas_steps} steps on "
                f"{cfg.atlas_prompts} train prompts ({secs:.1f} s){final} + fine-tunes {pre:.1f} s")

    # --- task-vector bases ------------------------------------------------------------------------
    M = max(1, T // 2)
    for method, kind in (("basis_ae", "ae"), ("basis_pca", "pca")):
        with _Timer() as timer:
            basis = build_basis(tvs, M=M, method=kind, steps=cfg.basis_steps, seed=cfg.seed, model="mae_vqgan", progress=False)
        if run is not None:
            basis.save(run.path / "bases" / kind)
        errors = basis.relative_errors([tvs[t] for t in basis.task_names])
        shared = M * D + (D if kind == "pca" else 0)
        for task in tasks:
            recovered = basis.recover(task)
            coef, secs = pick_lambda(recovered, task, method)
            row(task, method, held_with(recovered, coef, task), shared + M + 1,
                ft_total + timer.seconds + secs,
                f"M={M} of T={T}; lambda={coef:g}; relative recovery error {errors[task]:.3f}; basis shared by all tasks"
                f"{' (+ mean vector)' if kind == 'pca' else ''}; fine-tunes {ft_total:.1f} s + basis {timer.seconds:.1f} s "
                f"+ search {secs:.1f} s")

    # --- activation-space task vectors -------------------------------------------------------------
    for entry in activation_rows(model, activation_run, held_out, tasks, cfg):
        task, scores, storage, seconds, notes = entry
        row(task, "activation_tv", scores, storage, seconds, notes)

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    order = {m: i for i, m in enumerate(METHODS)}
    table = table.sort_values(["task", "method"], key=lambda s: s.map(order) if s.name == "method" else s.map(tasks.index))
    table = table.reset_index(drop=True)
    if run is not None:
        run.write_table("comparison", table)
        run.write_table("comparison_summary", summary_table(table))
    return table


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison in one screen (for the README): a row per method, ``value ± sem`` per
    task, and the median storage and seconds over tasks."""
    tasks = list(dict.fromkeys(table["task"]))
    metric = table.groupby("task")["metric"].first()
    out = []
    for method in [m for m in METHODS if m in set(table["method"])]:
        part = table[table["method"] == method].set_index("task")
        row: dict[str, Any] = {"method": method}
        for task in tasks:
            label = f"{task} ({metric[task].upper()} {'↑' if metric[task] == 'iou' else '↓'})"
            v, e = part.loc[task, "value"], part.loc[task, "sem"]
            row[label] = "n/a" if pd.isna(v) else (f"{v:.4f} ± {e:.4f}" if not pd.isna(e) else f"{v:.4f}")
        row["stored floats"] = f"{part['storage_floats'].median():,.0f}"
        seconds = part["train_seconds"].median()
        row["seconds"] = "n/a" if pd.isna(seconds) else f"{seconds:.1f}"
        out.append(row)
    return pd.DataFrame(out)


def pipeline_from_run(activation_run: str | Path | None, default: PipelineConfig) -> tuple[PipelineConfig, str | None]:
    """The pipeline config (held-out prompts: fold, seed, n_eval) and data spec an activation
    run recorded in its manifest, else ``default`` and None."""
    path = Path(activation_run) / "manifest.json" if activation_run else None
    if path is None or not path.exists():
        return default, None
    manifest = json.loads(path.read_text())
    recorded = manifest.get("pipeline") or (manifest.get("config") or {}).get("pipeline")
    if not recorded:
        return default, manifest.get("data")
    known = {f for f in asdict(default)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items() if k in known}
    return PipelineConfig(**{**asdict(default), **values}), manifest.get("data")


def _tv_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def _atlas(model: MAEVQGAN, vectors: Mapping[str, TaskVector], train: PromptBatch, val: PromptBatch, task: str,
           cfg: CompareConfig, run: RunDir | None, name: str, progress: bool,
           reuse: bool = True) -> tuple[TaskVector, float, int, str]:
    """Train (or reload) aTLAS coefficients for one task; returns the learned composition (a
    task vector over the blocks), seconds, the number of blocks and a note."""
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    atlas = AtlasModel(model, dict(vectors))  # uses the base by reference (freezes it: undone below)
    try:
        return _fit_atlas(atlas, model, train, val, task, cfg, run, name, progress, reuse)
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(trainable[n])


def _fit_atlas(atlas: AtlasModel, model: MAEVQGAN, train: PromptBatch, val: PromptBatch, task: str,
               cfg: CompareConfig, run: RunDir | None, name: str, progress: bool, reuse: bool) -> tuple[TaskVector, float, int, str]:
    n_blocks = len(atlas.blocks)
    coef_path = run.path / f"{name}.safetensors" if run else None
    info_path = run.path / f"{name}.json" if run else None
    setup = {"steps": cfg.atlas_steps, "lr": cfg.atlas_lr, "prompts": cfg.atlas_prompts, "n_val": cfg.n_val}
    info = json.loads(info_path.read_text()) if reuse and info_path is not None and info_path.exists() else {}
    if coef_path is not None and coef_path.exists() and info.get("setup") == setup:
        atlas.load_coefficients(coef_path)
        return atlas.learned_task_vector(), float(info["seconds"]), n_blocks, info.get("note", "")
    layout = zero_shot(model.grid)
    subset = train.select(range(min(cfg.atlas_prompts, len(train))))
    device = next(model.parameters()).device
    canvases = subset.canvases.to(device)
    codes = target_codes(model, canvases).to(device)
    batches = [(canvases, codes)]

    def forward(m: AtlasModel, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, y = batch
        logits = m(x, layout)
        rows = [r - 1 for r in layout.positions("decoder", [1 + p for p in layout.masked_patches])]
        return logits[:, rows], y[:, list(layout.masked_patches)]

    higher = task_metric(task).higher_is_better
    with _Timer() as timer:
        log = train_atlas(atlas, batches, loss="cross_entropy", steps=cfg.atlas_steps, lr=cfg.atlas_lr,
                          forward=forward, evaluate=lambda a: _score_learned(model, a, val, cfg.batch_size),
                          higher_is_better=higher, progress=progress)
    scores = log.dropna(subset=["score"])
    kept = "end" if scores["score"].iloc[-1] == (scores["score"].max() if higher else scores["score"].min()) else "start (no val gain)"
    note = f"; kept {kept} by val score"
    if run is not None:
        atlas.save_coefficients(coef_path)
        write_json(info_path, {"seconds": timer.seconds, "note": note, "setup": setup})
        run.write_table(f"{name}_log", log)
    return atlas.learned_task_vector(), timer.seconds, n_blocks, note


def _score_learned(model: MAEVQGAN, atlas: AtlasModel, prompts: PromptBatch, batch_size: int) -> float:
    with weights_applied(model, atlas.learned_task_vector()):
        return _mean_score(model, prompts, batch_size)


def activation_rows(
    model: MAEVQGAN,
    activation_run: str | Path | None,
    held_out: Mapping[str, PromptBatch],
    tasks: Sequence[str],
    cfg: CompareConfig,
) -> list[tuple[str, Tensor | None, int, float, str]]:
    """``(task, scores or None, storage floats, seconds, notes)`` of the activation task vectors.

    Reads ``stats/<task>.safetensors`` and ``reinforce/<task>/policy.safetensors`` of a pipeline
    run; patches the units whose policy probability exceeds ``cfg.threshold`` into zero-shot
    forwards of the held-out prompts. Anything missing becomes a row without a number.
    """
    from interp.taskvectors.evaluate import patch_hooks_for

    if activation_run is None or not Path(activation_run).is_dir():
        why = (f"activation run {activation_run} not found: run `interp demo --out {activation_run or 'runs/demo'}` "
               "first, then rerun this command (fine-tunes resume)")
        return [(t, None, 0, float("nan"), why) for t in tasks]
    run = RunDir(Path(activation_run))
    manifest = run.manifest()
    pipeline_cfg = manifest.get("pipeline") or (manifest.get("config") or {}).get("pipeline") or {}
    act_tasks = list(pipeline_cfg.get("tasks") or tasks)
    timings = manifest.get("timings_s") or {}
    per_task_s = (timings.get("collect", float("nan")) + timings.get("search", float("nan"))) / max(len(act_tasks), 1)
    out = []
    for task in tasks:
        try:
            policy = run.load_policies([task])[task]  # its unit space comes from the file
            stats = run.load_stats([task], model=model)[task]
            space = policy.space
            space.check_model(model)
            kept = policy.mask(cfg.threshold)
            hooks = patch_hooks_for(model, space, [(stats, kept)], "zero_shot")
            scores = score_prompts(model, held_out[task], "zero_shot", hooks, batch_size=cfg.batch_size)
        except Exception as error:  # missing task, other model, other granularity: say so, no number
            out.append((task, None, 0, float("nan"), f"no activation task vector from {activation_run}: {error}"))
            continue
        storage = 0
        for i in kept.nonzero().flatten().tolist():
            site, heads, positions = space.unit_cells(i)
            storage += len(heads) * len(positions) * int(stats.mean(site).shape[-1])
        rcfg = policy.metadata.get("config") or {}
        forwards = int(rcfg.get("steps", 0)) * int(rcfg.get("samples", 0))
        n_collect = pipeline_cfg.get("n_candidates", "?"), pipeline_cfg.get("n_collect", "?")
        out.append((task, scores, storage, per_task_s,
                    f"{int(kept.sum())}/{len(space)} {space.granularity} units (p > {cfg.threshold}), mean z at their "
                    f"tokens; collect {n_collect[0]} scored + {n_collect[1]} averaged one-shot prompts, REINFORCE "
                    f"{rcfg.get('steps', '?')} steps x {rcfg.get('samples', '?')} = {forwards} patched forwards; "
                    f"seconds = demo collect+search / {len(act_tasks)} tasks"))
    return out
