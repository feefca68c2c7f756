"""Figures of the code lens and of path patching (computed by :mod:`interp.taskvectors.lens` and
:mod:`interp.taskvectors.paths`; written into a run by ``interp lens`` / ``interp paths``).

* :func:`lens_strip`: one row per condition (one-shot, zero-shot, zero-shot + task vector), the
  query and the true target, then the target cell as each readout (encoder early exits, the
  decoder input, each decoder layer) would predict it, decoded on the official pixel path.
* :func:`lens_curves`: the task metric of every readout, mean ± standard error over a prompt
  set, one line per condition: where the task becomes solved, and where the task vector makes
  it so.
* :func:`path_heatmap`: the effect (metric change against the clean zero-shot forward) of the
  task vector's encoder heads (rows: all of them, then each head) through each decoder head
  (columns, layer by layer), beside their direct and total effects.

All are plain plotly figures: :func:`~interp.viz.paper.paper_figure` turns them into paper
figures and :func:`~interp.viz.export.save_figure` writes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from interp.canvas import CanvasGrid, denormalize
from interp.viz.prompts import image_rows
from interp.viz.style import FONT_SIZE, apply_style, condition_color, condition_label, metric_label

#: the readout columns of the path heatmap's right panel
SUMMARY_COLUMNS = ("direct", "total")


def lens_strip(images: Mapping[str, Tensor], labels: Sequence[str], canvas: Tensor, grid: CanvasGrid,
               title: str | None = None, cell_px: int = 90) -> go.Figure:
    """``images[condition]`` ``[R, 3, H, W]`` (int32 0..255, the pasted predictions of one prompt,
    one per readout ``labels[r]``); ``canvas`` the prompt's normalised canvas ``[3, H, W]``."""
    query = denormalize(grid.cell(canvas, "query"))
    truth = denormalize(grid.cell(canvas, "target"))
    rows, names = [], []
    for condition, stack in images.items():
        if stack.shape[0] != len(labels):
            raise ValueError(f"{condition}: {stack.shape[0]} images for {len(labels)} readouts")
        cells = [grid.cell(image.float() / 255.0, "target") for image in stack]
        rows.append([query, truth, *cells])
        names.append(condition_label(condition).replace(" + ", "<br>+ "))
    return image_rows(rows, names, ["query", "target", *labels], cell_px=cell_px, title=title)


