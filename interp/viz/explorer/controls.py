"""The explorer's ipywidgets: controls, the unit grid (the live mask), tabs of images, buttons.

The grid (:mod:`.grid`) has one cell per unit, layers (rows) x heads (columns), one block per
stack and token group; orange = patched, outlined = in the pinned set A; a click calls
:meth:`PatchExplorer.toggle`, a shift-click shows the head in the attention tab. Below it three
tabs: the prompt and its predictions, the A/B comparison (:mod:`.compare`), a head's attention
(:mod:`.attention`). Sized for a 1280 x 800 screen: image panels of 128 px, controls in four rows.
"""

from __future__ import annotations

import json
from typing import Any

import traitlets

from interp.viz.explorer.attention import AttentionView
from interp.viz.explorer.compare import policy_options
from interp.taskvectors.patching import INTERVENTION_KINDS, Intervention
from interp.viz.explorer.grid import unit_grid
from interp.viz.explorer.lens_view import TITLE as LENS_TITLE
from interp.viz.explorer.lens_view import LensView
from interp.viz.explorer.policies import NO_POLICY
from interp.viz.explorer.render import PANELS
from interp.viz.heatmaps import GROUP_LABELS

TABS = ("prediction", "compare A / B", "attention of a head", LENS_TITLE)
STYLE = """<style>
.interp-explorer .interp-head {min-width: 0; padding: 0; margin: 0 1px 0 0; font-size: 10px}
.interp-explorer .interp-compare {line-height: 1.3; margin-top: 4px; border-collapse: collapse}
.interp-explorer .interp-compare td, .interp-explorer .interp-compare th {padding: 1px 8px; font-size: 12px; text-align: left}
.interp-explorer .interp-title {text-align: center; font-size: 11px; line-height: 1.25; white-space: nowrap}
.interp-explorer .widget-label {min-width: 0}
</style>"""


