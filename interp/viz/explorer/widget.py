"""The patch explorer's widget: controls, a clickable unit grid, the prompt and its predictions.

``PatchExplorer(model, prompts, means, policies).widget`` (ipywidgets)::

    task [v] means of [v] prompt [--o--]  patched layout (zero-shot|one-shot)   name of the prompt
    start from: policy [v] threshold [--o--] | encoder layers [x][0==5] decoder layers [x][0=2] heads, groups
    token groups [x] ...   heads [0][1]...[all][none]
    unit grid: one cell per (stack, token group) x layer x head; orange = patched; click = toggle,
               shift-click = show that head's attention; outlined = the pinned set A
    tabs: prediction   example input | example output | query || one-shot | zero-shot | patched | target
                       (metric each), and the metric over all prompts of the task (mean ± sem)
          compare A/B  pin the selection (or a policy) as A, edit B: both predictions, both metrics, B - A
          attention    one head's attention pattern, unpatched and patched (:mod:`.attention`)
          code lens    the target cell as each layer would predict it, and its metric (:mod:`.lens_view`)
    [export figure] [export policy] [save state]  status

What is patched is a set of units of the ``group`` unit space of the chosen layout (one unit =
one head at one token group). The controls of the second row make a starting set (the units
in the layer ranges, heads and groups ticked, and, with a policy, those above its threshold);
clicking a cell of the grid toggles one unit on top of it (changing a control starts again from
its set). Patched heads output the chosen task's mean activation at the same canvas slot, or
(``patch``: ``add`` / ``scaled`` with ``alpha``) the other intervention kinds of
:class:`~interp.taskvectors.patching.Intervention`; ``add`` subtracts ``base_means`` (zero-shot
statistics; by default collected from the explorer's prompts of the means' task).
Everything is also a plain method (:meth:`current_mask`, :meth:`toggle`, :meth:`predictions`,
:meth:`scores`, :meth:`set_scores`, :meth:`render`, :meth:`export`, :meth:`state`, ``compare.pin()``,
``attention.select()``), so notebooks and tests drive it without a browser.
"""

from __future__ import annotations

import html
import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from interp.data.tasks import PromptBatch
from interp.metrics import task_metric
from interp.taskvectors.patching import Means
from interp.taskvectors.units import GROUP_NAMES, UnitSpace
from interp.viz.explorer.compare import CompareSlot
from interp.viz.explorer.policies import NO_POLICY, resolve_policy, values_on
from interp.viz.explorer.predict import Predictor
from interp.viz.explorer.render import PANEL_NAMES, PANELS, PROMPT_PANELS, fmt, image_row, png
from interp.viz.export import FORMATS, figure_stem, keep_browser_open, one_line, save_figure
from interp.viz.heatmaps import GROUP_LABELS, layer_head_heatmap, mask_frame
from interp.viz.style import metric_label

LAYOUT_NAMES = ("zero_shot", "one_shot")
SAME_TASK = "(same task)"
TWO_COLOURS = [[0.0, "#e4e4e4"], [0.5, "#e4e4e4"], [0.5, "#E69F00"], [1.0, "#E69F00"]]  # the grid's: grey, orange = patched
DISPLAY_PX = 128
STATE_KEYS = ("task", "means", "index", "layout", "encoder", "encoder_layers", "decoder", "decoder_layers", "heads",
              "policy", "threshold", "intervention", "alpha")


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("the patch explorer needs ipywidgets: pip install ipywidgets (JupyterLab >= 3 shows it)") from None
    return ipywidgets


