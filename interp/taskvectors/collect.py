"""Collecting activation statistics: one hooked forward per batch of canvases, no copies to the CPU."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

from interp.canvas import PromptLayout
from interp.models.protocol import PromptModel
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.stats_file import DEFAULT_HOOK
from interp.taskvectors.unit import stack_of


def _resolve_sites(model: PromptModel, sites: None | str | Sequence[str] | Callable[[str], bool]) -> list[str]:
    if sites is None:
        names = [n for n in model.hook_dict if n.endswith(DEFAULT_HOOK)]
    elif isinstance(sites, str):
        names = [n for n in model.hook_dict if n == sites or n.endswith("." + sites)]
    elif callable(sites):
        names = [n for n in model.hook_dict if sites(n)]
    else:
        unknown = [s for s in sites if s not in model.hook_dict]
        if unknown:
            raise KeyError(f"no hook points named {unknown[:3]}; see model.hook_dict")
        names = list(sites)
    if not names:
        raise ValueError(f"sites={sites!r} matches no hook point; e.g. 'attn.hook_z' or a full hook name")
    for name in names:
        stack_of(name)
    return names


def collect(
    model: PromptModel,
    batches: Iterable[Tensor],
    layout: PromptLayout | str = "one_shot",
    sites: None | str | Sequence[str] | Callable[[str], bool] = None,
    task: str | None = None,
    dataset: Any = None,
    seed: Any = None,
    progress: bool = True,
    **extra: Any,
) -> ActivationStats:
    """Accumulate per-slot statistics of ``sites`` over canvas batches ``[B, 3, H, W]``.

    One forward per batch under ``torch.no_grad``; the hooks add each batch to float64 sums
    on the model's device; the result is moved to the CPU once at the end. ``sites``: None
    (every ``attn.hook_z``), a hook suffix (``"hook_resid_post"``), a list of names or a
    filter. ``task``, ``dataset``, ``seed`` and ``extra`` go to the sidecar.
    """
    layout = model.layout(layout)
    names = _resolve_sites(model, sites)
    stats = ActivationStats.empty(layout, model, task=task, dataset=dataset, seed=seed, **extra)
    device = model.device

    def accumulate(activation: Tensor, hook: Any) -> None:
        stats.update(hook.name, activation)

    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    iterator: Iterable = batches
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, total=total, desc=f"collect {task or ''}".strip(), unit="batch")
    with torch.no_grad(), model.hooks([(name, accumulate) for name in names]):
        for batch in iterator:
            if not isinstance(batch, Tensor):
                raise TypeError(
                    f"collect takes batches of canvas tensors [B, 3, H, W], got {type(batch).__name__}; "
                    "pass e.g. (b['canvas'] for b in loader)"
                )
            if batch.dim() == 3:
                batch = batch[None]
            model(batch.to(device), layout)
            stats.n_prompts += batch.shape[0]
    if stats.n_prompts == 0:
        raise ValueError("collect got no batches; pass a non-empty iterable of canvas tensors")
    return stats.to("cpu")
