"""Task metrics on the scored cell, batched: segmentation IoU, MSE, and code cross-entropy.

All pixel metrics take whole integer canvases ``[B, 3, H, W]`` (the prediction with the
model's output pasted into the target cell, and the prompt canvas whose target cell holds the
truth), crop the scored cell (the task's region, :func:`task_metric`) with the
:class:`~interp.canvas.CanvasGrid`, and return one value per prompt, ``[B]``. (Float-canvas
variants, used only by the benchmarks, live in ``bench/float_metrics.py``.)

They follow the official scoring (github amirbar/visual_prompting,
evaluate/evaluate_segmentation.py, evaluate/segmentation_utils.py ``calculate_metric``,
evaluate/reasoning_dataloader.py ``round_image``; alhojel/visual_task_vectors,
evaluate/evaluate_multitask.py ``evaluate_mse`` and evaluate/reinforce_train.py
``loss_iou`` / ``loss_mse``):

* pixels become integers 0..255 by ``clip(x * 255).int()`` (truncation), for both canvases;
* **IoU**: each pixel is rounded to the nearer of white and black (mean squared distance over
  the channels; a tie goes to white) after adding the optional per-channel threshold offsets
  ``t`` to the *prediction* only (the official ``--t``; the official code casts them to the
  image's integer type, so pass integers to match it); IoU of the white pixels. Both empty:
  ``empty`` (NaN, like the official 0/0);
* **MSE**: mean squared difference over the cell's channels and pixels in normalised space:
  the official code truncates both canvases to 0..255 and normalises the integers again in
  float32 (:func:`pixel_mse`).

:func:`pixel_mse`, :func:`pixel_iou` are the official ``loss_mse`` / ``loss_iou`` bit for bit
on integer canvases (what :func:`interp.models.pixels.predict_pixels` and ``canvas_pixels``
return); :mod:`interp.scoring` scores predictions with them.

:func:`code_cross_entropy` is the token-space score: cross-entropy of the decoder's logits
against the target cell's VQGAN codes, averaged over the target quadrant's patches (it needs no
VQGAN decoding); :func:`masked_code_cross_entropy` is the training loss on a layout's masked patches and
:func:`decoder_rows` says which logits rows predict which patches (the one place for both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.canvas import CanvasGrid, PromptLayout, Quadrant, normalize
from interp.data.registry import get_task

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


@dataclass(frozen=True)
class TaskMetric:
    """Which metric scores a task: ``"iou"`` or ``"mse"``, its direction and the cell it reads."""

    name: str
    higher_is_better: bool
    region: Quadrant = "target"


def task_metric(task: str) -> TaskMetric:
    """The registry's metric of a task: IoU (higher is better) or MSE (lower is better)."""
    spec = get_task(task)
    return TaskMetric(spec.metric, spec.metric == "iou", spec.region)


def check_canvas_pair(pred: Tensor, target: Tensor, grid: CanvasGrid) -> None:
    """A ValueError unless prediction and target are canvas batches ``[B, 3, H, W]`` of one shape on the grid."""
    if pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"expected canvases [B, 3, H, W]; got prediction of shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.shape[-1] != grid.canvas_size or pred.shape[-2] != grid.canvas_size:
        raise ValueError(f"canvases are {pred.shape[-2]}x{pred.shape[-1]}, the grid is {grid.canvas_size}px")


def round_to_white(pixels: Tensor, offsets: Sequence[float] = (0, 0, 0)) -> Tensor:
    """``[B, 3, H, W]`` pixels in 0..255 -> ``[B, H, W]`` True where white is nearer than black."""
    shifted = pixels + pixels.new_tensor(offsets).view(1, 3, 1, 1)
    to_white = ((shifted - 255.0) ** 2).mean(dim=1)
    to_black = (shifted**2).mean(dim=1)
    return to_white <= to_black  # tie -> white (first option, like argmin in round_image)


