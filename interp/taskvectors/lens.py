"""The code lens: at which layer the prediction of the target cell forms, with and without a task vector.

A logit lens for an encoder-decoder that inpaints VQGAN codes. A *readout* turns one layer's
residual stream into code logits for the target cell; the codes are then decoded and scored
exactly as the model's own prediction is (:class:`~interp.scoring.Scorer`: official code
layout, full-grid VQGAN decode, paste, task metric), so a readout's metric is comparable with
the model's.

**Decoder layers** (``dec L``, L = 0 .. depth-1): the output of decoder block ``L``
(``hook_resid_post``) through the decoder's final norm and code head (``pred(norm(x))``), the
classic logit lens. ``dec embed`` reads the decoder's input (block 0's ``hook_resid_pre``:
the projected encoder output with mask tokens and positions) the same way. The last decoder
readout *is* the model's prediction: the same operations on the same tensor, bit for bit.

**Encoder layers** (``enc L``): the target cell is not in the encoder's sequence (it is the
hidden cell; the encoder holds only visible patches), so there is no residual stream "at the
target cell" to project. What is meaningful is an *early exit*: the output of encoder block
``L`` goes through the encoder's final norm and the decoder's input projection, then a full,
clean decoder pass (the remaining encoder blocks skipped). It answers "what would the model
predict if the encoder stopped at layer L?". The last encoder readout is again the model's
prediction bit for bit. Under a task vector the decoder pass keeps the vector's decoder patches
(the hooks stay on); the skipped encoder layers lose theirs.

**Only the target cell is read out.** Every other decoder patch keeps the model's final codes,
so the decoded image differs from the model's prediction only in the target cell's codes (the
VQGAN decode sees the whole grid; holding the rest fixed isolates what layer L knows about the
target). :func:`lens_logits` returns these composed logits, one ``[B, P, vocab]`` per readout.

:func:`lens_scores` runs the readouts under the three conditions of the paper (one-shot,
zero-shot, zero-shot + task vector) over a prompt set: the metric of every readout, per prompt,
and the images of the first prompts (the strip figure, :mod:`interp.viz.lens`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.canvas import PromptLayout
from interp.data.tasks import PromptBatch
from interp.hooks import FwdHooks
from interp.metrics import decoder_rows, task_metric
from interp.models.decode_cache import DecodeCache
from interp.models.protocol import PromptModel
from interp.scoring import Scorer

#: the conditions of :func:`lens_scores`: (name, layout, patched by the task vector)
CONDITIONS = (("one_shot", "one_shot", False), ("zero_shot", "zero_shot", False), ("zero_shot+tv", "zero_shot", True))


@dataclass(frozen=True)
class Readout:
    """One lens readout: ``stack`` ``encoder`` / ``decoder``, ``layer`` (-1: the decoder's input)."""

    stack: str
    layer: int

    @property
    def label(self) -> str:
        if self.stack == "decoder" and self.layer < 0:
            return "dec embed"
        return f"{'enc' if self.stack == 'encoder' else 'dec'} {self.layer}"


def readouts(model: PromptModel, encoder: bool = True) -> list[Readout]:
    """Every readout in forward order: encoder layers (if ``encoder``), the decoder input, decoder layers."""
    enc = [Readout("encoder", i) for i in range(model.stacks["encoder"].layers)] if encoder else []
    return enc + [Readout("decoder", -1)] + [Readout("decoder", i) for i in range(model.stacks["decoder"].layers)]


def target_rows(model: PromptModel, layout: PromptLayout | str) -> list[int]:
    """Rows of a layout's logits that predict the target cell."""
    layout = model.layout(layout)
    return decoder_rows(layout, model.grid.quadrant_patches("target"), "the target cell's")


@torch.no_grad()
def lens_logits(model: PromptModel, canvases: Tensor, layout: PromptLayout | str, fwd_hooks: FwdHooks = (),
                encoder: bool = True) -> tuple[list[Readout], Tensor]:
    """Code logits of every readout, ``[R, B, len(layout.decoder_patches), vocab]``.

    Row ``r`` is the model's final logits with the target cell's rows taken from readout ``r``
    (see the module docstring). ``fwd_hooks`` (e.g. a task vector's patch) stay on for the
    clean forward and every early exit.
    """
    layout = model.layout(layout)
    rows = target_rows(model, layout)
    reads = readouts(model, encoder)
    n_enc, n_dec = model.stacks["encoder"].layers, model.stacks["decoder"].layers
    names = {f"encoder.blocks.{i}.hook_resid_post" for i in range(n_enc)} if encoder else set()
    names |= {"decoder.blocks.0.hook_resid_pre"} | {f"decoder.blocks.{i}.hook_resid_post" for i in range(n_dec)}
    with model.hooks(fwd_hooks):
        final, cache = model.run_with_cache(canvases, layout, names_filter=lambda n: n in names)
        out = []
        for read in reads:
            # forward_from past a stack's last block: encoder -> final norm + the whole decoder (the
            # early exit); decoder -> only the final norm and the code head (the readout)
            if read.stack == "encoder":
                logits = model.forward_from(cache[f"encoder.blocks.{read.layer}.hook_resid_post"], layout, "encoder", n_enc)
            else:
                name = "decoder.blocks.0.hook_resid_pre" if read.layer < 0 else f"decoder.blocks.{read.layer}.hook_resid_post"
                logits = model.forward_from(cache[name], layout, "decoder", n_dec)
            composed = final.clone()
            composed[:, rows] = logits[:, rows]
            out.append(composed)
    return reads, torch.stack(out)


@dataclass
class LensResult:
    """What :func:`lens_scores` gives for one task.

    ``metric[condition]`` ``[R, N]`` the task metric of every readout and prompt (NaN: empty
    IoU); ``images[condition]`` ``[R, k, 3, H, W]`` int32 the official pasted predictions of the
    first ``k`` prompts; ``final[condition]`` ``[N]`` the model's own metric (= the last readout).
    """

    task: str
    readouts: list[Readout]
    metric: dict[str, Tensor] = field(default_factory=dict)
    images: dict[str, Tensor] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.readouts]

    def table(self) -> pd.DataFrame:
        """Tidy per-layer table: condition, readout, stack, layer, metric, mean, sem, n."""
        metric = task_metric(self.task)
        rows = []
        for condition, values in self.metric.items():
            for read, v in zip(self.readouts, values):
                valid = v[~v.isnan()].double()
                n = int(valid.numel())
                rows.append({
                    "task": self.task, "condition": condition, "readout": read.label, "stack": read.stack,
                    "layer": read.layer, "metric": metric.name, "higher_is_better": metric.higher_is_better,
                    "mean": float(valid.mean()) if n else float("nan"),
                    "sem": float(valid.std() / n**0.5) if n > 1 else float("nan"), "n": n,
                })
        return pd.DataFrame(rows)


