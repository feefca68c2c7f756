"""The comparison table: its rows and columns, the one-screen summary, and its Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import Tensor

from interp.metrics import task_metric
from interp.taskvectors.evaluate import summarize

#: the methods of :func:`interp.comparison.weights.compare`, in table order
METHODS: tuple[str, ...] = (
    "zero_shot", "one_shot", "finetuned", "task_arithmetic", "task_addition",
    "atlas", "atlas_loo", "basis_ae", "basis_pca", "activation_tv",
)  # fmt: skip
#: the columns of the comparison table
COLUMNS: tuple[str, ...] = (
    "task", "method", "metric", "value", "sem", "n", "storage_floats", "train_seconds", "notes",
)  # fmt: skip


def make_row(task: str, method: str, scores: Tensor | None, storage: int, seconds: float, notes: str) -> dict[str, Any]:
    """One table row: the mean, SEM and count of per-prompt ``scores`` (None: no number, ``notes`` says why)."""
    if scores is None:
        return {"task": task, "method": method, "metric": task_metric(task).name, "value": float("nan"),
                "sem": float("nan"), "n": 0, "storage_floats": storage, "train_seconds": seconds, "notes": notes}
    s = summarize(task, method, scores)
    return {"task": task, "method": method, "metric": s["metric"], "value": s["mean"], "sem": s["sem"],
            "n": s["n"], "storage_floats": int(storage), "train_seconds": round(float(seconds), 2), "notes": notes}


def sorted_table(rows: Sequence[dict[str, Any]], tasks: Sequence[str]) -> pd.DataFrame:
    """Rows as a table ordered by task (as given) then method (as :data:`METHODS`)."""
    tasks = list(tasks)
    table = pd.DataFrame(list(rows), columns=list(COLUMNS))
    order = {m: i for i, m in enumerate(METHODS)}
    table = table.sort_values(["task", "method"], key=lambda s: s.map(order) if s.name == "method" else s.map(tasks.index))
    return table.reset_index(drop=True)


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison in one screen (for the README): a row per method, ``value ± sem`` per
    task, and the median storage and seconds over tasks."""
    tasks = list(dict.fromkeys(table["task"]))
    metric = table.groupby("task")["metric"].first()
    out = []
    for method in [m for m in METHODS if m in set(table["method"])]:
        part = table[table["method"] == method].set_index("task")
        row: dict[str, Any] = {"method": method}
        for task in tasks:
            label = f"{task} ({metric[task].upper()} {'↑' if metric[task] == 'iou' else '↓'})"
            v, e = part.loc[task, "value"], part.loc[task, "sem"]
            row[label] = "n/a" if pd.isna(v) else (f"{v:.4f} ± {e:.4f}" if not pd.isna(e) else f"{v:.4f}")
        row["stored floats"] = f"{part['storage_floats'].median():,.0f}"
        seconds = part["train_seconds"].median()
        row["seconds"] = "n/a" if pd.isna(seconds) else f"{seconds:.1f}"
        out.append(row)
    return pd.DataFrame(out)


def render_markdown(table: pd.DataFrame) -> str:
    """The README's weight- vs activation-space table: :func:`summary_table` as Markdown."""
    return summary_table(table).to_markdown(index=False)
