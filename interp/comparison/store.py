"""What the comparison trains, kept in its run directory so that a rerun resumes: the per-task
fine-tunes (``task_vectors/<task>.safetensors``, refused when the base weights or settings
differ) and the aTLAS coefficients (``atlas/<method>_<task>.safetensors`` + ``.json``)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from interp.canvas import zero_shot
from interp.data.tasks import PromptBatch
from interp.io import atomic_write, read_safetensors_metadata, write_json
from interp.metrics import masked_code_logits, task_metric
from interp.models.mae_vqgan import MAEVQGAN
from interp.run import RunDir
from interp.taskvectors.evaluate import score_prompts
from interp.weights.arithmetic import TaskVector
from interp.weights.atlas import AtlasModel
from interp.weights.atlas_train import train_atlas
from interp.weights.mae import FinetuneConfig, finetune_task, target_codes, weights_applied, weights_fingerprint


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``: wall-clock of the block."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


@dataclass
class FineTunes:
    """The task vectors of every task, with the seconds each fine-tune took; ``fresh`` when
    any was trained now (cached aTLAS coefficients then no longer apply)."""

    vectors: dict[str, TaskVector]
    seconds: dict[str, float]
    fresh: bool


def finetune_config(cfg: FinetuneConfig, index: int) -> FinetuneConfig:
    """The ``index``-th task's settings: its own seed."""
    return FinetuneConfig(**{**asdict(cfg), "seed": cfg.seed + index})


def load_task_vector(path: Path, model: MAEVQGAN, keys: Sequence[str], base_id: str, cfg: FinetuneConfig) -> tuple[TaskVector, float]:
    """A stored fine-tune and its seconds; an error if it came from other weights or settings."""
    meta = read_safetensors_metadata(path)
    if meta.get("base") != base_id:
        raise ValueError(
            f"{path} was fine-tuned from other base weights ({meta.get('base')}, this model is {base_id}); "
            "use a new --out directory, or delete task_vectors/ there to fine-tune again"
        )
    if json.loads(meta.get("config", "{}")) != json.loads(json.dumps(asdict(cfg))):
        raise ValueError(
            f"{path} was fine-tuned with other settings ({meta.get('config')}, now {asdict(cfg)}); "
            "use a new --out directory, or delete task_vectors/ there to fine-tune again"
        )
    loaded = TaskVector.load(path, device=model.device)
    if set(loaded) != set(keys):
        raise ValueError(f"{path} holds other parameters than this model's trainable MAE ones; use a new --out")
    return loaded.select(keys), float(meta.get("seconds", "nan"))  # the model's order (safetensors sorts names)


def finetune_tasks(model: MAEVQGAN, pool: Mapping[str, PromptBatch], tasks: Sequence[str], cfg: FinetuneConfig,
                   keys: Sequence[str], run: RunDir | None, progress: bool) -> FineTunes:
    """Fine-tune the MAE once per task (or load the stored task vector), saving each with its
    provenance (base fingerprint, settings, seconds) and its loss log."""
    out = FineTunes({}, {}, fresh=False)
    base_id = weights_fingerprint(model, keys)
    for i, task in enumerate(tasks):
        path = run.path / "task_vectors" / f"{task}.safetensors" if run else None
        ft_cfg = finetune_config(cfg, i)
        if path is not None and path.exists():
            out.vectors[task], out.seconds[task] = load_task_vector(path, model, keys, base_id, ft_cfg)
            continue
        out.fresh = True
        result = finetune_task(model, pool[task], ft_cfg, keys=keys, progress=progress)
        out.vectors[task], out.seconds[task] = result.task_vector, result.seconds
        if run is not None:
            meta = {"task": task, "base": base_id, "seconds": f"{result.seconds:.3f}", "config": json.dumps(asdict(ft_cfg)),
                    "pool": str(len(pool[task])), "final_loss": f"{result.log['loss'].iloc[-5:].mean():.5f}",
                    "keys": "trainable MAE parameters (VQGAN and fixed position tables excluded)"}
            with atomic_write(path) as tmp:
                result.task_vector.save(tmp, metadata=meta)
            run.write_table(f"finetune/{task}_log", result.log)
    return out


