"""Batched mean-activation patching: each row of a batch replaces its own set of units.

The task-vector intervention of "Finding Visual Task Vectors": in a (zero-shot) forward,
replace the output ``z`` of chosen heads at chosen tokens by the task's mean ``z`` at the
same canvas **slot**, collected from one-shot prompts. Patching ``hook_z`` with mean ``z``
equals the official patching of the per-head projected output (W_O is linear, the bias
cancels).

A search (REINFORCE, sweeps) scores many unit sets at once, so the patch is batched: row
``b`` of a forward uses row ``b`` of a ``[batch, units]`` boolean mask over a
:class:`~interp.taskvectors.units.UnitSpace`. Everything that does not depend on the mask
is computed once per (model, means, layout, space) in a :class:`MeanPatcher`:

* per site, the means gathered at the slots of the forward's positions, ``[pos, head, d_head]``,
  cast to the model's dtype and device;
* per site, the space's ``[pos, head]`` map of which unit covers each cell.

A mask then becomes, per site, a ``[batch, pos, head]`` bool tensor by one gather, and the
hook is one ``torch.where`` — no Python loop over samples. Sites no row touches get no hook.

Broadcasting: a mask with batch 1 applies to every canvas; :func:`patched_forward` expands
a canvas batch of 1 to the mask's batch (one prompt, many sampled unit sets).

**Intervention kinds** (:class:`Intervention`, one option of the patcher, so every scoring
path — search, sweep, evaluation, explorer — gets them through this one place). On the cells
a row's mask selects, with ``m`` the one-shot task mean at the cell's slot:

* ``replace``: ``m``, the paper's task vector (the default);
* ``scaled``: ``lerp(z, m, alpha) = z + alpha (m - z)``; ``alpha = 1`` is ``replace`` bit for bit;
* ``add``: ``z + alpha (m - b)`` with ``b`` the *zero-shot* mean at the same slot
  (function-vector style: add the difference the demonstration makes); it needs statistics
  collected under the zero-shot layout.

``scaled`` uses ``torch.lerp``, exact at both ends (``alpha = 0`` gives ``z``, ``1`` gives
``m``); ``add`` with ``alpha = 0`` adds an exact zero, so the forward is the unpatched one.

Gradients are not blocked here; wrap calls in ``torch.no_grad()`` when scoring.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Union

import torch
from torch import Tensor

from interp.canvas import PromptLayout
from interp.errors import InputError
from interp.hooks import HookPoint
from interp.models.protocol import PromptModel
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.stats_file import ModelMismatchError
from interp.taskvectors.units import UnitSpace

Means = Union[ActivationStats, Mapping[str, Tensor]]

INTERVENTION_KINDS = ("replace", "add", "scaled")


@dataclass(frozen=True)
class Intervention:
    """What a patch does to the selected cells (see the module docstring's table).

    ``kind``: ``replace`` (the official task vector), ``scaled`` (``z + alpha (mean - z)``) or
    ``add`` (``z + alpha (mean - zero-shot mean)``); ``alpha`` is ignored by ``replace``.
    """

    kind: str = "replace"
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in INTERVENTION_KINDS:
            raise InputError(f"unknown intervention kind {self.kind!r}",
                             fix=f"use one of {', '.join(INTERVENTION_KINDS)}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise InputError(f"intervention alpha must be a finite number, got {self.alpha!r}",
                             fix="pass e.g. --alpha 1.0")
        object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def needs_base(self) -> bool:
        """Whether the patch needs zero-shot means (``add``)."""
        return self.kind == "add"

    @property
    def label(self) -> str:
        """``replace``, ``add(a=0.5)``, ``scaled(a=2)``: a short name for tables and legends."""
        return self.kind if self.kind == "replace" else f"{self.kind}(a={self.alpha:g})"


REPLACE = Intervention()


def as_mask(mask: Any, space: UnitSpace) -> Tensor:
    """A ``[batch, units]`` bool mask from a bool / 0-1 tensor, array or list (1-D -> batch 1)."""
    if not isinstance(mask, Tensor):
        try:
            mask = torch.as_tensor(mask)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"a unit mask must be a bool or 0/1 tensor, array or list of {len(space)} values, "
                             f"got {type(mask).__name__}") from None
    if mask.dim() == 1:
        mask = mask[None]
    if mask.dim() != 2 or mask.shape[0] == 0:
        raise InputError(f"a unit mask must be [units] or [batch >= 1, units], got shape {tuple(mask.shape)}",
                         fix=f"Pass {len(space)} values per row for {space!r}")
    return space.from_official(mask)


class _PatchZ:
    """Hook ``fn(z, hook)``: ``z`` where the row's mask is off, the intervened ``z`` where it is on.

    ``values`` is the kind's per-cell tensor ``[pos, head, d_head]``: the slot mean (``replace``,
    ``scaled``) or ``alpha (mean - zero-shot mean)`` (``add``).
    """

    def __init__(self, site_mask: Tensor, values: Tensor, intervention: Intervention = REPLACE) -> None:
        self.site_mask = site_mask[..., None]  # [batch or 1, pos, head, 1]
        self.values = values  # [pos, head, d_head]
        self.kind, self.alpha = intervention.kind, intervention.alpha

    def __call__(self, z: Tensor, hook: HookPoint) -> Tensor:
        rows = self.site_mask.shape[0]
        if rows != 1 and rows != z.shape[0]:
            raise ValueError(
                f"{hook.name}: the patch mask has {rows} rows, the forward batch {z.shape[0]}; "
                "give one mask row per canvas, or a single row for all"
            )
        if z.shape[1:3] != self.values.shape[:2]:
            raise ValueError(
                f"{hook.name}: z has {z.shape[1]} positions x {z.shape[2]} heads, the patch expects "
                f"{tuple(self.values.shape[:2])}; run the forward in the layout the patch was built for"
            )
        if self.values.dtype != z.dtype or self.values.device != z.device:
            self.values = self.values.to(device=z.device, dtype=z.dtype)
            self.site_mask = self.site_mask.to(z.device)
        if self.kind == "replace":
            return torch.where(self.site_mask, self.values, z)
        if self.kind == "scaled":
            return torch.where(self.site_mask, torch.lerp(z, self.values.expand_as(z), self.alpha), z)
        return torch.where(self.site_mask, z + self.values, z)  # add


class MeanPatcher:
    """Precomputed means-at-positions for one (model, means, layout, space); masks come per call.

    ``means``: an :class:`ActivationStats` or ``{site: [num_slots, head, d_head]}`` of mean
    ``z`` by slot. ``layout``: the layout of the patched forwards (must be ``space.target``).
    ``intervention``: what the patch does (default: the official replace); ``base_means``: the
    zero-shot means by slot that ``add`` subtracts (statistics collected under the zero-shot
    layout, e.g. ``collect(model, batches, "zero_shot")``).
    """

    def __init__(self, model: PromptModel, means: Means, layout: PromptLayout | str, space: UnitSpace,
                 intervention: Intervention | None = None, base_means: Means | None = None) -> None:
        self.model = model
        self.layout = model.layout(layout)
        self.space = space
        self.intervention = REPLACE if intervention is None else intervention
        if not isinstance(self.intervention, Intervention):
            raise TypeError(f"intervention must be an Intervention, got {type(self.intervention).__name__}")
        space.check_model(model)
        space.check_target(self.layout)
        if self.intervention.needs_base and base_means is None:
            raise InputError(f"the {self.intervention.kind!r} intervention adds (task mean - zero-shot mean) and "
                             "needs the zero-shot means", fix="pass base_means= statistics collected under the "
                             "zero-shot layout (interp.taskvectors.collect(model, batches, 'zero_shot'))")
        for stats in (means, base_means):
            if isinstance(stats, ActivationStats) and stats.fingerprint not in (None, model.config_hash()):
                raise ModelMismatchError(
                    f"the statistics were collected with model config {stats.fingerprint}, this model is "
                    f"{model.config_hash()}; collect them with this model"
                )
        self._base = base_means if self.intervention.needs_base else None
        self.device, self.dtype = model.device, model.dtype
        self.index = {site: idx.to(self.device) for site, idx in space.site_index().items()}
        self._means = means
        self._values: dict[str, Tensor] = {}  # filled lazily: only sites some mask touches
        self._patch_values: dict[str, Tensor] = {}
        self._undefined: dict[str, Tensor | None] = {}

    def _at_positions(self, means: Means, site: str, what: str) -> Tensor:
        """``means`` of ``site`` gathered at the forward's slots, ``[pos, head, d_head]`` float64."""
        mean = _site_mean(means, site)
        stack = site.split(".", 1)[0]
        num_slots = self.model.grid.num_slots
        heads = self.index[site].shape[1]
        if mean.dim() != 3 or mean.shape[0] != num_slots or mean.shape[1] != heads:
            raise ValueError(
                f"{what} for {site} have shape {tuple(mean.shape)}; expected [{num_slots} slots, {heads} heads, "
                "d_head] (mean z by slot, as ActivationStats.mean gives)"
            )
        slots = torch.tensor(self.layout.slots(stack), dtype=torch.long, device=mean.device)
        return mean[slots]

    def values(self, site: str) -> Tensor:
        """Task means at the forward's positions of ``site``: ``[pos, head, d_head]`` (model dtype)."""
        if site not in self._values:
            self._values[site] = self._at_positions(self._means, site, "means").to(device=self.device, dtype=self.dtype)
        return self._values[site]

    def patch_values(self, site: str) -> Tensor:
        """What the intervention's hook uses at ``site`` (``[pos, head, d_head]``, model dtype): the
        task means (``replace``, ``scaled``) or ``alpha (mean - zero-shot mean)`` (``add``, computed
        in float64, then cast)."""
        if self.intervention.kind != "add":
            return self.values(site)
        if site not in self._patch_values:
            mean = self._at_positions(self._means, site, "means").double()
            base = self._at_positions(self._base, site, "zero-shot means").double().to(mean.device)
            delta = self.intervention.alpha * (mean - base)
            self._patch_values[site] = delta.to(device=self.device, dtype=self.dtype)
        return self._patch_values[site]

    def site_masks(self, mask: Any) -> dict[str, Tensor]:
        """Per touched site, the ``[batch, pos, head]`` bool mask of cells to replace."""
        mask = as_mask(mask, self.space).to(self.device)
        used = mask.any(0)  # [units]
        ranges = [self.space.unit_range(site) for site in self.index]
        touched = torch.stack([used[a:b].any() for a, b in ranges]).tolist()  # one device sync
        padded = torch.cat([mask, mask.new_zeros(mask.shape[0], 1)], dim=1)  # column len(space) = no unit
        return {site: padded[:, index] for (site, index), t in zip(self.index.items(), touched) if t}

    def hooks(self, mask: Any) -> list[tuple[str, _PatchZ]]:
        """Forward hooks ``[(site, fn)]`` for ``model.hooks`` / ``run_with_hooks``."""
        hooks = []
        for site, site_mask in self.site_masks(mask).items():
            values = self.patch_values(site)
            if site not in self._undefined:  # cells whose mean was never observed, checked once
                undefined = values.isnan().any(-1)  # [pos, head]
                self._undefined[site] = undefined if undefined.any() else None
            missing = self._undefined[site]
            if missing is not None and (missing := site_mask.any(0) & missing).any():
                positions = missing.any(1).nonzero().flatten().tolist()
                slots = [self.layout.slots(site.split(".", 1)[0])[p] for p in positions]
                base = " (or the zero-shot means 'add' subtracts)" if self.intervention.needs_base else ""
                raise ValueError(
                    f"the means{base} of {site} are undefined (never observed) at slots {slots[:8]} that the mask "
                    "patches; collect statistics under a layout whose sequence holds these slots (one-shot "
                    "covers every slot of a zero-shot forward)"
                )
            hooks.append((site, _PatchZ(site_mask, values, self.intervention)))
        return hooks

    @contextmanager
    def patched(self, mask: Any) -> Iterator[Any]:
        """``with patcher.patched(mask): model(canvas, layout)`` — hooks removed on exit."""
        with self.model.hooks(self.hooks(mask)):
            yield self.model

    def forward(self, canvas: Tensor, mask: Any) -> Tensor:
        """Patched logits; a canvas batch of 1 is expanded to the mask's batch."""
        mask = as_mask(mask, self.space)
        n_canvas, n_mask = canvas.shape[0], mask.shape[0]
        if n_canvas == 1 and n_mask > 1:
            canvas = canvas.expand(n_mask, *canvas.shape[1:])
        elif n_mask not in (1, n_canvas):
            raise ValueError(
                f"{n_canvas} canvases and {n_mask} mask rows: give one row per canvas, one row for all "
                "canvases, or one canvas for all rows"
            )
        with self.patched(mask):
            return self.model(canvas, self.layout)

    __call__ = forward


