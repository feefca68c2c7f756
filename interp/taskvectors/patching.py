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

Gradients are not blocked here; wrap calls in ``torch.no_grad()`` when scoring.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Union

import torch
from torch import Tensor

from interp.canvas import PromptLayout, get_layout
from interp.errors import InputError
from interp.hooks import HookPoint
from interp.taskvectors.stats import ActivationStats, ModelMismatchError
from interp.taskvectors.units import UnitSpace

Means = Union[ActivationStats, Mapping[str, Tensor]]


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


class _ReplaceZ:
    """Hook ``fn(z, hook)``: ``z`` where the row's mask is off, the slot mean where it is on."""

    def __init__(self, site_mask: Tensor, values: Tensor) -> None:
        self.site_mask = site_mask[..., None]  # [batch or 1, pos, head, 1]
        self.values = values  # [pos, head, d_head]

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
        return torch.where(self.site_mask, self.values, z)


class MeanPatcher:
    """Precomputed means-at-positions for one (model, means, layout, space); masks come per call.

    ``means``: an :class:`ActivationStats` or ``{site: [num_slots, head, d_head]}`` of mean
    ``z`` by slot. ``layout``: the layout of the patched forwards (must be ``space.target``).
    """

    def __init__(self, model: Any, means: Means, layout: PromptLayout | str, space: UnitSpace) -> None:
        self.model = model
        self.layout = get_layout(layout, model.grid)
        self.space = space
        space.check_model(model)
        space.check_target(self.layout)
        if isinstance(means, ActivationStats) and means.fingerprint not in (None, model.config.fingerprint()):
            raise ModelMismatchError(
                f"the statistics were collected with model config {means.fingerprint}, this model is "
                f"{model.config.fingerprint()}; collect them with this model"
            )
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.index = {site: idx.to(self.device) for site, idx in space.site_index().items()}
        self._means = means
        self._values: dict[str, Tensor] = {}  # filled lazily: only sites some mask touches
        self._undefined: dict[str, Tensor | None] = {}

    def values(self, site: str) -> Tensor:
        """Means at the forward's positions of ``site``: ``[pos, head, d_head]`` (model dtype)."""
        if site not in self._values:
            mean = _site_mean(self._means, site)
            stack = site.split(".", 1)[0]
            num_slots = self.model.grid.num_slots
            heads = self.index[site].shape[1]
            if mean.dim() != 3 or mean.shape[0] != num_slots or mean.shape[1] != heads:
                raise ValueError(
                    f"means for {site} have shape {tuple(mean.shape)}; expected [{num_slots} slots, {heads} heads, "
                    "d_head] (mean z by slot, as ActivationStats.mean gives)"
                )
            slots = torch.tensor(self.layout.slots(stack), dtype=torch.long, device=mean.device)
            self._values[site] = mean[slots].to(device=self.device, dtype=self.dtype)
        return self._values[site]

    def site_masks(self, mask: Any) -> dict[str, Tensor]:
        """Per touched site, the ``[batch, pos, head]`` bool mask of cells to replace."""
        mask = as_mask(mask, self.space).to(self.device)
        used = mask.any(0)  # [units]
        ranges = [self.space.unit_range(site) for site in self.index]
        touched = torch.stack([used[a:b].any() for a, b in ranges]).tolist()  # one device sync
        padded = torch.cat([mask, mask.new_zeros(mask.shape[0], 1)], dim=1)  # column len(space) = no unit
        return {site: padded[:, index] for (site, index), t in zip(self.index.items(), touched) if t}

    def hooks(self, mask: Any) -> list[tuple[str, _ReplaceZ]]:
        """Forward hooks ``[(site, fn)]`` for ``model.hooks`` / ``run_with_hooks``."""
        hooks = []
        for site, site_mask in self.site_masks(mask).items():
            values = self.values(site)
            if site not in self._undefined:  # cells whose mean was never observed, checked once
                undefined = values.isnan().any(-1)  # [pos, head]
                self._undefined[site] = undefined if undefined.any() else None
            missing = self._undefined[site]
            if missing is not None and (missing := site_mask.any(0) & missing).any():
                positions = missing.any(1).nonzero().flatten().tolist()
                slots = [self.layout.slots(site.split(".", 1)[0])[p] for p in positions]
                raise ValueError(
                    f"the means of {site} are undefined (never observed) at slots {slots[:8]} that the mask "
                    "patches; collect statistics under a layout whose sequence holds these slots (one-shot "
                    "covers every slot of a zero-shot forward)"
                )
            hooks.append((site, _ReplaceZ(site_mask, values)))
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


def patch_hooks(model: Any, means: Means, layout: PromptLayout | str, space: UnitSpace, mask: Any) -> list:
    """Hooks replacing ``z`` at row ``b``'s active units by the mean at the same slot."""
    return MeanPatcher(model, means, layout, space).hooks(mask)


@contextmanager
def patched(model: Any, means: Means, layout: PromptLayout | str, space: UnitSpace, mask: Any) -> Iterator[Any]:
    """Context in which every forward of ``model`` is patched by ``mask`` (``[batch or 1, units]``)."""
    with MeanPatcher(model, means, layout, space).patched(mask) as m:
        yield m


def patched_forward(
    model: Any, canvas: Tensor, layout: PromptLayout | str, means: Means, space: UnitSpace, mask: Any
) -> Tensor:
    """Logits of ``model(canvas, layout)`` with row ``b`` patched by ``mask[b]`` (see module doc)."""
    return MeanPatcher(model, means, layout, space).forward(canvas, mask)
