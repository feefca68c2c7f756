"""Layers x heads heatmaps, encoder and decoder side by side, one facet row per token group.

Where do task vectors sit? Every per-head quantity of the workbench — taskness, REINFORCE
probabilities, single-unit sweep deltas — is a tidy table with one row per
``(stack, layer, head[, group])`` and a value column. :func:`layer_head_heatmap` draws any
such table the same way:

* columns: ``encoder | decoder`` (each stack keeps its own depth: 24 and 8 layers for the
  full model), x = head, y = layer with layer 0 at the top (as matplotlib/seaborn heatmaps of
  the paper read: deeper is lower);
* rows (facets): token groups in canvas order (``cls``, example cells, ``query``,
  ``target``); where a stack never sees a group (the encoder's ``target``) its panel is left
  out and the colour bar takes its place;
* one colour scale for all panels (a shared ``coloraxis``), picked from the value's meaning
  (:func:`interp.viz.style.colorscale_for`; signed values such as deltas diverge around 0);
  ``sqrt`` or ``log`` colour scales for values bunched near 0 (taskness), with the colour bar
  labelled in the value's own units and naming the scale;
* optional marks (a dot per cell of a boolean column, with a legend entry): the units a
  policy keeps, the deltas beyond their noise;
* hover text naming stack, layer, head, group and value.

:func:`policy_frame` turns a REINFORCE policy (a probability per unit of a
:class:`~interp.taskvectors.units.UnitSpace`) into that table: ``head`` and ``group`` units
map one to one, ``token`` units are reduced to their token group (max or mean), ``layer``
units are broadcast to every head.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from interp.taskvectors.unit import GROUP_NAMES, STACKS
from interp.taskvectors.units import UnitSpace
from interp.viz.paper import legend_below
from interp.viz.style import (
    FONT_SIZE,
    HEATMAP_ROW_HEIGHT,
    apply_style,
    colorscale_for,
    is_diverging,
)

ALL_TOKENS = "all tokens"
GROUP_LABELS = {
    "cls": "CLS",
    "example_input": "example input",
    "example_output": "example output",
    "query": "query",
    "target": "target",
    ALL_TOKENS: ALL_TOKENS,
}
KEY = ["stack", "layer", "head", "group"]


def _group_order(names: Sequence[str]) -> list[str]:
    known = [g for g in GROUP_NAMES if g in names]
    return known + sorted(g for g in names if g not in GROUP_NAMES)


def _tidy(df: pd.DataFrame, value: str, agg: str | None, mark: str | None = None) -> pd.DataFrame:
    """Check and normalise a heatmap table: one row per (stack, layer, head, group)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"layer_head_heatmap takes a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ("stack", "layer", "head", value) if c not in df.columns]
    if missing:
        raise ValueError(
            f"the table has no column(s) {missing}; it needs stack, layer, head, the value column "
            f"{value!r} and optionally group (columns present: {list(df.columns)})"
        )
    if df.empty:
        raise ValueError("the table is empty: nothing to draw")
    stacks = set(df["stack"].unique())
    if not stacks <= set(STACKS):
        raise ValueError(f"stack must be 'encoder' or 'decoder'; found {sorted(map(str, stacks - set(STACKS)))}")
    if mark is not None and mark not in df.columns:
        raise ValueError(f"no mark column {mark!r} (columns present: {list(df.columns)})")
    out = df[[c for c in ("stack", "layer", "head", "group", value, mark) if c is not None and c in df.columns]].copy()
    if "group" not in out.columns:
        out["group"] = ALL_TOKENS
    group = out["group"].replace("", np.nan)
    if group.isna().all():
        out["group"] = ALL_TOKENS
    elif group.isna().any():
        raise ValueError(
            f"{int(group.isna().sum())} rows have no group while others do; draw per-group and "
            "per-head tables separately (filter on df.group.isna())"
        )
    head = pd.to_numeric(out["head"], errors="coerce")
    if head.isna().all():
        out["head"] = -1  # layer units: one column for all heads
    elif head.isna().any():
        raise ValueError("some rows have no head while others do; layer-level and head-level rows need separate figures")
    else:
        out["head"] = head.astype(int)
    out["layer"] = pd.to_numeric(out["layer"]).astype(int)
    out[value] = pd.to_numeric(out[value], errors="coerce").astype(float)
    if out.duplicated(KEY).any():
        if agg is None:
            n = int(out.duplicated(KEY, keep=False).sum())
            extra = [c for c in df.columns if c not in (*KEY, value) and df[c].nunique() > 1][:3]
            hint = f" (they differ in {extra})" if extra else ""
            raise ValueError(
                f"{n} rows share a (stack, layer, head, group){hint}: filter to one of them, e.g. "
                "df[df.task == 'segmentation'], or pass agg='mean' / 'max' to combine them"
            )
        if agg not in ("mean", "max", "min", "sum", "median"):
            raise ValueError(f"agg must be one of 'mean', 'max', 'min', 'sum', 'median', got {agg!r}")
        out = out.groupby(KEY, as_index=False, sort=False).agg({value: agg, **({mark: "max"} if mark else {})})
    if mark is not None:
        out[mark] = out[mark].fillna(False).astype(bool)
    return out