def lens_curves(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Mean metric ± sem per readout (x, in forward order), one line per condition."""
    order = list(dict.fromkeys(table["readout"]))
    metric = str(table["metric"].iloc[0])
    higher = bool(table["higher_is_better"].iloc[0]) if "higher_is_better" in table.columns else None
    fig = go.Figure()
    stacks = table.drop_duplicates("readout").set_index("readout")["stack"].reindex(order)
    for i, (condition, part) in enumerate(table.groupby("condition", sort=False)):
        part = part.set_index("readout").reindex(order)
        named = condition_color(str(condition), i)
        for j, stack in enumerate(dict.fromkeys(stacks)):  # encoder early exits and decoder readouts: separate lines
            rows = part[(stacks == stack).to_numpy()]
            fig.add_trace(go.Scatter(
                x=list(rows.index), y=rows["mean"], mode="lines+markers", name=condition_label(str(condition)),
                error_y=dict(type="data", array=rows["sem"].fillna(0), thickness=1, width=3),
                line=dict(color=named), legendgroup=str(condition), showlegend=j == 0,
            ))
    if "dec embed" in order and order.index("dec embed") > 0:  # the encoder / decoder boundary
        fig.add_vline(x=order.index("dec embed") - 0.5, line=dict(color="#999999", dash="dot", width=1))
    fig.update_layout(title=title, xaxis_title="readout (encoder: early exit; decoder: norm + code head)",
                      yaxis_title=metric_label(metric, higher), legend=dict(orientation="h", y=-0.3),
                      width=640, height=380)
    fig.update_xaxes(type="category", tickangle=-45)
    return apply_style(fig)


def path_heatmap(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Rows: senders (``all``, then encoder heads ``L{l}H{h}``); left panel: the effect through
    each decoder head; right panel: the direct and total effects. One diverging colour scale
    centred on zero, shared by both panels."""
    senders = list(dict.fromkeys(table["sender"]))
    receivers = [r for r in dict.fromkeys(table["receiver"]) if r not in SUMMARY_COLUMNS]
    wide = table.pivot(index="sender", columns="receiver", values="effect").reindex(senders)
    metric = str(table["metric"].iloc[0])
    higher = bool(table["higher_is_better"].iloc[0])
    left = wide[receivers].to_numpy(dtype=float)
    right = wide[list(SUMMARY_COLUMNS)].to_numpy(dtype=float)
    bound = float(np.nanmax(np.abs(np.concatenate([left.ravel(), right.ravel()])))) if table["effect"].notna().any() else 1.0
    bound = bound or 1.0
    labels = [f"{s} ({int(n)})" if s != "all" else f"all encoder ({int(n)})"
              for s, n in table.drop_duplicates("sender").set_index("sender").reindex(senders)["sender_units"].items()]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.82, 0.18], shared_yaxes=True, horizontal_spacing=0.03,
                        column_titles=["through one decoder head", "direct / total"])
    # blue = the task metric improves (IoU up, MSE down), as in the sweep figures
    scale = "RdBu" if higher else "RdBu_r"
    for col, (x, z) in enumerate(((receivers, left), (list(SUMMARY_COLUMNS), right)), start=1):
        fig.add_trace(go.Heatmap(x=x, y=labels, z=z, coloraxis="coloraxis",
                                 hovertemplate="%{y} → %{x}: %{z:.4g}<extra></extra>"), row=1, col=col)
    fig.update_layout(
        title=title, coloraxis=dict(colorscale=scale, cmin=-bound, cmax=bound,
                                    colorbar=dict(title=f"Δ {metric_label(metric, higher)}")),
        width=max(520, 22 * len(receivers) + 260), height=max(260, 22 * len(senders) + 140),
    )
    fig.update_annotations(font_size=FONT_SIZE + 1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_xaxes(tickangle=-90, tickfont=dict(size=FONT_SIZE - 2))
    fig.update_xaxes(title_text="decoder head (receiver)", row=1, col=1)
    fig.update_yaxes(title_text="task vector's encoder units (sender, units)", row=1, col=1)
    return apply_style(fig)


def run_figures(run_dir: Path) -> list[tuple[str, go.Figure]]:
    """The figures of a run's ``lens/<task>.csv`` (+ ``.safetensors``) and ``paths/<task>.csv``:
    ``lens_<task>_layers``, ``lens_<task>_strip`` and ``paths_<task>``; ``[]`` when it has none."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    out: list[tuple[str, go.Figure]] = []
    for csv in sorted((run_dir / "lens").glob("*.csv")):
        task = csv.stem
        table = pd.read_csv(csv)
        units = f", {int(table['units'].iloc[0])} units" if "units" in table.columns else ""
        kind = f", {table['intervention'].iloc[0]}" if "intervention" in table.columns else ""
        out.append((f"lens_{task}_layers", lens_curves(table, title=f"Code lens: {task} (task metric per readout{units}{kind})")))
        tensors_path = csv.with_suffix(".safetensors")
        if tensors_path.exists():
            tensors = load_file(str(tensors_path))
            with safe_open(str(tensors_path), "pt") as f:
                meta = f.metadata() or {}
            grid = CanvasGrid(**json.loads(meta["grid"]))
            images = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("images.")}
            out.append((f"lens_{task}_strip", lens_strip(images, json.loads(meta["labels"]), tensors["canvas"], grid,
                                                         title=f"Code lens: {task}, prompt {meta.get('prompt', 0)}")))
    for csv in sorted((run_dir / "paths").glob("*.csv")):
        table = pd.read_csv(csv)
        kind = f" ({table['intervention'].iloc[0]})" if "intervention" in table.columns else ""
        out.append((f"paths_{csv.stem}", path_heatmap(table, title=f"Path patching: {csv.stem}{kind}")))
    return out
