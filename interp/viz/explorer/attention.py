"""The explorer's attention view: one head's attention pattern on the current prompt.

The pattern is read at the head's ``attn.hook_pattern`` (``[batch, head, q_pos, k_pos]``, the
softmax of ``q k^T / sqrt(d_head)``), once without a patch and once under the explorer's
current patch (the same mean-replacement hooks the predictions use). Shown as: the attention
*from one query token* laid over the canvas (one value per patch the stack sees; CLS's share in
the title), and the full token x token matrix, each unpatched beside patched.
Choose the head with the view's dropdowns or by shift-clicking a cell of the unit grid.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from interp.canvas import PromptLayout, denormalize
from interp.viz.explorer.render import to_uint8
from interp.viz.heatmaps import GROUP_LABELS
from interp.viz.style import apply_style

STACKS = ("encoder", "decoder")
FIGURE_PX = (800, 262)  # fits the explorer's output area at 1280 x 800 with the file browser open (see .grid.WIDTH_PX)


def pattern_hook(stack: str, layer: int) -> str:
    """The hook point holding a layer's attention pattern, e.g. ``decoder.blocks.1.attn.hook_pattern``."""
    return f"{stack}.blocks.{layer}.attn.hook_pattern"


@torch.no_grad()
def head_pattern(model: Any, canvas: Tensor, layout: PromptLayout | str, stack: str, layer: int, head: int,
                 hooks: Sequence = ()) -> Tensor:
    """Attention pattern ``[q_pos, k_pos]`` (float64, rows sum to 1) of one head on ``canvas [1, 3, H, W]``,
    with ``hooks`` (e.g. a patch's) attached during the forward."""
    layout = model.layout(layout)
    name = pattern_hook(stack, layer)
    if name not in model.hook_dict:
        raise ValueError(f"no {stack} layer {layer}: the {stack} has {model.stacks[stack].layers} layers")
    with model.hooks(list(hooks)):
        _, cache = model.run_with_cache(canvas, layout, names_filter=[name])
    pattern = cache[name]  # [batch, head, q, k]
    if not 0 <= head < pattern.shape[1]:
        raise ValueError(f"head {head} outside the {pattern.shape[1]} heads of {stack} layer {layer}")
    return pattern[0, head].double().cpu()


def token_label(layout: PromptLayout, stack: str, position: int) -> str:
    """``'CLS'`` or ``'query r2 c3'``: a sequence position by its canvas slot (row, column within its cell)."""
    grid = layout.grid
    slot = layout.slots(stack)[position]
    if slot == 0:
        return "CLS"
    row, col = divmod(slot - 1, grid.patches_per_side)
    half = grid.patches_per_side // 2
    return f"{GROUP_LABELS.get(grid.slot_quadrant[slot], grid.slot_quadrant[slot])} r{row % half} c{col % half}"