def _site_mean(means: Means, site: str) -> Tensor:
    if isinstance(means, ActivationStats):
        return means.mean(site)
    if site not in means:
        raise KeyError(f"no means for {site!r}; collect statistics of every site the mask patches")
    return torch.as_tensor(means[site])


def patch_hooks(model: PromptModel, means: Means, layout: PromptLayout | str, space: UnitSpace, mask: Any,
                intervention: Intervention | None = None, base_means: Means | None = None) -> list:
    """Hooks patching ``z`` at row ``b``'s active units (default: replaced by the mean at the same slot)."""
    return MeanPatcher(model, means, layout, space, intervention, base_means).hooks(mask)


@contextmanager
def patched(model: PromptModel, means: Means, layout: PromptLayout | str, space: UnitSpace, mask: Any,
            intervention: Intervention | None = None, base_means: Means | None = None) -> Iterator[Any]:
    """Context in which every forward of ``model`` is patched by ``mask`` (``[batch or 1, units]``)."""
    with MeanPatcher(model, means, layout, space, intervention, base_means).patched(mask) as m:
        yield m


def patched_forward(
    model: PromptModel, canvas: Tensor, layout: PromptLayout | str, means: Means, space: UnitSpace, mask: Any,
    intervention: Intervention | None = None, base_means: Means | None = None,
) -> Tensor:
    """Logits of ``model(canvas, layout)`` with row ``b`` patched by ``mask[b]`` (see module doc)."""
    return MeanPatcher(model, means, layout, space, intervention, base_means).forward(canvas, mask)



