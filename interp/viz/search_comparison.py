"""Quality vs cost of every search method and control: one panel per task.

Reads a ``search_comparison.csv`` (:mod:`interp.compare_search`): x is the forward passes a
condition spent (log scale; controls that need none sit at the left edge), y the difference
to zero-shot on the val prompts (positive = better, on the task metric) with its paired
bootstrap 95% interval. The strongest control is a dashed line, so a method above it beats
every cheap baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.viz.style import OKABE_ITO, apply_style, metric_label


def search_comparison_figure(table: pd.DataFrame) -> go.Figure:
    """Quality (difference to zero-shot, 95% CI) vs forward passes, per task."""
    tasks = list(dict.fromkeys(table["task"]))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks, horizontal_spacing=0.06)
    conditions = [c for c in dict.fromkeys(table["condition"]) if c not in ("one_shot", "control:none")]
    colors = {c: OKABE_ITO[i % len(OKABE_ITO)] for i, c in enumerate(conditions)}
    for col, task in enumerate(tasks, start=1):
        part = table[table.task == task].set_index("condition")
        floor = np.nanmin(part["forwards"].replace(0, np.nan).to_numpy()) if part["forwards"].notna().any() else 1.0
        for c in conditions:
            if c not in part.index:
                continue
            r = part.loc[c]
            x = r["forwards"] if np.isfinite(r["forwards"]) and r["forwards"] > 0 else floor / 3
            fig.add_trace(go.Scatter(
                x=[x], y=[r["diff_zero_shot"]], mode="markers", name=c.replace("control:", "control: "),
                marker=dict(color=colors[c], size=9, symbol="circle" if r["kind"] == "method" else "diamond-open"),
                error_y=dict(type="data", symmetric=False, array=[r["ci_high_zero_shot"] - r["diff_zero_shot"]],
                             arrayminus=[r["diff_zero_shot"] - r["ci_low_zero_shot"]]),
                legendgroup=c, showlegend=col == 1,
                hovertext=f"{c}: {r['units']:.0f} units, {r['forwards']:.0f} forwards, {r['seconds']:.1f} s",
            ), row=1, col=col)
        strongest = part.iloc[0]["strongest_control"]
        fig.add_hline(y=float(part.loc[strongest, "diff_zero_shot"]), line_dash="dash", line_color="#888888", row=1, col=col)
        fig.add_hline(y=0.0, line_color="#222222", line_width=1, row=1, col=col)
        fig.update_xaxes(type="log", title_text="forward passes", row=1, col=col)
        metric = part.iloc[0]["metric"]
        fig.update_yaxes(title_text=f"Δ vs zero-shot ({metric_label(metric, bool(part.iloc[0]['higher_is_better']), arrow=False)})" if col == 1 else None,
                         row=1, col=col)
    fig.update_layout(title="Search methods and controls: quality vs cost (val prompts, 95% paired bootstrap)")
    return apply_style(fig, width=300 * len(tasks) + 200, height=380)
