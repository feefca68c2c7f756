"""The explorer's computing: unit spaces per layout, patched forwards and their scores, cached.

Unpatched and patched predictions are cached per (task, prompt, layout, means, mask), so moving
back and forth is instant; :meth:`Predictor.set_score` scores a mask on every prompt of a task
(mean ± standard error; :meth:`Predictor.prompt_scores` gives the per-prompt values a paired
comparison needs: :func:`paired_interval`, a 95% paired t interval), cached the same way.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from interp.data.tasks import PromptBatch
from interp.scoring import Scorer
from interp.taskvectors.patching import Intervention, Means, MeanPatcher
from interp.taskvectors.units import UnitSpace

CACHE_LIMIT = 512


class Predictor:
    """Predictions and metrics of one model on a set of prompts, with and without a patch."""

    def __init__(self, model: Any, prompts: Mapping[str, PromptBatch], means: Mapping[str, Means],
                 base_means: Mapping[str, Means] | None = None) -> None:
        self.model = model
        self.prompts = prompts
        self.means = means
        self.base_means = dict(base_means or {})
        #: what a patch does (:class:`~interp.taskvectors.patching.Intervention`); part of every cache key
        self.intervention = Intervention()
        self.device = model.device
        self._spaces: dict[str, UnitSpace] = {}
        self.fields: dict[str, dict[str, np.ndarray]] = {}
        self._patchers: dict[tuple[str, str], MeanPatcher] = {}
        self._scorers: dict[tuple[str, str], Scorer] = {}
        self._cache: dict[tuple, Any] = {}

    def space(self, layout: str) -> UnitSpace:
        """The ``group`` unit space of a layout: every token group that layout's stacks hold."""
        if layout not in self._spaces:
            lay = self.model.layout(layout)
            space = UnitSpace.for_model(self.model, "group", layout=lay, enc_groups=tuple(lay.token_groups("encoder")),
                                        dec_groups=tuple(lay.token_groups("decoder")))
            self._spaces[layout] = space
            self.fields[layout] = {
                "decoder": np.array([u.stack == "decoder" for u in space.units]),
                "layer": np.array([u.layer for u in space.units]),
                "head": np.array([u.head for u in space.units]),
                "group": np.array([u.group for u in space.units], dtype=object),
            }
        return self._spaces[layout]

    def zero_shot_means(self, task: str) -> Means:
        """The zero-shot means the ``add`` intervention subtracts: given (``base_means``), or
        collected once from this task's prompts under the zero-shot layout."""
        if task not in self.base_means:
            if task not in self.prompts:
                raise ValueError(f"no zero-shot means for {task!r} and no prompts to collect them from; "
                                 "pass base_means={task: zero-shot statistics} to the explorer")
            from interp.taskvectors.collect import collect

            self.base_means[task] = collect(self.model, [self.prompts[task].canvases.to(self.device)], "zero_shot",
                                            task=task, progress=False)
        return self.base_means[task]

    def patcher(self, means_task: str, layout: str) -> MeanPatcher:
        key = (means_task, layout, self.intervention)
        if key not in self._patchers:
            base = self.zero_shot_means(means_task) if self.intervention.needs_base else None
            self._patchers[key] = MeanPatcher(self.model, self.means[means_task], self.model.layout(layout),
                                              self.space(layout), self.intervention, base)
        return self._patchers[key]

    def _remember(self, key: tuple, value: Any) -> Any:
        if len(self._cache) > CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = value
        return value

    @torch.no_grad()
    def _forward(self, task: str, rows: slice, layout: str, means_task: str, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """(predicted canvases in [0, 1] ``[B, 3, H, W]``, metric per prompt ``[B]``)."""
        canvas = self.prompts[task].canvases[rows].to(self.device)
        if mask is None or not mask.any():
            logits = self.model(canvas, self.model.layout(layout))
        else:
            logits = self.patcher(means_task, layout).forward(canvas, mask[None].expand(len(canvas), -1))
        if (task, layout) not in self._scorers:  # the official pixel path and metric, as every stage scores
            self._scorers[task, layout] = Scorer(self.model, task, layout)
        score = self._scorers[task, layout](canvas, logits)
        return score.image.float() / 255, score.metric.double().cpu()

    def predict(self, task: str, index: int, layout: str, means_task: str, mask: Tensor | None) -> tuple[Tensor, float]:
        """(target cell in [0, 1] ``[3, c, c]``, metric) of one prompt."""
        empty = mask is None or not mask.any()
        key = ("one", task, index, layout, None if empty else (means_task, self.intervention, mask.numpy().tobytes()))
        if key not in self._cache:
            predicted, score = self._forward(task, slice(index, index + 1), layout, means_task, None if empty else mask)
            cell = self.model.grid.cell(predicted[0], "target").float().cpu().clamp(0, 1)
            self._remember(key, (cell, float(score[0])))
        return self._cache[key]

    def prompt_scores(self, task: str, layout: str, means_task: str, mask: Tensor | None) -> Tensor:
        """The metric of every prompt of ``task`` under ``mask``, ``[n]`` float64 (NaN where undefined)."""
        empty = mask is None or not mask.any()
        key = ("set", task, layout, None if empty else (means_task, self.intervention, mask.numpy().tobytes()))
        if key not in self._cache:
            self._remember(key, self._forward(task, slice(None), layout, means_task, None if empty else mask)[1])
        return self._cache[key]

    def set_score(self, task: str, layout: str, means_task: str, mask: Tensor | None) -> tuple[float, float, int]:
        """(mean, standard error, n) of the metric over every prompt of ``task`` (NaN scores dropped)."""
        return mean_sem(self.prompt_scores(task, layout, means_task, mask))


def t_quantile(df: int, level: float = 0.95) -> float:
    """Student's t quantile of a two-sided ``level`` interval (0.95 only): exact below 3 degrees of
    freedom, else the Cornish-Fisher series (within 4e-3 of the exact value at df = 3, 1e-4 from df = 7)."""
    if level != 0.95:
        raise ValueError("only 95% intervals are supported")
    if df < 1:
        return float("nan")
    if df <= 2:
        return (12.7062, 4.3027)[df - 1]
    z = 1.959963984540054
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * df**4))


def paired_interval(a: Tensor, b: Tensor) -> tuple[float, float, float, int]:
    """(mean, low, high, n): the 95% paired t interval of ``a - b`` over the prompts both score (not NaN)."""
    mean, sem, n = mean_sem(a - b)
    half = t_quantile(n - 1) * sem if n > 1 else float("nan")
    return mean, mean - half, mean + half, n


def mean_sem(values: Tensor) -> tuple[float, float, int]:
    """(mean, standard error, n) of the non-NaN values (NaN mean for none, NaN sem for one)."""
    valid = values[~values.isnan()]
    n = int(valid.numel())
    sem = float(valid.std() / n**0.5) if n > 1 else float("nan")
    return (float(valid.mean()) if n else float("nan"), sem, n)
