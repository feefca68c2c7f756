"""The explorer's ipywidgets: controls, the clickable unit grid (the live mask), images, buttons.

The grid has one small toggle per unit, laid out as layers (rows) x heads (columns), one block
per stack and token group; orange = patched. It is rebuilt when the layout changes (another
unit space) and re-coloured after every change; a click calls :meth:`PatchExplorer.toggle`.
Sized for a 1280 x 800 screen: 7 image panels of 128 px, controls in three labelled rows.
"""

from __future__ import annotations

import json
from typing import Any

from interp.viz.explorer.policies import NO_POLICY
from interp.viz.explorer.render import PANELS
from interp.viz.heatmaps import GROUP_LABELS

#: grids larger than this many units (e.g. the official model) show the range controls only
MAX_GRID_UNITS = 1200
STYLE = """<style>
.interp-explorer .interp-unit {min-width: 0; padding: 0; margin: 0; border-radius: 2px; font-size: 8px; line-height: 14px}
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
        "heads": w.SelectMultiple(options=list(range(heads)), value=tuple(range(heads)), rows=min(heads, 8),
                                  description="heads", layout=w.Layout(width="110px"), **short),
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
    ex.grid_box = w.HBox(layout=w.Layout(flex_flow="row wrap", align_items="flex-start"))
    ex._grid_layout, ex.unit_buttons = None, []

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
    for name, control in ex.controls.items():
        if name not in ("task", "index", "means"):
            control.observe(on_preset, names="value")
    for name in ("index", "means"):
        ex.controls[name].observe(lambda change: ex.update(), names="value")
    for box in ex.group_boxes.values():
        box.observe(on_preset, names="value")

    c = ex.controls
    row = lambda *items: w.HBox(list(items), layout=w.Layout(align_items="center", flex_flow="row wrap"))  # noqa: E731
    panels = [w.VBox([ex.image_titles[p], ex.images[p]], layout=w.Layout(width=f"{DISPLAY_PX + 40}px", align_items="center"))
              for p in PANELS]
    ranges = w.VBox([row(c["encoder"], c["encoder_layers"]), row(c["decoder"], c["decoder_layers"]),
                     row(w.HTML("token groups:"), *ex.group_boxes.values())])
    ex.widget = w.VBox([
        w.HTML(STYLE),
        row(c["task"], c["means"], c["index"], c["layout"]),
        row(c["policy"], c["threshold"], ranges, c["heads"]),
        w.HTML("<b>patched units</b> (click to toggle; rows = layers, columns = heads):"),
        ex.grid_box,
        w.HBox(panels, layout=w.Layout(flex_flow="row nowrap")),
        ex.summary,
        row(ex.export_button, ex.policy_button, ex.state_button, ex.status),
    ])
    ex.widget.add_class("interp-explorer")


def sync_grid(ex: Any, w: Any) -> None:
    """Rebuild the unit grid for a new layout; colour every toggle by whether its unit is patched."""
    space = ex.space()
    if len(space) > MAX_GRID_UNITS:
        ex.grid_box.children = (w.HTML(f"<i>{len(space)} units: too many to draw; use the controls above</i>"),)
        return
    if ex._grid_layout != ex.layout:
        ex._grid_layout, ex.unit_buttons = ex.layout, [None] * len(space)
        blocks = {}
        for i, unit in enumerate(space.units):
            blocks.setdefault((unit.stack, unit.group), []).append((i, unit))
        children = []
        for (stack, group), units in blocks.items():
            n_heads = max(u.head for _, u in units) + 1
            buttons = []
            for i, unit in units:
                button = w.ToggleButton(value=False, description=f"{unit.head}", tooltip=f"{stack} L{unit.layer} H{unit.head} "
                                        f"{GROUP_LABELS.get(group, group)}", layout=w.Layout(width="18px", height="16px"))
                button.add_class("interp-unit")
                button.unit = i
                button.observe(lambda change, i=i: None if ex._syncing else ex.toggle(i), names="value")
                ex.unit_buttons[i] = button
                buttons.append(button)
            grid = w.GridBox(buttons, layout=w.Layout(grid_template_columns=f"repeat({n_heads}, 18px)", grid_gap="1px"))
            children.append(w.VBox([w.HTML(f"<small>{stack} · {GROUP_LABELS.get(group, group)}</small>"), grid],
                                   layout=w.Layout(margin="0 10px 0 0")))
        ex.grid_box.children = tuple(children)
    mask = ex.current_mask().numpy()
    ex._syncing = True
    try:
        for button, on in zip(ex.unit_buttons, mask):
            if button.value != bool(on):
                button.value = bool(on)
            button.button_style = "warning" if on else ""
    finally:
        ex._syncing = False


def save_state(ex: Any):
    """Write :meth:`PatchExplorer.state` as JSON beside the exports; returns the path."""
    from interp.io import write_text

    return write_text(ex._stem("state").with_suffix(".json"), json.dumps(ex.state(), indent=1) + "\n")
