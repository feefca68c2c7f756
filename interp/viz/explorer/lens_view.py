"""The explorer's code-lens tab: where the current prompt's prediction forms, layer by layer.

For the prompt on screen it runs :func:`interp.taskvectors.lens.lens_logits` under one-shot,
zero-shot and the explorer's current patch (the same hooks its predictions use, in the patched
layout), decodes each readout's target cell on the official pixel path
(:class:`~interp.scoring.Scorer`) and shows :func:`interp.viz.lens.lens_strip` with the task
metric of each readout below it. It computes only while its tab is shown, and once per
(task, prompt, layout, means, mask).
"""

from __future__ import annotations

import html
from typing import Any

import torch

from interp.metrics import task_metric
from interp.scoring import Scorer
from interp.taskvectors.lens import lens_logits
from interp.viz.explorer.render import fmt
from interp.viz.lens import lens_strip

TITLE = "code lens"


class LensView:
    """The lens tab of an explorer: the strip figure in an Output and a line of metrics per condition."""

    def __init__(self, explorer: Any, w: Any) -> None:
        self.ex = explorer
        self.output = w.Output()
        self.table = w.HTML()
        self.widget = w.VBox([self.output, self.table])
        self._shown: tuple | None = None

    @property
    def visible(self) -> bool:
        tabs = getattr(self.ex, "tabs", None)
        return tabs is not None and tabs.selected_index is not None and \
            tabs.selected_index < len(tabs.children) and tabs.children[tabs.selected_index] is self.widget

    def compute(self) -> tuple[list[str], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(labels, images {condition: [R, 3, H, W] int32}, metric {condition: [R]})`` of the prompt on screen."""
        ex = self.ex
        model, batch = ex.model, ex.prompts[ex.task]
        canvas = batch.canvases[ex.index : ex.index + 1].to(ex.predictor.device)
        mask = ex.current_mask()
        patch = ex.predictor.patcher(ex.means_task, ex.layout).hooks(mask[None]) if bool(mask.any()) else []
        images, metric, labels = {}, {}, []
        for condition, layout, hooks in (("one_shot", "one_shot", ()), ("zero_shot", "zero_shot", ()),
                                          (f"patched ({ex.layout.replace('_', '-')})", ex.layout, patch)):
            reads, logits = lens_logits(model, canvas, layout, hooks)
            labels = [r.label for r in reads]
            score = Scorer(model, batch.task, layout, "pixel", empty_iou=float("nan"))(
                canvas.expand(len(reads), -1, -1, -1), logits[:, 0])
            images[condition], metric[condition] = score.image.cpu(), score.metric.cpu()
        return labels, images, metric

    def refresh(self, force: bool = False) -> None:
        """Redraw if the tab is shown (or ``force``) and the prompt or patch changed."""
        if not (self.visible or force):
            return
        ex = self.ex
        key = (ex.task, ex.index, ex.layout, ex.means_task, tuple(ex.current_mask().nonzero().flatten().tolist()))
        if key == self._shown:
            return
        labels, images, metric = self.compute()
        fig = lens_strip(images, labels, ex.prompts[ex.task].canvases[ex.index], ex.model.grid, cell_px=64)
        fig.update_layout(margin=dict(t=40, b=4))
        self.output.clear_output(wait=True)
        with self.output:
            fig.show()
        name = task_metric(ex.task).name
        rows = "".join(f"<tr><td>{html.escape(c)}</td>" + "".join(f"<td>{fmt(float(v))}</td>" for v in m) + "</tr>"
                       for c, m in metric.items())
        self.table.value = (f"<table class='interp-lens'><tr><th>{html.escape(name)}</th>"
                            + "".join(f"<th>{html.escape(x)}</th>" for x in labels) + f"</tr>{rows}</table>")
        self._shown = key
