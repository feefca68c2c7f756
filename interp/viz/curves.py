"""Charts of scalars: REINFORCE training curves and the per-task results bar chart.

:func:`reinforce_curves` reads the log a search writes (one row per step: ``step``,
``train_loss``, ``expected_units``; every ``eval_every`` steps also ``eval_score`` and
``eval_units``; see :mod:`interp.taskvectors.search.reinforce`) and stacks three panels over
a shared step axis: the training loss (lower is better), the held-out score of the evaluated
unit set (higher is better) and the policy's expected number of active units (with the size
of each evaluated sample). Several logs (one per task, or per run) overlay in one figure.

:func:`results_bars` draws a run's ``results.csv`` (task, condition, metric, mean, sem, ...):
conditions side by side per task with standard-error bars. IoU and MSE live on different
scales and run in opposite directions, so each metric gets its own panel and its axis says
which way is better ("mIoU ↑", "MSE ↓").
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.viz.paper import legend_below
from interp.viz.style import (
    CONDITION_COLORS,
    CONDITION_ORDER,
    FONT_SIZE,
    LINE_COLORS,
    WIDTHS,
    apply_style,
    condition_color,
    condition_label,
    metric_label,
    task_color,
)

LOG_COLUMNS = ("step", "train_loss", "expected_units")


def _as_log_frame(log: Any, name: str) -> pd.DataFrame:
    if isinstance(log, pd.DataFrame):
        frame = log.copy()
    elif isinstance(log, Mapping):
        frame = pd.DataFrame(dict(log))
    elif isinstance(log, (list, tuple)):
        if log and not isinstance(log[0], Mapping):
            raise TypeError(f"log {name!r}: expected rows as dicts (PolicyState.log), got {type(log[0]).__name__}")
        frame = pd.DataFrame(list(log))
    else:
        raise TypeError(
            f"log {name!r}: expected PolicyState.log (a list of dicts), a DataFrame (pd.read_csv('log.csv')) "
            f"or a mapping of names to those; got {type(log).__name__}"
        )
    if frame.empty:
        raise ValueError(f"log {name!r} has no rows: was the search run for at least one step?")
    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"log {name!r} has no column(s) {missing}; a REINFORCE log has {list(LOG_COLUMNS)} and "
            f"eval_score/eval_units (columns present: {list(frame.columns)})"
        )
    return frame.sort_values("step", kind="stable").reset_index(drop=True)


def reinforce_curves(
    log: Any,
    title: str | None = None,
    smooth: int | None = None,
    overlay: bool = False,
    width: int | str | None = None,
    wrap: int | None = None,
) -> go.Figure:
    """Training loss, held-out score and expected active units vs step (three stacked panels).

    ``log``: ``PolicyState.log`` rows, a DataFrame of ``log.csv``, or ``{name: log}`` for
    several searches: one column each (tasks' losses differ in scale and sign: -IoU vs MSE),
    or all in one column with ``overlay=True`` (e.g. seeds of one task). Task names keep their
    task colour. ``smooth``: a rolling-mean window for the noisy training loss (the raw loss
    stays as a faint line). ``wrap``: at most this many searches side by side, the rest in further
    blocks of three rows below (``interp figures --width column`` draws four tasks as 2 x 2).
    """
    if isinstance(log, Mapping) and "step" not in log:  # {name: log}; a mapping with 'step' is one log's columns
        logs = {str(k): _as_log_frame(v, str(k)) for k, v in log.items()}
        if not logs:
            raise ValueError("reinforce_curves got an empty mapping of logs")
    else:
        logs = {"": _as_log_frame(log, "log")}
    if smooth is not None and smooth < 1:
        raise ValueError(f"smooth must be a window of at least 1 step, got {smooth}")
    columns = 1 if overlay or len(logs) == 1 else len(logs)
    if wrap is not None and wrap < 1:
        raise ValueError(f"wrap must be at least 1 column, got {wrap}")
    columns = min(columns, wrap or columns)
    blocks = 1 if overlay else -(-len(logs) // columns)
    names = [k.replace("_", " ") for k in logs]
    fig = make_subplots(
        rows=3 * blocks,
        cols=columns,
        shared_xaxes=True,
        vertical_spacing=0.06 / blocks,
        horizontal_spacing=min(0.08, 0.4 / columns),
        row_heights=[0.36, 0.36, 0.28] * blocks,
        column_titles=names if columns > 1 and blocks == 1 else None,
        subplot_titles=[names[b * columns + c] if r == 0 and b * columns + c < len(names) else ""
                        for b in range(blocks) for r in range(3) for c in range(columns)] if blocks > 1 else None,
    )
    score_axes: dict[int, str] = {}
    for i, (name, frame) in enumerate(logs.items()):
        block, col = (0, 1) if columns == 1 and blocks == 1 else (i // columns, i % columns + 1)
        color = task_color(name) if name in _task_names() else LINE_COLORS[i % len(LINE_COLORS)]
        label = name or "policy"
        legend = bool(name) and columns == 1

        def add(trace: go.Scatter, row: int) -> None:
            fig.add_trace(trace, row=3 * block + row, col=col)

        def hover(what: str) -> str:
            return "step %{x}<br>" + what + "<extra>" + label + "</extra>"

        step = frame["step"]
        loss = frame["train_loss"].astype(float)
        if smooth and smooth > 1:
            add(go.Scatter(x=step, y=loss, mode="lines", line=dict(color=color, width=1), opacity=0.3,
                           legendgroup=label, showlegend=False, name=f"{label} loss (raw)",
                           hovertemplate=hover("train loss %{y:.4g}")), 1)
            loss = loss.rolling(smooth, min_periods=1).mean()
        add(go.Scatter(x=step, y=loss, mode="lines", line=dict(color=color, width=1.8), legendgroup=label,
                       name=label, showlegend=legend, hovertemplate=hover("train loss %{y:.4g}")), 1)
        if "eval_score" in frame.columns:
            evals = frame.dropna(subset=["eval_score"])
            score, best, score_axis = _natural_score(name, evals["eval_score"].astype(float))
            key = (block, col)
            score_axes[key] = score_axis if key not in score_axes or score_axes[key] == score_axis else "held-out score ↑"
            if not evals.empty:
                add(go.Scatter(x=evals["step"], y=score, mode="lines+markers",
                               line=dict(color=color, width=1.5), marker=dict(size=6), legendgroup=label,
                               showlegend=False, name=f"{label} held-out",
                               hovertemplate=hover(score_axis[:-2] + " %{y:.4g}")), 2)
                add(go.Scatter(x=evals["step"], y=best, mode="lines",
                               line=dict(color=color, width=1, dash="dot"), legendgroup=label, showlegend=False,
                               name=f"{label} best so far", hovertemplate=hover("best so far %{y:.4g}")), 2)
        add(go.Scatter(x=step, y=frame["expected_units"], mode="lines", line=dict(color=color, width=1.8, dash="dash"),
                       legendgroup=label, showlegend=False, name=f"{label} expected units",
                       hovertemplate=hover("expected units %{y:.1f}")), 3)
        if "eval_units" in frame.columns:
            evals = frame.dropna(subset=["eval_units"])
            if not evals.empty:
                add(go.Scatter(x=evals["step"], y=evals["eval_units"], mode="markers",
                               marker=dict(color=color, size=5, symbol="x-thin", line=dict(width=1.5, color=color)),
                               legendgroup=label, showlegend=False, name=f"{label} evaluated units",
                               hovertemplate=hover("units in the evaluated set %{y}")), 3)
    _mark_legend(fig, smooth=bool(smooth and smooth > 1), evaluated=any("eval_score" in f.columns for f in logs.values()))
    for b in range(blocks):
        fig.update_yaxes(title_text="train loss ↓", row=3 * b + 1, col=1)
        fig.update_yaxes(title_text="active units", row=3 * b + 3, col=1)
        fig.update_yaxes(rangemode="tozero", row=3 * b + 3)
    fig.update_xaxes(title_text="step", row=3 * blocks)  # under the last block only (shared step axes)
    for (b, col), axis_title in score_axes.items():
        fig.update_yaxes(title_text=axis_title, row=3 * b + 2, col=col)
    fig.update_annotations(font=dict(size=FONT_SIZE + 1))
    fig.update_layout(
        title=title,
        margin=dict(t=80 if title else 50),
        hovermode="x unified" if len(logs) == 1 else "closest",
    )
    if width is None:
        width = "column" if columns == 1 else ("text" if columns <= 4 else 240 * columns)
    apply_style(fig, width=width, height=560 * blocks)
    if blocks > 1:
        _space_blocks(fig, blocks)
    legend_below(fig, fig.layout.width)  # under the panels: never over a title
    return fig


def _space_blocks(fig: go.Figure, blocks: int, within: float = 0.02, between: float = 0.07) -> None:
    """Blocks of three rows (one search each) further apart than the rows inside a block, so a
    block's title clears the panels above it (in place; ``within`` / ``between`` are shares of the height)."""
    heights = [0.36, 0.36, 0.28]
    room = 1 - 2 * within * blocks - between * (blocks - 1)
    new, top = [], 1.0
    for _ in range(blocks):
        for r, h in enumerate(heights):
            span = h * room / blocks
            new.append((top - span, top))
            top -= span + (within if r < 2 else between)
    old = sorted({tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("yaxis")}, key=lambda d: -d[1])
    for name in [k for k in fig.layout if k.startswith("yaxis")]:
        fig.layout[name].domain = [min(max(v, 0.0), 1.0) for v in new[old.index(tuple(fig.layout[name].domain))]]
    for annotation in fig.layout.annotations:  # a block's titles sit on its first row
        if annotation.yref == "paper" and annotation.yanchor == "bottom" and annotation.y is not None:
            row = min(range(len(old)), key=lambda i: abs(old[i][1] - annotation.y))
            annotation.y = new[row][1]


def _natural_score(task: str, score: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    """The held-out score in the metric's own sign: a search maximises ``-MSE``, the figure shows
    MSE (lower is better). Returns (score, best so far, axis title)."""
    if task in _task_names():
        from interp.metrics import task_metric

        metric = task_metric(task)
        if not metric.higher_is_better and (score.dropna() <= 0).all():
            shown = -score
            return shown, shown.cummin(), f"held-out {metric_label(metric.name, False)}"
        if metric.higher_is_better:
            return score, score.cummax(), f"held-out {metric_label(metric.name, True)}"
    return score, score.cummax(), "held-out score ↑"


def _mark_legend(fig: go.Figure, smooth: bool, evaluated: bool) -> None:
    """Legend entries (in grey) that say what each kind of mark is; colours are tasks."""
    grey = "#666666"
    marks = [("training loss" + (" (smoothed)" if smooth else ""), dict(mode="lines", line=dict(color=grey, width=1.8)))]
    if smooth:
        marks.append(("raw training loss", dict(mode="lines", line=dict(color=grey, width=1), opacity=0.3)))
    if evaluated:
        marks += [("held-out score (each evaluation)", dict(mode="lines+markers", line=dict(color=grey, width=1.5), marker=dict(size=6))),
                  ("best so far", dict(mode="lines", line=dict(color=grey, width=1, dash="dot"))),
                  ("units in the evaluated set", dict(mode="markers", marker=dict(color=grey, size=6, symbol="x-thin",
                                                                               line=dict(width=1.5, color=grey))))]
    marks.append(("expected active units", dict(mode="lines", line=dict(color=grey, width=1.8, dash="dash"))))
    for name, style in marks:
        fig.add_trace(go.Scatter(x=[None], y=[None], name=name, legendgroup="marks", showlegend=True, hoverinfo="skip", **style))


def _task_names() -> tuple[str, ...]:
    from interp.data.registry import TASKS

    return TASKS


RESULT_COLUMNS = ("task", "condition", "mean")


def results_bars(
    results: pd.DataFrame,
    title: str | None = None,
    conditions: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    width: int | str = "text",
    columns: int | None = None,
    bar_names: str = "legend",
) -> go.Figure:
    """One panel per task (its own metric axis), the conditions side by side with ±1 sem error bars.

    ``results``: a run's ``results.csv`` (columns ``task``, ``condition``, ``mean`` and
    optionally ``sem``, ``n``, ``units``, ``metric``, ``higher_is_better``; the metric is looked
    up from the task when absent). ``conditions`` / ``tasks`` pick and order what is shown.
    Each task has its own y axis, so a task far from the others (zero-shot low-light) does not
    flatten them; the units each condition patched are the tick labels under its bar.
    ``columns``: panels per row (default up to 5). ``bar_names``: ``"legend"`` (colours named in a
    legend under the panels) or ``"axis"`` (each bar named under it: composed task vectors).
    """
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results_bars takes a DataFrame (pd.read_csv('results.csv')), got {type(results).__name__}")
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(
            f"results have no column(s) {missing}; expected task, condition, mean and optionally sem, "
            f"metric, higher_is_better (columns present: {list(results.columns)})"
        )
    table = results.copy()
    if "metric" not in table.columns or "higher_is_better" not in table.columns:
        from interp.metrics import task_metric

        metrics = {t: task_metric(t) for t in table["task"].unique()}
        table["metric"] = table["task"].map(lambda t: metrics[t].name)
        table["higher_is_better"] = table["task"].map(lambda t: metrics[t].higher_is_better)
    if "sem" not in table.columns:
        table["sem"] = np.nan
    if tasks is not None:
        unknown = sorted(set(tasks) - set(table["task"]))
        if unknown:
            raise ValueError(f"no results for task(s) {unknown}; the table has {sorted(table['task'].unique())}")
        table = table[table["task"].isin(tasks)]
    present = list(dict.fromkeys(table["condition"]))
    if conditions is None:
        conditions = [c for c in CONDITION_ORDER if c in present] + [c for c in present if c not in CONDITION_ORDER]
    else:
        unknown = sorted(set(conditions) - set(present))
        if unknown:
            raise ValueError(f"no results for condition(s) {unknown}; the table has {present}")
        conditions = list(conditions)
    table = table[table["condition"].isin(conditions)]
    if table.empty:
        raise ValueError("no rows left to draw after selecting tasks and conditions")
    dup = table.duplicated(["task", "condition"])
    if dup.any():
        raise ValueError(
            f"{int(dup.sum())} (task, condition) pairs appear more than once; keep one row each "
            "(e.g. filter by fold or seed) before drawing"
        )

    task_order = list(tasks) if tasks is not None else _ordered_tasks(table["task"].unique())
    if columns is not None and columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if bar_names not in ("legend", "axis"):
        raise ValueError(f"bar_names must be 'legend' or 'axis', got {bar_names!r}")
    cols = min(len(task_order), columns or 5)
    rows = -(-len(task_order) // cols)
    width_px = WIDTHS[width] if isinstance(width, str) and width in WIDTHS else (width if isinstance(width, int) else 980)
    on_axis = bar_names == "axis"
    labels = {c: (_short_condition(c) if on_axis else "") for c in conditions}
    row_px = 300 if not on_axis else 44 * len(conditions) + 60  # horizontal bars named at the left
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[t.replace("_", " ") for t in task_order],
        horizontal_spacing=min(0.2, 70 / max(width_px - 80, 100)),  # the next panel's tick labels and axis title, no more
        vertical_spacing=min(0.35, 110 / (row_px * rows)) if rows > 1 else 0.0,  # tick labels, axis title, next title
    )
    colors = {c: _bar_color(c, conditions) for c in conditions}
    shown_legend: set[str] = set()
    for i, task in enumerate(task_order):
        row, col = i // cols + 1, i % cols + 1
        part = table[table["task"] == task].set_index("condition").reindex([c for c in conditions if c in set(table.loc[table["task"] == task, "condition"])])
        metric, higher = str(part["metric"].iloc[0]), bool(part["higher_is_better"].iloc[0])
        units = part["units"] if "units" in part.columns else pd.Series(np.nan, index=part.index)
        n = part["n"] if "n" in part.columns else pd.Series(np.nan, index=part.index)
        for condition, r in part.iterrows():
            hover = (f"{task} · {condition_label(condition)}<br>{metric_label(metric, higher, arrow=False)} "
                     f"{_fmt(r['mean'])} ± {_fmt(r['sem'])} (sem" + (f", n={int(n[condition])})" if pd.notna(n[condition]) else ")")
                     + (f"<br>{units[condition]:.0f} units patched" if pd.notna(units[condition]) and units[condition] > 0 else ""))
            error = dict(type="data", array=[0.0 if pd.isna(r["sem"]) else float(r["sem"])], visible=True, thickness=1, width=3)
            fig.add_trace(
                go.Bar(
                    x=[r["mean"]] if on_axis else [condition],
                    y=[condition] if on_axis else [r["mean"]],
                    orientation="h" if on_axis else "v",
                    **({"error_x": error} if on_axis else {"error_y": error}),
                    marker_color=colors[condition],
                    name=condition_label(condition),
                    legendgroup=condition,
                    showlegend=not on_axis and condition not in shown_legend,
                    hovertext=[hover],
                    hoverinfo="text",
                ),
                row=row,
                col=col,
            )
            shown_legend.add(condition)
        ticks = [_unit_text(units[c]) for c in part.index]
        value_title = dict(text=f"{metric_label(metric, higher)} ± sem", standoff=2)
        if on_axis:  # each bar named at its left, the first on top
            text = [labels[c] + (f" ({t} units)" if t else "") for c, t in zip(part.index, ticks)]
            fig.update_yaxes(type="category", tickmode="array", tickvals=list(part.index), ticktext=text, autorange="reversed",
                             row=row, col=col)
            fig.update_xaxes(title=value_title, rangemode="tozero", row=row, col=col)
            continue
        fig.update_xaxes(type="category", tickmode="array", tickvals=list(part.index), ticktext=ticks, tickangle=0,
                         title=dict(text="units patched" if any(ticks) else None, standoff=2),
                         showticklabels=any(ticks), ticks="" if not any(ticks) else "outside", row=row, col=col)
        fig.update_yaxes(title=value_title, rangemode="tozero", row=row, col=col)
    fig.update_layout(
        barmode="overlay",
        bargap=0.18,
        title=title,
        showlegend=not on_axis,
        legend=dict(font=dict(size=FONT_SIZE)),
        margin=dict(t=80 if title else 40, b=40),
    )
    fig.update_annotations(font=dict(size=FONT_SIZE + 1))  # the task titles
    apply_style(fig, width=width, height=row_px * rows + (70 if title else 40))
    if not on_axis:
        legend_below(fig, fig.layout.width)  # under the axes: never over the title, however many conditions
    return fig


def _bar_color(condition: str, conditions: Sequence[str]) -> str:
    """A condition's colour; a composed task vector (``zero_shot+tv[a+b]``) takes its base condition's
    colour (the bars are named on the axis then), others without a colour the next extra one."""
    base = condition.partition("[")[0]
    if base in CONDITION_COLORS:
        return CONDITION_COLORS[base]
    extra = [c for c in conditions if c.partition("[")[0] not in CONDITION_COLORS]
    return condition_color(condition, extra.index(condition))


def _short_condition(condition: str) -> str:
    """A bar's name beside it: ``zero_shot+tv[inpainting+lowlight]`` -> ``+ TV inpainting<br>+ lowlight``."""
    base, bracket, rest = condition.partition("[")
    if bracket and rest.endswith("]") and base == "zero_shot+tv":
        return "+ TV " + "<br>+ ".join(rest[:-1].split("+"))
    return {"zero_shot+tv": "+ TV", "zero_shot+random": "+ random units", "zero_shot+tv_sampled": "+ TV sampled"}.get(
        condition, condition_label(condition))


def _unit_text(units: Any) -> str:
    return f"{float(units):.0f}" if units is not None and pd.notna(units) and float(units) > 0 else ""


def _ordered_tasks(tasks: Sequence[str]) -> list[str]:
    order = _task_names()
    return [t for t in order if t in set(tasks)] + sorted(t for t in tasks if t not in order)


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4g}"
