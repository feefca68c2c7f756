"""Taskness: how much a head's output separates tasks, relative to how much it varies within one.

With prompts labelled by task, per (site, slot, head), over the ``d_head`` features::

    BCSS = sum_t n_t ||mu_t - mu||^2                  between-task sum of squares
    WCSS = sum_t (sum_sq_t - n_t ||mu_t||^2)           within-task sum of squares
    taskness = BCSS / WCSS

``mu_t`` is task ``t``'s mean, ``mu`` the mean over all prompts. Both sums come straight from
per-task :class:`~interp.taskvectors.stats.ActivationStats` (sums, squares and counts per
slot), so taskness needs no second pass over the data and shards merge before it.

Per (layer, head, token group) the sums of squares are *pooled* over the group's slots
(BCSS and WCSS summed, then the ratio): slot-to-slot differences, which every task shares,
do not count as task signal. ``by="slot"`` keeps one row per slot and ``by="head"`` pools
over every slot of the stack. High taskness marks a task-vector candidate: a head whose
output moves with the task and hardly with the prompt.

:func:`top_units` turns the best rows of a table into a mask of a
:class:`~interp.taskvectors.units.UnitSpace` (e.g. to initialise or compare a search).
"""

from __future__ import annotations

import re
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.stats_file import StatsError
from interp.taskvectors.units import UnitSpace

Pooling = Literal["group", "slot", "head"]
_SITE = re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\.")
COLUMNS = ("site", "stack", "layer", "head", "group", "bcss", "wcss", "taskness", "n_tasks", "n_prompts")


def _as_tasks(stats: Mapping[str, ActivationStats] | Sequence[ActivationStats]) -> dict[str, ActivationStats]:
    if isinstance(stats, Mapping):
        tasks = dict(stats)
    else:
        tasks = {}
        for s in stats:
            name = s.task if s.task is not None else f"task{len(tasks)}"
            if name in tasks:
                raise StatsError(
                    f"two statistics of task {name!r}: merge shards of one task first (a + b), "
                    "or pass a {name: stats} mapping"
                )
            tasks[name] = s
    if len(tasks) < 2:
        raise StatsError(f"taskness compares tasks: give statistics of at least 2 tasks, got {len(tasks)}")
    first, *rest = tasks.values()
    for other in rest:
        first.check_compatible(other, same_task=False)
    return tasks


