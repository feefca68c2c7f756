"""Path patching between heads: how a task vector's encoder heads reach the prediction, head by head.

Standard two-step path patching (Wang et al. 2022, "Interpretability in the Wild"), on zero-shot
forwards, with the task vector's patch (:class:`~interp.taskvectors.patching.MeanPatcher`, any
intervention kind) as the "corrupted" value of the senders:

1. **Sender run** (:meth:`PathPatcher.sender_run`): the *sender* units (some of the task
   vector's encoder units) are patched; every other head is **held** at its clean zero-shot
   ``z`` (cell by cell, so a head's cells outside the sender unit are held too); MLPs, norms and
   the residual stream recompute. Each decoder head's ``z`` is recorded *as computed* before it
   is replaced by its clean value, so every decoder head sees the senders' effect only through
   the residual stream (no head composition), and one run serves every receiver at once.
2. **Receiver run** (:meth:`PathPatcher.receiver_logits`): a clean zero-shot forward in which
   only the *receiver* head's ``z`` (every position) takes its sender-run value; everything
   downstream recomputes. Its metric minus the clean metric is the effect of the senders
   *through that decoder head only*. The run restarts at the receiver's layer from the clean
   residual stream (earlier blocks cannot differ).

Beside the heatmap of these path effects (encoder head x decoder head), :func:`path_effects`
reports per sender the **total** effect (the sender units patched, nothing held: the plain
patch) and the **direct** effect (the sender run's own prediction: every other head held, so the
effect travels only through the residual stream, MLPs and the VQGAN decode of the whole grid).
A column read top to bottom answers the reverse question: which encoder heads a decoder head
reads the task vector from.

Checks (``tests/taskvectors/test_paths.py``): holding nothing is the plain patch bit for bit
(every path open); a receiver run with no receiver is the clean forward bit for bit (every
path closed); on a model constructed so that only one decoder head can carry the sender's
effect to the target cell, the effect through it equals the total effect and the effect through
every other head is exactly zero.

All effects are on the official pixel path (:class:`~interp.scoring.Scorer`, the task metric of
the target cell, with a :class:`~interp.models.decode_cache.DecodeCache`).
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.data.tasks import PromptBatch
from interp.models.decode_cache import DecodeCache
from interp.scoring import Scorer
from interp.taskvectors.patching import MeanPatcher, as_mask

DIRECT, TOTAL = "direct", "total"


def _site(stack: str, layer: int) -> str:
    return f"{stack}.blocks.{layer}.attn.hook_z"


class _Record:
    """Hook that keeps the ``z`` it sees (before later hooks edit it)."""

    def __init__(self, store: dict[str, Tensor]) -> None:
        self.store = store

    def __call__(self, z: Tensor, hook: Any) -> None:
        self.store[hook.name] = z


class _Hold:
    """Hook ``where(held cells, clean z, z)``; ``held [rows or 1, pos, head]``, ``clean [rows, pos, head, d]``."""

    def __init__(self, held: Tensor, clean: Tensor) -> None:
        self.held, self.clean = held[..., None], clean

    def __call__(self, z: Tensor, hook: Any) -> Tensor:
        return torch.where(self.held, self.clean.to(z.dtype), z)


class _SetHead:
    """Hook: row ``r``'s head ``heads[r]`` takes ``values[r]`` at every position."""

    def __init__(self, heads: Tensor, values: Tensor) -> None:
        self.heads, self.values = heads, values  # [rows], [rows, pos, d]

    def __call__(self, z: Tensor, hook: Any) -> Tensor:
        z = z.clone()
        z[torch.arange(z.shape[0], device=z.device), :, self.heads] = self.values.to(z.dtype)
        return z