def layer_head_heatmap(
    df: pd.DataFrame,
    value: str,
    title: str | None = None,
    groups: Sequence[str] | None = None,
    colorscale: str | list | None = None,
    zmid: float | None = None,
    *,
    zmin: float | None = None,
    zmax: float | None = None,
    agg: str | None = None,
    log: bool = False,
    sqrt: bool = False,
    mark: str | None = None,
    mark_label: str | None = None,
    layer0: Literal["top", "bottom"] = "top",
    colorbar_title: str | None = None,
    width: int | str = "text",
    row_height: int = HEATMAP_ROW_HEIGHT,
) -> go.Figure:
    """Heatmaps of ``value`` over layers x heads: encoder | decoder columns, token-group rows.

    ``df`` has columns ``stack``, ``layer``, ``head``, ``value`` and optionally ``group``
    (one row per key; pass ``agg`` to combine duplicates). ``groups`` picks and orders the
    facet rows. ``zmid`` centres a diverging scale (default 0 for delta-like columns);
    ``log`` draws ``log10(value)`` (for taskness ratios spanning decades), ``sqrt`` the square root
    of non-negative values (most cells near 0, a few large: the low end gets room); the colour
    bar keeps the value's own units and says which scale. ``mark``: a boolean column whose true
    cells get a dot, named ``mark_label`` in the legend. Infinite values
    (e.g. a taskness with zero within-task variance) are drawn at the top of the scale and
    labelled ``inf`` in the hover text.
    """
    if log and sqrt:
        raise ValueError("choose one of log and sqrt")
    table = _tidy(df, value, agg, mark)
    present = _group_order(table["group"].unique().tolist())
    if groups is None:
        facets = present
    else:
        groups = [groups] if isinstance(groups, str) else list(groups)
        unknown = [g for g in groups if g not in present]
        if unknown:
            raise ValueError(f"no rows for group(s) {unknown}; the table has groups {present}")
        facets = groups
    stacks = [s for s in STACKS if s in set(table["stack"])]

    raw = table[value].to_numpy()
    shown = raw.copy()
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            shown = np.where(raw > 0, np.log10(np.where(raw > 0, raw, 1.0)), np.nan)
        shown[np.isposinf(raw)] = np.inf
    elif sqrt:
        if (raw[np.isfinite(raw)] < 0).any():
            raise ValueError(f"sqrt needs non-negative values; column {value!r} has negative ones")
        shown = np.sqrt(raw)
    finite = shown[np.isfinite(shown)]
    if finite.size == 0:
        raise ValueError(f"column {value!r} holds no finite value to draw" + (" (log needs positive values)" if log else ""))
    lo, hi = float(finite.min()), float(finite.max())
    shown = np.where(np.isposinf(shown), hi, np.where(np.isneginf(shown), lo, shown))
    table = table.assign(_shown=shown, _raw=raw)

    diverging = zmid is not None or (is_diverging(value) and not log and not sqrt)
    if diverging:
        zmid = 0.0 if zmid is None else zmid
        span = max(abs(hi - zmid), abs(lo - zmid)) or 1.0
        cmin = zmid - span if zmin is None else zmin
        cmax = zmid + span if zmax is None else zmax
    else:
        cmin = lo if zmin is None else zmin
        cmax = hi if zmax is None else zmax
    scale = colorscale if colorscale is not None else colorscale_for(value)

    empty = [(r, c) for r, group in enumerate(facets, start=1) for c, stack in enumerate(stacks, start=1)
             if table[(table["stack"] == stack) & (table["group"] == group)].empty]
    fig = make_subplots(
        rows=len(facets),
        cols=len(stacks),
        specs=[[None if (r, c) in empty else {} for c in range(1, len(stacks) + 1)] for r in range(1, len(facets) + 1)],
        column_titles=[s for s in stacks],
        row_titles=None if facets == [ALL_TOKENS] else [GROUP_LABELS.get(g, g) for g in facets],
        horizontal_spacing=0.08,
        vertical_spacing=min(0.3 / max(1, len(facets) - 1), 0.08),  # room for the 'head' title under each row
    )
    fig.update_annotations(font=dict(size=FONT_SIZE + 1))  # column and row titles
    for c, stack in enumerate(stacks, start=1):
        part = table[table["stack"] == stack]
        n_layers = int(part["layer"].max()) + 1
        heads = sorted(part["head"].unique())
        head_axis = ["all"] if heads == [-1] else list(range(int(max(heads)) + 1))
        for r, group in enumerate(facets, start=1):
            cell = part[part["group"] == group]
            if (r, c) in empty:  # e.g. the encoder never sees the target cell: no panel
                continue
            z = np.full((n_layers, len(head_axis)), np.nan)
            text = np.full((n_layers, len(head_axis)), "", dtype=object)
            for layer, head, z_shown, z_raw in zip(cell["layer"], cell["head"], cell["_shown"], cell["_raw"]):
                h = 0 if head_axis == ["all"] else int(head)
                z[layer, h] = z_shown
                head_name = "all heads" if head_axis == ["all"] else f"H{head}"
                text[layer, h] = (
                    f"{stack} L{layer} {head_name}<br>group: {GROUP_LABELS.get(group, group)}"
                    f"<br>{value}: {_fmt(z_raw)}"
                )
            fig.add_trace(
                go.Heatmap(
                    z=z,
                    x=head_axis,
                    y=list(range(n_layers)),
                    text=text,
                    hovertemplate="%{text}<extra></extra>",
                    coloraxis="coloraxis",
                    hoverongaps=False,
                    xgap=0.5,
                    ygap=0.5,
                    name=f"{stack} {group}",
                ),
                row=r,
                col=c,
            )
            if mark is not None and cell[mark].any():
                marked = cell[cell[mark]]
                fig.add_trace(
                    go.Scatter(
                        x=["all" if head_axis == ["all"] else int(h) for h in marked["head"]],
                        y=marked["layer"].astype(int).tolist(),
                        mode="markers",
                        marker=dict(symbol="circle", size=4, color="#000000", line=dict(width=0.6, color="#ffffff")),
                        name=mark_label or mark,
                        legendgroup="mark",
                        showlegend=not any(t.legendgroup == "mark" for t in fig.data),
                        hoverinfo="skip",
                    ),
                    row=r,
                    col=c,
                )
            fig.update_yaxes(
                autorange="reversed" if layer0 == "top" else True,
                dtick=1 if n_layers <= 12 else 4,
                title_text="layer" if c == 1 else None,
                showgrid=False,
                row=r,
                col=c,
            )
            fig.update_xaxes(
                dtick=None if head_axis == ["all"] else (1 if len(head_axis) <= 8 else 2 if len(head_axis) <= 16 else 4),
                title=dict(text="head", standoff=4),  # on every panel: each row is read on its own
                showgrid=False,
                row=r,
                col=c,
            )
    label = colorbar_title or value
    if log or sqrt:
        label += " (log scale)" if log else " (√ scale)"
    colorbar = dict(title=dict(text=label, side="right"), x=1.0, xref="paper", xpad=40, len=1.0, lenmode="fraction",
                    y=0.5, yanchor="middle", yref="paper", **_value_ticks(lo, hi, log, sqrt))  # beside every row of panels
    right = 120
    if empty:  # the colour bar lies in the first empty panel, across it
        r, c = empty[0]
        x0, x1 = _cell_domain(fig, len(stacks), c, "x")
        y0, y1 = _cell_domain(fig, len(facets), len(facets) + 1 - r, "y")
        colorbar.update(orientation="h", x=(x0 + x1) / 2, xanchor="center", len=0.8 * (x1 - x0), y=(y0 + y1) / 2,
                        yanchor="middle", xpad=0, title=dict(text=label, side="top"))
        right = 30
    fig.update_layout(
        coloraxis=dict(
            colorscale=scale,
            cmin=cmin,
            cmax=cmax,
            **({"cmid": zmid} if diverging and zmin is None and zmax is None else {}),
            colorbar=colorbar,
        ),
        title=title,
        margin=dict(t=70 if title else 40, r=right),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1.0, xanchor="right") if mark is not None else {},
    )
    apply_style(fig, width=width, height=row_height * len(facets) + (110 if title else 80))
    if mark is not None:
        legend_below(fig, fig.layout.width)  # under the panels: clear of the column titles
    return fig