@dataclass
class AtlasSetup:
    """aTLAS sizes: steps and learning rate on the first ``prompts`` train prompts."""

    steps: int
    lr: float
    prompts: int
    n_val: int
    batch_size: int


@dataclass
class AtlasFit:
    """A learned aTLAS composition (a task vector over the blocks) and what it cost."""

    vector: TaskVector
    seconds: float
    n_blocks: int
    note: str


def fit_atlas(model: MAEVQGAN, vectors: Mapping[str, TaskVector], train: PromptBatch, val: PromptBatch, task: str,
              setup: AtlasSetup, run: RunDir | None, name: str, progress: bool, reuse: bool = True) -> AtlasFit:
    """Train (or reload from ``run/<name>``) aTLAS coefficients for one task on the base
    ``model``; its ``requires_grad`` flags are restored afterwards."""
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    atlas = AtlasModel(model, dict(vectors))  # uses the base by reference (freezes it: undone below)
    try:
        return _fit(atlas, model, train, val, task, setup, run, name, progress, reuse)
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(trainable[n])


def _fit(atlas: AtlasModel, model: MAEVQGAN, train: PromptBatch, val: PromptBatch, task: str,
         setup: AtlasSetup, run: RunDir | None, name: str, progress: bool, reuse: bool) -> AtlasFit:
    n_blocks = len(atlas.blocks)
    coef_path = run.path / f"{name}.safetensors" if run else None
    info_path = run.path / f"{name}.json" if run else None
    recorded = {"steps": setup.steps, "lr": setup.lr, "prompts": setup.prompts, "n_val": setup.n_val}
    info = json.loads(info_path.read_text()) if reuse and info_path is not None and info_path.exists() else {}
    if coef_path is not None and coef_path.exists() and info.get("setup") == recorded:
        atlas.load_coefficients(coef_path)
        return AtlasFit(atlas.learned_task_vector(), float(info["seconds"]), n_blocks, info.get("note", ""))
    layout = zero_shot(model.grid)
    subset = train.select(range(min(setup.prompts, len(train))))
    device = model.device
    canvases = subset.canvases.to(device)
    batches = [(canvases, target_codes(model, canvases).to(device))]

    def forward(m: AtlasModel, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, codes = batch
        return masked_code_logits(m(x, layout), codes, layout)

    def evaluate(a: AtlasModel) -> float:
        with weights_applied(model, a.learned_task_vector()):
            return mean_zero_shot_score(model, val, setup.batch_size)

    higher = task_metric(task).higher_is_better
    with Timer() as timer:
        log = train_atlas(atlas, batches, loss="cross_entropy", steps=setup.steps, lr=setup.lr,
                          forward=forward, evaluate=evaluate, higher_is_better=higher, progress=progress)
    note = f"; kept {_kept(log, higher)} by val score"
    if run is not None:
        atlas.save_coefficients(coef_path)
        write_json(info_path, {"seconds": timer.seconds, "note": note, "setup": recorded})
        run.write_table(f"{name}_log", log)
    return AtlasFit(atlas.learned_task_vector(), timer.seconds, n_blocks, note)


def _kept(log: pd.DataFrame, higher: bool) -> str:
    """Which coefficients ``train_atlas`` kept: the last ones, or the start when val never improved."""
    scores = log.dropna(subset=["score"])["score"]
    return "end" if scores.iloc[-1] == (scores.max() if higher else scores.min()) else "start (no val gain)"


def mean_zero_shot_score(model: MAEVQGAN, prompts: PromptBatch, batch_size: int) -> float:
    """The task metric averaged over ``prompts`` in zero-shot forwards (NaN prompts skipped)."""
    return float(score_prompts(model, prompts, "zero_shot", batch_size=batch_size).nanmean())
