"""The patch explorer: try task-vector patches by hand in JupyterLab and see the result live.

``PatchExplorer(model, prompts, means, policies).widget`` is an ipywidgets panel::

    task  [segmentation v]  means of [same task v]  prompt [---o----]  layout (zero-shot|one-shot)
    [x] encoder layers [0 ===== 23]   [x] decoder layers [0 == 7]   heads [0..15]  groups [x] cls ...
    start from policy [segmentation v]  threshold [--o--]
    one-shot (mIoU .61) | zero-shot (mIoU .12) | patched, 37 units (mIoU .55) | target
    [export figure]  explorer_segmentation_0_zero_shot.{html,png,pdf,svg}

What is patched is a set of units of a ``group``-granularity
:class:`~interp.taskvectors.units.UnitSpace` for the chosen layout (one unit = one head at one
token group): the units inside the layer ranges, heads and groups ticked, and, when a policy
is chosen, whose policy probability exceeds the threshold (so "start from policy" means: the
policy's units, narrowed by the other controls). A policy of any granularity is read as
per-(layer, head, group) probabilities (:func:`~interp.viz.heatmaps.policy_frame`; token units
take the max over their group, head and layer units cover every group), so a zero-shot policy
also drives a one-shot forward by group name. Patched heads output the chosen task's mean
activation at the same canvas slot (:class:`~interp.taskvectors.patching.MeanPatcher`).

All the computing is in plain methods — :meth:`PatchExplorer.current_mask`,
:meth:`~PatchExplorer.predictions`, :meth:`~PatchExplorer.scores`,
:meth:`~PatchExplorer.render` (the plotly figure that is exported), :meth:`~PatchExplorer.export`
— so notebooks and tests can drive the explorer by setting widget values, without a browser.
The image row is made of ``ipywidgets.Image`` widgets updated in place (PNG bytes; plotly's
``FigureWidget`` would need the extra ``anywidget`` package). Unpatched predictions and
patched ones are cached per (task, prompt, layout, mask), so moving back and forth is instant.
"""

from __future__ import annotations

import html
import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from interp.canvas import PromptLayout, get_layout, normalize
from interp.data.tasks import PromptBatch
from interp.metrics import task_metric, task_score
from interp.taskvectors.patching import Means, MeanPatcher
from interp.taskvectors.units import GROUP_NAMES, UnitSpace
from interp.viz.export import FORMATS, figure_stem, keep_browser_open, one_line, save_figure
from interp.viz.heatmaps import GROUP_LABELS, layer_head_heatmap, mask_frame, policy_frame
from interp.viz.style import apply_style, metric_label

LAYOUT_NAMES = ("zero_shot", "one_shot")
PANELS = ("one_shot", "zero_shot", "patched", "target")
SAME_TASK = "(same task)"
DISPLAY_PX = 180


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("the patch explorer needs ipywidgets: pip install ipywidgets (JupyterLab >= 3 shows it)") from None
    return ipywidgets


#: the policy dropdown's "no policy" value (a string: ipywidgets shows None as no selection)
NO_POLICY = "(none)"


@dataclass(frozen=True)
class Policy:
    """A policy as the explorer uses it: its own unit space and per-unit probabilities."""

    space: UnitSpace
    probabilities: Tensor


def resolve_policy(model: Any, policy: Any, name: str = "policy") -> Policy:
    """A saved policy (:class:`interp.taskvectors.policy.Policy`, or the path of its file: the
    unit space comes with it) or ``(space, probabilities)``. A bare vector is refused: which
    units it covers cannot be told from its length."""
    from interp.taskvectors.policy import Policy as SavedPolicy

    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, Path)):
        policy = SavedPolicy.load(policy)
    if isinstance(policy, SavedPolicy):
        space, probabilities = policy.space, policy.probabilities(dtype=torch.float64)
    elif isinstance(policy, tuple) and len(policy) == 2 and isinstance(policy[0], UnitSpace):
        space, probabilities = policy
    else:
        raise ValueError(
            f"policy {name!r} is a bare vector of {torch.as_tensor(policy).numel()} values: which units it covers "
            "is unknown. Pass (UnitSpace, probabilities), a Policy (Policy.load('.../policy.safetensors')) or its path"
        )
    space.check_model(model)
    probabilities = torch.as_tensor(probabilities).detach().double().cpu().flatten()
    if probabilities.numel() != len(space):
        raise ValueError(f"policy {name!r}: {probabilities.numel()} probabilities for a space of {len(space)} units")
    if probabilities.min() < 0 or probabilities.max() > 1:
        raise ValueError(f"policy {name!r} must hold probabilities in [0, 1]; for logits pass torch.sigmoid(logits)")
    return Policy(space, probabilities)


