"""A figure of visual prompts: one row per task, the four cells and the model's prediction.

``prompt_grid(batches)`` takes :class:`~interp.data.tasks.PromptBatch` objects (one per task,
e.g. the dict of :func:`~interp.data.tasks.build_task_prompts`) and shows prompt ``index`` of
each as a row of plotly ``go.Image`` panels: example input, example output, query, target and,
when given, the prediction. Pure plotly (no kaleido needed to build or show it).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from interp.canvas import QUADRANTS, denormalize
from interp.data.tasks import PromptBatch
from interp.viz.style import apply_style

COLUMN_TITLES = ("example input", "example output", "query", "target", "prediction")


def _to_uint8(image: Tensor) -> np.ndarray:
    """``[3, h, w]`` in [0, 1] -> ``[h, w, 3]`` uint8."""
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().byte()
    return pixels.permute(1, 2, 0).numpy()


def _prediction_cell(prediction: Tensor, batch: PromptBatch, index: int, normalized: bool) -> Tensor:
    """A prediction given as canvases or cells (batched or not) -> the target cell in [0, 1]."""
    if prediction.dim() == 4:
        prediction = prediction[index]
    grid = batch.grid
    if prediction.shape[-1] == grid.canvas_size:
        cell = grid.cell(prediction, "target")
        return denormalize(cell) if normalized else cell
    if prediction.shape[-1] == grid.cell_size:
        return prediction
    raise ValueError(
        f"prediction of shape {tuple(prediction.shape)} is neither a {grid.canvas_size}px canvas "
        f"nor a {grid.cell_size}px cell"
    )


def prompt_grid(
    batches: PromptBatch | Sequence[PromptBatch] | Mapping[str, PromptBatch],
    index: int | Sequence[int] = 0,
    predictions: Mapping[str, Tensor] | Sequence[Tensor | None] | None = None,
    predictions_normalized: bool = True,
    cell_px: int = 140,
    title: str | None = None,
) -> go.Figure:
    """One row per batch (task): the four cells of prompt ``index`` and, if given, the prediction.

    ``predictions`` maps a task name (or gives, row by row) a tensor: canvases ``[B, 3, H, W]``
    (ImageNet-normalised unless ``predictions_normalized=False``) whose target cell is shown,
    or cells ``[B, 3, c, c]`` in [0, 1]; unbatched ``[3, ., .]`` works too.
    """
    if isinstance(batches, PromptBatch):
        rows = [batches]
    elif isinstance(batches, Mapping):
        rows = list(batches.values())
    else:
        rows = list(batches)
    if not rows:
        raise ValueError("prompt_grid needs at least one PromptBatch")
    indices = [index] * len(rows) if isinstance(index, int) else list(index)
    if len(indices) != len(rows):
        raise ValueError(f"{len(indices)} indices for {len(rows)} rows")
    if predictions is None:
        row_predictions: list[Tensor | None] = [None] * len(rows)
    elif isinstance(predictions, Mapping):
        row_predictions = [predictions.get(batch.task) for batch in rows]
    else:
        row_predictions = list(predictions)
        if len(row_predictions) != len(rows):
            raise ValueError(f"{len(row_predictions)} predictions for {len(rows)} rows")
    with_prediction = any(p is not None for p in row_predictions)
    columns = 5 if with_prediction else 4

    row_titles, cell_rows = [], []
    for batch, i, prediction in zip(rows, indices, row_predictions):
        if not 0 <= i < len(batch):
            raise IndexError(f"prompt {i} out of range for the {batch.task} batch of {len(batch)}")
        pair = batch.pairs[i]
        row_titles.append(f"{batch.task}<br><sub>{pair.query.name} / {pair.support.name}</sub>")
        cells = [getattr(batch.cells, quadrant)[i] for quadrant in QUADRANTS]
        if prediction is not None:
            cells.append(_prediction_cell(prediction, batch, i, predictions_normalized))
        cell_rows.append(cells)
    return image_rows(cell_rows, row_titles, COLUMN_TITLES[:columns], cell_px=cell_px, title=title)


def image_rows(
    rows: Sequence[Sequence[Tensor | None]],
    row_titles: Sequence[str],
    column_titles: Sequence[str],
    cell_px: int = 140,
    title: str | None = None,
) -> go.Figure:
    """A table of images: ``rows[r][c]`` is ``[3, h, w]`` in [0, 1], or None for an empty panel."""
    figure = make_subplots(
        rows=len(rows), cols=len(column_titles), column_titles=list(column_titles), row_titles=list(row_titles),
        horizontal_spacing=0.01, vertical_spacing=0.02,
    )
    for r, (row_title, cells) in enumerate(zip(row_titles, rows), start=1):
        for c, cell in enumerate(cells, start=1):
            if cell is not None:
                name = f"{row_title.split('<br>')[0]} {column_titles[c - 1]}"
                figure.add_trace(go.Image(z=_to_uint8(cell), name=name), row=r, col=c)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_annotations(font_size=11)
    figure.update_layout(
        width=cell_px * len(column_titles) + 50,  # row titles sit rotated in the right margin
        height=cell_px * len(rows) + (100 if title else 60),
        margin=dict(l=10, r=40, t=(60 if title else 20) + 14 * max(t.count("<br>") + 1 for t in column_titles), b=10),
        title=title,
    )
    return apply_style(figure)
