"""Task metrics of *float* canvases: what the benchmarks compare the official integer path with.

The package scores predictions on integer canvases (:func:`interp.metrics.pixel_iou`,
:func:`~interp.metrics.pixel_mse`, the official ``loss_iou`` / ``loss_mse``). These variants
take ImageNet-normalised (or, ``normalized=False``, [0, 1]) float canvases: ``quantize=True``
truncates to integers first and then is the official metric; ``quantize=False`` skips the
truncation (exact and differentiable). Only ``bench/`` uses them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from interp.canvas import CanvasGrid, denormalize, normalize
from interp.metrics import check_canvas_pair, pixel_iou, pixel_mse, round_to_white, task_metric, white_iou


def to_pixels(canvas: Tensor, normalized: bool = True, quantize: bool = True) -> Tensor:
    """Canvas -> pixel values in [0, 255] (float64); ``quantize``: the official truncation."""
    x = canvas.detach().to(torch.float64)
    if normalized:
        x = denormalize(x)
    x = (x * 255.0).clamp(0.0, 255.0)
    return x.floor() if quantize else x


def segmentation_iou(
    pred: Tensor,
    target: Tensor,
    grid: CanvasGrid,
    normalized: bool = True,
    offsets: Sequence[float] = (0, 0, 0),
    quantize: bool = True,
    empty: float = float("nan"),
) -> Tensor:
    """IoU of the white pixels of the target cell after rounding to white/black, ``[B]``."""
    check_canvas_pair(pred, target, grid)
    if quantize:
        pixels = [to_pixels(x, normalized).to(torch.int32) for x in (pred, target)]
        return pixel_iou(*pixels, grid, offsets, empty)
    ours = round_to_white(to_pixels(grid.cell(pred, "target"), normalized, quantize), offsets)
    truth = round_to_white(to_pixels(grid.cell(target, "target"), normalized, quantize))
    return white_iou(ours, truth, empty)


def mse(
    pred: Tensor,
    target: Tensor,
    grid: CanvasGrid,
    normalized: bool = True,
    quantize: bool = False,
) -> Tensor:
    """Mean squared error on the target cell in ImageNet-normalised space, ``[B]``."""
    check_canvas_pair(pred, target, grid)
    if quantize:
        return pixel_mse(*(to_pixels(x, normalized).to(torch.int32) for x in (pred, target)), grid)
    cells = [grid.cell(canvas, "target") for canvas in (pred, target)]
    if not normalized:
        cells = [normalize(cell) for cell in cells]
    return ((cells[0] - cells[1]) ** 2).mean(dim=(-3, -2, -1))


def task_score(task: str, pred: Tensor, target: Tensor, grid: CanvasGrid, **kwargs) -> Tensor:
    """The task's own metric (:func:`task_metric`), ``[B]``; kwargs go to that metric."""
    metric = task_metric(task)
    if metric.name == "iou":
        return segmentation_iou(pred, target, grid, **kwargs)
    return mse(pred, target, grid, **kwargs)


def task_reward(task: str, pred: Tensor, target: Tensor, grid: CanvasGrid, **kwargs) -> Tensor:
    """Higher-is-better score, ``[B]``: IoU, or -MSE (the official REINFORCE reward)."""
    score = task_score(task, pred, target, grid, **kwargs)
    return score if task_metric(task).higher_is_better else -score