@torch.no_grad()
def lens_scores(model: PromptModel, prompts: PromptBatch, tv_hooks: FwdHooks | None = None, encoder: bool = True,
                batch_size: int = 16, keep_images: int = 1, progress: bool = True) -> LensResult:
    """Every readout's task metric on every prompt, for one-shot, zero-shot and (given the task
    vector's ``tv_hooks``, patching zero-shot forwards) zero-shot + task vector.

    Scored by :class:`~interp.scoring.Scorer` (pixel kind, official decode) with a
    :class:`~interp.models.decode_cache.DecodeCache` (readouts that predict the same code grid
    are decoded once; the pixels are the plain decode's bit for bit).
    """
    device = model.device
    reads = readouts(model, encoder)
    result = LensResult(prompts.task, reads)
    conditions = [c for c in CONDITIONS if not c[2] or tv_hooks is not None]
    decoder = DecodeCache(model.decode_codes)
    starts = list(range(0, len(prompts), batch_size))
    bar = tqdm(total=len(conditions) * len(starts), desc=f"lens {prompts.task}", unit="batch", disable=not progress)
    for name, layout, patched in conditions:
        scorer = Scorer(model, prompts.task, layout, "pixel", "official", empty_iou=float("nan"), decoder=decoder)
        metrics, images = [], []
        for start in starts:
            canvases = prompts.canvases[start : start + batch_size].to(device)
            _, logits = lens_logits(model, canvases, layout, tv_hooks if patched else (), encoder)
            r, b = logits.shape[:2]
            score = scorer(canvases.repeat(r, 1, 1, 1), logits.flatten(0, 1))
            metrics.append(score.metric.view(r, b).cpu())
            if start < keep_images:
                images.append(score.image.view(r, b, *score.image.shape[1:])[:, : keep_images - start].cpu())
            bar.update()
        result.metric[name] = torch.cat(metrics, dim=1)
        if images:
            result.images[name] = torch.cat(images, dim=1)
    bar.close()
    return result


def solved_at(table: pd.DataFrame, fraction: float = 0.9) -> Mapping[str, str]:
    """Per condition, where the task becomes solved: in each stack, the first readout whose mean
    metric closes ``fraction`` of the gap between that stack's first readout and the model's
    prediction (the last readout), e.g. ``"enc 3, dec 1"``."""
    out: dict[str, str] = {}
    for condition, part in table.groupby("condition", sort=False):
        final = part["mean"].iloc[-1]
        where = []
        for _, rows in part.groupby("stack", sort=False):
            first = rows["mean"].iloc[0]
            gap = final - first
            for label, m in zip(rows["readout"], rows["mean"]):
                if gap == 0 or (m - first) / gap >= fraction:
                    where.append(label)
                    break
        out[str(condition)] = ", ".join(where)
    return out
