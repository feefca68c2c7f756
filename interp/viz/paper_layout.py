"""Paper mode's layout repairs: room between panels for tick labels, ticks that fit, image tables that fit.

At print size fonts keep their size while panels shrink, so plotly's defaults (subplot gaps as
fractions of the figure, a tick per head) let labels overprint neighbours. These functions
measure labels in px (digits ~0.56 em) and move panel domains, thin ticks, or transpose a wide
image table; :func:`interp.viz.paper.paper_figure` applies them.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

#: the smallest font in px at print size: 7.5 pt (a little above the 7 pt bar)
MIN_FONT_PX = 10
DIGIT_EM = 0.56  # a digit's width in em (Liberation Sans / Arial)
MIN_PANEL_SHARE = 0.6  # room for tick labels takes at most 40% of the panels' width


def tick_label_px(chars: int, font_px: float) -> float:
    """The width of a tick label of ``chars`` characters (digits are ~0.56 em in the paper fonts), padded."""
    return chars * DIGIT_EM * font_px + 4


def room_for_tick_labels(fig: go.Figure) -> go.Figure:
    """Side-by-side panels (in place): each gap wide enough for the right panel's y tick labels and
    axis title at their font size; integer heatmap axes (heads, layers) thinned to labels that fit.

    Subplot gaps are fractions of the figure, so at column width plotly's defaults put one
    panel's tick labels onto its neighbour. Column titles move with their panels.
    """
    plot_px = (fig.layout.width or 700) - margin_px(fig, "l") - margin_px(fig, "r")
    columns: dict[tuple[float, float], list[str]] = {}
    for name in (k for k in fig.layout if k.startswith("xaxis")):
        if fig.layout[name].domain:
            columns.setdefault(tuple(round(v, 6) for v in fig.layout[name].domain), []).append(name)
    order = sorted(columns)
    if len(order) > 1 and plot_px > 0:
        gaps = [(b[0] - a[1]) * plot_px for a, b in zip(order, order[1:])]
        need = [max(_y_label_px(fig, x) for x in columns[col]) for col in order[1:]]
        new = [max(g, n) for g, n in zip(gaps, need)]
        span, widths = order[-1][1] - order[0][0], sum(b - a for a, b in order)
        spare = span * plot_px - MIN_PANEL_SHARE * widths * plot_px - sum(gaps)  # px the gaps may take from the panels
        extra = sum(new) - sum(gaps)
        if extra > spare > 0:  # not room for all: each gap grows by the same share of its want
            new = [g + (n - g) * spare / extra for g, n in zip(gaps, new)]
        if any(n > g + 0.5 for g, n in zip(gaps, new)):
            scale = (span - sum(new) / plot_px) / widths
            position, moved = order[0][0], {}
            for i, (a, b) in enumerate(order):
                moved[(a, b)] = (position, position + (b - a) * scale)
                position = moved[(a, b)][1] + (new[i] / plot_px if i < len(new) else 0)
            for col, names in columns.items():
                for name in names:
                    fig.layout[name].domain = list(moved[col])
            for annotation in fig.layout.annotations:  # column titles sit over their panel's centre
                for (a, b), (a2, b2) in moved.items():
                    if annotation.xref == "paper" and annotation.x is not None and abs(annotation.x - (a + b) / 2) < 1e-6:
                        annotation.x = (a2 + b2) / 2
    _thin_integer_ticks(fig, plot_px)
    return fig


def margin_px(fig: go.Figure, side: str) -> float:
    """The margin plotly draws on one side: the figure's own, else its template's, else plotly's 80."""
    for margin in (fig.layout.margin, fig.layout.template.layout.margin if fig.layout.template else None):
        if margin is not None and margin[side] is not None:
            return margin[side]
    return 80


def font_px(font) -> float:
    return font.size if font is not None and font.size is not None else MIN_FONT_PX


def _axis_traces(fig: go.Figure, letter: str, ref: str) -> list:
    return [t for t in fig.data if (getattr(t, f"{letter}axis", None) or letter) == ref]


def _tick_chars(fig: go.Figure, axis, letter: str, ref: str) -> int:
    """The longest tick label an axis shows, in characters (from its tick text or its traces' values)."""
    if axis.ticktext:
        return max(len(str(t)) for t in axis.ticktext)
    values = [v for t in _axis_traces(fig, letter, ref) if getattr(t, letter, None) is not None for v in getattr(t, letter)]
    numbers = [v for v in values if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)]
    if not numbers:
        return max((len(str(v)) for v in values), default=3)
    lo, hi = float(min(numbers)), float(max(numbers))
    step = 10 ** np.floor(np.log10(((hi - lo) or abs(hi) or 1.0) / 5))  # about the tick step plotly picks
    decimals = 0 if all(float(v).is_integer() for v in numbers) else int(max(0, -np.floor(np.log10(step))))
    return max(len(f"{v:.{decimals}f}") for v in (lo, hi))


def _y_label_px(fig: go.Figure, xname: str) -> float:
    """Room the y axis anchored to ``xname`` needs left of its panel: tick labels, tick, title."""
    ref = fig.layout[xname].anchor or "y"
    if not isinstance(ref, str) or not ref.startswith("y"):
        return 0.0
    axis = fig.layout["yaxis" + ref[1:]]
    if axis.visible is False or axis.showticklabels is False:
        return 0.0
    px = tick_label_px(_tick_chars(fig, axis, "y", ref), font_px(axis.tickfont)) + (axis.ticklen or 5)
    if axis.title.text:
        px += font_px(axis.title.font) + (axis.title.standoff or 4)
    return px