def default_query(layout: PromptLayout, stack: str) -> int:
    """The position whose attention is shown first: the centre of the target cell (decoder) or of the query (encoder)."""
    grid = layout.grid
    patches = grid.quadrant_patches("target" if stack == "decoder" else "query")
    side = grid.patches_per_side // 2
    centre = 1 + patches[(side // 2) * side + side // 2]
    slots = layout.slots(stack)
    return slots.index(centre) if centre in slots else 0


def canvas_map(row: Tensor, layout: PromptLayout, stack: str) -> tuple[np.ndarray, float]:
    """One query's attention over the patch grid ``[n, n]`` (NaN where the stack has no token) and CLS's share."""
    n = layout.grid.patches_per_side
    out = np.full(n * n, np.nan)
    cls = 0.0
    for position, slot in enumerate(layout.slots(stack)):
        if slot == 0:
            cls = float(row[position])
        else:
            out[slot - 1] = float(row[position])
    return out.reshape(n, n), cls


def attention_figure(patterns: dict[str, Tensor], canvas: Tensor, layout: PromptLayout, stack: str, query: int,
                     title: str) -> go.Figure:
    """``patterns`` {"unpatched", "patched"} ``[q, k]``: two canvas maps of row ``query``, then the two matrices
    with their tokens grouped (CLS | each cell's tokens, canvas order within a group)."""
    grid, names = layout.grid, list(patterns)
    labels = [token_label(layout, stack, i) for i in range(len(layout.slots(stack)))]
    maps = {k: canvas_map(p[query], layout, stack) for k, p in patterns.items()}
    titles = [f"{k}: from {labels[query]}<br>(to CLS {maps[k][1]:.2f})" for k in names] + [f"{k}: query x key" for k in names]
    fig = make_subplots(rows=1, cols=4, subplot_titles=titles, horizontal_spacing=0.07)
    image = to_uint8(denormalize(canvas[0].float()).clamp(0, 1))
    p, n = grid.patch_size, grid.patches_per_side
    top = max(float(np.nanmax(m)) for m, _ in maps.values())
    qslot = layout.slots(stack)[query]
    for c, key in enumerate(names, start=1):
        fig.add_trace(go.Image(z=image, opacity=0.55, hoverinfo="skip"), row=1, col=c)
        fig.add_trace(go.Heatmap(z=maps[key][0], x0=p / 2 - 0.5, dx=p, y0=p / 2 - 0.5, dy=p, coloraxis="coloraxis",
                                 hovertemplate="key patch row %{y:.0f}, col %{x:.0f}: %{z:.3f}<extra></extra>",
                                 opacity=0.75), row=1, col=c)
        if qslot:
            r, cc = divmod(qslot - 1, n)
            fig.add_trace(go.Scatter(x=[cc * p + p / 2 - 0.5], y=[r * p + p / 2 - 0.5], mode="markers", showlegend=False,
                                     marker=dict(symbol="x", size=9, color="#d55e00", line=dict(width=1, color="white")),
                                     hovertemplate="query token<extra></extra>"), row=1, col=c)
        fig.update_xaxes(visible=False, range=[-0.5, grid.canvas_size - 0.5], row=1, col=c)
        fig.update_yaxes(visible=False, range=[grid.canvas_size - 0.5, -0.5], scaleanchor=f"x{c if c > 1 else ''}", row=1, col=c)
    groups = layout.token_groups(stack)  # the matrix in group order (CLS | query | target): rows of the canvas interleave them
    order = [p for positions in groups.values() for p in positions]
    sizes = [len(positions) for positions in groups.values()]
    starts = np.cumsum([0, *sizes])
    ticks = [(a + b - 1) / 2 for a, b in zip(starts[:-1], starts[1:])]
    ordered = [labels[p] for p in order]
    for c, key in enumerate(names, start=3):
        z = patterns[key].numpy()[np.ix_(order, order)]
        fig.add_trace(go.Heatmap(z=z, coloraxis="coloraxis2", customdata=_pair_labels(ordered),
                                 hovertemplate="%{customdata}: %{z:.3f}<extra></extra>"), row=1, col=c)
        axis = dict(tickvals=ticks, ticktext=[GROUP_LABELS.get(g, g) for g in groups], tickfont_size=8, showgrid=False,
                    tickangle=0, ticks="")
        fig.update_xaxes(row=1, col=c, **axis)
        fig.update_yaxes(row=1, col=c, autorange="reversed", **axis)
        ref = "" if c == 1 else str(c)
        for edge in starts[1:-1]:  # white lines between the groups' blocks
            for line in (dict(x0=edge - 0.5, x1=edge - 0.5, y0=-0.5, y1=len(order) - 0.5),
                         dict(y0=edge - 0.5, y1=edge - 0.5, x0=-0.5, x1=len(order) - 0.5)):
                fig.add_shape(type="line", xref=f"x{ref}", yref=f"y{ref}", line=dict(color="white", width=1), **line)
    fig.update_layout(title=dict(text=title, font_size=11), margin=dict(l=10, r=10, t=80, b=36),
                      coloraxis=dict(colorscale="Viridis", cmin=0, cmax=top or 1, colorbar=dict(  # under the canvas maps
                          orientation="h", x=0.2, xanchor="center", y=-0.03, yanchor="top", len=0.3, thickness=6,
                          tickfont_size=8, title=dict(text="weight from<br>the query token", side="right", font_size=9))),
                      coloraxis2=dict(colorscale="Viridis", cmin=0, colorbar=dict(
                          x=1.0, len=0.75, y=0.42, thickness=6, title=dict(text="weight<br>query<br>x key", side="top", font_size=9))))
    fig.update_annotations(font_size=10)
    fig = apply_style(fig, width=FIGURE_PX[0], height=FIGURE_PX[1])
    fig.update_layout(modebar=dict(orientation="v"))  # beside the plot, not over the titles (nor cut off above them)
    return fig


def _pair_labels(labels: list[str]) -> np.ndarray:
    return np.array([[f"{q} → {k}" for k in labels] for q in labels], dtype=object)


class AttentionView:
    """The attention tab of an explorer: head and query-token controls, and the figure in an Output."""

    def __init__(self, explorer: Any, w: Any) -> None:
        self.ex = explorer
        stacks = explorer.model.stacks
        self.depths = {s: stacks[s].layers for s in STACKS}
        self.heads = {s: stacks[s].heads for s in STACKS}
        short = dict(style={"description_width": "initial"})
        self.controls = {
            "stack": w.Dropdown(options=STACKS, value="decoder", description="head of", layout=w.Layout(width="170px"), **short),
            "layer": w.Dropdown(options=list(range(self.depths["decoder"])), value=self.depths["decoder"] - 1, description="layer",
                                layout=w.Layout(width="110px"), **short),
            "head": w.Dropdown(options=list(range(self.heads["decoder"])), value=0, description="head",
                               layout=w.Layout(width="110px"), **short),
            "query": w.Dropdown(options=[], description="attention from", layout=w.Layout(width="260px"), **short),
        }
        self.output = w.Output(layout=w.Layout(min_height=f"{FIGURE_PX[1]}px"))
        self.widget = w.VBox([w.HBox(list(self.controls.values())), self.output])
        self._query_for: tuple | None = None
        self._shown: tuple | None = None
        self._fill_queries()
        self.controls["stack"].observe(lambda _: self._on_stack(), names="value")
        for name in ("layer", "head", "query"):
            self.controls[name].observe(lambda _: self.refresh(), names="value")

    @property
    def visible(self) -> bool:
        return getattr(self.ex, "tabs", None) is not None and self.ex.tabs.selected_index == 2

    def select(self, stack: str, layer: int, head: int, show: bool = False) -> None:
        """Choose ``stack`` layer ``layer`` head ``head``; ``show`` also opens the tab (a shift-click on the grid)."""
        with self.ex.hold():
            self._updating = True
            try:
                self.controls["stack"].value = stack
                self._on_stack(refresh=False)
                self.controls["layer"].value, self.controls["head"].value = layer, head
            finally:
                self._updating = False
            if show and getattr(self.ex, "tabs", None) is not None:
                self.ex.tabs.selected_index = 2

    def _on_stack(self, refresh: bool = True) -> None:
        stack = self.controls["stack"].value
        layer, head = self.controls["layer"], self.controls["head"]
        layer.options, head.options = list(range(self.depths[stack])), list(range(self.heads[stack]))
        self._fill_queries()
        if refresh:
            self.refresh()

    def _fill_queries(self) -> None:
        """The query-token dropdown for this layout and stack (kept when neither changed)."""
        key = (self.ex.layout, self.controls["stack"].value)
        if key == self._query_for:
            return
        layout = self.ex.model.layout(self.ex.layout)
        stack = key[1]
        self._query_for = key
        self.controls["query"].options = [(token_label(layout, stack, i), i) for i in range(len(layout.slots(stack)))]
        self.controls["query"].value = default_query(layout, stack)

    def choice(self) -> tuple[str, int, int, int]:
        c = self.controls
        return c["stack"].value, int(c["layer"].value), int(c["head"].value), int(c["query"].value)

    def patterns(self) -> dict[str, Tensor]:
        """The chosen head's pattern ``[q, k]`` on the current prompt, unpatched and under the current patch."""
        ex = self.ex
        stack, layer, head, _ = self.choice()
        canvas = ex.prompts[ex.task].canvases[ex.index: ex.index + 1].to(ex.predictor.device)
        mask = ex.current_mask()
        hooks = ex.predictor.patcher(ex.means_task, ex.layout).hooks(mask[None]) if mask.any() else []
        return {"unpatched": head_pattern(ex.model, canvas, ex.layout, stack, layer, head),
                "patched": head_pattern(ex.model, canvas, ex.layout, stack, layer, head, hooks)}

    def figure(self) -> go.Figure:
        ex = self.ex
        stack, layer, head, query = self.choice()
        layout = ex.model.layout(ex.layout)
        n = int(ex.current_mask().sum())
        title = (f"{stack} L{layer} H{head} attention · {ex.prompt_name()}<br><sup>patched: {n} units "
                 f"({ex.layout.replace('_', '-')}); weights are softmax(q·k/√d) rows</sup>")
        return attention_figure(self.patterns(), ex.prompts[ex.task].canvases[ex.index: ex.index + 1], layout, stack,
                                query, title)

    def refresh(self, force: bool = False) -> None:
        """Redraw if the tab is shown and something it depends on changed."""
        if getattr(self, "_updating", False) or self.ex._held:
            return
        self._fill_queries()
        if not (self.visible or force):
            return
        key = (self.choice(), self.ex.task, self.ex.index, self.ex.layout, self.ex.means_task,
               self.ex.current_mask().numpy().tobytes())
        if key == self._shown and not force:
            return
        from IPython import get_ipython
        from IPython.display import display

        self.last_figure = fig = self.figure()
        self._shown = key
        if get_ipython() is not None:  # in a kernel: the Output shows it (elsewhere display would print it)
            self.output.clear_output(wait=True)
            with self.output:
                display(fig)


__all__ = ["AttentionView", "attention_figure", "canvas_map", "default_query", "head_pattern", "pattern_hook", "token_label"]
