"""Drawing the explorer's view: PNG bytes for the live image widgets, a plotly figure for export.

The live view shows the prompt as one small 2 x 2 canvas (example input | example output, query |
blank: what the model must fill in) and the predictions large beside the target; a prediction can
also be drawn as its difference to the target (:func:`difference`: white = equal, dark red = off
by :data:`DIFF_FULL` or more of the [0, 1] range, the channel mean).
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import torch
from torch import Tensor

from interp.viz.style import apply_style

#: the prompt itself, then the predictions of the target cell (what the widget and export show)
PROMPT_PANELS = ("example_input", "example_output", "query")
PREDICTIONS = ("one_shot", "zero_shot", "patched")
PREDICTION_PANELS = PREDICTIONS + ("target",)
PANELS = PROMPT_PANELS + PREDICTION_PANELS
DIFF_FULL = 0.5  # the difference drawn at full colour
DIFF_COLOUR = (0.70, 0.09, 0.17)
PANEL_NAMES = {"example_input": "example input", "example_output": "example output", "query": "query",
               "one_shot": "one-shot", "zero_shot": "zero-shot", "patched": "patched", "target": "target"}


def to_uint8(cell: Tensor) -> np.ndarray:
    """``[3, h, w]`` in [0, 1] -> ``[h, w, 3]`` uint8."""
    return (cell.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def difference(cell: Tensor, target: Tensor) -> Tensor:
    """``[3, h, w]``: the channel-mean absolute difference to ``target`` as colour (white 0, dark red >= DIFF_FULL)."""
    d = (cell.float().cpu() - target.float().cpu()).abs().mean(0, keepdim=True)  # [1, h, w]
    t = (d / DIFF_FULL).clamp(0, 1)
    colour = torch.tensor(DIFF_COLOUR).view(3, 1, 1)
    return (1 - t) + t * colour


def prompt_canvas(cells: Mapping[str, Tensor]) -> Tensor:
    """``[3, 2c, 2c]``: example input | example output over query | a grey blank (the cell to predict)."""
    blank = torch.full_like(cells["query"].float().cpu(), 0.85)
    top = torch.cat([cells["example_input"].float().cpu(), cells["example_output"].float().cpu()], dim=2)
    bottom = torch.cat([cells["query"].float().cpu(), blank], dim=2)
    return torch.cat([top, bottom], dim=1)


def png(cell: Tensor, size: int) -> bytes:
    """PNG bytes of a cell, upscaled (nearest) to ``size`` px for display."""
    from PIL import Image

    image = Image.fromarray(to_uint8(cell))
    if image.size[0] < size:
        image = image.resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def fmt(x: float) -> str:
    return "n/a (empty masks)" if np.isnan(x) else f"{x:.3f}"


def image_row(cells: Mapping[str, Tensor], titles: Mapping[str, str], title: str, panels: Sequence[str] = PANELS) -> go.Figure:
    """One row of images (prompt cells, then predictions) with a title per panel."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[titles.get(p, PANEL_NAMES.get(p, p)) for p in panels],
                        horizontal_spacing=0.012)
    for c, panel in enumerate(panels, start=1):
        fig.add_trace(go.Image(z=to_uint8(cells[panel]), name=panel), row=1, col=c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=100, b=10))
    return apply_style(fig, width=150 * len(panels) + 20, height=300)
