"""Drawing the explorer's view: PNG bytes for the live image widgets, a plotly figure for export."""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from interp.viz.style import apply_style

#: the prompt itself, then the predictions of the target cell (what the widget and export show)
PROMPT_PANELS = ("example_input", "example_output", "query")
PREDICTION_PANELS = ("one_shot", "zero_shot", "patched", "target")
PANELS = PROMPT_PANELS + PREDICTION_PANELS
PANEL_NAMES = {"example_input": "example input", "example_output": "example output", "query": "query",
               "one_shot": "one-shot", "zero_shot": "zero-shot", "patched": "patched", "target": "target"}


def to_uint8(cell: Tensor) -> np.ndarray:
    """``[3, h, w]`` in [0, 1] -> ``[h, w, 3]`` uint8."""
    return (cell.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


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