def white_iou(ours: Tensor, truth: Tensor, empty: float = float("nan")) -> Tensor:
    """IoU of two ``[B, H, W]`` bool masks of white pixels, ``[B]`` float32; ``empty`` where both are empty."""
    intersection = (ours & truth).sum(dim=(-2, -1)).to(torch.float32)
    union = (ours | truth).sum(dim=(-2, -1)).to(torch.float32)
    iou = intersection / union.clamp(min=1)
    return torch.where(union > 0, iou, torch.full_like(iou, empty))


# --------------------------------------------------------------------------------------------
# the official metrics on integer canvases (interp.models.pixels makes them)


def _check_pixels(pred: Tensor, target: Tensor, grid: CanvasGrid) -> None:
    check_canvas_pair(pred, target, grid)
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("pixel metrics take integer canvases 0..255 (interp.models.pixels.predict_pixels / "
                         "canvas_pixels)")


def pixel_mse(pred: Tensor, target: Tensor, grid: CanvasGrid, region: Quadrant = "target") -> Tensor:
    """Official ``loss_mse`` of integer canvases ``[B, 3, H, W]``: both normalised again in
    float32, ``(x / 255 - mean) / std``, mean squared difference over the scored cell
    (``region``, the task's :attr:`TaskMetric.region`), ``[B]``."""
    _check_pixels(pred, target, grid)
    cells = [normalize(grid.cell(x, region).float() / 255.0) for x in (pred, target)]
    return ((cells[0] - cells[1]) ** 2).mean(dim=(-3, -2, -1))


def pixel_iou(
    pred: Tensor, target: Tensor, grid: CanvasGrid, offsets: Sequence[float] = (0, 0, 0), empty: float = float("nan"),
    region: Quadrant = "target",
) -> Tensor:
    """Official ``loss_iou`` of integer canvases: ``round_image`` of the scored cell (``region``;
    int32 ``offsets`` added to the prediction only), IoU of the white pixels in float32, ``[B]``."""
    _check_pixels(pred, target, grid)
    shift = torch.tensor(offsets).to(torch.int32).view(1, 3, 1, 1).to(pred.device)  # the official cast
    ours = round_to_white((grid.cell(pred, region).to(torch.int32) + shift).double())
    truth = round_to_white(grid.cell(target, region).double())
    return white_iou(ours, truth, empty)


#: pixel units over which :func:`soft_iou`'s whiteness goes from 27% to 73% (logistic scale)
SOFT_IOU_SCALE = 8.0


def soft_iou(pred: Tensor, truth: Tensor, grid: CanvasGrid, scale: float = SOFT_IOU_SCALE, smooth: float = 1.0) -> Tensor:
    """Smooth IoU of float pixels ``pred [B, 3, H, W]`` in [0, 1] against integer ``truth``, ``[B]``.

    The official rounding (:func:`round_to_white`) calls a pixel white when its channel mean is
    at least 127.5; here a predicted pixel is white with weight ``sigmoid((mean - 127.5) / scale)``
    (0..255 units), the truth is rounded as officially, and
    ``(sum w t + smooth) / (sum (w + t - w t) + smooth)`` is differentiable in ``pred``. With
    ``smooth=1`` pixel an empty prediction of an empty truth scores 1 (the official reward's
    ``empty_iou``), and a non-empty cell moves by well under 1%.
    """
    check_canvas_pair(pred, truth, grid)
    level = (grid.cell(pred, "target").float() * 255.0).mean(dim=1)  # [B, h, w]
    white = torch.sigmoid((level - 127.5) / scale)
    target = round_to_white(grid.cell(truth, "target").double()).to(white.dtype)
    intersection = (white * target).sum(dim=(-2, -1))
    union = (white + target - white * target).sum(dim=(-2, -1))
    return (intersection + smooth) / (union + smooth)


