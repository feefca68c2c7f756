"""The patch explorer's widget: controls, a clickable unit grid, the prompt and its predictions.

``PatchExplorer(model, prompts, means, policies, effects).widget`` (ipywidgets)::

    task [v] means of [v] prompt [--o--]  patched forward (zero-shot|one-shot)
    patch: policy [v] > threshold [--o--]  +  encoder layers [x][0==5]  +  decoder layers [x][0=2]
    only token groups [x] ...   only heads [0][1]...[all][none]
    legend of every mark; unit grid: one cell per (stack, token group) x layer x head; click = patch /
               unpatch one unit, shift-click = show that head's attention; colour by: patched | effect alone
    tabs: prediction   prompt | one-shot | zero-shot | patched | target (metric each; or the difference
                       to the target), the metric over all prompts with paired 95% intervals vs zero-shot
          compare A/B  pin the selection (or a policy) as A, edit B: both predictions, both metrics, B - A
          attention    one head's attention pattern, unpatched and patched (:mod:`.attention`)
          code lens    the target cell as each layer would predict it, and its metric (:mod:`.lens_view`)
    [export figure] [export selection] [save state]  status

What is patched is a set of units of the ``group`` unit space of the chosen layout (one unit =
one head at one token group). The state is exactly what the controls show:

* the controls give a set: the policy's units above the threshold (none for "none"), plus every
  unit of the ticked layer ranges (none when unticked), kept only for the heads and token groups
  switched on; choosing a policy changes nothing else;
* a click on the grid sets one unit on or off *by hand*, on top of that set. Clicks are kept by
  unit name (stack, layer, head, token group) through every other change (policy, threshold,
  ranges, task, prompt, the patched forward); a unit the other forward lacks (one-shot's example
  groups in zero-shot) is kept aside and said so, and applies again on switching back.
  *clear clicks* drops them.

Patched heads output the chosen task's mean activation at the same canvas slot, or
(``patch``: ``add`` / ``scaled`` with ``alpha``) the other intervention kinds of
:class:`~interp.taskvectors.patching.Intervention`; ``add`` subtracts ``base_means`` (zero-shot
statistics; by default collected from the explorer's prompts of the means' task). Everything is
also a plain method (:meth:`current_mask`, :meth:`toggle`, :meth:`clear_clicks`, :meth:`predictions`,
:meth:`scores`, :meth:`set_scores`, :meth:`intervals`, :meth:`render`, :meth:`export`, :meth:`state`,
``compare.pin()``, ``attention.select()``, :meth:`sweep_task`), so notebooks and tests drive it
without a browser.
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
from interp.taskvectors.unit import GROUP_NAMES
from interp.taskvectors.units import UnitSpace
from interp.viz.explorer.compare import CompareSlot
from interp.viz.explorer.controls import DISPLAY_PX, PROMPT_PX, SAME_TASK, build_controls, sync_compare, sync_grid, sync_policies
from interp.viz.explorer.effects import UnitEffects, as_effects
from interp.viz.explorer.policies import NO_POLICY, policy_task, resolve_policy, values_on
from interp.viz.explorer.predict import Predictor, paired_interval
from interp.viz.explorer.render import PANEL_NAMES, PREDICTION_PANELS, PREDICTIONS, difference, fmt, image_row, png, prompt_canvas
from interp.viz.export import FORMATS, figure_stem, keep_browser_open, one_line, save_figure
from interp.viz.heatmaps import GROUP_LABELS, layer_head_heatmap, mask_frame
from interp.viz.style import metric_label

TWO_COLOURS = [[0.0, "#e4e4e4"], [0.5, "#e4e4e4"], [0.5, "#E69F00"], [1.0, "#E69F00"]]  # the grid's: grey, orange = patched
STATE_KEYS = ("task", "means", "index", "layout", "encoder", "encoder_layers", "decoder", "decoder_layers", "heads",
              "policy", "threshold", "intervention", "alpha")
SWEEP_PROMPTS = 16  # prompts of an on-demand sweep (as `interp sweep --sweep-prompts` by default)
UnitKey = tuple  # (stack, layer, head, group): a unit by name, the same in every layout that has it


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("the patch explorer needs ipywidgets: pip install ipywidgets (JupyterLab >= 3 shows it)") from None
    return ipywidgets


class PatchExplorer:
    """Interactive mean-activation patching for one model (see the module docstring).

    ``prompts``: ``{task: PromptBatch}`` (canvases include the target cell, for the metric; 32 or
    more per task for a usable interval); ``means``: ``{task: ActivationStats or {site: mean z by
    slot}}``, one per task of ``prompts`` at least; ``policies``: optional ``{name: Policy or
    (UnitSpace, probabilities)}``, e.g. :func:`~interp.viz.explorer.policies.run_policies` of a run
    (the dropdown offers the chosen task's policies, and those of no task); ``effects``: a sweep
    table (a run's ``sweep.csv``) or :class:`~interp.viz.explorer.effects.UnitEffects`, drawn on
    the grid (:meth:`sweep_task` computes one for a task without). Starts from the first task's own
    policy (REINFORCE's when there are several), or with nothing patched.
    """

    def __init__(self, model: Any, prompts: Mapping[str, PromptBatch], means: Mapping[str, Means],
                 policies: Mapping[str, Any] | None = None, export_dir: str | Path = "figures",
                 formats: Sequence[str] = FORMATS, base_means: Mapping[str, Means] | None = None,
                 effects: Any = None) -> None:
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
        if not model.has_pixels:
            raise ValueError("the explorer shows predicted pixels: give a model with its VQGAN")
        self.model = model.eval()
        self.prompts = dict(prompts)
        self.means = dict(means)
        self.policies = {name: resolve_policy(model, p, name) for name, p in (policies or {}).items()}
        self.effects: UnitEffects = as_effects(effects)
        self.export_dir = Path(export_dir)
        self.formats = tuple(formats)
        self.predictor = Predictor(self.model, self.prompts, self.means, base_means)
        for task in self.prompts:  # fail early on statistics of another model or shape
            self.predictor.patcher(task, "zero_shot")
        self._policy_cache: dict[tuple[str, str], np.ndarray] = {}
        self._keys: dict[str, dict[UnitKey, int]] = {}
        self.clicked: dict[UnitKey, bool] = {}  # units set on (True) or off (False) by hand, by name
        self.last_export: list[Path] = []
        self._held = 0
        self.compare = CompareSlot(self)  # set A beside the current selection (B)
        self._build_widgets()
        self.update()

    # --- units and masks -------------------------------------------------------------------

    def space(self, layout: str | None = None) -> UnitSpace:
        """The ``group`` unit space of a layout (default: the chosen one)."""
        return self.predictor.space(layout or self.layout)

    def unit_index(self, layout: str | None = None) -> dict[UnitKey, int]:
        """``{(stack, layer, head, group): index}`` of a layout's units (default: the chosen one)."""
        layout = layout or self.layout
        if layout not in self._keys:
            self._keys[layout] = {(u.stack, u.layer, u.head, u.group): i for i, u in enumerate(self.space(layout).units)}
        return self._keys[layout]

    def _policy_values(self, policy: str, layout: str) -> np.ndarray:
        key = (policy, layout)
        if key not in self._policy_cache:
            self._policy_cache[key] = values_on(self.policies[policy], self.space(layout))
        return self._policy_cache[key]

    def task_policies(self, task: str | None = None) -> list[str]:
        """The policies offered for ``task`` (default: the chosen one): its own (any method), then those of no task."""
        task = task or self.task
        owner = {name: self.policy_owner(name) for name in self.policies}
        return [n for n, t in owner.items() if t == task] + [n for n, t in owner.items() if t is None]

    def policy_owner(self, name: str) -> str | None:
        """The task of the explorer that policy ``name`` belongs to (None: no task, offered for every task)."""
        task = policy_task(name, self.policies[name])
        if task is None and name in self.prompts:
            return name
        return task if task in self.prompts else None

    def preset_mask(self) -> np.ndarray:
        """The units the controls select, before any click: (policy > threshold) + ticked layer ranges,
        kept only for the heads and token groups switched on."""
        self.space()
        f, w = self.predictor.fields[self.layout], self.controls
        (enc_lo, enc_hi), (dec_lo, dec_hi) = w["encoder_layers"].value, w["decoder_layers"].value
        in_encoder = ~f["decoder"] & w["encoder"].value & (f["layer"] >= enc_lo) & (f["layer"] <= enc_hi)
        in_decoder = f["decoder"] & w["decoder"].value & (f["layer"] >= dec_lo) & (f["layer"] <= dec_hi)
        chosen = in_encoder | in_decoder
        if w["policy"].value != NO_POLICY:
            chosen = chosen | (self._policy_values(w["policy"].value, self.layout) > w["threshold"].value)
        groups = [g for g, box in self.group_boxes.items() if box.value]
        return chosen & np.isin(f["head"], list(w["heads"].value)) & np.isin(f["group"], groups)

    def current_mask(self) -> Tensor:
        """Bool ``[len(self.space())]``: the controls' units, with the units clicked by hand set as clicked."""
        mask = self.preset_mask()
        index = self.unit_index()
        for key, on in self.clicked.items():
            if key in index:
                mask[index[key]] = on
        return torch.from_numpy(mask)

    def toggle(self, unit: int) -> None:
        """Patch unit ``unit`` of :meth:`space` if it is not patched, else stop patching it (a grid click)."""
        if not 0 <= unit < len(self.space()):
            raise IndexError(f"unit {unit} outside the {len(self.space())} units of the {self.layout} space")
        u = self.space().unit(unit)
        key = (u.stack, u.layer, u.head, u.group)
        on = not bool(self.current_mask()[unit])
        if on == bool(self.preset_mask()[unit]):
            self.clicked.pop(key, None)  # back to what the controls give
        else:
            self.clicked[key] = on
        self.update()

    def clear_clicks(self) -> None:
        """Drop every unit set by hand: back to the controls' set."""
        self.clicked = {}
        self.update()

    def clicked_here(self) -> tuple[int, int, int]:
        """(set on by hand, set off by hand, kept aside: not in this forward's units)."""
        index = self.unit_index()
        on = sum(1 for k, v in self.clicked.items() if v and k in index)
        off = sum(1 for k, v in self.clicked.items() if not v and k in index)
        return on, off, len(self.clicked) - on - off

    def inspect(self, unit: int) -> None:
        """Show the head of unit ``unit`` in the attention tab (a shift-click on the grid)."""
        u = self.space().unit(unit)
        self.attention.select(u.stack, u.layer, u.head, show=True)

    def describe_mask(self, mask: Tensor | None = None) -> str:
        """One line: how many units, in which stacks, layers and groups (and how many were clicked by hand)."""
        m = (self.current_mask() if mask is None else mask).numpy()
        f = self.predictor.fields[self.layout]
        on, off, aside = self.clicked_here() if mask is None else (0, 0, 0)
        hand = []
        if on or off:
            hand.append(f"by hand: +{on} −{off}")
        if aside:
            hand.append(f"{aside} clicked unit(s) not in the {self.layout.replace('_', '-')} forward, kept aside")
        hand = f" ({'; '.join(hand)})" if hand else ""
        if not m.any():
            return "nothing patched: click units of the grid, or choose a policy or tick layer ranges" + hand
        parts = []
        for stack, is_dec in (("encoder", False), ("decoder", True)):
            sel = m & (f["decoder"] == is_dec)
            if sel.any():
                layers = np.unique(f["layer"][sel])
                groups = [GROUP_LABELS.get(g, g) for g in GROUP_NAMES if g in set(f["group"][sel])]
                span = f"L{layers.min()}–{layers.max()}" if len(layers) > 1 else f"L{layers[0]}"
                parts.append(f"{stack} {span}: {int(sel.sum())} units ({', '.join(groups)})")
        return f"{int(m.sum())} of {len(m)} units patched — " + "; ".join(parts) + hand

    def mask_figure(self, title: str | None = None):
        """Where the current patch sits, as a static layers x heads heatmap per token group."""
        fig = layer_head_heatmap(mask_frame(self.space(), self.current_mask()), "patched", zmin=0.0, zmax=1.0,
                                 title=title or f"patched units ({self.layout.replace('_', '-')})", colorscale=TWO_COLOURS)
        fig.update_layout(coloraxis_colorbar=dict(tickvals=[0.25, 0.75], ticktext=["not patched", "patched"], title=None))
        return fig  # two colours, two labels: a 0/1 mask, not a continuous scale

    # --- effects of single units -------------------------------------------------------------

    def unit_effects(self) -> np.ndarray | None:
        """Each unit's effect alone on the chosen task (:mod:`.effects`), or None without a sweep of it."""
        return self.effects.values(self.task, self.space())

    def sweep_task(self, task: str | None = None, prompts: int | None = SWEEP_PROMPTS, progress: bool = True) -> None:
        """Compute the single-unit effects of ``task`` (default: the chosen one) on its first ``prompts``
        prompts here (None: all; the sweep engine, every head of the zero-shot forward alone), then redraw."""
        task = task or self.task
        batch = self.prompts[task] if prompts is None else self.prompts[task].select(slice(0, prompts))
        self.effects.compute(self.model, task, self.means[task], batch, progress=progress)
        self.update()

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
        out = {p: getattr(cells, p)[self.index].float().clamp(0, 1) for p in ("example_input", "example_output", "query", "target")}
        out.update(one_shot=self._run("one_shot", None)[0], zero_shot=self._run("zero_shot", None)[0],
                   patched=self._run(self.layout, self.current_mask())[0])
        return out

    def scores(self) -> dict[str, float]:
        """The task metric (IoU or MSE on the target cell) of each prediction of this prompt."""
        return {"one_shot": self._run("one_shot", None)[1], "zero_shot": self._run("zero_shot", None)[1],
                "patched": self._run(self.layout, self.current_mask())[1]}

    def _prompt_scores(self) -> dict[str, Tensor]:
        p = self.predictor
        return {"one_shot": p.prompt_scores(self.task, "one_shot", self.means_task, None),
                "zero_shot": p.prompt_scores(self.task, "zero_shot", self.means_task, None),
                "patched": p.prompt_scores(self.task, self.layout, self.means_task, self.current_mask())}

    def set_scores(self) -> dict[str, tuple[float, float, int]]:
        """(mean, sem, n) of the metric over every prompt of the task, per prediction."""
        from interp.viz.explorer.predict import mean_sem

        return {k: mean_sem(v) for k, v in self._prompt_scores().items()}

    def intervals(self) -> dict[str, tuple[float, float, float, int]]:
        """One-shot and patched minus zero-shot over every prompt of the task: (mean, low, high, n), the
        95% paired t interval of the per-prompt differences (in the metric's units; its direction decides better)."""
        s = self._prompt_scores()
        return {k: paired_interval(s[k], s["zero_shot"]) for k in ("one_shot", "patched")}

    def titles(self) -> dict[str, str]:
        """Panel titles with the metric values, e.g. ``'zero-shot · mIoU ↑ 0.123'``."""
        metric = task_metric(self.task)
        label = metric_label(metric.name, metric.higher_is_better)
        n = int(self.current_mask().sum())
        means = "" if self.means_task == self.task else f", {self.means_task} means"
        names = {"one_shot": "one-shot", "zero_shot": "zero-shot",
                 "patched": f"patched {self.layout.replace('_', '-')} ({n} units{means})"}
        out = {k: f"{names[k]} · {label} {fmt(v)}" for k, v in self.scores().items()}
        out.update({p: PANEL_NAMES[p] for p in ("example_input", "example_output", "query", "target")})
        return out

    def interval_text(self) -> str:
        """The metric over all prompts: mean ± sem of each prediction, and each minus zero-shot with its interval."""
        metric = task_metric(self.task)
        label = metric_label(metric.name, metric.higher_is_better)
        sets, diffs = self.set_scores(), self.intervals()
        n = sets["zero_shot"][2]
        means = "; ".join(f"{PANEL_NAMES[k]} {fmt(m)} ± {fmt(s)}" for k, (m, s, _) in sets.items())
        parts = []
        for k, (m, lo, hi, _) in diffs.items():
            if np.isnan(m):
                continue
            better = (m > 0) == metric.higher_is_better
            verdict = "same" if abs(m) < 1e-12 else ("better" if better else "worse") + (
                "" if lo > 0 or hi < 0 else ", within noise")
            parts.append(f"{PANEL_NAMES[k]} − zero-shot {m:+.3f} [{lo:+.3f}, {hi:+.3f}] ({verdict})")
        return (f"{label} over all {n} prompts (mean ± sem): {means}<br>"
                f"paired vs zero-shot (95% t interval, n = {n}): " + ("; ".join(parts) or "n/a"))

    def prompt_name(self) -> str:
        pair = self.prompts[self.task].pairs[self.index]
        return f"{self.task} · prompt {self.index}: query {pair.query.name}, example {pair.support.name}"

    def render(self, show: str = "images"):
        """The current view as a plotly figure (what :meth:`export` writes); ``show="difference"``:
        each prediction's absolute difference to the target."""
        cells = self.predictions()
        if show == "difference":
            cells.update({k: difference(cells[k], cells["target"]) for k in PREDICTIONS})
        return image_row(cells, self.titles(), f"{self.prompt_name()}<br><sup>{self.describe_mask()}</sup>")

    # --- files -------------------------------------------------------------------------------

    def _stem(self, kind: str) -> Path:
        means = None if self.means_task == self.task else f"means-{self.means_task}"
        return self.export_dir / figure_stem(kind, self.task, f"prompt{self.index}", self.layout, means, mask=self.current_mask())

    def export(self, stem: str | Path | None = None, formats: Sequence[str] | None = None) -> list[Path]:
        """Write :meth:`render` and the mask grid (:meth:`mask_figure`, ``<stem>_units``) in every format;
        the name says the task, prompt, layout and mask."""
        formats = formats or self.formats
        if any(f != "html" for f in formats):
            keep_browser_open()  # one browser for every export of the session
        stem = Path(stem or self._stem("explorer"))
        view = save_figure(self.render(), stem, formats)
        units = save_figure(self.mask_figure(title=f"patched units · {self.describe_mask()}"),
                            stem.with_name(f"{stem.name}_units"), formats)
        self.last_export = view + units
        return self.last_export

    def export_policy(self, path: str | Path | None = None) -> list[Path]:
        """The current units as a policy file (:meth:`interp.taskvectors.policy.Policy.from_mask`: the same
        ``policy.safetensors`` artifact a search writes) and the Python that reproduces the view (``.py`` beside it)."""
        from interp.io import write_text
        from interp.taskvectors.policy import Policy

        path = Path(path) if path is not None else self._stem("selection").with_suffix(".safetensors")
        meta = {"task": self.task, "method": "explorer", "layout": self.layout, "prompt": self.index}
        Policy.from_mask(self.space(), self.current_mask(), meta).save(path)
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
        """The widget's state as JSON-ready values (controls, units clicked by hand, set A)."""
        out = {k: self.controls[k].value for k in STATE_KEYS}
        out.update(groups=[g for g, b in self.group_boxes.items() if b.value],
                   clicked=[[*k, v] for k, v in sorted(self.clicked.items(), key=str)], compare=self.compare.state())
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` (e.g. ``json.load`` of a saved one)."""
        known = {*STATE_KEYS, "groups", "clicked", "compare"}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValueError(f"unknown explorer state key(s) {unknown}; expected {sorted(known)}")
        with self.hold():
            for key in STATE_KEYS:
                if key in state:
                    value = state[key]
                    self.controls[key].value = tuple(value) if isinstance(value, list) else value
            for g, box in self.group_boxes.items():
                box.value = g in state.get("groups", list(self.group_boxes))
            self.clicked = {(stack, int(layer), int(head), group): bool(on)
                            for stack, layer, head, group, on in state.get("clicked", [])}
            self.compare.load_state(state.get("compare"))

    # --- widgets -----------------------------------------------------------------------------

    def _build_widgets(self) -> None:
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
        if self._held:
            return
        try:
            sync_policies(self)
            self.controls["threshold"].disabled = self.controls["policy"].value == NO_POLICY
            cells, titles = self.predictions(), self.titles()
            diff = self.controls["show"].value == "difference"
            self.prompt_image.value = png(prompt_canvas(cells), PROMPT_PX)
            for panel in PREDICTION_PANELS:
                image = difference(cells[panel], cells["target"]) if diff and panel != "target" else cells[panel]
                self.images[panel].value = png(image, DISPLAY_PX)
                name, _, metric = titles[panel].partition(" · ")
                if panel == "patched":  # short enough for the panel; the summary below says the rest
                    name = f"patched ({int(self.current_mask().sum())} units)"
                if diff and panel != "target":
                    name = f"|{name} − target|"
                self.image_titles[panel].value = f"<div class='interp-title'><b>{html.escape(name)}</b><br>{metric or '&nbsp;'}</div>"
            self.summary.value = (f"<div class='interp-summary'><b>{html.escape(self.prompt_name())}</b><br>"
                                  f"<i>{html.escape(self.describe_mask())}</i><br>{self.interval_text()}</div>")
            self.clear_button.disabled = not self.clicked
            self.sync_grid()
            sync_compare(self)
            self.attention.refresh()
            self.lens.refresh()
            self.status.value = ""
        except Exception as error:  # noqa: BLE001 - shown in the widget; the methods raise
            self.status.value = f"<span style='color:#b00'>{html.escape(type(error).__name__ + ': ' + one_line(error))}</span>"

    def sync_grid(self) -> None:
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
        folders = sorted({str(p.resolve().parent) for p in files})
        self.status.value = (f"wrote {', '.join(html.escape(p.name) for p in files)} in "
                             f"<code>{html.escape(', '.join(folders))}</code>{note}")

    def _on_export(self) -> None:
        self._run_button(self.export_button, "exporting…", self.export)

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a notebook
        from IPython.display import display

        display(self.widget)
