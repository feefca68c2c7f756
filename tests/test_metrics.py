"""Metrics: the task metric from the registry, the code cross-entropy against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from interp.canvas import CanvasGrid, custom_layout, one_shot, zero_shot
from interp.data.registry import TASKS
from interp.metrics import code_cross_entropy, task_metric


def test_code_cross_entropy() -> None:
    grid = CanvasGrid(64, 8)  # 8x8 patches, quadrants of 16
    generator = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 32, (2, grid.num_patches), generator=generator)
    for layout in (one_shot(grid), zero_shot(grid)):
        rows = len(layout.decoder_patches)
        assert code_cross_entropy(torch.zeros(2, rows, 32), codes, layout).tolist() == pytest.approx([math.log(32)] * 2)
        logits = torch.randn(2, rows, 32, generator=generator)
        target_patches = grid.quadrant_patches("target")
        manual = torch.stack([
            torch.stack([
                F.cross_entropy(logits[b, layout.decoder_patches.index(p)][None], codes[b, p][None])
                for p in target_patches
            ]).mean()
            for b in range(2)
        ])
        torch.testing.assert_close(code_cross_entropy(logits, codes, layout), manual)
    no_target = custom_layout(grid, visible=range(16), decoder=range(32))
    with pytest.raises(ValueError, match="target"):
        code_cross_entropy(torch.zeros(2, 32, 32), codes, no_target)
    with pytest.raises(ValueError, match="logits"):
        code_cross_entropy(torch.zeros(2, 5, 32), codes, one_shot(grid))


def test_task_metric() -> None:
    names = {task: task_metric(task) for task in TASKS}
    assert {t for t, m in names.items() if m.name == "iou"} == {"segmentation", "segmentation_inpainting"}
    assert all(m.higher_is_better == (m.name == "iou") for m in names.values())
    assert all(m.region == "target" for m in names.values())
    with pytest.raises(ValueError, match="unknown task"):
        task_metric("depth")
