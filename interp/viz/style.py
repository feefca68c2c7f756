"""The paper style: one plotly template, font sizes, figure widths and colour scales.

Every figure of :mod:`interp.viz` ends with :func:`apply_style`, so a heatmap, a training
curve, a bar chart and a prompt grid share fonts, sizes and colours, in a notebook and in
the exported PNG/PDF/SVG alike. The choices, in one place:

* **Template** ``interp_paper``: plotly's ``simple_white`` (no grey background, outside
  ticks, axis lines) with a sans-serif font stack that Chromium finds on Debian (Liberation
  / DejaVu stand in for Arial / Helvetica) and the Okabe-Ito colour-blind-safe colourway.
* **Sizes** in CSS pixels at scale 1 (PNGs are written at scale 2): :data:`WIDTHS` holds a
  single-column and a full-text width; fonts are :data:`FONT_SIZE` (ticks, legends) and
  :data:`TITLE_SIZE`.
* **Colour scales** by what a value means, not by figure (:data:`COLORSCALES`): taskness is
  sequential (Viridis), probabilities go from light grey (off; not the white background) to blue, deltas diverge around 0
  (red = hurts, blue = helps). :func:`colorscale_for` picks one from a value column's name.
* **Conditions and tasks** keep one colour everywhere (:data:`CONDITION_COLORS`,
  :func:`task_color`), so "zero-shot + task vector" is the same orange in every figure.

Nothing here changes plotly's global default unless :func:`use_paper_style` is called (e.g.
at the top of a notebook, so ad-hoc ``px`` plots match too).
"""

from __future__ import annotations

from typing import Mapping

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE_NAME = "interp_paper"
FONT_FAMILY = "Arial, Helvetica, 'Liberation Sans', 'DejaVu Sans', sans-serif"
FONT_SIZE = 11
TITLE_SIZE = 13
SMALL_FONT_SIZE = 9
FONT_COLOR = "#222222"
#: figure widths in CSS px at scale 1 (a column of a two-column paper; the full text width)
WIDTHS: Mapping[str, int] = {"column": 480, "text": 980}
#: height of one facet row of a layer x head heatmap
HEATMAP_ROW_HEIGHT = 260

#: Okabe & Ito (2008): distinguishable with every common colour-vision deficiency
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

#: colour scale per kind of value (keys are matched against value-column names)
COLORSCALES: Mapping[str, str | list] = {
    "taskness": "Viridis",
    "probability": [[0.0, "#e0e0e0"], [1.0, "#08306b"]],  # light grey = never patched (white is the background)
    "delta": "RdBu",  # plotly's RdBu runs red (low) -> blue (high): blue = patching helps
    "patched": [[0.0, "#f2f2f2"], [1.0, "#D55E00"]],
    "default": "Viridis",
}
#: colour scales that should be centred on zero
DIVERGING: tuple[str, ...] = ("delta",)

#: the evaluation conditions of a run, in the order they are shown
CONDITION_ORDER: tuple[str, ...] = ("one_shot", "zero_shot", "zero_shot+tv", "zero_shot+tv_sampled", "zero_shot+random")
CONDITION_COLORS: Mapping[str, str] = {
    "one_shot": "#0072B2",
    "zero_shot": "#999999",
    "zero_shot+tv": "#D55E00",
    "zero_shot+random": "#E69F00",
    "zero_shot+tv_sampled": "#CC79A7",
}
CONDITION_LABELS: Mapping[str, str] = {
    "one_shot": "one-shot",
    "zero_shot": "zero-shot",
    "zero_shot+tv": "zero-shot + task vector",
    "zero_shot+random": "zero-shot + random units",
    "zero_shot+tv_sampled": "zero-shot + sampled task vector",
}

#: readable names of metrics as they appear in tables (``metric`` columns)
METRIC_LABELS: Mapping[str, str] = {
    "iou": "mIoU",
    "mse": "MSE",
    "-mse": "−MSE",
    "-code_ce": "−code cross-entropy",
    "code_ce": "code cross-entropy",
}
_HIGHER_IS_BETTER = {"iou": True, "mse": False, "-mse": True, "-code_ce": True, "code_ce": False}


def _build_template() -> go.layout.Template:
    template = go.layout.Template(pio.templates["simple_white"])
    font = dict(family=FONT_FAMILY, size=FONT_SIZE, color=FONT_COLOR)
    template.layout.update(
        font=font,
        title=dict(font=dict(size=TITLE_SIZE), x=0.0, xanchor="left", xref="paper"),
        colorway=list(OKABE_ITO),
        paper_bgcolor="white",
        plot_bgcolor="white",
        legend=dict(font=dict(size=FONT_SIZE), bgcolor="rgba(255,255,255,0)", borderwidth=0),
        hoverlabel=dict(font=dict(family=FONT_FAMILY, size=FONT_SIZE)),
        margin=dict(l=60, r=20, t=50, b=50),
        coloraxis=dict(colorbar=dict(thickness=12, outlinewidth=0, tickfont=dict(size=SMALL_FONT_SIZE))),
    )
    for axis in (template.layout.xaxis, template.layout.yaxis):
        axis.update(title=dict(font=dict(size=FONT_SIZE)), tickfont=dict(size=SMALL_FONT_SIZE), ticklen=3)
    return template


