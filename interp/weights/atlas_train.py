"""Training aTLAS coefficients: AdamW on the coefficients only, a supervised loss or the
unsupervised softmax entropy, the best coefficients kept by a validation score (as the official
scripts keep the best epoch). The model is :class:`~interp.weights.atlas.AtlasModel`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Union

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.weights.atlas import AtlasModel

LossFn = Union[str, Callable[..., Tensor]]


def softmax_entropy(logits: Tensor, dim: int = -1) -> Tensor:
    """Entropy of ``softmax(logits)`` along ``dim`` (the official unsupervised objective)."""
    return -(logits.softmax(dim) * logits.log_softmax(dim)).sum(dim)


def entropy_loss(outputs: Tensor) -> Tensor:
    """Mean softmax entropy of logits (class dimension last)."""
    return softmax_entropy(outputs, dim=-1).mean()


def cross_entropy_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy with the class dimension last (``[..., C]`` logits, ``[...]`` labels)."""
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))


_LOSSES: dict[str, tuple[Callable[..., Tensor], bool]] = {  # name -> (fn, needs targets)
    "entropy": (entropy_loss, False),
    "cross_entropy": (cross_entropy_loss, True),
    "mse": (F.mse_loss, True),
}


def _default_forward(model: nn.Module, batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, Tensor):
        return model(batch), None
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        return model(batch[0]), (batch[1] if len(batch) == 2 else None)
    raise TypeError(
        f"a batch must be a tensor, (inputs,) or (inputs, targets); got {type(batch).__name__}. "
        "For other models pass forward=lambda model, batch: (outputs, targets)."
    )


def _batches_forever(batches: Iterable[Any]) -> Iterable[Any]:
    while True:
        seen = False
        for batch in batches:
            seen = True
            yield batch
        if not seen:
            raise ValueError("train_atlas: the batches iterable is empty (or a used-up iterator); pass a list or DataLoader")


def train_atlas(
    model: AtlasModel,
    batches: Iterable[Any],
    loss: LossFn = "cross_entropy",
    steps: int | None = None,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    schedule: str = "cosine",
    forward: Callable[[nn.Module, Any], tuple[Any, Any]] | None = None,
    evaluate: Callable[[AtlasModel], float] | None = None,
    eval_every: int = 0,
    higher_is_better: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Learn the aTLAS coefficients of ``model`` (in place) and return the training log.

    Args:
        batches: a list / DataLoader of batches; by default a batch is a tensor, ``(inputs,)``
            or ``(inputs, targets)``, and ``forward(model, batch) -> (outputs, targets)`` handles
            anything else (several inputs, keyword arguments, outputs to pick from).
        loss: ``"cross_entropy"`` / ``"mse"`` / any ``fn(outputs, targets)`` (supervised), or
            ``"entropy"`` (unsupervised: mean softmax entropy of the logits; targets ignored).
        steps: optimiser steps (cycling through ``batches``); default one pass.
        lr, weight_decay, grad_clip: AdamW on the coefficients only. The official scripts use
            lr 0.1, clipping at 1 and their ``--wd`` weight decay (which pulls toward the base).
        schedule: ``"cosine"`` (no warm-up, as official) or ``"constant"``.
        evaluate, eval_every: a validation score computed every ``eval_every`` steps and at the
            end; the best coefficients (and the score at step 0) are kept.

    Returns a DataFrame with ``step``, ``loss``, ``lr`` and, where evaluated, ``score``.
    """
    if not isinstance(model, AtlasModel):
        raise TypeError("train_atlas trains an AtlasModel; wrap the base: AtlasModel(base, task_vectors)")
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {sorted(_LOSSES)} or a callable (outputs, targets)")
        loss_fn, supervised = _LOSSES[loss]
    else:
        loss_fn, supervised = loss, True
    if steps is None:
        try:
            steps = len(batches)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("train_atlas: batches has no length; pass steps=") from None
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    run = forward or _default_forward

    optimizer = torch.optim.AdamW([model.coefficients], lr=lr, weight_decay=weight_decay)
    best_score: float | None = None
    best_coef = model.coefficients.detach().clone()

    def check(step: int) -> float:
        nonlocal best_score, best_coef
        was_training = model.training
        model.eval()
        with torch.no_grad():
            score = float(evaluate(model))  # type: ignore[misc]
        model.train(was_training)
        better = best_score is None or (score > best_score if higher_is_better else score < best_score)
        if better:
            best_score, best_coef = score, model.coefficients.detach().clone()
        return score

    log = []
    if evaluate is not None:
        log.append({"step": 0, "loss": float("nan"), "lr": lr, "score": check(0)})
    stream = iter(_batches_forever(batches))
    bar = tqdm(range(1, steps + 1), desc="aTLAS", disable=not progress)
    for step in bar:
        rate = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps)) if schedule == "cosine" else lr
        for group in optimizer.param_groups:
            group["lr"] = rate
        outputs, targets = run(model, next(stream))
        if supervised:
            if targets is None:
                raise ValueError("a supervised loss needs targets: give (inputs, targets) batches or use loss='entropy'")
            value = loss_fn(outputs, targets)
        else:
            value = loss_fn(outputs)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([model.coefficients], grad_clip)
        optimizer.step()
        row = {"step": step, "loss": float(value.detach()), "lr": rate}
        if evaluate is not None and ((eval_every and step % eval_every == 0) or step == steps):
            row["score"] = check(step)
        log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4g}")
    if evaluate is not None:
        with torch.no_grad():
            model.coefficients.copy_(best_coef)
    return pd.DataFrame(log)