class PatchExplorer:
    """Interactive mean-activation patching for one model (see the module docstring).

    ``prompts``: ``{task: PromptBatch}`` (canvases include the target cell, for the metric);
    ``means``: ``{task: ActivationStats or {site: mean z by slot}}``, one per task of
    ``prompts`` at least; ``policies``: optional ``{name: probabilities}`` (or
    ``(UnitSpace, probabilities)``), e.g. ``torch.sigmoid(state.best_logits)``.
    """

    def __init__(
        self,
        model: Any,
        prompts: Mapping[str, PromptBatch],
        means: Mapping[str, Means],
        policies: Mapping[str, Any] | None = None,
        export_dir: str | Path = "figures",
        formats: Sequence[str] = FORMATS,
    ) -> None:
        if not isinstance(prompts, Mapping) or not prompts:
            raise ValueError("prompts must be a non-empty {task: PromptBatch} mapping (e.g. build_task_prompts(...))")
        for task, batch in prompts.items():
            if not isinstance(batch, PromptBatch):
                raise TypeError(f"prompts[{task!r}] is a {type(batch).__name__}; expected a PromptBatch")
            if len(batch) == 0:
                raise ValueError(f"prompts[{task!r}] holds no prompts")
            if batch.grid.canvas_size != model.grid.canvas_size:
                raise ValueError(
                    f"prompts[{task!r}] are {batch.grid.canvas_size}px canvases, the model takes "
                    f"{model.grid.canvas_size}px: build them with grid=model.grid"
                )
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
        self.device = next(model.parameters()).device
        self._spaces: dict[str, UnitSpace] = {}
        self._unit_fields: dict[str, dict[str, np.ndarray]] = {}
        self._patchers: dict[tuple[str, str], MeanPatcher] = {}
        self._policy_cache: dict[tuple[str, str], np.ndarray] = {}
        self._cache: dict[tuple, tuple[Tensor, float]] = {}
        for task in self.prompts:  # fail early on statistics of another model or shape
            self._patcher(task, "zero_shot")
        self.last_export: list[Path] = []
        self._held = 0
        self._build_widgets()
        self.update()

    # --- unit spaces and masks -------------------------------------------------------------

    def space(self, layout: str | None = None) -> UnitSpace:
        """The ``group`` unit space of a layout: every token group that layout's stacks hold."""
        name = layout or self.layout
        if name not in self._spaces:
            lay = get_layout(name, self.model.grid)
            self._spaces[name] = UnitSpace.for_model(
                self.model, "group", layout=lay,
                enc_groups=tuple(lay.token_groups("encoder")), dec_groups=tuple(lay.token_groups("decoder")),
            )
            units = self._spaces[name].units
            self._unit_fields[name] = {
                "decoder": np.array([u.stack == "decoder" for u in units]),
                "layer": np.array([u.layer for u in units]),
                "head": np.array([u.head for u in units]),
                "group": np.array([u.group for u in units], dtype=object),
            }
        return self._spaces[name]

    def _policy_values(self, policy: str, layout: str) -> np.ndarray:
        """The policy's probability of each unit of the explorer space of ``layout``."""
        key = (policy, layout)
        if key not in self._policy_cache:
            source = self.policies[policy]
            frame = policy_frame(source.space, source.probabilities, agg="max")
            by_group = "group" in frame.columns
            cols = ["stack", "layer", "head", "group"] if by_group else ["stack", "layer", "head"]
            lookup = {tuple(row[:-1]): row[-1] for row in frame[cols + ["probability"]].itertuples(index=False, name=None)}
            space = self.space(layout)
            values = np.array([
                lookup.get((u.stack, u.layer, u.head, u.group) if by_group else (u.stack, u.layer, u.head), 0.0)
                for u in space.units
            ])
            self._policy_cache[key] = values
        return self._policy_cache[key]

    def current_mask(self) -> Tensor:
        """Bool ``[len(self.space())]``: the units the controls select (see the module doc)."""
        space = self.space()
        f = self._unit_fields[self.layout]
        w = self.controls
        enc_lo, enc_hi = w["encoder_layers"].value
        dec_lo, dec_hi = w["decoder_layers"].value
        in_encoder = ~f["decoder"] & w["encoder"].value & (f["layer"] >= enc_lo) & (f["layer"] <= enc_hi)
        in_decoder = f["decoder"] & w["decoder"].value & (f["layer"] >= dec_lo) & (f["layer"] <= dec_hi)
        groups = [g for g, box in self.group_boxes.items() if box.value]
        mask = (in_encoder | in_decoder) & np.isin(f["head"], list(w["heads"].value)) & np.isin(f["group"], groups)
        if w["policy"].value != NO_POLICY:
            mask &= self._policy_values(w["policy"].value, self.layout) > w["threshold"].value
        assert mask.shape == (len(space),)
        return torch.from_numpy(mask)

    def describe_mask(self, mask: Tensor | None = None) -> str:
        """One line: how many units, in which stacks, layers and groups."""
        mask = self.current_mask() if mask is None else mask
        f = self._unit_fields[self.layout]
        m = mask.numpy()
        if not m.any():
            return "nothing patched: the patched prediction equals the unpatched one"
        parts = []
        for stack, is_dec in (("encoder", False), ("decoder", True)):
            sel = m & (f["decoder"] == is_dec)
            if sel.any():
                layers = np.unique(f["layer"][sel])
                groups = [GROUP_LABELS.get(g, g) for g in GROUP_NAMES if g in set(f["group"][sel])]
                span = f"L{layers.min()}–{layers.max()}" if len(layers) > 1 else f"L{layers[0]}"
                parts.append(f"{stack} {span}: {int(sel.sum())} units ({', '.join(groups)})")
        return f"{int(m.sum())} of {len(m)} units patched — " + "; ".join(parts)

    def mask_figure(self, title: str | None = None) -> go.Figure:
        """Where the current patch sits: a layers x heads heatmap per token group."""
        return layer_head_heatmap(mask_frame(self.space(), self.current_mask()), "patched",
                                  title=title or f"patched units ({self.layout.replace('_', '-')})", zmin=0.0, zmax=1.0)

    # --- predictions -------------------------------------------------------------------------

    @property
    def task(self) -> str:
        return self.controls["task"].value

    @property
    def index(self) -> int:
        return int(self.controls["index"].value)

    @property
    def layout(self) -> str:
        return self.controls["layout"].value

    @property
    def means_task(self) -> str:
        value = self.controls["means"].value
        return self.task if value == SAME_TASK else value

    def _patcher(self, means_task: str, layout: str) -> MeanPatcher:
        key = (means_task, layout)
        if key not in self._patchers:
            lay: PromptLayout = get_layout(layout, self.model.grid)
            self._patchers[key] = MeanPatcher(self.model, self.means[means_task], lay, self.space(layout))
        return self._patchers[key]

    @torch.no_grad()
    def _predict(self, layout: str, mask: Tensor | None) -> tuple[Tensor, float]:
        """(target cell in [0, 1] ``[3, c, c]``, metric) of the current prompt; cached."""
        if mask is not None and not mask.any():
            return self._predict(layout, None)  # nothing patched: the plain forward
        key = (self.task, self.index, layout, None if mask is None else (self.means_task, mask.numpy().tobytes()))
        if key not in self._cache:
            canvas = self.prompts[self.task].canvases[self.index : self.index + 1].to(self.device)
            if mask is None:
                predicted = self.model.predict_canvas(canvas, layout)
            else:
                logits = self._patcher(self.means_task, layout).forward(canvas, mask[None])
                predicted = self.model.predict_canvas(canvas, layout, logits=logits)
            score = float(task_score(self.task, normalize(predicted), canvas, self.model.grid)[0])
            cell = self.model.grid.cell(predicted[0], "target").float().cpu().clamp(0, 1)
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[key] = (cell, score)
        return self._cache[key]

    def predictions(self) -> dict[str, Tensor]:
        """Target cells ``[3, c, c]`` in [0, 1]: ``one_shot``, ``zero_shot``, ``patched``, ``target``."""
        return {
            "one_shot": self._predict("one_shot", None)[0],
            "zero_shot": self._predict("zero_shot", None)[0],
            "patched": self._predict(self.layout, self.current_mask())[0],
            "target": self.prompts[self.task].cells.target[self.index].float().clamp(0, 1),
        }

    def scores(self) -> dict[str, float]:
        """The task metric (IoU or MSE on the target cell) of each prediction."""
        return {
            "one_shot": self._predict("one_shot", None)[1],
            "zero_shot": self._predict("zero_shot", None)[1],
            "patched": self._predict(self.layout, self.current_mask())[1],
        }

    def titles(self) -> dict[str, str]:
        """Panel titles with the metric values, e.g. ``'zero-shot · mIoU 0.123'``."""
        metric = task_metric(self.task)
        label = metric_label(metric.name, metric.higher_is_better)
        scores = self.scores()
        n = int(self.current_mask().sum())
        means = "" if self.means_task == self.task else f", {self.means_task} means"
        names = {
            "one_shot": "one-shot",
            "zero_shot": "zero-shot",
            "patched": f"patched {self.layout.replace('_', '-')} ({n} units{means})",
        }
        out = {k: f"{names[k]} · {label} {_fmt(v)}" for k, v in scores.items()}
        out["target"] = "target"
        return out

    def render(self) -> go.Figure:
        """The current view as a plotly figure (what :meth:`export` writes)."""
        cells = self.predictions()
        titles = self.titles()
        fig = make_subplots(rows=1, cols=4, subplot_titles=[titles[p] for p in PANELS], horizontal_spacing=0.015)
        for c, panel in enumerate(PANELS, start=1):
            fig.add_trace(go.Image(z=_to_uint8(cells[panel]), name=panel), row=1, col=c)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_annotations(font_size=10)
        pair = self.prompts[self.task].pairs[self.index]
        fig.update_layout(
            title=f"{self.task} · prompt {self.index} ({pair.query.name})<br><sup>{self.describe_mask()}</sup>",
            margin=dict(l=10, r=10, t=90, b=10),
        )
        return apply_style(fig, width="text", height=360)

    def export(self, stem: str | Path | None = None, formats: Sequence[str] | None = None) -> list[Path]:
        """Write :meth:`render` via :func:`~interp.viz.export.save_figure`; returns the files."""
        if stem is None:  # what is shown, and which units (count + hash): a new mask never overwrites an old export
            means = None if self.means_task == self.task else f"means-{self.means_task}"
            stem = self.export_dir / figure_stem("explorer", self.task, f"prompt{self.index}", self.layout, means,
                                                 mask=self.current_mask())
        formats = formats or self.formats
        if any(f != "html" for f in formats):
            keep_browser_open()  # one browser for every export of the session
        self.last_export = save_figure(self.render(), stem, formats)
        return self.last_export

    # --- widgets -----------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        w = _ipywidgets()
        cfg = self.model.config.mae
        tasks = list(self.prompts)
        heads = max(cfg.num_heads, cfg.decoder_num_heads)
        layout_options = [(name.replace("_", "-"), name) for name in LAYOUT_NAMES]
        policies = [("none (manual)", NO_POLICY)] + [(name, name) for name in self.policies]
        first = tasks[0]
        self.controls = {
            "task": w.Dropdown(options=tasks, value=first, description="task"),
            "means": w.Dropdown(options=[SAME_TASK, *self.means], value=SAME_TASK, description="means of"),
            "index": w.IntSlider(value=0, min=0, max=len(self.prompts[first]) - 1, description="prompt",
                                 continuous_update=False),
            "layout": w.ToggleButtons(options=layout_options, value="zero_shot", description="patched"),
            "encoder": w.Checkbox(value=True, description="encoder", indent=False),
            "encoder_layers": w.IntRangeSlider(value=(0, cfg.depth - 1), min=0, max=max(cfg.depth - 1, 0),
                                               description="layers", continuous_update=False),
            "decoder": w.Checkbox(value=True, description="decoder", indent=False),
            "decoder_layers": w.IntRangeSlider(value=(0, cfg.decoder_depth - 1), min=0, max=max(cfg.decoder_depth - 1, 0),
                                               description="layers", continuous_update=False),
            "heads": w.SelectMultiple(options=list(range(heads)), value=tuple(range(heads)), rows=min(heads, 6),
                                      description="heads"),
            "policy": w.Dropdown(options=policies, value=first if first in self.policies else NO_POLICY,
                                 description="policy"),
            "threshold": w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, description="threshold",
                                       continuous_update=False),
        }
        self.group_boxes = {g: w.Checkbox(value=True, description=GROUP_LABELS.get(g, g), indent=False,
                                          layout=w.Layout(width="auto")) for g in GROUP_NAMES}
        self.images = {p: w.Image(format="png", width=DISPLAY_PX, height=DISPLAY_PX) for p in PANELS}
        self.image_titles = {p: w.HTML() for p in PANELS}
        self.summary = w.HTML()
        self.status = w.HTML()
        self.export_button = w.Button(description="export figure", icon="download",
                                      tooltip=f"save the image row to {self.export_dir} ({', '.join(self.formats)})")
        self.export_button.on_click(lambda _: self._on_export())

        self.controls["task"].observe(self._on_task, names="value")
        for name, control in self.controls.items():
            if name != "task":
                control.observe(self._on_change, names="value")
        for box in self.group_boxes.values():
            box.observe(self._on_change, names="value")

        c = self.controls
        row = lambda *items: w.HBox(list(items), layout=w.Layout(align_items="center", flex_flow="row wrap"))  # noqa: E731
        panels = [w.VBox([self.image_titles[p], self.images[p]], layout=w.Layout(width=f"{DISPLAY_PX + 60}px",
                                                                                   align_items="center"))
                  for p in PANELS]
        self.widget = w.VBox([
            row(c["task"], c["means"], c["index"]),
            row(c["layout"]),
            row(c["encoder"], c["encoder_layers"], c["decoder"], c["decoder_layers"]),
            row(c["heads"], w.VBox([w.HTML("<b>token groups</b>"), *self.group_boxes.values()])),
            row(c["policy"], c["threshold"]),
            self.summary,
            w.HBox(panels),
            row(self.export_button, self.status),
        ])

    def _on_task(self, change: dict) -> None:
        with self.hold():
            slider = self.controls["index"]
            n = len(self.prompts[change["new"]])
            slider.value = min(slider.value, n - 1)
            slider.max = n - 1
            policy = self.controls["policy"]
            if policy.value != NO_POLICY and policy.value == change["old"]:  # it followed the task: keep following
                policy.value = change["new"] if change["new"] in self.policies else NO_POLICY

    def _on_change(self, change: dict) -> None:
        self.update()

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
        """Recompute and redraw the image row (called on every control change)."""
        if self._held:
            return
        try:
            cells = self.predictions()
            titles = self.titles()
            for panel in PANELS:
                self.images[panel].value = _png(cells[panel], DISPLAY_PX)
                name, _, metric = titles[panel].partition(" · ")
                self.image_titles[panel].value = f"<div style='text-align:center'><b>{name}</b><br>{metric}</div>"
            self.summary.value = f"<i>{self.describe_mask()}</i>"
            self.status.value = ""
        except Exception as error:  # noqa: BLE001 - shown in the widget; the methods raise
            self.status.value = f"<span style='color:#b00'>{type(error).__name__}: {error}</span>"

    def _on_export(self) -> None:
        button = self.export_button
        button.disabled, button.description, button.icon = True, "exporting…", "hourglass-half"
        self.status.value = f"<i>writing {', '.join(self.formats)} (a few seconds)…</i>"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                files = self.export()
            except Exception as error:  # noqa: BLE001 - one readable line in the widget
                self.status.value = f"<span style='color:#b00'>export failed: {html.escape(one_line(error))}</span>"
                return
            finally:
                button.disabled, button.description, button.icon = False, "export figure", "download"
        note = "".join(f"<br><span style='color:#a60'>{c.message}</span>" for c in caught)
        self.status.value = "wrote " + ", ".join(p.name for p in files) + note

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a notebook
        from IPython.display import display

        display(self.widget)


def _to_uint8(cell: Tensor) -> np.ndarray:
    return (cell.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _png(cell: Tensor, size: int) -> bytes:
    """PNG bytes of a cell, upscaled (nearest) to ``size`` px for display."""
    from PIL import Image

    image = Image.fromarray(_to_uint8(cell))
    if image.size[0] < size:
        image = image.resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _fmt(x: float) -> str:
    return "n/a (empty masks)" if np.isnan(x) else f"{x:.3f}"


__all__ = ["PatchExplorer", "Policy", "resolve_policy"]
