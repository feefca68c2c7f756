"""Per-task fine-tuning of MAE-VQGAN: weight-space task vectors ``tau_t = theta_t - theta_0``.

A copy of the base model is trained on canvases of *one* task in the *zero-shot* layout: the
encoder sees only the query cell, and the labels are the VQGAN codes of the hidden target cell
(:func:`interp.metrics.masked_code_cross_entropy`, the loss ``train-tiny`` uses). No example
pair is ever shown, so whatever lets the model do the task must go into its weights. Only the
MAE (encoder + decoder) trains; the VQGAN stays frozen and is not part of the task vector, nor
are the fixed sin-cos position tables (``requires_grad=False``).

Train-split pairs are cut once (:func:`split_train_pairs`): the last ``n_val`` pairs are a
validation slice (coefficient search), the rest the training pool. The comparison of these
task vectors with activation-space ones is :mod:`interp.comparison.weights`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.canvas import zero_shot
from interp.data.source import Pair, PromptSource
from interp.data.registry import selection
from interp.data.tasks import PromptBatch, build_task_prompts
from interp.metrics import masked_code_cross_entropy, task_metric
from interp.models.mae_vqgan import MAEVQGAN
from interp.weights.arithmetic import TaskVector

DEFAULT_TASKS: tuple[str, ...] = selection("finetune")


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
    return masked_code_cross_entropy(model(canvases, layout), codes, layout)


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
# re-weighting and scores


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