class PathPatcher:
    """Path patching of zero-shot forwards for one (model, task means, unit space, intervention).

    ``patcher``: the :class:`MeanPatcher` whose patch gives the senders' values (its layout is
    the forwards' layout, normally zero-shot).
    """

    def __init__(self, patcher: MeanPatcher) -> None:
        self.patcher, self.model, self.layout = patcher, patcher.model, patcher.layout
        self.space = patcher.space
        self.n_enc, self.n_dec = self.model.stacks["encoder"].layers, self.model.stacks["decoder"].layers
        self.sites = [_site("encoder", i) for i in range(self.n_enc)] + [_site("decoder", i) for i in range(self.n_dec)]

    @torch.no_grad()
    def clean(self, canvases: Tensor) -> tuple[Tensor, dict[str, Tensor], list[Tensor]]:
        """The clean forward: logits, every site's ``z`` and every decoder block's input."""
        names = set(self.sites) | {f"decoder.blocks.{i}.hook_resid_pre" for i in range(self.n_dec)}
        logits, cache = self.model.run_with_cache(canvases, self.layout, names_filter=lambda n: n in names)
        return (logits, {s: cache[s] for s in self.sites},
                [cache[f"decoder.blocks.{i}.hook_resid_pre"] for i in range(self.n_dec)])

    @torch.no_grad()
    def sender_run(self, canvases: Tensor, senders: Tensor, clean_z: dict[str, Tensor], hold: bool = True
                   ) -> tuple[Tensor, dict[str, Tensor]]:
        """Step 1: row ``r`` patched by ``senders[r]`` (``[rows, units]``, rows = canvases), every
        other cell held at ``clean_z`` (or nothing held with ``hold=False``: the plain patch).
        Returns the logits and the computed ``z`` of every decoder site ``[rows, pos, head, d]``."""
        senders = as_mask(senders, self.space).to(self.patcher.device)
        sender_cells = self.patcher.site_masks(senders)  # touched sites only
        store: dict[str, Tensor] = {}
        hooks: list = [(_site("decoder", i), _Record(store)) for i in range(self.n_dec)]
        hooks += self.patcher.hooks(senders)
        for site in self.sites:
            clean = clean_z[site]
            cells = sender_cells.get(site)
            held = torch.full(clean.shape[:3], hold, dtype=torch.bool, device=clean.device)
            if cells is not None:
                held = held & ~cells.to(clean.device)
            hooks.append((site, _Hold(held, clean)))
        with self.model.hooks(hooks):
            logits = self.model(canvases, self.layout)
        return logits, {s: store[s] for s in self.sites if s.startswith("decoder")}

    @torch.no_grad()
    def receiver_logits(self, resid_pre: list[Tensor], recorded: dict[str, Tensor], receivers: Sequence[tuple[int, int]],
                        rows: Tensor | None = None) -> Tensor:
        """Step 2: clean forwards in which receiver ``(layer, head)`` takes its recorded ``z``.

        ``resid_pre[layer]`` ``[N, pos, d]`` the clean decoder block inputs, ``recorded[site]``
        ``[N, pos, head, d]`` the sender run's decoder ``z`` (row ``i`` of both belong together;
        ``rows`` selects some). Returns ``[len(receivers), N, P, vocab]``; with no receiver, the
        clean logits ``[0 + 1, N, P, vocab]`` recomputed from the decoder's input.
        """
        rows = torch.arange(resid_pre[0].shape[0]) if rows is None else rows
        if not receivers:
            return self.model.forward_from(resid_pre[0][rows], self.layout, "decoder", 0)[None]
        out = []
        for layer, head in receivers:
            site = _site("decoder", layer)
            values = recorded[site][rows][:, :, head]
            heads = torch.full((len(rows),), head, dtype=torch.long, device=values.device)
            with self.model.hooks([(site, _SetHead(heads, values))]):
                out.append(self.model.forward_from(resid_pre[layer][rows], self.layout, "decoder", layer))
        return torch.stack(out)


def sender_sets(space, mask: Tensor) -> tuple[list[str], Tensor]:
    """The task vector's encoder units grouped by head: names (``L3H5``; ``all`` first, every
    encoder unit of the vector) and masks ``[S, units]``."""
    mask = as_mask(mask, space)[0]
    units = space.units
    heads = sorted({(u.layer, u.head) for u, on in zip(units, mask.tolist()) if on and u.stack == "encoder"})
    names, rows = ["all"], [torch.tensor([on and u.stack == "encoder" for u, on in zip(units, mask.tolist())])]
    for layer, head in heads:
        names.append(f"L{layer}H{head}")
        rows.append(torch.tensor([on and u.stack == "encoder" and u.layer == layer and u.head == head
                                  for u, on in zip(units, mask.tolist())]))
    return names, torch.stack(rows)


