"""Quality vs the size of a task vector: every method's held-out score at each size it tried.

Reads a ``size_curves.csv`` (``interp compare-search``: per task, method and seed, the
``units`` and ``held_out_score`` of every kept-set size a method scored on the held-out search
prompts, up to all units: the size scan of a ranking, prune's rounds, greedy's prefixes). One
panel per task, x the units kept (log scale), y the held-out training-selection score (mean
over seeds), a line per method; the size each method kept is where its line peaks.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.viz.paper import legend_below
from interp.viz.style import FONT_SIZE, LINE_COLORS, apply_style

COLUMNS = ("task", "method", "seed", "units", "held_out_score")


def size_curves_figure(table: pd.DataFrame, columns: int | None = None) -> go.Figure:
    """Held-out score vs units kept, a panel per task and a line per method (mean over seeds)."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"size_curves.csv has no column(s) {missing}; write it with `interp compare-search`")
    tasks = list(dict.fromkeys(table["task"]))
    cols = min(len(tasks), columns or 4)
    rows = -(-len(tasks) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t.replace("_", " ") for t in tasks],
                        horizontal_spacing=min(0.12, 0.5 / cols), vertical_spacing=0.3 / rows if rows > 1 else 0.0)
    methods = list(dict.fromkeys(table["method"]))
    for i, task in enumerate(tasks):
        row, col = i // cols + 1, i % cols + 1
        part = table[table.task == task]
        for j, method in enumerate(methods):
            curve = part[part.method == method].groupby("units", as_index=False)["held_out_score"].mean()
            if curve.empty:
                continue
            color = LINE_COLORS[j % len(LINE_COLORS)]
            fig.add_trace(go.Scatter(x=curve["units"], y=curve["held_out_score"], mode="lines+markers", name=method,
                                     line=dict(color=color, width=1.5), marker=dict(color=color, size=5),
                                     legendgroup=method, showlegend=i == 0,
                                     hovertemplate=f"{task} · {method}<br>%{{x}} units: %{{y:.4g}}<extra></extra>"),
                          row=row, col=col)
        fig.update_xaxes(type="log", title=dict(text="units kept", standoff=2), row=row, col=col)
        fig.update_yaxes(title=dict(text="held-out score (higher better)", standoff=2), row=row, col=col)
    fig.update_annotations(font=dict(size=FONT_SIZE + 1))
    fig.update_layout(title="Quality vs size: held-out search score of each kept-set size (mean over seeds)",
                      margin=dict(t=80, b=40))
    apply_style(fig, width=260 * cols + 120, height=340 * rows + 80)
    legend_below(fig, fig.layout.width)
    return fig