def _thin_integer_ticks(fig: go.Figure, plot_px: float) -> None:
    """Integer heatmap axes: the smallest step of 1, 2, 4, 5, 10... whose labels fit the panel unrotated."""
    for name in [k for k in fig.layout if k.startswith("xaxis") and fig.layout[k].domain]:
        axis = fig.layout[name]
        ref = "x" + name[5:]
        cells = [list(t.x) for t in _axis_traces(fig, "x", ref) if t.type == "heatmap" and t.x is not None]
        if not cells:
            _thin_line_ticks(fig, axis, ref, plot_px)
            continue
        if axis.tickvals or not all(isinstance(v, (int, np.integer)) for v in cells[0]):
            continue
        n, panel = max(len(c) for c in cells), (axis.domain[1] - axis.domain[0]) * plot_px
        label = tick_label_px(_tick_chars(fig, axis, "x", ref), font_px(axis.tickfont))
        step = next((k for k in (1, 2, 4, 5, 8, 10, 16, 20, 25, 50) if -(-n // k) * label <= panel), 50)
        axis.update(dtick=max(step, int(axis.dtick or 1)), tickangle=0)


def _thin_line_ticks(fig: go.Figure, axis, ref: str, plot_px: float) -> None:
    """A numeric x axis of line / marker traces too narrow for ~5 labels: ticks at multiples of a nice step that fit."""
    values = [v for t in _axis_traces(fig, "x", ref) if t.type == "scatter" and t.x is not None for v in t.x]
    numbers = [float(v) for v in values if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)]
    if axis.tickvals or axis.type in ("category", "log") or len(numbers) < 2:
        return
    lo, hi = min(numbers), max(numbers)
    label = tick_label_px(_tick_chars(fig, axis, "x", ref), font_px(axis.tickfont)) * 1.25
    fit = int((axis.domain[1] - axis.domain[0]) * plot_px // label)
    if fit >= 5 or hi <= lo:
        return
    fit = max(fit, 3)  # at least the ends and the middle (labels at 10 px still fit three to a 100 px panel)
    for step in (m * 10 ** k for k in range(-3, 8) for m in (1, 2, 2.5, 5)):
        end = np.ceil(hi / step) * step
        end = end if end - hi <= 0.02 * (hi - lo) else np.floor(hi / step) * step  # 0..399 steps: a tick at 400
        ticks = np.arange(np.ceil(lo / step) * step, end + step * 1e-9, step)
        if len(ticks) <= fit:
            break
    axis.update(tickmode="array", tickvals=[float(t) for t in ticks], ticktext=[f"{t:g}" for t in ticks], tickangle=0,
                range=[lo, max(hi, float(ticks[-1]))])



def transpose_image_table(fig: go.Figure, width_px: int, gap: float = 0.012) -> bool:
    """An image table with more columns than rows (prompts x cells), transposed in place: one
    column per row of the original (titles above), one row per original column (titles at the
    left, horizontal), so a column-wide figure keeps readable titles and cells of ~60 px.
    Returns False (nothing changed) when ``fig`` is not such a table."""
    cells = [(t, int((t.xaxis or "x")[1:] or 1)) for t in fig.data]
    if not cells or any(t.type != "image" for t, _ in cells):
        return False
    tops = [a for a in fig.layout.annotations if a.textangle in (None, 0) and a.yanchor == "bottom" and (a.y or 0) >= 0.99]
    sides = [a for a in fig.layout.annotations if a.textangle == 90]
    n_rows, n_cols = len(sides), len(tops)
    if not n_rows or n_cols <= n_rows or max(i for _, i in cells) > n_rows * n_cols:
        return False
    font = MIN_FONT_PX  # the smallest print size: long task names must fit one cell's width
    titles = [a.text if "<br>" in a.text else _wrap(a.text, 10) for a in tops]  # the new row titles
    left = max(len(line) for t in titles for line in t.split("<br>")) * 0.55 * font + 10
    top = max(t.text.count("<br>") + 1 for t in sides) * (font + 4) + 6
    plot_w = width_px - left - 6
    col_w = (1 - gap * (n_rows - 1)) / n_rows
    row_h = col_w * plot_w  # square cells, in px
    plot_h = row_h * n_cols / (1 - gap * (n_cols - 1))
    for i in range(1, n_rows * n_cols + 1):  # subplot (r, c) -> column r, row c
        r, c = divmod(i - 1, n_cols)
        x0 = r * (col_w + gap)
        y1 = 1 - c * (row_h / plot_h + gap)
        fig.layout["xaxis" + (str(i) if i > 1 else "")].domain = [x0, x0 + col_w]
        fig.layout["yaxis" + (str(i) if i > 1 else "")].domain = [max(y1 - row_h / plot_h, 0), y1]
    notes = [dict(text=a.text, x=r * (col_w + gap) + col_w / 2, y=1.0, xanchor="center", yanchor="bottom")
             for r, a in enumerate(sides)]
    notes += [dict(text=t, x=0, xshift=-6, y=1 - c * (row_h / plot_h + gap) - row_h / plot_h / 2, xanchor="right",
                   yanchor="middle", align="right") for c, t in enumerate(titles)]
    fig.layout.annotations = [go.layout.Annotation(showarrow=False, xref="paper", yref="paper", font=dict(size=font), **n)
                              for n in notes]
    fig.update_layout(margin=dict(l=int(left), r=6, t=int(top), b=6), height=int(plot_h + top + 6))
    return True


def _wrap(text: str, chars: int) -> str:
    """``text`` on lines of at most ``chars`` characters where its spaces allow (joined by ``<br>``)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


__all__ = ["MIN_FONT_PX", "font_px", "margin_px", "room_for_tick_labels", "tick_label_px", "transpose_image_table"]