def soft_mse(pred: Tensor, truth: Tensor, grid: CanvasGrid) -> Tensor:
    """:func:`pixel_mse` of float pixels ``pred [B, 3, H, W]`` in [0, 1] (not truncated to integers,
    so differentiable) against integer ``truth``, ``[B]``: equal to it when ``pred`` is ``k / 255``."""
    check_canvas_pair(pred, truth, grid)
    cells = [normalize(grid.cell(pred, "target").float()), normalize(grid.cell(truth, "target").float() / 255.0)]
    return ((cells[0] - cells[1]) ** 2).mean(dim=(-3, -2, -1))


def decoder_rows(layout: PromptLayout, patches: Sequence[int], what: str = "the requested") -> list[int]:
    """Rows of the logits ``[B, len(layout.decoder_patches), vocab]`` that predict ``patches``."""
    row = {patch: i for i, patch in enumerate(layout.decoder_patches)}
    missing = [p for p in patches if p not in row]
    if missing:
        raise ValueError(f"layout {layout.name!r} predicts no codes for {what} patches {missing[:5]}")
    return [row[p] for p in patches]


def code_cross_entropy(
    logits: Tensor,
    target_codes: Tensor,
    layout: PromptLayout,
    quadrant: Quadrant = "target",
    patches: Sequence[int] | None = None,
) -> Tensor:
    """Cross-entropy of a quadrant's (or ``patches``') VQGAN codes, averaged over them, ``[B]``.

    ``logits [B, len(layout.decoder_patches), vocab]`` (rows follow ``layout.decoder_patches``),
    ``target_codes [B, num_patches]`` integer codes of the whole canvas. With
    ``patches=layout.masked_patches`` this is the official ``nll_loss`` of
    ``decode_raw_predicion`` (the mean over the masked patches of ``-log_softmax`` at the
    canvas's codes).
    """
    grid = layout.grid
    if logits.dim() != 3 or logits.shape[1] != len(layout.decoder_patches):
        raise ValueError(
            f"logits must be [B, {len(layout.decoder_patches)}, vocab] for layout {layout.name!r}; "
            f"got {tuple(logits.shape)}"
        )
    if target_codes.dim() != 2 or target_codes.shape != (logits.shape[0], grid.num_patches):
        raise ValueError(
            f"target_codes must be [{logits.shape[0]}, {grid.num_patches}]; got {tuple(target_codes.shape)}"
        )
    what = quadrant if patches is None else "the requested"
    patches = grid.quadrant_patches(quadrant) if patches is None else tuple(patches)
    rows = torch.tensor(decoder_rows(layout, patches, what), device=logits.device)
    chosen = logits.index_select(1, rows)  # [B, P, vocab]
    codes = target_codes.index_select(1, torch.tensor(patches, device=target_codes.device)).long()  # [B, P]
    loss = F.cross_entropy(chosen.flatten(0, 1).float(), codes.flatten(), reduction="none")
    return loss.view(codes.shape).mean(dim=1)


def masked_code_logits(logits: Tensor, codes: Tensor, layout: PromptLayout) -> tuple[Tensor, Tensor]:
    """The logit rows and VQGAN codes of the layout's *hidden* patches (the official
    ``forward_loss`` targets): ``(logits [B, P, vocab], codes [B, P])``.

    ``logits [B, len(layout.decoder_patches), vocab]`` as the model returns them (no CLS row),
    ``codes [B, num_patches]`` of the whole canvas.
    """
    rows = decoder_rows(layout, layout.masked_patches, "masked")
    return logits[:, rows], codes[:, list(layout.masked_patches)]


def masked_code_cross_entropy(logits: Tensor, codes: Tensor, layout: PromptLayout) -> Tensor:
    """Mean cross-entropy over all hidden patches of the batch (a scalar): the MAE training
    loss, used by ``train-tiny``, per-task fine-tuning and aTLAS. Unlike
    :func:`code_cross_entropy` (a score per prompt on one quadrant) it covers every masked patch,
    random masks included."""
    chosen, targets = masked_code_logits(logits, codes, layout)
    return F.cross_entropy(chosen.flatten(0, 1), targets.flatten())
