"""Collecting task activations over torch.distributed ranks, bit-identical to one process.

:func:`~interp.taskvectors.collect.collect` adds each batch's float64 sum to running sums in
batch order. Float addition is not associative, so an all-reduce of per-rank totals would
differ from that in the last bits. Here batch ``k`` goes to rank ``k % world``; in each round
every rank collects its one batch into a partial, the partials are all-gathered
(:func:`interp.distributed.ordered_partials`) and every rank adds them in batch order,
exactly as the single process does. Every rank ends with the same statistics. Memory stays
bounded: one batch's activations plus ``world`` partials (each the size of the statistics).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from interp import distributed
from interp.models.protocol import PromptModel
from interp.taskvectors.collect import collect
from interp.taskvectors.stats import ActivationStats


def _flatten(stats: ActivationStats) -> Tensor:
    """``sum``, ``sum_sq`` and ``count`` of every site as one float64 vector (counts are exact)."""
    parts = []
    for site in stats.sites:
        parts += [stats.sum[site].flatten(), stats.sum_sq[site].flatten(), stats.count[site].double()]
    return torch.cat(parts)


def _unflatten(vector: Tensor, template: ActivationStats) -> ActivationStats:
    out = template.to("cpu")
    offset = 0
    for site in template.sites:
        for name, dtype in (("sum", torch.float64), ("sum_sq", torch.float64), ("count", torch.int64)):
            ref = getattr(template, name)[site]
            getattr(out, name)[site] = vector[offset : offset + ref.numel()].view(ref.shape).to(dtype)
            offset += ref.numel()
    return out


def collect_sharded(model: PromptModel, batches: Sequence[Tensor], layout="one_shot", sites=None, task: str | None = None,
                    dataset: Any = None, seed: Any = None, progress: bool = True, **extra: Any) -> ActivationStats:
    """:func:`~interp.taskvectors.collect.collect` with the batches sharded over ranks.

    Same arguments and result as ``collect`` (a single process just calls it); under
    :func:`interp.distributed.init` every rank returns the same, bit-identical statistics.
    """
    kwargs = dict(layout=layout, sites=sites, task=task, dataset=dataset, seed=seed, **extra)
    if not distributed.active():
        return collect(model, batches, progress=progress, **kwargs)
    batches = list(batches)
    if not batches:
        raise ValueError("collect got no batches; pass a non-empty iterable of canvas tensors")
    world, me = distributed.world_size(), distributed.rank()
    # the shapes of a partial: from this rank's first batch, or from one prompt if it has none
    template = collect(model, [batches[me] if me < len(batches) else batches[0][:1]], progress=False, **kwargs)
    like = _flatten(template)
    total: ActivationStats | None = None
    rounds = range(0, len(batches), world)
    if progress:
        from tqdm.auto import tqdm

        rounds = tqdm(rounds, desc=f"collect {task or ''} ({world} ranks)".strip(), disable=me != 0)
    for start in rounds:
        k = start + me
        local = None
        if k < len(batches):
            local = template if k == me else collect(model, [batches[k]], progress=False, **kwargs)
        counts = distributed.ordered_partials(None if local is None else torch.tensor([float(local.n_prompts)], dtype=torch.float64),
                                              torch.zeros(1, dtype=torch.float64))
        partials = distributed.ordered_partials(None if local is None else _flatten(local), like)
        for vector, n in zip(partials, counts):  # in batch order: start, start + 1, ...
            part = _unflatten(vector, template)
            part.n_prompts = int(n)
            total = part if total is None else total + part
    assert total is not None
    return total