def build_controls(ex: Any, w: Any) -> None:
    """Create every widget of ``ex`` (a :class:`~interp.viz.explorer.widget.PatchExplorer`) and wire it."""
    from interp.viz.explorer.widget import DISPLAY_PX, LAYOUT_NAMES, SAME_TASK

    cfg = ex.model.config.mae
    tasks = list(ex.prompts)
    heads = max(cfg.num_heads, cfg.decoder_num_heads)
    first = tasks[0]
    start = first if first in ex.policies else NO_POLICY  # the run's policy, or nothing patched
    short = dict(style={"description_width": "initial"})
    ex.controls = {
        "task": w.Dropdown(options=tasks, value=first, description="task", layout=w.Layout(width="190px"), **short),
        "means": w.Dropdown(options=[SAME_TASK, *ex.means], value=SAME_TASK, description="means of",
                            layout=w.Layout(width="210px"), **short),
        "index": w.IntSlider(value=0, min=0, max=len(ex.prompts[first]) - 1, description="prompt",
                             continuous_update=False, layout=w.Layout(width="230px"), **short),
        "layout": w.ToggleButtons(options=[(n.replace("_", "-"), n) for n in LAYOUT_NAMES], value="zero_shot",
                                  description="patched forward", style={"description_width": "initial", "button_width": "95px"}),
        "policy": w.Dropdown(options=[("none", NO_POLICY)] + [(n, n) for n in ex.policies], value=start,
                             description="start from policy", layout=w.Layout(width="260px"), **short),
        "threshold": w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, description="threshold",
                                   continuous_update=False, layout=w.Layout(width="220px"), **short),
        "encoder": w.Checkbox(value=start != NO_POLICY, description="encoder layers", indent=False,
                              layout=w.Layout(width="135px")),
        "encoder_layers": w.IntRangeSlider(value=(0, cfg.depth - 1), min=0, max=max(cfg.depth - 1, 0), description="",
                                           continuous_update=False, layout=w.Layout(width="150px")),
        "decoder": w.Checkbox(value=start != NO_POLICY, description="decoder layers", indent=False,
                              layout=w.Layout(width="135px")),
        "decoder_layers": w.IntRangeSlider(value=(0, cfg.decoder_depth - 1), min=0, max=max(cfg.decoder_depth - 1, 0),
                                           description="", continuous_update=False, layout=w.Layout(width="150px")),
        "heads": head_picker(w, heads),
        "intervention": w.Dropdown(options=INTERVENTION_KINDS, value="replace", description="patch", layout=w.Layout(width="150px"),
                                   tooltip="replace: the task mean; add: z + alpha (mean - zero-shot mean); scaled: z + alpha (mean - z)",
                                   **short),
        "alpha": w.FloatText(value=1.0, step=0.25, description="alpha", layout=w.Layout(width="120px"), **short),
    }
    ex.group_boxes = {g: w.Checkbox(value=True, description=GROUP_LABELS.get(g, g), indent=False,
                                    layout=w.Layout(width="auto")) for g in ("cls", "example_input", "example_output", "query", "target")}
    ex.images = {p: w.Image(format="png", width=DISPLAY_PX, height=DISPLAY_PX) for p in PANELS}
    ex.image_titles = {p: w.HTML() for p in PANELS}
    ex.summary, ex.status = w.HTML(), w.HTML()
    ex.export_button = w.Button(description="export figure", icon="download", layout=w.Layout(width="140px"),
                                tooltip=f"save the view to {ex.export_dir} ({', '.join(ex.formats)})")
    ex.policy_button = w.Button(description="export selection", icon="save", layout=w.Layout(width="150px"),
                                tooltip="the patched units as a policy file and the Python that reproduces the view")
    ex.state_button = w.Button(description="save state", icon="bookmark", layout=w.Layout(width="120px"),
                               tooltip="the widget's state as JSON (PatchExplorer.load_state restores it)")
    ex.export_button.on_click(lambda _: ex._on_export())
    ex.policy_button.on_click(lambda _: ex._run_button(ex.policy_button, "exporting…", ex.export_policy))
    ex.state_button.on_click(lambda _: ex._run_button(ex.state_button, "saving…", lambda: [save_state(ex)]))
    ex.grid = unit_grid(ex.toggle, ex.inspect)
    build_compare(ex, w)
    ex.attention = AttentionView(ex, w)
    ex.lens = LensView(ex, w)

    def on_task(change: dict) -> None:
        with ex.hold():
            slider = ex.controls["index"]
            slider.max = len(ex.prompts[change["new"]]) - 1
            policy = ex.controls["policy"]
            if policy.value != NO_POLICY and policy.value == change["old"]:  # it followed the task: keep following
                policy.value = change["new"] if change["new"] in ex.policies else NO_POLICY

    def on_preset(change: dict) -> None:  # a control changed: start again from its set
        ex.toggled = set()
        ex.update()

    def on_policy(change: dict) -> None:  # starting from a policy: over both stacks unless narrowed again
        if change["new"] != NO_POLICY and change["old"] == NO_POLICY:
            with ex.hold():
                ex.controls["encoder"].value = ex.controls["decoder"].value = True

    ex.controls["policy"].observe(on_policy, names="value")
    ex.controls["task"].observe(on_task, names="value")
    def on_intervention(change: dict) -> None:  # what the patch does; the patched units stay
        ex.predictor.intervention = Intervention(ex.controls["intervention"].value, ex.controls["alpha"].value)
        ex.update()

    for name, control in ex.controls.items():
        if name in ("intervention", "alpha"):
            control.observe(on_intervention, names="value")
        elif name not in ("task", "index", "means"):
            control.observe(on_preset, names="value")
    for name in ("index", "means"):
        ex.controls[name].observe(lambda change: ex.update(), names="value")
    for box in ex.group_boxes.values():
        box.observe(on_preset, names="value")

    c = ex.controls
    row = lambda *items: w.HBox(list(items), layout=w.Layout(align_items="center", flex_flow="row wrap"))  # noqa: E731
    pair = lambda *items: w.HBox(list(items), layout=w.Layout(align_items="center", flex_flow="row nowrap"))  # noqa: E731
    panels = [w.VBox([ex.image_titles[p], ex.images[p]], layout=w.Layout(width=f"{DISPLAY_PX + 40}px", align_items="center"))
              for p in PANELS]
    ex.tabs = w.Tab(children=[w.VBox([w.HBox(panels, layout=w.Layout(flex_flow="row nowrap")), ex.summary]),
                              ex.compare_box, ex.attention.widget, ex.lens.widget], titles=TABS)
    ex.tabs.observe(lambda change: (ex.attention.refresh(), ex.lens.refresh()), names="selected_index")
    ex.widget = w.VBox([
        w.HTML(STYLE),
        row(c["task"], c["means"], c["index"], c["layout"], c["intervention"], c["alpha"]),
        row(c["policy"], c["threshold"], pair(c["encoder"], c["encoder_layers"]), pair(c["decoder"], c["decoder_layers"])),
        row(w.HTML("token groups:"), *ex.group_boxes.values(), w.HTML("&nbsp;&nbsp;"), c["heads"]),
        w.HTML("<b>patched units</b> (click: patch / unpatch one unit; shift-click: its attention; rows = layers, "
               "columns = heads; outlined = set A):"),
        ex.grid,
        ex.tabs,
        row(ex.export_button, ex.policy_button, ex.state_button, ex.status),
    ])
    ex.widget.add_class("interp-explorer")