def merge_means(space: UnitSpace, parts: list[tuple[Means, Tensor]]) -> tuple[dict[str, Tensor], Tensor]:
    """Several tasks' vectors patched together as one: ``(means, mask)`` where a unit of part ``k``'s
    mask takes part ``k``'s mean (a later part wins where masks overlap) and ``mask`` is their union.

    Patching the result replaces exactly the cells that the parts' hooks, applied one after the
    other, would replace, with the same values.
    """
    if not parts:
        raise InputError("merge_means needs at least one (means, mask) part")
    masks = [torch.cat([torch.as_tensor(m).bool().flatten().cpu(), torch.zeros(1, dtype=torch.bool)]) for _, m in parts]
    merged: dict[str, Tensor] = {}
    for site, index in space.site_index().items():  # [pos, head]: the unit of each cell (len(space): none)
        slots = torch.tensor(space.target.slots(site.split(".", 1)[0]))
        owner = torch.full(index.shape, -1, dtype=torch.long)
        for k, padded in enumerate(masks):
            owner[padded[index.cpu()]] = k
        result = None
        for k, (means, _) in enumerate(parts):
            covered = owner == k
            if covered.any():
                mean = _site_mean(means, site)  # [slots, head, d_head]
                result = mean.clone() if result is None else result
                result[slots] = torch.where(covered[..., None].to(mean.device), mean[slots].to(result.dtype), result[slots])
        if result is not None:
            merged[site] = result
    return merged, torch.stack([m[:-1] for m in masks]).any(0)
