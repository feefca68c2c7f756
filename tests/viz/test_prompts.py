"""The prompt-grid figure: one row per task, four cells plus the prediction."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from interp.canvas import CanvasGrid
from interp.data.synthetic import SyntheticPascal
from interp.data.registry import TASKS
from interp.data.tasks import build_task_prompts
from interp.viz.prompts import prompt_grid

GRID = CanvasGrid(64, 8)


@pytest.fixture(scope="module")
def batches():
    return build_task_prompts(SyntheticPascal(seed=0, size_per_split=60), fold=0, n=3, grid=GRID, seed=0)


def test_grid_of_cells(batches) -> None:
    figure = prompt_grid(batches, index=1)
    assert isinstance(figure, go.Figure)
    assert len(figure.data) == 4 * len(TASKS)
    assert all(isinstance(trace, go.Image) for trace in figure.data)
    first = np.asarray(figure.data[0].z)
    assert first.shape == (GRID.cell_size, GRID.cell_size, 3)
    expected = (batches["segmentation"].cells.example_input[1].clamp(0, 1) * 255).round().byte().permute(1, 2, 0)
    assert np.array_equal(first, expected.numpy())
    titles = [a.text for a in figure.layout.annotations]
    assert "example input" in titles and any(t.startswith("colorization") for t in titles)


def test_predictions_as_canvases_or_cells(batches) -> None:
    seg = batches["segmentation"]
    predictions = {"segmentation": seg.canvases, "lowlight": batches["lowlight"].cells.target}
    figure = prompt_grid([seg, batches["lowlight"], batches["identity"]], index=2, predictions=predictions)
    assert len(figure.data) == 3 * 5 - 1  # identity has no prediction
    shown = np.asarray(figure.data[4].z)  # the segmentation prediction: its target cell
    assert np.array_equal(shown, np.asarray(figure.data[3].z))
    with pytest.raises(ValueError, match="neither"):
        prompt_grid(seg, predictions=[torch.zeros(3, 3, 10, 10)])