def _cell_domain(fig: go.Figure, count: int, index: int, letter: str) -> tuple[float, float]:
    """The paper domain of grid column (``x``) or row from the bottom (``y``) ``index`` of ``count``."""
    spans = sorted({tuple(fig.layout[k].domain) for k in fig.layout if k.startswith(letter + "axis") and fig.layout[k].domain})
    if len(spans) == count:
        return spans[index - 1]
    step = 1 / count  # every panel of that column / row left out: an even share
    return (index - 1) * step, index * step


def _value_ticks(lo: float, hi: float, log: bool, sqrt: bool) -> dict:
    """Colour bar ticks in the value's own units for a log or sqrt colour scale (plotly's otherwise)."""
    if not (log or sqrt) or hi <= lo:
        return {}
    if log:
        values = [10.0 ** k for k in range(int(np.floor(lo)), int(np.ceil(hi)) + 1)]
        where = [float(np.log10(v)) for v in values]
    else:  # squares of evenly spaced roots: evenly spaced along the bar (0, 1, 4, 9 for taskness up to 9.5)
        step = next(m * 10.0 ** k for k in range(-3, 6) for m in (1, 2, 5) if hi / (m * 10.0 ** k) <= 4)
        where = [float(step * i) for i in range(int(np.floor(hi / step + 1e-9)) + 1)]
        values = [w * w for w in where]
    keep = [(w, v) for w, v in zip(where, values) if lo - 1e-9 <= w <= hi + 1e-9]
    return dict(tickmode="array", tickvals=[w for w, _ in keep], ticktext=[f"{v:.3g}" for _, v in keep], tickangle=0)


