"""The explorer's compare slot: a pinned unit set A beside the one being edited (B).

Pin the current selection (or a policy's units above a threshold) as A, keep clicking B; both
predictions and both metrics are shown next to each other, on this prompt and over the prompt
set, with the paired difference B - A and whether it is better in the metric's direction.
A is kept as a unit mask over the space it was pinned in, so it follows a layout change by unit
name (stack, layer, head, token group), as the explorer's clicks do. The interval of B - A over
the prompt set is the paired 95% t interval (:func:`~interp.viz.explorer.predict.paired_interval`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.metrics import task_metric
from interp.taskvectors.units import UnitSpace
from interp.viz.explorer.policies import NO_POLICY, values_on
from interp.viz.explorer.predict import mean_sem, paired_interval, t_quantile
from interp.viz.explorer.render import fmt
from interp.viz.style import metric_label


@dataclass(frozen=True)
class Pinned:
    """Set A: a name and its units (bool ``[len(space)]``) in the space it was pinned in."""

    label: str
    space: UnitSpace
    units: Tensor
    layout: str

    def on(self, space: UnitSpace) -> Tensor:
        """A's units on ``space``, matched by name (stack, layer, head, group)."""
        if space is self.space:
            return self.units.clone()
        chosen = {(u.stack, u.layer, u.head, u.group) for u, on in zip(self.space.units, self.units.tolist()) if on}
        return torch.tensor([(u.stack, u.layer, u.head, u.group) in chosen for u in space.units], dtype=torch.bool)


@dataclass(frozen=True)
class Comparison:
    """Metrics of A and B on one prompt and over the prompt set; ``diff`` = B - A (paired over prompts)."""

    metric: str
    higher_is_better: bool
    prompt: dict[str, float]  # {"A", "B", "diff"}
    prompt_set: dict[str, tuple[float, float, int]]  # {"A", "B", "diff"}: (mean, sem, n)

    def verdict(self, diff: float, sem: float | None = None, n: int | None = None) -> str:
        """'B better', 'B worse' or 'same' for a difference B - A, in the metric's direction;
        with ``sem``, 'within noise' is added where the 95% interval holds 0 (``|diff| < t sem`` with
        ``n`` paired prompts, ``2 sem`` without ``n``)."""
        if np.isnan(diff) or abs(diff) < 1e-12:
            return "same" if not np.isnan(diff) else "n/a"
        word = "B better" if (diff > 0) == self.higher_is_better else "B worse"
        factor = t_quantile(n - 1) if n and n > 1 else 2.0
        return f"{word} (within noise)" if sem is not None and abs(diff) < factor * sem else word