@torch.no_grad()
def path_effects(patcher: MeanPatcher, prompts: PromptBatch, mask: Tensor, batch_size: int = 8,
                 max_senders: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Effects of the task vector's encoder heads through each decoder head, on the task metric.

    One row per (sender, receiver): sender ``all`` (every encoder unit of ``mask``) or one
    encoder head (its units in ``mask``), receiver ``L{layer}H{head}`` (a decoder head),
    ``direct`` or ``total``; ``effect`` the mean over prompts of (metric - clean zero-shot
    metric), ``sem``, ``n``; ``metric`` its name and ``higher_is_better``. ``max_senders`` keeps
    the heads with the most units (after ``all``).
    """
    paths = PathPatcher(patcher)
    model, task = paths.model, prompts.task
    names, senders = sender_sets(patcher.space, mask)
    if len(names) == 1 and not bool(senders[0].any()):
        raise ValueError("the task vector patches no encoder unit: there is no path from the encoder to follow")
    if max_senders is not None and len(names) > max_senders + 1:
        keep = [0] + (1 + senders[1:].sum(1).argsort(descending=True, stable=True)[:max_senders]).sort().values.tolist()
        names, senders = [names[i] for i in keep], senders[keep]
    receivers = [(layer, head) for layer in range(paths.n_dec) for head in range(model.stacks["decoder"].heads)]
    recv_names = [f"L{layer}H{head}" for layer, head in receivers]
    scorer = Scorer(model, task, paths.layout, "pixel", "official", empty_iou=float("nan"),
                    decoder=DecodeCache(model.decode_codes))
    device = patcher.device
    s = len(names)
    effects: dict[str, list[Tensor]] = {}  # column -> [S, b] per batch
    starts = list(range(0, len(prompts), batch_size))
    bar = tqdm(total=len(starts) * (2 + len(receivers)), desc=f"paths {task}", unit="run", disable=not progress)
    for start in starts:
        canvases = prompts.canvases[start : start + batch_size].to(device)
        b = len(canvases)
        clean_logits, clean_z, resid_pre = paths.clean(canvases)
        base = scorer(canvases, clean_logits).metric  # [b]
        rep = canvases.repeat(s, 1, 1, 1)  # row i*b + j: sender i, prompt j
        rows_z = {site: z.repeat(s, *([1] * (z.dim() - 1))) for site, z in clean_z.items()}
        rows_resid = [r.repeat(s, 1, 1) for r in resid_pre]
        row_senders = senders.repeat_interleave(b, 0)

        def effect(logits: Tensor) -> Tensor:
            return (scorer(rep, logits).metric.view(s, b) - base[None]).cpu()

        total, _ = paths.sender_run(rep, row_senders, rows_z, hold=False)
        effects.setdefault(TOTAL, []).append(effect(total))
        bar.update()
        direct, recorded = paths.sender_run(rep, row_senders, rows_z, hold=True)
        effects.setdefault(DIRECT, []).append(effect(direct))
        bar.update()
        for name, receiver in zip(recv_names, receivers):
            logits = paths.receiver_logits(rows_resid, recorded, [receiver])[0]
            effects.setdefault(name, []).append(effect(logits))
            bar.update()
    bar.close()
    from interp.metrics import task_metric

    metric = task_metric(task)
    table = []
    for column in [*recv_names, DIRECT, TOTAL]:
        values = torch.cat(effects[column], dim=1).double()  # [S, N]
        for i, sender in enumerate(names):
            v = values[i][~values[i].isnan()]
            n = int(v.numel())
            table.append({"task": task, "sender": sender, "sender_units": int(senders[i].sum()), "receiver": column,
                          "effect": float(v.mean()) if n else float("nan"),
                          "sem": float(v.std() / n**0.5) if n > 1 else float("nan"), "n": n,
                          "metric": metric.name, "higher_is_better": metric.higher_is_better,
                          "intervention": patcher.intervention.label})
    return pd.DataFrame(table)
