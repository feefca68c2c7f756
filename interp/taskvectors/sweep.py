"""Exhaustive single-unit patching: how much does each unit alone move the task metric?

For every unit of a :class:`~interp.taskvectors.units.UnitSpace` (every layer, every head,
or every head x token group), patch only that unit with the task's mean activations in a
zero-shot forward, score the held-out prompts, and compare with the unpatched zero-shot score.

Cost is kept down in two ways (DESIGN.md §5 in ../shared): all (unit, prompt) rows of one layer go through
the model as batches, each row with its own patch mask; and with ``reuse_prefix`` a patch at
layer L restarts from the clean run's cached residual stream at L
(:meth:`~interp.models.MAEVQGAN.forward_from`), since layers before L cannot change.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
import torch
from tqdm.auto import tqdm

from interp import distributed
from interp.canvas import PromptLayout, get_layout
from interp.data.tasks import PromptBatch
from interp.models.mae_vqgan import MAEVQGAN
from interp.scoring import reward_from_logits, reward_name
from interp.taskvectors.patching import Means, MeanPatcher
from interp.taskvectors.units import UnitSpace


@torch.no_grad()
def sweep(
    model: MAEVQGAN,
    space: UnitSpace,
    means: Means,
    prompts: PromptBatch,
    layout: PromptLayout | str = "zero_shot",
    reward: str = "pixel",
    reuse_prefix: bool = True,
    chunk: int = 512,
    progress: bool = True,
    decode: str = "official",
) -> pd.DataFrame:
    """One row per unit: its mean reward over the prompts and the delta vs. no patch.

    Rewards are higher-is-better (IoU, -MSE, or -code cross-entropy; see ``metric``), so a
    positive ``delta`` means patching the unit alone helps. Scored by :mod:`interp.scoring`
    (``decode``: the pixel reward's official full-grid decode or the faster ``"band"``).
    """
    model.eval()
    layout = get_layout(layout, model.grid)
    patcher = MeanPatcher(model, means, layout, space)
    device = next(model.parameters()).device
    canvases = prompts.canvases.to(device)
    n = len(prompts)

    resid_names = lambda name: name.endswith("hook_resid_pre")  # noqa: E731
    clean_logits, cache = model.run_with_cache(canvases, layout, names_filter=resid_names if reuse_prefix else "decoder.hook_logits")
    codes = model.vqgan.encode_to_codes(canvases) if reward == "token" else None  # encoded once
    baseline = reward_from_logits(model, prompts.task, canvases, clean_logits, layout, reward, codes, decode=decode).double()

    by_layer: dict[tuple[str, int], list[int]] = defaultdict(list)
    for unit in space.units:
        by_layer[(unit.stack, unit.layer)].append(unit.index)

    rewards = torch.empty(len(space), n, dtype=torch.float64)
    # under torch.distributed, layer k goes to rank k % world (same chunks as one process), rows gathered
    groups = distributed.shard(list(by_layer.items()))
    bar = tqdm(total=sum(len(u) for _, u in groups) * n, desc=f"sweep {prompts.task}", unit="row",
               disable=not progress or not distributed.is_main())
    for (stack, layer), units in groups:
        rows_unit = torch.tensor(units).repeat_interleave(n)  # [rows]
        rows_prompt = torch.arange(n).repeat(len(units))  # [rows]
        for start in range(0, len(rows_unit), chunk):
            unit_idx = rows_unit[start : start + chunk]
            prompt_idx = rows_prompt[start : start + chunk]
            mask = torch.zeros(len(unit_idx), len(space), dtype=torch.bool)
            mask[torch.arange(len(unit_idx)), unit_idx] = True
            with patcher.patched(mask):
                if reuse_prefix:
                    resid = cache[f"{stack}.blocks.{layer}.hook_resid_pre"][prompt_idx.to(device)]
                    logits = model.forward_from(resid, layout, stack, layer)
                else:
                    logits = model(canvases[prompt_idx.to(device)], layout)
            rows = prompt_idx.to(device)
            score = reward_from_logits(model, prompts.task, canvases[rows], logits, layout, reward,
                                       None if codes is None else codes[rows], decode=decode)
            rewards[unit_idx, prompt_idx] = score.double().cpu()
            bar.update(len(unit_idx))
    bar.close()
    if distributed.active():  # every rank gets every layer's rows, as computed by its owner
        layers = list(by_layer.values())
        local = torch.full((len(groups), max(map(len, layers)), n), float("nan"), dtype=torch.float64)
        for i, (_, units) in enumerate(groups):
            local[i, : len(units)] = rewards[units]
        every = distributed.gather_rows(local, len(layers))
        for i, units in enumerate(layers):
            rewards[units] = every[i, : len(units)]

    base = float(baseline.nanmean())
    mean = rewards.nanmean(dim=1)
    return pd.DataFrame(
        {
            "task": prompts.task,
            "unit": [u.index for u in space.units],
            "stack": [u.stack for u in space.units],
            "layer": [u.layer for u in space.units],
            "head": [u.head for u in space.units],
            "group": [u.group for u in space.units],
            "metric": reward_name(prompts.task, reward),
            "reward": mean.numpy(),
            "baseline": base,
            "delta": (mean - base).numpy(),
            "n_prompts": n,
        }
    )