def head_picker(w: Any, heads: int) -> Any:
    """One small toggle per head plus *all* / *none*; ``.value`` is the tuple of heads switched on."""

    class HeadPicker(w.HBox):
        value = traitlets.Tuple()

        def __init__(self) -> None:
            self.toggles = [w.ToggleButton(value=True, description=str(h), tooltip=f"head {h}",
                                           layout=w.Layout(width="22px", height="22px")) for h in range(heads)]
            every = w.Button(description="all", layout=w.Layout(width="34px", height="22px"))
            nothing = w.Button(description="none", layout=w.Layout(width="42px", height="22px"))
            for b in (*self.toggles, every, nothing):
                b.add_class("interp-head")
            super().__init__([w.HTML("heads:&nbsp;"), *self.toggles, every, nothing], layout=w.Layout(align_items="center"))
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
    from interp.viz.explorer.widget import DISPLAY_PX

    pin = w.Button(description="pin B as A", icon="thumb-tack", layout=w.Layout(width="120px"),
                   tooltip="keep the current units as set A; go on editing B")
    from_policy = w.Dropdown(options=policy_options(ex), value=NO_POLICY, layout=w.Layout(width="220px"))
    clear = w.Button(description="clear A", icon="times", layout=w.Layout(width="90px"))
    pin.on_click(lambda _: ex.compare.pin())
    clear.on_click(lambda _: ex.compare.clear())

    def on_policy(change: dict) -> None:
        if change["new"] != NO_POLICY:
            ex.compare.pin_policy(change["new"])
            from_policy.value = NO_POLICY

    from_policy.observe(on_policy, names="value")
    ex.compare_images = {k: w.Image(format="png", width=DISPLAY_PX, height=DISPLAY_PX) for k in ("query", "target", "A", "B")}
    ex.compare_titles = {k: w.HTML() for k in ex.compare_images}
    ex.compare_summary = w.HTML()
    panels = [w.VBox([ex.compare_titles[k], ex.compare_images[k]], layout=w.Layout(width=f"{DISPLAY_PX + 24}px", align_items="center"))
              for k in ex.compare_images]
    ex.compare_box = w.VBox([w.HBox([pin, from_policy, clear], layout=w.Layout(align_items="center")),
                             w.HBox(panels), ex.compare_summary])


def sync_compare(ex: Any) -> None:
    """Redraw the compare tab (cheap when nothing is pinned: the table says how to pin)."""
    from interp.viz.explorer.render import png
    from interp.viz.explorer.widget import DISPLAY_PX

    cells = ex.prompts[ex.task].cells
    images = {p: getattr(cells, p)[ex.index].float().clamp(0, 1) for p in ("query", "target")}
    titles = {"query": "query", "target": "target", "A": "A", "B": f"B ({int(ex.current_mask().sum())} units)"}
    if ex.compare.active:
        images.update(ex.compare.predictions())
        titles["A"] = f"A ({int(ex.compare.mask().sum())} units)"
    for key, image in ex.compare_images.items():
        if key in images:
            image.value = png(images[key], DISPLAY_PX)
        image.layout.visibility = "visible" if key in images else "hidden"
        ex.compare_titles[key].value = f"<div class='interp-title'><b>{titles[key]}</b></div>"
    ex.compare_summary.value = ex.compare.summary_html()


def sync_grid(ex: Any) -> None:
    """Draw the current mask, the pinned set A and the attention view's head on the unit grid."""
    space = ex.space()
    stack, layer, head, _ = ex.attention.choice()
    ring = [(u.stack, u.layer, u.head) == (stack, layer, head) for u in space.units]
    ex.grid.show(space, ex.current_mask().tolist(), ex.compare.mask().tolist() if ex.compare.active else None, ring)


def save_state(ex: Any):
    """Write :meth:`PatchExplorer.state` as JSON beside the exports; returns the path."""
    from interp.io import write_text

    return write_text(ex._stem("state").with_suffix(".json"), json.dumps(ex.state(), indent=1) + "\n")
