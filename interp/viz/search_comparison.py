"""Quality vs cost of every search method and control: one panel per task.

Reads a ``search_comparison.csv`` (:mod:`interp.compare_search`): x is the forward passes a
condition spent (log scale; controls that need none sit side by side at the left edge), y the
difference to zero-shot on the val prompts (positive = better, on the task metric) with its
paired bootstrap 95% interval. Methods are colours (the task-line colours: no yellow, no
black), controls are grey open symbols, one shape each. The strongest control is a dashed
line, so a method above it beats every cheap baseline. ``interp figures`` and
``interp compare-search`` write it as ``figures/search_comparison.*``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.viz.paper import legend_below
from interp.viz.style import FONT_SIZE, LINE_COLORS, apply_style, metric_label

CONTROL_SYMBOLS = ("diamond-open", "square-open", "triangle-up-open", "circle-open", "star-open", "hexagon-open",
                   "triangle-down-open", "pentagon-open")
CONTROL_COLOR = "#555555"
COLUMNS = ("task", "condition", "kind", "metric", "higher_is_better", "diff_zero_shot", "ci_low_zero_shot",
           "ci_high_zero_shot", "strongest_control", "forwards")


def search_comparison_figure(table: pd.DataFrame, columns: int | None = None) -> go.Figure:
    """Quality (difference to zero-shot, 95% CI) vs forward passes, a panel per task (``columns`` per row)."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"search_comparison.csv has no column(s) {missing}; write it with `interp compare-search`")
    tasks = list(dict.fromkeys(table["task"]))
    cols = min(len(tasks), columns or 4)
    rows = -(-len(tasks) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t.replace("_", " ") for t in tasks],
                        horizontal_spacing=min(0.12, 0.5 / cols), vertical_spacing=0.3 / rows if rows > 1 else 0.0)
    conditions = [c for c in dict.fromkeys(table["condition"]) if c not in ("one_shot", "control:none")]
    methods = [c for c in conditions if not c.startswith("control:")]
    controls = [c for c in conditions if c.startswith("control:")]
    style = {c: dict(color=LINE_COLORS[i % len(LINE_COLORS)], symbol="circle") for i, c in enumerate(methods)}
    style |= {c: dict(color=CONTROL_COLOR, symbol=CONTROL_SYMBOLS[i % len(CONTROL_SYMBOLS)]) for i, c in enumerate(controls)}
    for i, task in enumerate(tasks):
        row, col = i // cols + 1, i % cols + 1
        part = table[table.task == task].set_index("condition")
        spent = part["forwards"].replace(0, np.nan)
        floor = float(np.nanmin(spent.to_numpy())) if spent.notna().any() else 1.0
        free = 0
        for c in conditions:
            if c not in part.index:
                continue
            r = part.loc[c]
            if np.isfinite(r["forwards"]) and r["forwards"] > 0:
                x = float(r["forwards"])
            else:  # needs no forward pass: side by side left of the cheapest search
                x, free = floor / 4 * 1.25 ** free, free + 1
            units = f"{r['units']:.0f} units, " if "units" in r and pd.notna(r["units"]) else ""
            seconds = f", {r['seconds']:.1f} s" if "seconds" in r and pd.notna(r["seconds"]) else ""
            fig.add_trace(go.Scatter(
                x=[x], y=[r["diff_zero_shot"]], mode="markers", name=c.replace("control:", "control: ").replace("_", " "),
                marker=dict(color=style[c]["color"], size=9, symbol=style[c]["symbol"], line=dict(width=1.5)),
                error_y=dict(type="data", symmetric=False, array=[r["ci_high_zero_shot"] - r["diff_zero_shot"]],
                             arrayminus=[r["diff_zero_shot"] - r["ci_low_zero_shot"]], thickness=1.2, width=3,
                             color=style[c]["color"]),
                legendgroup=c, showlegend=i == 0,
                hovertext=f"{task} · {c}: Δ {r['diff_zero_shot']:.4g} [{r['ci_low_zero_shot']:.4g}, "
                          f"{r['ci_high_zero_shot']:.4g}]<br>{units}{r['forwards']:.0f} forwards{seconds}",
                hoverinfo="text",
            ), row=row, col=col)
        strongest = str(part["strongest_control"].dropna().iloc[0]) if part["strongest_control"].notna().any() else None
        if strongest in part.index:
            fig.add_hline(y=float(part.loc[strongest, "diff_zero_shot"]), line_dash="dash", line_color="#888888",
                          line_width=1, row=row, col=col)
        fig.add_hline(y=0.0, line_color="#222222", line_width=1, row=row, col=col)
        fig.update_xaxes(type="log", dtick=1, title=dict(text="forward passes", standoff=2), row=row, col=col)  # 10, 100, ...
        metric = metric_label(str(part.iloc[0]["metric"]), bool(part.iloc[0]["higher_is_better"]), arrow=False)
        fig.update_yaxes(title=dict(text=f"Δ {metric} vs zero-shot (95% CI)", standoff=2), row=row, col=col)
    # a legend entry for the dashed line
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color="#888888", dash="dash", width=1),
                             name="strongest control", showlegend=True, hoverinfo="skip"), row=1, col=1)
    fig.update_annotations(font=dict(size=FONT_SIZE + 1))
    fig.update_layout(title="Search methods and controls: quality vs cost (val prompts, 95% paired bootstrap)",
                      margin=dict(t=80, b=40))
    apply_style(fig, width=260 * cols + 120, height=340 * rows + 80)
    legend_below(fig, fig.layout.width)
    return fig