def sums_of_squares(stats: Sequence[ActivationStats], site: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per slot and head of one site: ``(bcss, wcss, n_tasks, n_prompts)``, each ``[slots, head]``.

    Slots no task saw hold zeros (and ``n_prompts`` 0).
    """
    s = torch.stack([st.sum[site] for st in stats]).to(torch.float64)  # [task, slot, head, d]
    sq = torch.stack([st.sum_sq[site] for st in stats]).to(torch.float64)  # [task, slot, head, d]
    n = torch.stack([st.count[site] for st in stats]).to(torch.float64)  # [task, slot]
    if s.dim() != 4:
        raise ValueError(
            f"{site}: taskness needs per-head statistics [slots, head, d_head] (attn.hook_z), got "
            f"{tuple(s.shape[1:])}"
        )
    nn = n[..., None, None]  # [task, slot, 1, 1]
    mu_t = torch.where(nn > 0, s / nn.clamp_min(1), 0.0)  # [task, slot, head, d]
    total = n.sum(0)[..., None, None]  # [slot, 1, 1]
    mu = s.sum(0) / total.clamp_min(1)  # [slot, head, d]
    bcss = (nn * (mu_t - mu).square()).sum((0, -1))  # [slot, head]
    wcss = (sq - nn * mu_t.square()).sum((0, -1)).clamp_min(0)  # [slot, head]
    n_tasks = (n > 0).sum(0)  # [slot]
    heads = s.shape[2]
    return bcss, wcss, n_tasks[:, None].expand(-1, heads), n.sum(0)[:, None].expand(-1, heads)


def _ratio(bcss: np.ndarray, wcss: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(wcss > 0, bcss / np.where(wcss > 0, wcss, 1), np.where(bcss > 0, np.inf, np.nan))


def taskness(
    stats: Mapping[str, ActivationStats] | Sequence[ActivationStats],
    by: Pooling = "group",
    sites: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Tidy taskness table from per-task statistics (same model, layout and sites).

    ``stats``: ``{task: ActivationStats}`` or a sequence (named by their ``task``). ``by``:
    ``"group"`` (cls and each canvas quadrant the stack sees), ``"slot"`` or ``"head"``.
    Columns: site, stack, layer, head, group (and slot when ``by="slot"``), bcss, wcss,
    taskness, n_tasks, n_prompts; rows in model order (sort by ``taskness`` to rank).
    """
    if by not in ("group", "slot", "head"):
        raise ValueError(f"by must be 'group', 'slot' or 'head', got {by!r}")
    tasks = _as_tasks(stats)
    listed = list(tasks.values())
    layout = listed[0].layout
    slot_group = layout.grid.slot_quadrant
    chosen = listed[0].sites if sites is None else list(sites)
    frames = []
    for site in chosen:
        match = _SITE.match(site)
        if match is None:
            raise ValueError(f"site {site!r} is not a block site ('encoder.blocks.L.…' / 'decoder.blocks.L.…')")
        stack, layer = match.group(1), int(match.group(2))
        bcss, wcss, n_tasks, n_prompts = (t.cpu().numpy() for t in sums_of_squares(listed, site))
        slots = np.array([s for s in layout.slots(stack) if n_prompts[s, 0] > 0], dtype=np.int64)
        heads = bcss.shape[1]
        if by == "slot":
            keys = slots
            rows = {"slot": np.repeat(keys, heads), "group": np.repeat([slot_group[s] for s in keys], heads)}
            b, w = bcss[keys].reshape(-1), wcss[keys].reshape(-1)
            nt, npr = n_tasks[keys].reshape(-1), n_prompts[keys].reshape(-1)
        else:
            names = [slot_group[s] for s in slots] if by == "group" else ["all"] * len(slots)
            order = list(dict.fromkeys(names))  # canvas order: cls, then quadrants
            member = np.array([[name == g for name in names] for g in order], dtype=np.float64)  # [group, slot]
            b = (member @ bcss[slots]).reshape(-1)  # [group * head]
            w = (member @ wcss[slots]).reshape(-1)
            nt = np.stack([n_tasks[slots][m > 0].max(0) for m in member]).reshape(-1)
            npr = np.stack([n_prompts[slots][m > 0].max(0) for m in member]).reshape(-1)
            rows = {"group": np.repeat(order, heads)}
            keys = np.array(order)
        frame = pd.DataFrame(
            {
                "site": site,
                "stack": stack,
                "layer": layer,
                "head": np.tile(np.arange(heads), len(keys)),
                **rows,
                "bcss": b,
                "wcss": w,
                "taskness": _ratio(b, w),
                "n_tasks": nt.astype(np.int64),
                "n_prompts": npr.astype(np.int64),
            }
        )
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    order = ["site", "stack", "layer", "head", *(["slot"] if by == "slot" else []), "group",
             "bcss", "wcss", "taskness", "n_tasks", "n_prompts"]
    table = table[order]
    rank = table["stack"].map({"encoder": 0, "decoder": 1})
    table = table.assign(_rank=rank).sort_values(["_rank", "layer", "head"], kind="stable")
    table = table.drop(columns="_rank").reset_index(drop=True)
    table.attrs["tasks"] = list(tasks)
    table.attrs["layout"] = layout.name
    table.attrs["by"] = by
    return table


def unit_taskness(table: pd.DataFrame, space: UnitSpace) -> Tensor:
    """Per-unit taskness ``[len(space)]`` (float64; -inf for units without a row or with NaN).

    Rows map to units by (stack, layer, head) at granularity ``head`` and by (stack, layer,
    head, group) at ``group`` (a ``by="group"`` table); rows of groups the space has no unit
    for (e.g. the example cells) are skipped.
    """
    if space.granularity not in ("head", "group"):
        raise ValueError(f"taskness maps to 'head' or 'group' units, not {space.granularity!r}")
    if space.granularity == "group" and table.attrs.get("by", "group") != "group":
        raise ValueError("a 'group' space needs a taskness table computed with by='group'")
    scores = torch.full((len(space),), float("-inf"), dtype=torch.float64)
    for row in table.itertuples(index=False):
        if np.isnan(row.taskness):
            continue
        if space.granularity == "group":
            if row.group not in space.groups(row.stack):
                continue
            i = space.index(row.stack, int(row.layer), int(row.head), group=row.group)
        else:
            i = space.index(row.stack, int(row.layer), int(row.head))
        scores[i] = max(float(scores[i]), float(row.taskness))
    return scores


def top_units(table: pd.DataFrame, space: UnitSpace, k: int) -> Tensor:
    """Bool mask ``[len(space)]`` of the ``k`` highest-taskness units of ``space`` (see :func:`unit_taskness`)."""
    scores = unit_taskness(table, space)
    order = torch.sort(-scores, stable=True).indices[: min(k, int(torch.isfinite(scores).sum()))]
    mask = torch.zeros(len(space), dtype=torch.bool)
    mask[order] = True
    return mask