class PatchExplorer:
    """Interactive mean-activation patching for one model (see the module docstring).

    ``prompts``: ``{task: PromptBatch}`` (canvases include the target cell, for the metric);
    ``means``: ``{task: ActivationStats or {site: mean z by slot}}``, one per task of ``prompts``
    at least; ``policies``: optional ``{name: Policy or (UnitSpace, probabilities)}``, e.g.
    :func:`~interp.viz.explorer.policies.run_policies` of a run (a policy named like a task
    follows that task). Starts from the first task's policy, or with nothing patched.
    """

    def __init__(self, model: Any, prompts: Mapping[str, PromptBatch], means: Mapping[str, Means],
                 policies: Mapping[str, Any] | None = None, export_dir: str | Path = "figures",
                 formats: Sequence[str] = FORMATS, base_means: Mapping[str, Means] | None = None) -> None:
        if not isinstance(prompts, Mapping) or not prompts:
            raise ValueError("prompts must be a non-empty {task: PromptBatch} mapping (e.g. build_task_prompts(...))")
        for task, batch in prompts.items():
            if not isinstance(batch, PromptBatch):
                raise TypeError(f"prompts[{task!r}] is a {type(batch).__name__}; expected a PromptBatch")
            if len(batch) == 0:
                raise ValueError(f"prompts[{task!r}] holds no prompts")
            if batch.grid.canvas_size != model.grid.canvas_size:
                raise ValueError(f"prompts[{task!r}] are {batch.grid.canvas_size}px canvases, the model takes "
                                 f"{model.grid.canvas_size}px: build them with grid=model.grid")
        if not isinstance(means, Mapping):
            raise TypeError("means must be a {task: ActivationStats or {site: mean}} mapping")
        missing = [t for t in prompts if t not in means]
        if missing:
            raise ValueError(f"no means for task(s) {missing}; collect them (interp.taskvectors.collect) or drop those prompts")
        if model.vqgan is None:
            raise ValueError("the explorer shows predicted pixels: give a model with its VQGAN")
        self.model = model.eval()
        self.prompts = dict(prompts)
        self.means = dict(means)
        self.policies = {name: resolve_policy(model, p, name) for name, p in (policies or {}).items()}
        self.export_dir = Path(export_dir)
        self.formats = tuple(formats)
        self.predictor = Predictor(self.model, self.prompts, self.means, base_means)
        for task in self.prompts:  # fail early on statistics of another model or shape
            self.predictor.patcher(task, "zero_shot")
        self._policy_cache: dict[tuple[str, str], np.ndarray] = {}
        self.toggled: set[int] = set()  # units clicked on top of the controls' set
        self.last_export: list[Path] = []
        self._held = 0
        self.compare = CompareSlot(self)  # set A beside the current selection (B)
        self._build_widgets()
        self.update()

    # --- units and masks -------------------------------------------------------------------

    def space(self, layout: str | None = None) -> UnitSpace:
        """The ``group`` unit space of a layout (default: the chosen one)."""
        return self.predictor.space(layout or self.layout)

    def _policy_values(self, policy: str, layout: str) -> np.ndarray:
        key = (policy, layout)
        if key not in self._policy_cache:
            self._policy_cache[key] = values_on(self.policies[policy], self.space(layout))
        return self._policy_cache[key]

    def preset_mask(self) -> np.ndarray:
        """The units the controls select, before any click."""
        self.space()
        f, w = self.predictor.fields[self.layout], self.controls
        (enc_lo, enc_hi), (dec_lo, dec_hi) = w["encoder_layers"].value, w["decoder_layers"].value
        in_encoder = ~f["decoder"] & w["encoder"].value & (f["layer"] >= enc_lo) & (f["layer"] <= enc_hi)
        in_decoder = f["decoder"] & w["decoder"].value & (f["layer"] >= dec_lo) & (f["layer"] <= dec_hi)
        groups = [g for g, box in self.group_boxes.items() if box.value]
        mask = (in_encoder | in_decoder) & np.isin(f["head"], list(w["heads"].value)) & np.isin(f["group"], groups)
        if w["policy"].value != NO_POLICY:
            mask &= self._policy_values(w["policy"].value, self.layout) > w["threshold"].value
        return mask

    def current_mask(self) -> Tensor:
        """Bool ``[len(self.space())]``: the controls' units, with the clicked ones toggled."""
        mask = self.preset_mask()
        for i in self.toggled:
            mask[i] = not mask[i]
        return torch.from_numpy(mask)

    def toggle(self, unit: int) -> None:
        """Patch unit ``unit`` of :meth:`space` if it is not patched, else stop patching it (a grid click)."""
        if not 0 <= unit < len(self.space()):
            raise IndexError(f"unit {unit} outside the {len(self.space())} units of the {self.layout} space")
        self.toggled ^= {unit}
        self.update()

    def inspect(self, unit: int) -> None:
        """Show the head of unit ``unit`` in the attention tab (a shift-click on the grid)."""
        u = self.space().unit(unit)
        self.attention.select(u.stack, u.layer, u.head, show=True)

    def describe_mask(self, mask: Tensor | None = None) -> str:
        """One line: how many units, in which stacks, layers and groups."""
        m = (self.current_mask() if mask is None else mask).numpy()
        f = self.predictor.fields[self.layout]
        if not m.any():
            return "nothing patched: click units of the grid, or start from a policy or layer ranges"
        parts = []
        for stack, is_dec in (("encoder", False), ("decoder", True)):
            sel = m & (f["decoder"] == is_dec)
            if sel.any():
                layers = np.unique(f["layer"][sel])
                groups = [GROUP_LABELS.get(g, g) for g in GROUP_NAMES if g in set(f["group"][sel])]
                span = f"L{layers.min()}–{layers.max()}" if len(layers) > 1 else f"L{layers[0]}"
                parts.append(f"{stack} {span}: {int(sel.sum())} units ({', '.join(groups)})")
        return f"{int(m.sum())} of {len(m)} units patched — " + "; ".join(parts)

    def mask_figure(self, title: str | None = None):
        """Where the current patch sits, as a static layers x heads heatmap per token group."""
        fig = layer_head_heatmap(mask_frame(self.space(), self.current_mask()), "patched", zmin=0.0, zmax=1.0,
                                 title=title or f"patched units ({self.layout.replace('_', '-')})", colorscale=TWO_COLOURS)
        fig.update_layout(coloraxis_colorbar=dict(tickvals=[0.25, 0.75], ticktext=["not patched", "patched"], title=None))
        return fig  # two colours, two labels: a 0/1 mask, not a continuous scale

    # --- predictions -------------------------------------------------------------------------

    task = property(lambda self: self.controls["task"].value)
    index = property(lambda self: int(self.controls["index"].value))
    layout = property(lambda self: self.controls["layout"].value)
    means_task = property(lambda self: self.task if self.controls["means"].value == SAME_TASK else self.controls["means"].value)

    def _run(self, layout: str, mask: Tensor | None) -> tuple[Tensor, float]:
        return self.predictor.predict(self.task, self.index, layout, self.means_task, mask)

    def predictions(self) -> dict[str, Tensor]:
        """Cells ``[3, c, c]`` in [0, 1]: the prompt (example pair, query), the three predictions, the target."""
        cells = self.prompts[self.task].cells
        out = {p: getattr(cells, p)[self.index].float().clamp(0, 1) for p in (*PROMPT_PANELS, "target")}
        out.update(one_shot=self._run("one_shot", None)[0], zero_shot=self._run("zero_shot", None)[0],
                   patched=self._run(self.layout, self.current_mask())[0])
        return out

    def scores(self) -> dict[str, float]:
        """The task metric (IoU or MSE on the target cell) of each prediction of this prompt."""
        return {"one_shot": self._run("one_shot", None)[1], "zero_shot": self._run("zero_shot", None)[1],
                "patched": self._run(self.layout, self.current_mask())[1]}

    def set_scores(self) -> dict[str, tuple[float, float, int]]:
        """(mean, sem, n) of the metric over every prompt of the task, per prediction."""
        p = self.predictor
        return {"one_shot": p.set_score(self.task, "one_shot", self.means_task, None),
                "zero_shot": p.set_score(self.task, "zero_shot", self.means_task, None),
                "patched": p.set_score(self.task, self.layout, self.means_task, self.current_mask())}

    def titles(self) -> dict[str, str]:
        """Panel titles with the metric values, e.g. ``'zero-shot · mIoU ↑ 0.123'``."""
        metric = task_metric(self.task)
        label = metric_label(metric.name, metric.higher_is_better)
        n = int(self.current_mask().sum())
        means = "" if self.means_task == self.task else f", {self.means_task} means"
        names = {"one_shot": "one-shot", "zero_shot": "zero-shot",
                 "patched": f"patched {self.layout.replace('_', '-')} ({n} units{means})"}
        out = {k: f"{names[k]} · {label} {fmt(v)}" for k, v in self.scores().items()}
        out.update({p: PANEL_NAMES[p] for p in (*PROMPT_PANELS, "target")})
        return out

    def prompt_name(self) -> str:
        pair = self.prompts[self.task].pairs[self.index]
        return f"{self.task} · prompt {self.index}: query {pair.query.name}, example {pair.support.name}"

    def render(self):
        """The current view as a plotly figure (what :meth:`export` writes)."""
        return image_row(self.predictions(), self.titles(), f"{self.prompt_name()}<br><sup>{self.describe_mask()}</sup>")

    # --- files -------------------------------------------------------------------------------

    def _stem(self, kind: str) -> Path:
        means = None if self.means_task == self.task else f"means-{self.means_task}"
        return self.export_dir / figure_stem(kind, self.task, f"prompt{self.index}", self.layout, means, mask=self.current_mask())

    def export(self, stem: str | Path | None = None, formats: Sequence[str] | None = None) -> list[Path]:
        """Write :meth:`render` (all formats or none); the name says the task, prompt, layout and mask."""
        formats = formats or self.formats
        if any(f != "html" for f in formats):
            keep_browser_open()  # one browser for every export of the session
        self.last_export = save_figure(self.render(), stem or self._stem("explorer"), formats)
        return self.last_export

    def export_policy(self, path: str | Path | None = None) -> list[Path]:
        """The current units as a policy file (probability 1 on the patched units, 0 elsewhere) and the
        Python that reproduces the view (``.py`` beside it)."""
        from interp.io import write_text
        from interp.taskvectors.policy import Policy as SavedPolicy

        path = Path(path) if path is not None else self._stem("selection").with_suffix(".safetensors")
        logits = torch.where(self.current_mask(), 20.0, -20.0)  # sigmoid: 1 and 0 to float precision
        SavedPolicy(self.space(), logits, logits.clone(), {"task": self.task, "method": "explorer"}).save(path)
        return [path, write_text(path.with_suffix(".py"), self.reproduce_code(path))]

    def reproduce_code(self, policy_path: str | Path) -> str:
        """Python that opens this selection again (in a session holding ``model``, ``prompts``, ``means``)."""
        state = json.dumps(self.state())
        return (f"# the explorer view of {self.prompt_name()}: {self.describe_mask()}\n"
                "import json\n\nfrom interp.taskvectors.policy import Policy\nfrom interp.viz.explorer import PatchExplorer\n\n"
                f"selection = Policy.load({str(policy_path)!r})  # selection.mask() is the patched units\n"
                "explorer = PatchExplorer(model, prompts, means, {'selection': selection})\n"
                f"explorer.load_state(json.loads({state!r}))\n"
                "explorer.widget\n")

    def state(self) -> dict[str, Any]:
        """The widget's state as JSON-ready values (controls and clicked units)."""
        out = {k: self.controls[k].value for k in STATE_KEYS}
        out.update(groups=[g for g, b in self.group_boxes.items() if b.value], toggled=sorted(self.toggled),
                   compare=self.compare.state())
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` (e.g. ``json.load`` of a saved one)."""
        unknown = sorted(set(state) - {*STATE_KEYS, "groups", "toggled", "compare"})
        if unknown:
            raise ValueError(f"unknown explorer state key(s) {unknown}; expected {[*STATE_KEYS, 'groups', 'toggled', 'compare']}")
        with self.hold():
            for key in STATE_KEYS:
                if key in state:
                    value = state[key]
                    self.controls[key].value = tuple(value) if isinstance(value, list) else value
            for g, box in self.group_boxes.items():
                box.value = g in state.get("groups", list(self.group_boxes))
            self.toggled = set(state.get("toggled", []))
            self.compare.load_state(state.get("compare"))

    # --- widgets -----------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        from interp.viz.explorer.controls import build_controls

        build_controls(self, _ipywidgets())

    @contextmanager
    def hold(self) -> Iterator[PatchExplorer]:
        """Change several controls, recompute once: ``with ex.hold(): ex.controls[...].value = ...``."""
        self._held += 1
        try:
            yield self
        finally:
            self._held -= 1
            if not self._held:
                self.update()

    def update(self) -> None:
        """Recompute and redraw (called on every control change and click)."""
        from interp.viz.explorer.controls import sync_compare

        if self._held:
            return
        try:
            self.controls["threshold"].disabled = self.controls["policy"].value == NO_POLICY
            cells, titles = self.predictions(), self.titles()
            for panel in PANELS:
                self.images[panel].value = png(cells[panel], DISPLAY_PX)
                name, _, metric = titles[panel].partition(" · ")
                if panel == "patched":  # short enough for the panel; the summary below says the rest
                    name = f"patched ({int(self.current_mask().sum())} units)"
                self.image_titles[panel].value = f"<div class='interp-title'><b>{html.escape(name)}</b><br>{metric or '&nbsp;'}</div>"
            label = metric_label(task_metric(self.task).name, task_metric(self.task).higher_is_better)
            means = "; ".join(f"{PANEL_NAMES[k]} {fmt(m)} ± {fmt(s)}" for k, (m, s, n) in self.set_scores().items())
            n = len(self.prompts[self.task])
            self.summary.value = (f"<b>{html.escape(self.prompt_name())}</b><br><i>{self.describe_mask()}</i><br>"
                                  f"{label} over all {n} prompts (mean ± sem): {means}")
            self.sync_grid()
            sync_compare(self)
            self.attention.refresh()
            self.lens.refresh()
            self.status.value = ""
        except Exception as error:  # noqa: BLE001 - shown in the widget; the methods raise
            self.status.value = f"<span style='color:#b00'>{html.escape(type(error).__name__ + ': ' + one_line(error))}</span>"

    def sync_grid(self) -> None:
        from interp.viz.explorer.controls import sync_grid

        sync_grid(self)

    def _run_button(self, button, busy: str, action) -> None:
        """Run ``action`` with ``button`` showing it is busy; one readable line on success or failure."""
        label, icon = button.description, button.icon
        button.disabled, button.description, button.icon = True, busy, "hourglass-half"
        self.status.value = f"<i>{busy}</i>"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                files = action()
            except Exception as error:  # noqa: BLE001 - one readable line in the widget
                self.status.value = f"<span style='color:#b00'>failed: {html.escape(one_line(error))}</span>"
                return
            finally:
                button.disabled, button.description, button.icon = False, label, icon
        note = "".join(f"<br><span style='color:#a60'>{html.escape(one_line(c.message))}</span>" for c in caught)
        self.status.value = "wrote " + ", ".join(p.name for p in files) + note

    def _on_export(self) -> None:
        self._run_button(self.export_button, "exporting…", self.export)

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a notebook
        from IPython.display import display

        display(self.widget)
