"""The explorer's ipywidgets: controls, the unit grid (the live mask), tabs of images, buttons.

The grid (:mod:`.grid`) has one cell per unit, layers (rows) x heads (columns), one block per
stack and token group (marks: see :func:`~interp.viz.explorer.grid.legend_html`); a click calls
:meth:`PatchExplorer.toggle`, a shift-click shows the head in the attention tab. Below it three
tabs: the prompt and its predictions, the A/B comparison (:mod:`.compare`), a head's attention
(:mod:`.attention`). Sized for JupyterLab at 1280 x 800 with its file browser open (an output
area of ~848 px, ~816 inside a tab): four predictions of 180 px, the prompt (96 px) beside the
summary, controls in five short rows.
Every mark of the grid is in the legend above it; the policy dropdown offers the chosen task's
policies of every method.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np

import traitlets

from interp.viz.explorer.attention import AttentionView
from interp.viz.explorer.compare import policy_options
from interp.taskvectors.patching import INTERVENTION_KINDS, Intervention
from interp.viz.explorer.grid import unit_grid
from interp.viz.explorer.lens_view import TITLE as LENS_TITLE
from interp.viz.explorer.lens_view import LensView
from interp.viz.explorer.policies import NO_POLICY
from interp.viz.explorer.render import PREDICTION_PANELS, png
from interp.viz.heatmaps import GROUP_LABELS

LAYOUT_NAMES = ("zero_shot", "one_shot")
SAME_TASK = "(same task)"  # the "means of" dropdown's value for the chosen task's own means
DISPLAY_PX = 180  # a prediction panel (px): four fit a tab of the ~848 px output area (JupyterLab's file browser open)
PROMPT_PX = 80  # the prompt canvas (2 x 2 cells) beside the summary
COMPARE_PX = 150  # the compare tab's four images (its table below them)
TABS = ("prediction", "compare A / B", "attention of a head", LENS_TITLE)
STYLE = """<style>
.interp-explorer .interp-head {min-width: 0; padding: 0; margin: 0 1px 0 0; font-size: 10px}
.interp-explorer .interp-compare {line-height: 1.3; margin-top: 4px; border-collapse: collapse}
.interp-explorer .interp-compare td, .interp-explorer .interp-compare th {padding: 1px 8px; font-size: 12px; text-align: left}
.interp-explorer .interp-title {text-align: center; font-size: 11px; line-height: 1.25; white-space: nowrap}
.interp-explorer .widget-label {min-width: 0}
.interp-explorer .interp-note {font-size: 11px; color: #333}
.interp-explorer .interp-summary {font-size: 12px; line-height: 1.35; white-space: normal; overflow-wrap: anywhere}
.interp-explorer .widget-toggle-buttons .widget-toggle-button {padding: 0 4px}
</style>"""


def build_controls(ex: Any, w: Any) -> None:
    """Create every widget of ``ex`` (a :class:`~interp.viz.explorer.widget.PatchExplorer`) and wire it."""
    stacks = ex.model.stacks
    depth, decoder_depth = stacks["encoder"].layers, stacks["decoder"].layers
    tasks = list(ex.prompts)
    heads = max(stack.heads for stack in stacks.values())
    first = tasks[0]
    own = [n for n in ex.task_policies(first) if ex.policy_owner(n) == first]
    start = next((n for n in own if "reinforce" in n), own[0] if own else NO_POLICY)  # the run's policy, or nothing
    short = dict(style={"description_width": "initial"})
    ex.controls = {
        "task": w.Dropdown(options=tasks, value=first, description="task", layout=w.Layout(width="180px"), **short),
        "means": w.Dropdown(options=[SAME_TASK, *ex.means], value=SAME_TASK, description="means of",
                            layout=w.Layout(width="190px"), **short),
        "index": w.IntSlider(value=0, min=0, max=len(ex.prompts[first]) - 1, description="prompt",
                             continuous_update=False, layout=w.Layout(width="210px"), **short),
        "layout": w.ToggleButtons(options=[(n.replace("_", "-"), n) for n in LAYOUT_NAMES], value="zero_shot",
                                  description="patched forward", style={"description_width": "initial", "button_width": "80px"}),
        "policy": w.Dropdown(options=policy_choices(ex, first), value=start, description="patch: policy",
                             layout=w.Layout(width="235px"), **short),
        "threshold": w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, description="> ", readout_format=".2f",
                                   continuous_update=False, layout=w.Layout(width="140px"), **short),
        "encoder": w.Checkbox(value=False, description="+ encoder L", indent=False, layout=w.Layout(width="108px"),
                              tooltip="patch every unit of these encoder layers too"),
        "encoder_layers": w.IntRangeSlider(value=(0, depth - 1), min=0, max=max(depth - 1, 0), description="",
                                           continuous_update=False, layout=w.Layout(width="115px")),
        "decoder": w.Checkbox(value=False, description="+ decoder L", indent=False, layout=w.Layout(width="108px"),
                              tooltip="patch every unit of these decoder layers too"),
        "decoder_layers": w.IntRangeSlider(value=(0, decoder_depth - 1), min=0, max=max(decoder_depth - 1, 0),
                                           description="", continuous_update=False, layout=w.Layout(width="95px")),
        "heads": head_picker(w, heads),
        "intervention": w.Dropdown(options=INTERVENTION_KINDS, value="replace", description="patch", layout=w.Layout(width="150px"),
                                   tooltip="replace: the task mean; add: z + alpha (mean - zero-shot mean); scaled: z + alpha (mean - z)",
                                   **short),
        "alpha": w.FloatText(value=1.0, step=0.25, description="alpha", layout=w.Layout(width="120px"), **short),
        "show": w.ToggleButtons(options=[("images", "images"), ("difference to target", "difference")], value="images",
                                style={"button_width": "150px"}, tooltip="difference: white = as the target, dark red = "
                                "off by half the range or more (channel mean of |prediction − target|)"),
        "colour": w.ToggleButtons(options=[("patched", "patched"), ("effect alone", "effect")], value="patched",
                                  style={"button_width": "88px"},
                                  tooltips=["orange = patched", "each unit's effect alone on the task (blue helps, red hurts)"]),
    }
    ex.group_boxes = {g: w.Checkbox(value=True, description=GROUP_LABELS.get(g, g), indent=False,
                                    layout=w.Layout(width="auto", margin="0 6px 0 0")) for g in ("cls", "example_input", "example_output", "query", "target")}
    ex.prompt_image = w.Image(format="png", width=PROMPT_PX, height=PROMPT_PX)
    ex.images = {p: w.Image(format="png", width=DISPLAY_PX, height=DISPLAY_PX) for p in PREDICTION_PANELS}
    ex.image_titles = {p: w.HTML() for p in PREDICTION_PANELS}
    ex.summary, ex.status, ex.legend = w.HTML(), w.HTML(), w.HTML()
    ex.clear_button = w.Button(description="clear clicks", icon="eraser", layout=w.Layout(width="110px", height="26px"),
                               tooltip="drop the units set by hand: back to the controls' set")
    ex.sweep_button = w.Button(description="sweep this task", icon="search", layout=w.Layout(width="140px", height="26px"),
                               tooltip="each head of the zero-shot forward patched alone on this task's prompts (the sweep engine)")
    ex.export_button = w.Button(description="export figure", icon="download", layout=w.Layout(width="140px"),
                                tooltip=f"save the view and the mask grid to {ex.export_dir} ({', '.join(ex.formats)})")
    ex.policy_button = w.Button(description="export selection", icon="save", layout=w.Layout(width="150px"),
                                tooltip="the patched units as a policy file and the Python that reproduces the view")
    ex.state_button = w.Button(description="save state", icon="bookmark", layout=w.Layout(width="120px"),
                               tooltip="the widget's state as JSON (PatchExplorer.load_state restores it)")
    ex.export_button.on_click(lambda _: ex._on_export())
    ex.policy_button.on_click(lambda _: ex._run_button(ex.policy_button, "exporting…", ex.export_policy))
    ex.state_button.on_click(lambda _: ex._run_button(ex.state_button, "saving…", lambda: [save_state(ex)]))
    ex.clear_button.on_click(lambda _: ex.clear_clicks())
    ex.sweep_button.on_click(lambda _: ex._run_button(ex.sweep_button, "sweeping…", lambda: _sweep(ex)))
    ex.grid = unit_grid(ex.toggle, ex.inspect)
    build_compare(ex, w)
    ex.attention = AttentionView(ex, w)
    ex.lens = LensView(ex, w)

    def on_task(change: dict) -> None:  # the same method's policy of the new task, or none; clicks stay
        with ex.hold():
            slider = ex.controls["index"]
            slider.max = len(ex.prompts[change["new"]]) - 1
            policy = ex.controls["policy"]
            value = follow_policy(ex, policy.value, change["old"], change["new"])
            policy.options = policy_choices(ex, change["new"], keep=value)
            policy.value = value

    ex.controls["task"].observe(on_task, names="value")
    def on_intervention(change: dict) -> None:  # what the patch does; the patched units stay
        ex.predictor.intervention = Intervention(ex.controls["intervention"].value, ex.controls["alpha"].value)
        ex.update()

    for name, control in ex.controls.items():
        if name in ("intervention", "alpha"):
            control.observe(on_intervention, names="value")
        elif name != "task":
            control.observe(lambda change: ex.update(), names="value")
    for box in ex.group_boxes.values():
        box.observe(lambda change: ex.update(), names="value")

    c = ex.controls
    row = lambda *items: w.HBox(list(items), layout=w.Layout(align_items="center", flex_flow="row wrap"))  # noqa: E731
    pair = lambda *items: w.HBox(list(items), layout=w.Layout(align_items="center", flex_flow="row nowrap"))  # noqa: E731
    prompt = w.VBox([w.HTML("<div class='interp-title'><b>prompt</b><br>example in | out<br>query | ?</div>"),
                     ex.prompt_image], layout=w.Layout(width=f"{PROMPT_PX + 24}px", min_width=f"{PROMPT_PX + 24}px",
                                                       align_items="center"))
    panels = [w.VBox([ex.image_titles[p], ex.images[p]], layout=w.Layout(width=f"{DISPLAY_PX + 16}px", align_items="center"))
              for p in PREDICTION_PANELS]
    prediction_tab = w.VBox([w.HBox(panels, layout=w.Layout(flex_flow="row nowrap")),
                             w.HBox([prompt, w.VBox([c["show"], ex.summary], layout=w.Layout(flex="1 1 0", min_width="0"))],
                                    layout=w.Layout(align_items="flex-start"))])
    ex.tabs = w.Tab(children=[prediction_tab, ex.compare_box, ex.attention.widget, ex.lens.widget], titles=TABS)
    ex.tabs.observe(lambda change: (ex.attention.refresh(), ex.lens.refresh()), names="selected_index")
    ex.widget = w.VBox([
        w.HTML(STYLE),
        row(c["task"], c["means"], c["index"], c["layout"]),
        row(pair(c["policy"], c["threshold"]), pair(c["encoder"], c["encoder_layers"]), pair(c["decoder"], c["decoder_layers"])),
        row(w.HTML("only groups:", layout=w.Layout(margin="0 4px 0 0")), *ex.group_boxes.values(), c["heads"],
            w.HTML("&nbsp;"), c["intervention"], c["alpha"]),
        row(w.HTML("<b>units</b> (click: patch / unpatch · shift-click: attention)&nbsp; colour:"),
            c["colour"], ex.sweep_button, ex.clear_button),
        ex.legend,
        ex.grid,
        ex.tabs,
        row(ex.export_button, ex.policy_button, ex.state_button, ex.status),
    ], layout=w.Layout(max_width="100%", overflow="hidden"))
    ex.widget.add_class("interp-explorer")


def policy_choices(ex: Any, task: str, keep: str = NO_POLICY) -> list[tuple[str, str]]:
    """The policy dropdown's options for ``task``: none, the task's policies (every method), those of
    no task, and ``keep`` (a chosen policy stays offered; its name says its task)."""
    names = ex.task_policies(task)
    return [("none", NO_POLICY)] + [(n, n) for n in names] + ([(keep, keep)] if keep not in (NO_POLICY, *names) else [])


def follow_policy(ex: Any, name: str, old: str, new: str) -> str:
    """The policy to show after the task changed from ``old`` to ``new``: the same method's policy of
    ``new`` when ``name`` was one of ``old``'s, the same one when it belongs to no task, else none."""
    if name == NO_POLICY or ex.policy_owner(name) is None:
        return name
    for candidate in ex.task_policies(new):
        if candidate == name.replace(old, new, 1) or (name == old and candidate == new):
            return candidate
    return NO_POLICY


def sync_policies(ex: Any) -> None:
    """Offer the chosen task's policies (the chosen one always stays among them)."""
    dropdown = ex.controls["policy"]
    options = policy_choices(ex, ex.task, keep=dropdown.value)
    if list(dropdown.options) != options:
        value = dropdown.value
        ex._held += 1  # no redraw: the caller is redrawing
        try:
            dropdown.options = options
            dropdown.value = value
        finally:
            ex._held -= 1


def _sweep(ex: Any) -> list:
    ex.sweep_task(progress=False)
    ex.controls["colour"].value = "effect"
    return []


def head_picker(w: Any, heads: int) -> Any:
    """One small toggle per head plus *all* / *none*; ``.value`` is the tuple of heads switched on."""

    class HeadPicker(w.HBox):
        value = traitlets.Tuple()

        def __init__(self) -> None:
            self.toggles = [w.ToggleButton(value=True, description=str(h), tooltip=f"head {h}",
                                           layout=w.Layout(width="22px", height="22px")) for h in range(heads)]
            every = w.Button(description="all", layout=w.Layout(width="34px", height="22px"))
            nothing = w.Button(description="none", layout=w.Layout(width="44px", height="22px"))
            for b in (*self.toggles, every, nothing):
                b.add_class("interp-head")
            super().__init__([w.HTML("&nbsp;heads:&nbsp;"), *self.toggles, every, nothing],
                             layout=w.Layout(align_items="center", flex_flow="row wrap"))
            self.value = tuple(range(heads))
            for t in self.toggles:
                t.observe(lambda _: self._from_toggles(), names="value")
            every.on_click(lambda _: setattr(self, "value", tuple(range(heads))))
            nothing.on_click(lambda _: setattr(self, "value", ()))

        def _from_toggles(self) -> None:
            if not getattr(self, "_setting", False):
                self.value = tuple(h for h, t in enumerate(self.toggles) if t.value)

        @traitlets.observe("value")
        def _to_toggles(self, change: dict) -> None:
            self._setting = True
            try:
                for h, t in enumerate(self.toggles):
                    t.value = h in change["new"]
            finally:
                self._setting = False

    return HeadPicker()


def build_compare(ex: Any, w: Any) -> None:
    """The compare tab: pin / policy-as-A / clear, the prompt's query and target, A and B, the table."""
    pin = w.Button(description="pin B as A", icon="thumb-tack", layout=w.Layout(width="120px"),
                   tooltip="keep the current units as set A; go on editing B")
    from_policy = ex.compare_policy = w.Dropdown(options=policy_options(ex), value=NO_POLICY, layout=w.Layout(width="220px"))
    clear = w.Button(description="clear A", icon="times", layout=w.Layout(width="90px"))
    pin.on_click(lambda _: ex.compare.pin())
    clear.on_click(lambda _: ex.compare.clear())

    def on_policy(change: dict) -> None:
        if change["new"] != NO_POLICY:
            ex.compare.pin_policy(change["new"])
            from_policy.value = NO_POLICY

    from_policy.observe(on_policy, names="value")
    ex.compare_images = {k: w.Image(format="png", width=COMPARE_PX, height=COMPARE_PX) for k in ("query", "target", "A", "B")}
    ex.compare_titles = {k: w.HTML() for k in ex.compare_images}
    ex.compare_summary = w.HTML()
    panels = [w.VBox([ex.compare_titles[k], ex.compare_images[k]], layout=w.Layout(width=f"{COMPARE_PX + 24}px", align_items="center"))
              for k in ex.compare_images]
    ex.compare_box = w.VBox([w.HBox([pin, from_policy, clear], layout=w.Layout(align_items="center")),
                             w.HBox(panels), ex.compare_summary])


def sync_compare(ex: Any) -> None:
    """Redraw the compare tab (cheap when nothing is pinned: the table says how to pin)."""
    options = policy_options(ex)
    if list(ex.compare_policy.options) != options:
        ex.compare_policy.options = options
    cells = ex.prompts[ex.task].cells
    images = {p: getattr(cells, p)[ex.index].float().clamp(0, 1) for p in ("query", "target")}
    titles = {"query": "query", "target": "target", "A": "A", "B": f"B ({int(ex.current_mask().sum())} units)"}
    if ex.compare.active:
        images.update(ex.compare.predictions())
        titles["A"] = f"A ({int(ex.compare.mask().sum())} units)"
    for key, image in ex.compare_images.items():
        if key in images:
            image.value = png(images[key], COMPARE_PX)
        image.layout.visibility = "visible" if key in images else "hidden"
        ex.compare_titles[key].value = f"<div class='interp-title'><b>{titles[key]}</b></div>"
    ex.compare_summary.value = ex.compare.summary_html()


def sync_grid(ex: Any) -> None:
    """Draw the current mask, the units set by hand, set A, the attention view's head and (coloured by
    effect) each unit's effect alone on the unit grid, and its legend."""
    from interp.viz.explorer.effects import effect_colours
    from interp.viz.explorer.grid import legend_html

    space = ex.space()
    stack, layer, head, _ = ex.attention.choice()
    ring = [(u.stack, u.layer, u.head) == (stack, layer, head) for u in space.units]
    index = ex.unit_index()
    clicked = [False] * len(space)
    for key in ex.clicked:
        if key in index:
            clicked[index[key]] = True
    effects = ex.unit_effects()
    has = effects is not None
    ex.sweep_button.disabled = has
    ex.sweep_button.tooltip = ("this task's effects are here" if has else
                               "each head of the zero-shot forward patched alone on this task's prompts (the sweep engine)")
    colours, tips, label, scale = None, None, None, None
    if has:
        tips = ["" if not np.isfinite(v) else f"effect alone {v:+.3f}" for v in effects]
        if ex.controls["colour"].value == "effect":
            colours, scale = effect_colours(effects)
            label = ex.effects.describe(ex.task)
    ex.grid.show(space, ex.current_mask().tolist(), ex.compare.mask().tolist() if ex.compare.active else None, ring,
                 clicked, colours, tips)
    top = ""
    if has:
        best = ", ".join(f"{name} {v:+.3f}" for name, v in ex.effects.top(ex.task, 4))
        top = f"<div class='interp-note'>largest effects alone on {html.escape(ex.task)}: {html.escape(best)}</div>"
    elif ex.controls["colour"].value == "effect":
        top = "<div class='interp-note'>no effects for this task yet: <b>sweep this task</b> computes them</div>"
    ex.legend.value = legend_html(label, scale) + top


def save_state(ex: Any):
    """Write :meth:`PatchExplorer.state` as JSON beside the exports; returns the path."""
    from interp.io import write_text

    return write_text(ex._stem("state").with_suffix(".json"), json.dumps(ex.state(), indent=1) + "\n")