class CompareSlot:
    """Set A of an explorer (:class:`~interp.viz.explorer.widget.PatchExplorer`); B is its current mask."""

    def __init__(self, explorer: Any) -> None:
        self.ex = explorer
        self.pinned: Pinned | None = None

    @property
    def active(self) -> bool:
        return self.pinned is not None

    def pin(self, label: str = "pinned selection") -> None:
        """Pin the current selection as A (B goes on from the same units)."""
        self._set(Pinned(label, self.ex.space(), self.ex.current_mask(), self.ex.layout))

    def pin_policy(self, name: str, threshold: float | None = None) -> None:
        """Pin a policy's units above ``threshold`` (default: the threshold slider) as A."""
        if name not in self.ex.policies:
            raise KeyError(f"no policy {name!r}; the explorer has {sorted(self.ex.policies)}")
        threshold = self.ex.controls["threshold"].value if threshold is None else threshold
        space = self.ex.space()
        units = torch.from_numpy(values_on(self.ex.policies[name], space) > threshold)
        self._set(Pinned(f"{name} > {threshold:.2f}", space, units, self.ex.layout))

    def clear(self) -> None:
        self._set(None)

    def _set(self, pinned: Pinned | None) -> None:
        self.pinned = pinned
        self.ex.update()

    def mask(self) -> Tensor:
        """A on the current layout's unit space, bool ``[len(space)]`` (all False when nothing is pinned)."""
        space = self.ex.space()
        if self.pinned is None:
            return torch.zeros(len(space), dtype=torch.bool)
        return self.pinned.on(space)

    def predictions(self) -> dict[str, Tensor]:
        """Target cells ``[3, c, c]`` predicted under A and under B."""
        ex = self.ex
        return {"A": ex._run(ex.layout, self.mask())[0], "B": ex._run(ex.layout, ex.current_mask())[0]}

    def result(self) -> Comparison:
        """A and B on this prompt and over every prompt of the task (paired difference B - A)."""
        ex, p = self.ex, self.ex.predictor
        metric = task_metric(ex.task)
        a, b = self.mask(), ex.current_mask()
        one = {"A": ex._run(ex.layout, a)[1], "B": ex._run(ex.layout, b)[1]}
        one["diff"] = one["B"] - one["A"]
        scores_a = p.prompt_scores(ex.task, ex.layout, ex.means_task, a)
        scores_b = p.prompt_scores(ex.task, ex.layout, ex.means_task, b)
        over = {"A": mean_sem(scores_a), "B": mean_sem(scores_b), "diff": mean_sem(scores_b - scores_a)}
        return Comparison(metric.name, metric.higher_is_better, one, over)

    def summary_html(self) -> str:
        """The comparison as a small table (rows A, B, B - A; columns this prompt, all prompts)."""
        if self.pinned is None:
            return "<i>nothing pinned: <b>pin B as A</b> keeps the current units as set A, or pick a policy as A</i>"
        c = self.result()
        label = metric_label(c.metric, c.higher_is_better)
        n_a, n_b = int(self.mask().sum()), int(self.ex.current_mask().sum())
        d, (dm, ds, dn) = c.prompt["diff"], c.prompt_set["diff"]
        _, lo, hi, _ = paired_interval(self.ex.predictor.prompt_scores(self.ex.task, self.ex.layout, self.ex.means_task, self.ex.current_mask()),
                                       self.ex.predictor.prompt_scores(self.ex.task, self.ex.layout, self.ex.means_task, self.mask()))
        rows = [(f"A: {html.escape(self.pinned.label)} ({n_a} units)", fmt(c.prompt["A"]), _mean_sem(c.prompt_set["A"])),
                (f"B: current selection ({n_b} units)", fmt(c.prompt["B"]), _mean_sem(c.prompt_set["B"])),
                ("B − A", f"{_signed(d)} <b>{c.verdict(d)}</b>", f"{_signed(dm)} [{_signed(lo)}, {_signed(hi)}] <b>{c.verdict(dm, ds, dn)}</b>")]
        body = "".join(f"<tr><td>{name}</td><td>{one}</td><td>{over}</td></tr>" for name, one, over in rows)
        n = c.prompt_set["B"][2]
        return (f"<table class='interp-compare'><tr><th></th><th>{label} this prompt</th>"
                f"<th>{label} all {n} prompts (mean ± sem; B − A: 95% paired t interval)</th></tr>{body}</table>")

    def state(self) -> dict[str, Any] | None:
        """A as JSON-ready values: label, layout and its units in that layout's space."""
        if self.pinned is None:
            return None
        units = self.pinned.units.nonzero().flatten().tolist()
        return {"label": self.pinned.label, "layout": self.pinned.layout, "units": units}

    def load_state(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state` (without redrawing: the caller does)."""
        if state is None:
            self.pinned = None
            return
        space = self.ex.space(state["layout"])
        units = torch.zeros(len(space), dtype=torch.bool)
        units[list(state["units"])] = True
        self.pinned = Pinned(state["label"], space, units, state["layout"])


def _signed(x: float) -> str:
    return fmt(x) if np.isnan(x) else f"{x:+.3f}"


def _mean_sem(stats: tuple[float, float, int]) -> str:
    return f"{fmt(stats[0])} ± {fmt(stats[1])}"


def policy_options(explorer: Any) -> list[tuple[str, str]]:
    """The 'A from policy' dropdown's options: none, then the policies of the chosen task (and of no task)."""
    return [("A from policy…", NO_POLICY)] + [(n, n) for n in explorer.task_policies()]


__all__ = ["Comparison", "CompareSlot", "Pinned", "policy_options"]
