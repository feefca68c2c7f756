"""Paper mode: turn any figure of :mod:`interp.viz` into one that goes into a paper as it is.

:func:`paper_figure` sizes a figure for one column (3.3 in) or the full text width (6.9 in) of a
two-column paper, raises every font to at least :data:`MIN_FONT_PT` at print size, drops the
baked-in title (a caption says it), stretches colour bars over the plotting area, leaves room
between panels for their tick labels and transposes wide image tables at column width
(:mod:`.paper_layout`), and redraws
heatmaps as vector rectangles so that PDF/SVG cells stay crisp at any zoom (plotly otherwise
embeds heatmaps as a low-resolution raster image).

Sizes: kaleido writes 96 CSS px per inch (1 px = 0.75 pt) in PDF/SVG, so a 3.3 in figure is
317 px wide and a 7 pt font is 9.3 px. ``interp figures RUN --width column|page`` applies this
to every figure of a run; a new figure module only has to build a normal figure.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from interp.viz.paper_layout import MIN_FONT_PX, font_px, room_for_tick_labels, tick_label_px, transpose_image_table

#: print widths in inches (two-column paper: one column, the full text width)
PAPER_WIDTHS_IN = {"column": 3.3, "page": 6.9}
PX_PER_IN = 96  # kaleido / CSS: PDF and SVG are written at 96 px per inch
MIN_FONT_PT = 7.0
#: the least height of one row of panels (plot + its tick labels and axis title) at print size
MIN_PANEL_PX = 150
Width = Literal["column", "page"]


def paper_width_px(width: Width) -> int:
    """The figure width in px for ``column`` (3.3 in) or ``page`` (6.9 in)."""
    if width not in PAPER_WIDTHS_IN:
        raise ValueError(f"width must be one of {sorted(PAPER_WIDTHS_IN)}, got {width!r}")
    return round(PAPER_WIDTHS_IN[width] * PX_PER_IN)


def paper_figure(fig: go.Figure, width: Width = "page", title: bool = False, height: int | None = None) -> go.Figure:
    """``fig`` (in place) at a print width with fonts >= 7 pt, no title unless ``title``, vector heatmaps.

    The height follows the width (same aspect, at most 1.4x the width) unless given.
    """
    target = paper_width_px(width)
    old_w = fig.layout.width or 700
    old_h = fig.layout.height or 450
    if not title:
        fig.update_layout(title=None)
        margin = fig.layout.margin
        fig.update_layout(margin=dict(t=min(margin.t if margin.t is not None else 40, 40)))
    images = any(t.type == "image" for t in fig.data)
    if images and width == "column" and transpose_image_table(fig, target):
        height = height or fig.layout.height  # sized by the transposition
    elif images and width == "column":  # narrow image columns: titles on two lines ("example<br>input")
        for annotation in fig.layout.annotations:
            if annotation.text and "<br>" not in annotation.text and annotation.textangle in (None, 0):
                annotation.text = annotation.text.replace(" ", "<br>", 1)
        fig.update_layout(margin=dict(t=(fig.layout.margin.t or 20) + 14))
    if height is None and images:  # images keep their aspect: the whole figure scales
        m = fig.layout.margin
        sides = (m.l or 0) + (m.r or 0)
        frame = (m.t or 0) + (m.b or 0)
        height = int(frame + (old_h - frame) * (target - sides) / max(old_w - sides, 1))
    if height is None:  # fonts keep their px size, so margins stay; the plotting area scales with the width
        m = fig.layout.margin
        frame = (m.t if m.t is not None else 50) + (m.b if m.b is not None else 50)
        area = max(max(old_h - frame, 100) * target / old_w, 0.8 * target if width == "column" else 0)
        area = max(min(area, 1.4 * target - frame), 110, _least_rows_px(fig))
        height = int(frame + area)
    fig.update_layout(width=target, height=height, font=dict(size=MIN_FONT_PX))
    _raise_fonts(fig)
    _align_colorbars(fig)
    room_for_tick_labels(fig)
    legend_below(fig, target)
    vector_heatmaps(fig)
    return fig


def _least_rows_px(fig: go.Figure) -> float:
    """The least plotting height: :data:`MIN_PANEL_PX` per row of subplots (distinct y domains), less
    the room for x tick labels and title in rows whose x axes show none (shared axes)."""
    rows: dict[tuple, bool] = {}
    for k in (k for k in fig.layout if k.startswith("xaxis") and fig.layout[k].domain):
        ref = fig.layout[k].anchor
        y = fig.layout["yaxis" + ref[1:]] if isinstance(ref, str) and ref.startswith("y") else None
        if y is not None and y.domain:
            labelled = fig.layout[k].showticklabels is not False and fig.layout[k].visible is not False
            rows[tuple(y.domain)] = rows.get(tuple(y.domain), False) or labelled
    if not rows:
        return MIN_PANEL_PX
    return sum(MIN_PANEL_PX if labelled else MIN_PANEL_PX - 40 for labelled in rows.values())


def _bigger(font) -> dict:
    size = font.size if font is not None and font.size is not None else MIN_FONT_PX
    return dict(size=max(size, MIN_FONT_PX))


def _raise_fonts(fig: go.Figure) -> None:
    layout = fig.layout
    for name in [k for k in layout if k.startswith(("xaxis", "yaxis"))]:
        axis = layout[name]
        axis.update(tickfont=_bigger(axis.tickfont), title=dict(font=_bigger(axis.title.font)))
    for annotation in layout.annotations:
        annotation.font = _bigger(annotation.font)
    layout.legend.font = _bigger(layout.legend.font)
    for name in _colour_axes_in_use(fig):  # touching an unused one would draw its colour bar
        bar = layout[name].colorbar
        bar.update(tickfont=_bigger(bar.tickfont), title=dict(font=_bigger(bar.title.font)))


def _colour_axes_in_use(fig: go.Figure) -> list[str]:
    used = {getattr(t, "coloraxis", None) or getattr(getattr(t, "marker", None), "coloraxis", None) for t in fig.data}
    return [k for k in fig.layout if k.startswith("coloraxis") and k in used]


def legend_below(fig: go.Figure, width_px: int) -> None:
    """A horizontal legend under the figure (never over a title or the bars), with room made for it."""
    names = list(dict.fromkeys(t.name for t in fig.data if t.name and t.type in ("scatter", "bar") and t.showlegend is not False))
    if not names or fig.layout.showlegend is False:
        return
    entry_px = [len(n) * 0.55 * MIN_FONT_PX + 40 for n in names]  # text + symbol, roughly
    rows, used = 1, 0.0
    for w in entry_px:
        if used and used + w > width_px - 20:
            rows, used = rows + 1, 0.0
        used += w
    legend_px = rows * (MIN_FONT_PX + 9) + 6
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    before = meta.get("legend_below_px", 0)  # made room already (a figure drawn so, then put in paper mode): once only
    bottom = (fig.layout.margin.b if fig.layout.margin.b is not None else 50) - before
    fig.update_layout(legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left",
                                  font=dict(size=MIN_FONT_PX)),
                      margin=dict(b=bottom + legend_px), height=(fig.layout.height or 0) - before + legend_px,
                      meta={**meta, "legend_below_px": legend_px})


def _align_colorbars(fig: go.Figure) -> None:
    """Every colour bar in use spans the plotting area (not a fraction at mid-height); the right
    margin shrinks to what the bar, its labels and its title need (panels get the rest)."""
    need = 0.0
    for name in _colour_axes_in_use(fig):
        bar = fig.layout[name].colorbar
        if bar.orientation == "h":  # placed in a panel's slot by its figure (a heatmap's missing panel)
            continue
        bar.update(len=1.0, lenmode="fraction", y=0.5, yanchor="middle", yref="paper", thickness=10, xpad=28)  # clear of row titles
        title = font_px(bar.title.font) + 6 if bar.title.text else 0
        need = max(need, 28 + 10 + 5 + tick_label_px(4, font_px(bar.tickfont)) + title + 6)
    if need and (fig.layout.margin.r or 0) > need:
        fig.update_layout(margin=dict(r=int(need)))


def vector_heatmaps(fig: go.Figure) -> go.Figure:
    """Redraw every heatmap trace as filled rectangles (vector in PDF/SVG); its colour bar stays.

    Each heatmap is replaced by an invisible marker trace on the same colour axis (which keeps
    the colour bar) plus one rectangle per finite cell, coloured as plotly would.
    """
    shapes = list(fig.layout.shapes)
    data = []
    for trace in fig.data:
        if trace.type != "heatmap":
            data.append(trace)
            continue
        z = np.asarray(trace.z, dtype=float)
        scale, cmin, cmax = _colour_range(fig, trace, z)
        xs, x_ticks = _positions(trace.x, z.shape[1])
        ys, y_ticks = _positions(trace.y, z.shape[0])
        span = (cmax - cmin) or 1.0
        cells = [(i, j) for i in range(z.shape[0]) for j in range(z.shape[1]) if np.isfinite(z[i, j])]
        colours = sample_colorscale(scale, [float(np.clip((z[i, j] - cmin) / span, 0, 1)) for i, j in cells]) if cells else []
        xref, yref = trace.xaxis or "x", trace.yaxis or "y"
        for (i, j), colour in zip(cells, colours):  # a white hairline between cells, the same width whatever the cell size
            shapes.append(dict(type="rect", xref=xref, yref=yref, layer="below", line=dict(width=0.5, color="#ffffff"),
                               fillcolor=colour, opacity=1, x0=xs[j] - 0.5, x1=xs[j] + 0.5, y0=ys[i] - 0.5, y1=ys[i] + 0.5))
        holder = go.Scatter(x=[xs[0]], y=[ys[0]], mode="markers", xaxis=xref, yaxis=yref, showlegend=False,
                            hoverinfo="skip", marker=dict(size=0.1, opacity=0, color=[cmin]))
        if trace.coloraxis:
            holder.marker.coloraxis = trace.coloraxis
        else:
            holder.marker.update(colorscale=scale, cmin=cmin, cmax=cmax, showscale=trace.showscale is not False,
                                 colorbar=trace.colorbar)
        data.append(holder)
        for axis, ticks in ((_axis(fig, xref), x_ticks), (_axis(fig, yref), y_ticks)):
            if ticks is not None:
                axis.update(tickmode="array", tickvals=list(range(len(ticks))), ticktext=[str(t) for t in ticks])
    fig.data = ()
    fig.add_traces(data)
    fig.update_layout(shapes=shapes)
    return fig


def _axis(fig: go.Figure, ref: str):
    return fig.layout[ref[0] + "axis" + ref[1:]]


def _positions(values, n: int) -> tuple[list[float], list | None]:
    """Cell centres along an axis, and the category labels when the axis is categorical."""
    if values is None:
        return list(range(n)), None
    values = list(values)
    try:
        return [float(v) for v in values], None
    except (TypeError, ValueError):
        return list(range(len(values))), values


def _colour_range(fig: go.Figure, trace: go.Heatmap, z: np.ndarray) -> tuple[list, float, float]:
    source = fig.layout[trace.coloraxis] if trace.coloraxis else trace
    scale = source.colorscale
    if scale is None:
        scale = fig.layout.template.layout.colorscale.sequential or "Viridis"
    if isinstance(scale, str):
        from plotly.colors import get_colorscale

        scale = get_colorscale(scale)
    finite = z[np.isfinite(z)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    cmin = getattr(source, "cmin", None) if trace.coloraxis else source.zmin
    cmax = getattr(source, "cmax", None) if trace.coloraxis else source.zmax
    return [list(s) for s in scale], lo if cmin is None else float(cmin), hi if cmax is None else float(cmax)
