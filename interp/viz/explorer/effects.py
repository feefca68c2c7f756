"""Which units carry a task: each unit's effect alone (a single-unit sweep), for the explorer's grid.

The effect of a unit is the sweep's ``delta``: the task's reward with only that unit patched
(zero-shot, the task's means) minus the unpatched zero-shot reward, averaged over the sweep's
prompts (rewards are higher-is-better: IoU, -MSE; positive = patching it alone helps). It comes
from a run's ``sweep.csv`` (``interp sweep``) or is computed on demand by the one sweep engine,
:func:`interp.taskvectors.sweep.sweep`, on the explorer's prompts of the task. A sweep of any
granularity is read onto the explorer's (layer, head, group) units (a ``head`` sweep gives each
group of a head the head's effect).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from interp.taskvectors.units import UnitSpace
from interp.viz.explorer.policies import unit_values

SWEEP_COLUMNS = ("task", "stack", "layer", "head", "delta")
#: the diverging scale of the grid (blue = helps, white = none, red = hurts): ColorBrewer RdBu ends
HELPS, NEUTRAL, HURTS = (33, 102, 172), (247, 247, 247), (178, 24, 43)


class UnitEffects:
    """Per-task single-unit effects: ``table`` is a sweep table (``sweep.csv``: task, stack, layer,
    head[, group], delta, metric, n_prompts), more tasks are added by :meth:`compute`."""

    def __init__(self, table: pd.DataFrame | None = None, source: str = "sweep.csv") -> None:
        self.tables: dict[str, pd.DataFrame] = {}
        self.sources: dict[str, str] = {}
        if table is not None:
            missing = [c for c in SWEEP_COLUMNS if c not in table.columns]
            if missing:
                raise ValueError(f"the sweep table lacks column(s) {missing}; give interp sweep's sweep.csv "
                                 "(pd.read_csv(run.path / 'sweep.csv'))")
            for task, rows in table.groupby("task", sort=False):
                self.tables[str(task)], self.sources[str(task)] = rows.reset_index(drop=True), source

    @classmethod
    def from_run(cls, run_dir: Any) -> UnitEffects:
        """The effects of a run's ``sweep.csv`` (``interp sweep``; none when the run has no sweep)."""
        from pathlib import Path

        path = Path(getattr(run_dir, "path", run_dir)) / "sweep.csv"  # RunDir.write_table("sweep", ...)
        return cls(pd.read_csv(path), source=f"{path.parent.name}/sweep.csv") if path.exists() else cls()

    def has(self, task: str) -> bool:
        return task in self.tables

    def compute(self, model: Any, task: str, means: Any, prompts: Any, reward: str = "pixel", progress: bool = True) -> None:
        """Sweep every head of the zero-shot space alone on ``prompts`` (the sweep engine; a few seconds
        per 100 (head, prompt) rows on the tiny model's CPU)."""
        from interp.taskvectors.sweep import sweep

        space = UnitSpace.for_model(model, "head")
        self.tables[task] = sweep(model, space, means, prompts, reward=reward, progress=progress)
        self.sources[task] = "computed here"

    def values(self, task: str, space: UnitSpace) -> np.ndarray | None:
        """Each unit's effect on ``space`` (NaN where the sweep has none), or None without a sweep of ``task``."""
        if task not in self.tables:
            return None
        return unit_values(self.tables[task], space, "delta", missing=float("nan"))

    def describe(self, task: str) -> str:
        """What the values are, e.g. ``'Δ reward −MSE alone (sweep.csv, 16 prompts)'``."""
        t = self.tables[task]
        metric = t["metric"].iloc[0] if "metric" in t else "reward"
        n = f", {int(t['n_prompts'].iloc[0])} prompts" if "n_prompts" in t else ""
        return f"Δ {metric} of the unit alone vs zero-shot ({self.sources[task]}{n})"

    def top(self, task: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` largest effects: ``[("encoder L2 H5", 0.36), ...]`` (with the group when the sweep has one)."""
        t = self.tables[task].dropna(subset=["delta"]).sort_values("delta", ascending=False).head(k)
        has_group = "group" in t.columns and t["group"].notna().any()
        return [(f"{r.stack} L{r.layer} H{r.head}" + (f" {r.group}" if has_group else ""), float(r.delta))
                for r in t.itertuples()]


def effect_colours(values: np.ndarray, scale: float | None = None) -> tuple[list[str], float]:
    """CSS colours of effects on the diverging scale (``scale``: the value drawn at full colour,
    default the largest ``|value|``), ``""`` for NaN; returns (colours, scale)."""
    finite = values[np.isfinite(values)]
    scale = scale or (float(np.abs(finite).max()) if finite.size else 1.0) or 1.0
    out = []
    for v in values:
        if not np.isfinite(v):
            out.append("")
            continue
        t = min(abs(v) / scale, 1.0)
        end = HELPS if v > 0 else HURTS
        out.append("rgb({},{},{})".format(*(round(n + (e - n) * t) for n, e in zip(NEUTRAL, end))))
    return out, scale


def as_effects(effects: UnitEffects | pd.DataFrame | None) -> UnitEffects:
    """An explorer's ``effects=`` argument as :class:`UnitEffects` (a sweep table, or none yet)."""
    if isinstance(effects, UnitEffects):
        return effects
    if effects is None:
        return UnitEffects()
    if isinstance(effects, pd.DataFrame):
        return UnitEffects(effects)
    raise TypeError(f"effects is a {type(effects).__name__}; give a sweep table (pd.read_csv('RUN/sweep.csv')) or UnitEffects")


__all__ = ["UnitEffects", "as_effects", "effect_colours"]
