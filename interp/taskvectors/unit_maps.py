"""A :class:`~interp.taskvectors.units.UnitSpace` mapped onto the official ``construct_indices``
``(layer, head, position)`` triples (official Bernoulli vectors are masks of the space as they
are, :meth:`UnitSpace.from_official` validates them).

``apply_to`` reproduces a quirk of the official code on purpose and only when asked: it
applies the defining layout's *position indices* to another layout's sequences. The
official ``construct_indices(..., zero_shot=False)`` does exactly this: group and token
units keep their zero-shot positions (encoder 0..49, decoder 0..98) and are used as
positions of the one-shot sequences (where position 1 is a patch of the example input, not
of the query), while ``head`` units cover the whole one-shot sequence. Hence::

    official construct_indices(g, zero_shot)  ==
        official_triples(UnitSpace.for_model(model, g, layout=zero_shot,
                                             apply_to=None if zero_shot else one_shot), mask)
"""

from __future__ import annotations

from typing import Any

from interp.canvas import PromptLayout
from interp.taskvectors.units import UnitSpace


def official_triples(space: UnitSpace, mask: Any, layout: PromptLayout | None = None) -> list[tuple[int, int, int]]:
    """The official ``(layer, head, position)`` list of a 1-D mask, in the official order.

    Layers are numbered encoder ``0..L_enc-1`` then decoder ``L_enc..``; positions are of
    the :attr:`target` layout's sequences (pass ``layout`` only to assert which that is).
    Order: active units ascending, then heads, then positions ascending.
    """
    if layout is not None:
        space.check_target(layout)
    mask = space.from_official(mask)
    if mask.dim() != 1:
        raise ValueError(f"official_triples takes one sample [units], got shape {tuple(mask.shape)}")
    triples: list[tuple[int, int, int]] = []
    for i in mask.nonzero().flatten().tolist():
        unit = space.unit(i)
        layer = unit.layer + (space.n_enc_layers if unit.stack == "decoder" else 0)
        _, heads, positions = space.unit_cells(i)
        triples += [(layer, h, p) for h in heads for p in positions]
    return triples
