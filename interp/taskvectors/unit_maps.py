"""A :class:`~interp.taskvectors.units.UnitSpace` mapped onto other indexings: official Bernoulli
vectors, the official ``construct_indices`` triples, and per-site gather indices for patching.

``apply_to`` reproduces a quirk of the official code on purpose and only when asked: it
applies the defining layout's *position indices* to another layout's sequences. The
official ``construct_indices(..., zero_shot=False)`` does exactly this: group and token
units keep their zero-shot positions (encoder 0..49, decoder 0..98) and are used as
positions of the one-shot sequences (where position 1 is a patch of the example input, not
of the query), while ``head`` units cover the whole one-shot sequence. Hence::

    official construct_indices(g, zero_shot)  ==
        UnitSpace.for_model(model, g, layout=zero_shot,
                            apply_to=None if zero_shot else one_shot).official_triples(mask)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.canvas import PromptLayout
from interp.errors import InputError
from interp.taskvectors.unit import STACKS, site_name
from interp.taskvectors.units import UnitSpace


def from_official(space: UnitSpace, vector: Any) -> Tensor:
    """An official Bernoulli sample (0/1 floats, ``[..., units]``) as a bool mask of this space."""
    t = torch.as_tensor(np.asarray(vector) if not isinstance(vector, Tensor) else vector)
    if t.dim() == 0 or t.shape[-1] != len(space):
        raise InputError(
            f"unit mask (or official vector) has shape {tuple(t.shape)}; a {space.granularity!r} space of this model "
            f"has {len(space)} units (last dim). Is the granularity or the model right?"
        )
    if t.dtype != torch.bool:
        bad = t.real[(t != 0) & (t != 1)] if not t.is_complex() else t.real.flatten()
        if bad.numel():
            raise InputError(f"a unit mask must hold only 0 and 1 (Bernoulli outcomes), got {t.dtype} values such as "
                             + ", ".join(f"{v:g}" for v in bad[:3].tolist()),
                             fix="Threshold probabilities first (policy.mask(0.5)) or pass a bool mask")
        t = t != 0
    return t


def official_triples(space: UnitSpace, mask: Any, layout: PromptLayout | None = None) -> list[tuple[int, int, int]]:
    """The official ``(layer, head, position)`` list of a 1-D mask, in the official order.

    Layers are numbered encoder ``0..L_enc-1`` then decoder ``L_enc..``; positions are of
    the :attr:`target` layout's sequences (pass ``layout`` only to assert which that is).
    Order: active units ascending, then heads, then positions ascending.
    """
    if layout is not None:
        space.check_target(layout)
    mask = from_official(space, mask)
    if mask.dim() != 1:
        raise ValueError(f"official_triples takes one sample [units], got shape {tuple(mask.shape)}")
    triples: list[tuple[int, int, int]] = []
    for i in mask.nonzero().flatten().tolist():
        unit = space.unit(i)
        layer = unit.layer + (space.n_enc_layers if unit.stack == "decoder" else 0)
        _, heads, positions = space.unit_cells(i)
        triples += [(layer, h, p) for h in heads for p in positions]
    return triples


def site_index(space: UnitSpace) -> dict[str, Tensor]:
    """Per site, the unit covering each ``(position, head)`` of the target: ``[pos, head]`` long.

    Cells no unit covers hold ``len(space)``, so ``padded_mask[:, index]`` (with a False column
    appended to the mask) gives the ``[batch, pos, head]`` patch mask of a site in one gather
    (cached by :meth:`UnitSpace.site_index`).
    """
    n = len(space)
    maps: dict[str, Tensor] = {}
    for stack in STACKS:
        n_pos, n_heads = len(space.target.slots(stack)), space.heads(stack)
        per_head = space.per_head(stack)
        # local[pos, head]: index of the covering unit within its layer (n = none)
        if space.granularity == "layer":
            local = np.zeros((n_pos, n_heads), dtype=np.int64)
        elif space.granularity == "head":
            local = np.broadcast_to(np.arange(n_heads), (n_pos, n_heads)).copy()
        else:
            sub = np.full(n_pos, -1, dtype=np.int64)  # group / token of each position
            if space.granularity == "group":
                groups = space.layout.token_groups(stack)
                for g, name in enumerate(space.groups(stack)):
                    sub[list(groups[name])] = g
            else:
                sub[: per_head] = np.arange(per_head)
            local = np.arange(n_heads)[None, :] * per_head + sub[:, None]
            local[sub < 0] = -1
        for layer in range(space.layers(stack)):
            base = space.offset(stack) + layer * space.per_layer(stack)
            maps[site_name(stack, layer)] = torch.from_numpy(np.where(local < 0, n, base + local))
    return maps