def _fmt(x: float) -> str:
    if np.isnan(x):
        return "nan"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def policy_frame(
    space: UnitSpace,
    probabilities: Any,
    agg: Literal["max", "mean"] = "max",
    value: str = "probability",
) -> pd.DataFrame:
    """A REINFORCE policy as a heatmap table: ``stack, layer, head[, group], probability``.

    ``probabilities [len(space)]`` in [0, 1] (``torch.sigmoid(state.logits)``). Granularity
    ``head`` gives one row per head, ``group`` one per head and token group, ``token`` one
    per head and token group with the group's tokens reduced by ``agg`` (``max``: is any token
    of the group likely on; ``mean``: the expected share), ``layer`` one row per head with
    the layer's probability broadcast.
    """
    p = torch.as_tensor(np.asarray(probabilities) if not isinstance(probabilities, torch.Tensor) else probabilities)
    p = p.detach().to(torch.float64).cpu().flatten()
    if p.numel() != len(space):
        raise ValueError(
            f"{p.numel()} probabilities for a {space.granularity!r} space of {len(space)} units; "
            "is the granularity (or the model) right?"
        )
    if p.numel() and (p.min() < 0 or p.max() > 1 or p.isnan().any()):
        raise ValueError(
            "probabilities must lie in [0, 1]; these look like logits: pass torch.sigmoid(logits)"
        )
    if agg not in ("max", "mean"):
        raise ValueError(f"agg must be 'max' or 'mean', got {agg!r}")
    frames = []
    for stack in STACKS:
        n_layers, n_heads = space.layers(stack), space.heads(stack)
        if n_layers == 0:
            continue
        start = space.offset(stack)
        block = p[start : start + n_layers * space.per_layer(stack)].numpy()
        layers = np.arange(n_layers)
        if space.granularity == "layer":
            values = np.repeat(block.reshape(n_layers, 1), n_heads, axis=1)
            frames.append(_grid_frame(stack, layers, n_heads, values, None, value))
            continue
        block = block.reshape(n_layers, n_heads, space.per_head(stack))
        if space.granularity == "head":
            frames.append(_grid_frame(stack, layers, n_heads, block[..., 0], None, value))
        elif space.granularity == "group":
            for g, name in enumerate(space.groups(stack)):
                frames.append(_grid_frame(stack, layers, n_heads, block[..., g], name, value))
        else:  # token: positions of the defining layout, reduced per token group
            for name, positions in space.layout.token_groups(stack).items():
                part = block[..., list(positions)]
                reduced = part.max(-1) if agg == "max" else part.mean(-1)
                frames.append(_grid_frame(stack, layers, n_heads, reduced, name, value))
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs["granularity"] = space.granularity
    return frame


def _grid_frame(stack: str, layers: np.ndarray, n_heads: int, values: np.ndarray, group: str | None, value: str) -> pd.DataFrame:
    layer_col = np.repeat(layers, n_heads)
    head_col = np.tile(np.arange(n_heads), len(layers))
    data = {"stack": stack, "layer": layer_col, "head": head_col}
    if group is not None:
        data["group"] = group
    data[value] = values.reshape(-1)
    return pd.DataFrame(data)


def mask_frame(space: UnitSpace, mask: Any) -> pd.DataFrame:
    """A 0/1 unit mask as a heatmap table (column ``patched``; token units: share of the group)."""
    m = space.from_official(torch.as_tensor(mask).flatten()).double()
    return policy_frame(space, m, agg="mean", value="patched")