PAPER_TEMPLATE: go.layout.Template = _build_template()
pio.templates[TEMPLATE_NAME] = PAPER_TEMPLATE


def apply_style(fig: go.Figure, width: int | str | None = None, height: int | None = None) -> go.Figure:
    """Give ``fig`` the paper template (in place) and optionally a size; returns ``fig``.

    ``width`` is pixels or a key of :data:`WIDTHS` (``"column"``, ``"text"``). Explicit
    layout settings of the figure win over the template, so callers keep their own margins.
    """
    fig.update_layout(template=PAPER_TEMPLATE)
    if width is not None:
        if isinstance(width, str):
            if width not in WIDTHS:
                raise ValueError(f"unknown width {width!r}; give pixels or one of {sorted(WIDTHS)}")
            width = WIDTHS[width]
        fig.update_layout(width=width)
    if height is not None:
        fig.update_layout(height=height)
    return fig


def use_paper_style() -> None:
    """Make the paper template plotly's default for this session (every new figure)."""
    pio.templates.default = TEMPLATE_NAME


def colorscale_for(value: str) -> str | list:
    """The colour scale for a value column: by its name (``taskness``, ``probability``, ``delta``...)."""
    name = value.lower()
    for key, scale in COLORSCALES.items():
        if key != "default" and key in name:
            return scale
    return COLORSCALES["default"]


def is_diverging(value: str) -> bool:
    """Whether a value column is signed and its colour scale should centre on 0."""
    return any(key in value.lower() for key in DIVERGING)


#: colours of conditions without their own (``zero_shot+top8``, composed vectors ``...[a+b]``):
#: the Okabe-Ito colours no named condition uses, then Paul Tol's muted dark ones; never
#: yellow (invisible on white) or black (reads as an axis)
EXTRA_CONDITION_COLORS: tuple[str, ...] = ("#009E73", "#56B4E9", "#882255", "#332288", "#44AA99", "#117733", "#AA4499")


def condition_color(condition: str, index: int = 0) -> str:
    """The colour of an evaluation condition; ``index`` numbers the conditions without a colour of
    their own in a figure (each gets the next of :data:`EXTRA_CONDITION_COLORS`)."""
    return CONDITION_COLORS.get(condition, EXTRA_CONDITION_COLORS[index % len(EXTRA_CONDITION_COLORS)])


def condition_label(condition: str) -> str:
    """Readable name of a condition: ``zero_shot+tv[inpainting+lowlight]`` ->
    ``zero-shot + task vectors of inpainting + lowlight``."""
    if condition in CONDITION_LABELS:
        return CONDITION_LABELS[condition]
    base, bracket, rest = condition.partition("[")
    if bracket and rest.endswith("]") and base in CONDITION_LABELS:
        parts = rest[:-1].split("+")
        if base == "zero_shot+tv":
            noun = "task vectors" if len(parts) > 1 else "task vector"
            return f"{CONDITION_LABELS['zero_shot']} + {noun} of {' + '.join(parts)}"
        return f"{CONDITION_LABELS[base]} ({' + '.join(parts)})"
    return condition.replace("_", "-").replace("+", " + ")


#: line and bar colours for tasks: Okabe-Ito without yellow (invisible on white) and black (reads as an axis), then Tol's
LINE_COLORS: tuple[str, ...] = tuple(c for c in OKABE_ITO if c not in ("#F0E442", "#000000")) + ("#882255", "#332288", "#117733")


def task_color(task: str) -> str:
    """One colour per task, stable across figures (the order of :data:`interp.data.tasks.TASKS`)."""
    from interp.data.registry import TASKS

    index = TASKS.index(task) if task in TASKS else sum(map(ord, task))  # stable across processes
    return LINE_COLORS[index % len(LINE_COLORS)]


def metric_label(metric: str, higher_is_better: bool | None = None, arrow: bool = True) -> str:
    """``"mIoU ↑"``, ``"MSE ↓"``: a metric's readable name and, if known, which way is better."""
    label = METRIC_LABELS.get(metric, metric)
    if higher_is_better is None:
        higher_is_better = _HIGHER_IS_BETTER.get(metric)
    if arrow and higher_is_better is not None:
        label += " ↑" if higher_is_better else " ↓"
    return label
