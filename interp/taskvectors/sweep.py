"""Exhaustive single-unit patching: how much does each unit alone move the task metric?

For every unit of a :class:`~interp.taskvectors.units.UnitSpace` (every layer, every head,
or every head x token group), patch only that unit with the task's mean activations in a
zero-shot forward, score the held-out prompts, and compare with the unpatched zero-shot score.

The rows go through the one scoring engine of every search,
:class:`~interp.taskvectors.patched_rows.PatchedRows`, so cost is kept down in three ways (DESIGN.md
§5 in ../shared): all (unit, prompt) rows of one layer go through the model as batches, each row with
its own one-hot patch mask; with ``reuse_prefix`` a patch at layer L restarts from the clean run's
cached residual stream at L (:meth:`~interp.models.PromptModel.forward_from`), since layers before L
cannot change; and the pixel reward decodes each distinct predicted code grid once
(:class:`~interp.models.decode_cache.DecodeCache`: most single units leave most codes as they were).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from interp import distributed
from interp.canvas import PromptLayout
from interp.data.tasks import PromptBatch
from interp.models.protocol import PromptModel
from interp.models.decode_cache import DecodeCache
from interp.scoring import Scorer, reward_name
from interp.taskvectors.patched_rows import PatchedRows
from interp.taskvectors.patching import Intervention, Means, MeanPatcher
from interp.taskvectors.units import UnitSpace


@torch.no_grad()
def sweep(
    model: PromptModel,
    space: UnitSpace,
    means: Means,
    prompts: PromptBatch,
    layout: PromptLayout | str = "zero_shot",
    reward: str = "pixel",
    reuse_prefix: bool = True,
    chunk: int = 512,
    progress: bool = True,
    decode: str = "official",
    units: Sequence[int] | None = None,
    intervention: Intervention | None = None,
    base_means: Means | None = None,
) -> pd.DataFrame:
    """One row per unit (of ``units``, default all): its mean reward over the prompts, the
    delta vs. no patch and that delta's standard error (``sem``, paired over the prompts).
    Each unit is patched by ``intervention`` (default replace; ``add`` subtracts ``base_means``).

    Memory stays bounded: the clean run's residual stream (every block's input, ``[prompts, pos, d]``)
    is cached within :class:`PatchedRows`' budget (beyond it rows run whole forwards), rows go
    through the model ``chunk`` at a time with their masks built a chunk at a time, and the table
    is ``[units, prompts]`` float64.

    Rewards are higher-is-better (IoU, -MSE, or -code cross-entropy; see ``metric``), so a
    positive ``delta`` means patching the unit alone helps. Scored by :mod:`interp.scoring`
    (``decode``: the pixel reward's official full-grid decode or the faster ``"band"``).
    """
    model.eval()
    layout = model.layout(layout)
    patcher = MeanPatcher(model, means, layout, space, intervention, base_means)
    # every unit x prompt row is distinct by construction: no dedupe; the clean prefix is reused
    engine = PatchedRows(patcher, chunk, dedupe=False, reuse_prefix=reuse_prefix)
    device = engine.device
    canvases = prompts.canvases.to(device)
    n = len(prompts)

    clean_logits = model(canvases, layout)
    codes = model.target_codes(canvases) if reward == "token" else None  # encoded once
    # a unit that leaves a prompt's codes as they were decodes to the clean pixels: decoded once
    decoder = DecodeCache(model.decode_codes) if reward == "pixel" else None
    scorer = Scorer(model, prompts.task, layout, reward, decode, decoder=decoder)
    baseline = scorer.rewards(canvases, clean_logits, codes).double()

    def row_reward(logits: torch.Tensor, batch: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return scorer.rewards(batch, logits, None if codes is None else codes[rows])

    by_layer: dict[tuple[str, int], list[int]] = defaultdict(list)
    chosen = space.units if units is None else [space.unit(int(i)) for i in units]
    for unit in sorted(chosen, key=lambda u: (u.stack != "encoder", u.layer, u.index)):  # forward order
        by_layer[(unit.stack, unit.layer)].append(unit.index)

    rewards = torch.full((len(space), n), float("nan"), dtype=torch.float64)
    # under torch.distributed, layer k goes to rank k % world (same chunks as one process), rows gathered
    groups = distributed.shard(list(by_layer.items()))
    bar = tqdm(total=sum(len(u) for _, u in groups) * n, desc=f"sweep {prompts.task}", unit="row",
               disable=not progress or not distributed.is_main())
    for _, layer_units in groups:
        rows_unit = torch.tensor(layer_units).repeat_interleave(n)  # [rows]
        rows_prompt = torch.arange(n).repeat(len(layer_units))  # [rows]
        for start in range(0, len(rows_unit), chunk):  # one-hot masks a chunk at a time (memory)
            unit_idx = rows_unit[start : start + chunk]
            prompt_idx = rows_prompt[start : start + chunk]
            mask = torch.zeros(len(unit_idx), len(space), dtype=torch.bool)
            mask[torch.arange(len(unit_idx)), unit_idx] = True
            rewards[unit_idx, prompt_idx] = engine(prompts, prompt_idx, mask, row_reward)
            bar.update(len(unit_idx))
    bar.close()
    if distributed.active():  # every rank gets every layer's rows, as computed by its owner
        layers = list(by_layer.values())
        local = torch.full((len(groups), max(map(len, layers)), n), float("nan"), dtype=torch.float64)
        for i, (_, layer_units) in enumerate(groups):
            local[i, : len(layer_units)] = rewards[layer_units]
        every = distributed.gather_rows(local, len(layers))
        for i, layer_units in enumerate(layers):
            rewards[layer_units] = every[i, : len(layer_units)]

    base = float(baseline.nanmean())
    chosen = sorted(chosen, key=lambda u: u.index)
    mean = rewards[[u.index for u in chosen]].nanmean(dim=1)
    paired = rewards[[u.index for u in chosen]] - baseline.cpu()[None]  # per prompt: patched - clean
    sem = paired.std(dim=1) / n ** 0.5 if n > 1 else torch.full_like(mean, float("nan"))
    return pd.DataFrame(
        {
            "task": prompts.task,
            "unit": [u.index for u in chosen],
            "stack": [u.stack for u in chosen],
            "layer": [u.layer for u in chosen],
            "head": [u.head for u in chosen],
            "group": [u.group for u in chosen],
            "metric": reward_name(prompts.task, reward),
            "reward": mean.numpy(),
            "baseline": base,
            "delta": (mean - base).numpy(),
            "sem": sem.numpy(),  # of the delta, over the prompts (paired): |delta| > 2 sem is beyond the noise
            "n_prompts": n,
        }
    )

