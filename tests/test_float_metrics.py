"""The float-canvas metrics of bench/ (and through them the official integer ones of
interp.metrics) against hand-computed values and a re-statement of the official scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.float_metrics import mse, segmentation_iou, task_reward, task_score
from interp.canvas import CanvasGrid, normalize

GRID = CanvasGrid(64, 8)  # target cell: rows/cols 33..63


def _canvas(target_cell: torch.Tensor, grid: CanvasGrid = GRID, fill: float = 0.3) -> torch.Tensor:
    """A [1, 3, H, W] canvas in [0, 1]: ``fill`` everywhere, ``target_cell`` [3, c, c] in the target."""
    canvas = torch.full((1, 3, grid.canvas_size, grid.canvas_size), fill)
    grid.cell(canvas, "target")[0] = target_cell
    return canvas


def _square_cell(top: int, left: int, side: int, cell: int = 31) -> torch.Tensor:
    image = torch.zeros(3, cell, cell)
    image[:, top : top + side, left : left + side] = 1.0
    return image


def test_iou_hand_computed() -> None:
    truth = _canvas(_square_cell(0, 0, 4))  # 16 white pixels
    pred = _canvas(_square_cell(2, 2, 4))  # overlap 2x2 = 4, union 28
    iou = segmentation_iou(normalize(pred), normalize(truth), GRID)
    assert iou.shape == (1,) and iou.item() == pytest.approx(4 / 28)
    assert segmentation_iou(pred, truth, GRID, normalized=False).item() == pytest.approx(4 / 28)
    both = torch.cat([truth, pred])
    batched = segmentation_iou(both, torch.cat([truth, truth]), GRID, normalized=False)
    assert batched.tolist() == pytest.approx([1.0, 4 / 28])


def test_iou_rounding_truncation_and_offsets() -> None:
    truth = _canvas(torch.ones(3, 31, 31))  # all white
    grey = _canvas(torch.full((3, 31, 31), 0.5))  # 127.5 -> truncated 127 -> black
    assert segmentation_iou(grey, truth, GRID, normalized=False).item() == 0.0
    assert segmentation_iou(grey, truth, GRID, normalized=False, quantize=False).item() == 1.0  # 127.5: tie -> white
    # white iff the channel sum of (pixel + t) reaches 3 * 127.5
    assert segmentation_iou(grey, truth, GRID, normalized=False, offsets=(1, 0, 0)).item() == 0.0  # 382
    assert segmentation_iou(grey, truth, GRID, normalized=False, offsets=(2, 0, 0)).item() == 1.0  # 383
    mixed = torch.tensor([128, 127, 127]).view(3, 1, 1).expand(3, 31, 31) / 255 + 1e-4
    assert segmentation_iou(_canvas(mixed), truth, GRID, normalized=False).item() == 0.0  # mean 127.33: black
    # only the target cell counts
    noisy = _canvas(torch.ones(3, 31, 31), fill=0.9)
    assert segmentation_iou(noisy, truth, GRID, normalized=False).item() == 1.0


def test_iou_empty_union() -> None:
    black = _canvas(torch.zeros(3, 31, 31))
    assert math.isnan(segmentation_iou(black, black, GRID, normalized=False).item())
    assert segmentation_iou(black, black, GRID, normalized=False, empty=1.0).item() == 1.0


def _official_iou(pred01: np.ndarray, target01: np.ndarray, t=(0, 0, 0)) -> float:
    """The official pipeline restated: uint8 by truncation, round_image to white/black, crop, IoU."""
    def to_uint(x):
        return np.clip(np.transpose(x, (1, 2, 0)) * 255, 0, 255).astype(np.int32)

    def round_image(img, t):
        options = np.array([[255, 255, 255], [0, 0, 0]])
        shifted = img + np.array(t, dtype=np.int32)
        distance = ((shifted[..., None, :] - options) ** 2).mean(axis=-1)
        return options[np.argmin(distance, axis=-1)]

    ours, target = round_image(to_uint(pred01), t)[113:, 113:], round_image(to_uint(target01), (0, 0, 0))[113:, 113:]
    seg_ours, seg_target = (ours == 255).all(axis=2), (target == 255).all(axis=2)
    return float((seg_ours & seg_target).sum() / (seg_ours | seg_target).sum())


@pytest.mark.parametrize("t", [(0, 0, 0), (20, 20, 20), (-30, 0, 10)])
def test_iou_matches_official_restatement_on_224(t) -> None:
    grid = CanvasGrid(224, 16)
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 3, 224, 224, generator=generator, dtype=torch.float64)
    truth = (torch.rand(4, 1, 224, 224, generator=generator) > 0.6).double().expand(-1, 3, -1, -1)
    ours = segmentation_iou(pred, truth, grid, normalized=False, offsets=t)
    official = [_official_iou(pred[i].numpy(), truth[i].numpy(), t) for i in range(4)]
    assert ours.tolist() == pytest.approx(official, abs=1e-6)


def test_mse_hand_computed() -> None:
    truth = normalize(_canvas(torch.full((3, 31, 31), 0.5)))
    pred = truth.clone()
    GRID.cell(pred, "target")[...] += 0.1  # in normalised space
    GRID.cell(pred, "example_input")[...] += 5.0  # ignored
    assert mse(pred, truth, GRID).item() == pytest.approx(0.01, rel=1e-5)
    # in [0, 1] space a difference d is (d / std_c)^2 after normalisation
    a, b = _canvas(torch.full((3, 31, 31), 0.5)), _canvas(torch.full((3, 31, 31), 0.6))
    want = float(np.mean([(0.1 / s) ** 2 for s in (0.229, 0.224, 0.225)]))
    assert mse(b, a, GRID, normalized=False).item() == pytest.approx(want, rel=1e-4)
    # official quantisation: 0.6 * 255 = 153 (exact) and 0.5 * 255 = 127.5 -> 127
    quantized = float(np.mean([((153 - 127) / 255 / s) ** 2 for s in (0.229, 0.224, 0.225)]))
    assert mse(b, a, GRID, normalized=False, quantize=True).item() == pytest.approx(quantized, rel=1e-4)
    assert mse(torch.cat([a, b]), torch.cat([a, a]), GRID, normalized=False).shape == (2,)


def test_task_score_and_reward() -> None:
    a, b = _canvas(torch.full((3, 31, 31), 0.5)), _canvas(torch.full((3, 31, 31), 0.6))
    score = task_score("lowlight", b, a, GRID, normalized=False)
    assert task_reward("lowlight", b, a, GRID, normalized=False).item() == pytest.approx(-score.item())
    with pytest.raises(ValueError, match="canvases"):
        mse(torch.zeros(3, 64, 64), torch.zeros(3, 64, 64), GRID)
