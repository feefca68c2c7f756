"""Unit spaces: what one Bernoulli variable of a task-vector search switches on.

A *unit* is a set of ``(position, head)`` cells of one attention layer's ``hook_z`` that is
patched as a whole. A :class:`UnitSpace` numbers all units of a model at one granularity:

===========  ============================================  =================================
granularity  one unit is                                   official ``construct_indices``
===========  ============================================  =================================
``layer``    every head of a layer, every position         (none)
``head``     one head, every position                      granularity 0
``group``    one head, one token group                     granularity 1
``token``    one head, one sequence position               granularity 2
===========  ============================================  =================================

The numbering *is* the official order, generalised to any depth and head count: encoder
layers first, then decoder layers; within a layer head-major, then group / token. For the
full model at ``group``: encoder ``l*32 + h*2 + g`` with groups (cls, query), then decoder
``768 + l*48 + h*3 + g`` with groups (cls, query, target). So an official Bernoulli vector
is a mask of this space as it is (:meth:`UnitSpace.from_official` only validates it).

**Which positions a unit covers.** A space is built for a *defining* layout (``layout``,
zero-shot by default, as in the paper): its token groups and its sequence lengths give the
``group`` and ``token`` units, as positions of that layout's encoder / decoder sequence.
Group names resolve by slot (``"query"`` is the query cell wherever a layout puts it), so a
space built for the one-shot layout patches the one-shot query tokens.

``apply_to`` reproduces a quirk of the official code on purpose and only when asked (see
:mod:`interp.taskvectors.unit_maps`, which also maps a mask to the official ``(layer, head,
position)`` triples).

Patching (:mod:`interp.taskvectors.patching`) runs a forward in the space's
:attr:`UnitSpace.target` layout (``apply_to`` if given, else ``layout``) and replaces the
covered cells by task means looked up *by slot* of that forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from interp.canvas import CanvasGrid, PromptLayout, Stack, zero_shot
from interp.errors import InputError
from interp.models.protocol import PromptModel, StackInfo
from interp.taskvectors.unit import (
    DECODER_GROUPS, ENCODER_GROUPS, GRANULARITIES, GROUP_NAMES, OFFICIAL_GRANULARITY, STACKS, Granularity, Unit,
    site_name,
)


def _listing(values: Sequence[Any]) -> str:
    """``0..11`` for a run of integers, else the values themselves."""
    if len(values) > 2 and all(isinstance(v, int) for v in values) and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(repr, values))


class UnitSpaceMismatchError(InputError):
    """A unit space (of a policy, a mask) built for another model than the one it is used with."""


@dataclass(frozen=True)
class UnitSpace:
    """All units of a model at one granularity, numbered in the official order.

    Prefer :meth:`for_model`. ``layout`` defines group and token units (positions of its
    sequences); ``apply_to`` (rarely wanted) reuses those position indices in another
    layout's sequences, as the official code does with ``zero_shot=False``.
    """

    granularity: Granularity
    n_enc_layers: int
    n_dec_layers: int
    n_heads: int
    layout: PromptLayout = field(default_factory=lambda: zero_shot(CanvasGrid()))  # default: 224 px / 16 px grid
    apply_to: PromptLayout | None = None
    enc_groups: tuple[str, ...] = ENCODER_GROUPS
    dec_groups: tuple[str, ...] = DECODER_GROUPS
    n_dec_heads: int | None = None  # decoder heads when they differ from the encoder's (None: the same)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise InputError(f"unknown granularity {self.granularity!r}; expected one of {GRANULARITIES}")
        # validated, never rewritten (a frozen dataclass): pass tuples, or use for_model / from_dict
        for name in ("n_enc_layers", "n_dec_layers", "n_heads", "n_dec_heads"):
            value = getattr(self, name)
            if (value is not None or name != "n_dec_heads") and (not isinstance(value, int) or value < (0 if "layers" in name else 1)):
                raise InputError(f"{name} must be a non-negative int (heads: positive), got {value!r}")
        for name in ("enc_groups", "dec_groups"):
            if not isinstance(getattr(self, name), tuple):
                raise TypeError(f"{name} must be a tuple of group names, got {getattr(self, name)!r}")
        if not isinstance(self.layout, PromptLayout):
            raise TypeError(f"layout must be a PromptLayout (interp.canvas.get_layout), got {self.layout!r}")
        if self.apply_to is not None and self.apply_to.grid != self.layout.grid:
            raise InputError("layout and apply_to are for different canvas grids; build both for the model's grid")
        if self.granularity == "group":
            for stack, groups in (("encoder", self.enc_groups), ("decoder", self.dec_groups)):
                unknown = [g for g in groups if g not in GROUP_NAMES]
                if unknown or len(set(groups)) != len(groups) or not groups:
                    raise InputError(
                        f"{stack} groups {groups} must be distinct names from {GROUP_NAMES}"
                    )
                present = self.layout.token_groups(stack)
                absent = [g for g in groups if g not in present]
                if absent:
                    raise InputError(
                        f"layout {self.layout.name!r} has no {stack} tokens in group(s) {absent}; "
                        f"choose {stack} groups among {tuple(present)}"
                    )
        if self.apply_to is not None and self.granularity in ("group", "token"):
            for stack in STACKS:
                n_def, n_target = len(self.layout.slots(stack)), len(self.apply_to.slots(stack))
                if n_def > n_target:
                    raise InputError(
                        f"apply_to={self.apply_to.name!r} has {n_target} {stack} positions, fewer than the "
                        f"{n_def} of layout {self.layout.name!r}: position indices cannot be reused"
                    )

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def for_model(
        cls,
        model: PromptModel,
        granularity: Granularity,
        layout: PromptLayout | str = "zero_shot",
        apply_to: PromptLayout | str | None = None,
        enc_groups: Sequence[str] = ENCODER_GROUPS,
        dec_groups: Sequence[str] = DECODER_GROUPS,
    ) -> UnitSpace:
        """The unit space of a :class:`~interp.models.PromptModel` (layers and heads of its stacks).

        ``layout`` defines the group / token units (zero-shot, as the paper patches zero-shot
        forwards); ``apply_to`` reuses their position indices in another layout (the official
        one-shot quirk, see the module docstring).
        """
        enc, dec = _stacks(model)
        return cls(
            granularity,
            enc.layers,
            dec.layers,
            enc.heads,
            layout=model.layout(layout),
            apply_to=None if apply_to is None else model.layout(apply_to),
            enc_groups=tuple(enc_groups),
            dec_groups=tuple(dec_groups),
            n_dec_heads=dec.heads,
        )

    def check_model(self, model: PromptModel) -> None:
        """Raise a ValueError when this space does not fit a model's layers, heads or grid."""
        enc, dec = _stacks(model)
        mine = (self.n_enc_layers, self.n_dec_layers, self.n_heads, self.heads("decoder"))
        theirs = (enc.layers, dec.layers, enc.heads, dec.heads)
        fix = ("Use a policy or space made for this model (UnitSpace.for_model(model, ...)), or pass the --model "
               "it was searched with")
        if mine != theirs:
            raise UnitSpaceMismatchError(
                f"unit space has (enc layers, dec layers, enc heads, dec heads) = {mine}, the model {theirs}", fix=fix)
        if self.layout.grid.num_patches != model.grid.num_patches:
            raise UnitSpaceMismatchError(
                f"unit space layout has {self.layout.grid.num_patches} patches, the model {model.grid.num_patches}", fix=fix)

    # --- sizes and order ------------------------------------------------------------------

    @property
    def target(self) -> PromptLayout:
        """The layout of the forwards this space patches (``apply_to`` or ``layout``)."""
        return self.apply_to if self.apply_to is not None else self.layout

    @property
    def official_granularity(self) -> int | None:
        """0, 1 or 2 as in the official code; None for ``layer`` (no official counterpart)."""
        return OFFICIAL_GRANULARITY.get(self.granularity)

    @property
    def enc_tokens(self) -> int:
        """Encoder sequence length of the defining layout (tokens per head at ``token``)."""
        return len(self.layout.encoder_slots)

    @property
    def dec_tokens(self) -> int:
        return len(self.layout.decoder_slots)

    def heads(self, stack: Stack) -> int:
        if stack == "encoder" or self.n_dec_heads is None:
            return self.n_heads
        return self.n_dec_heads

    def layers(self, stack: Stack) -> int:
        return self.n_enc_layers if stack == "encoder" else self.n_dec_layers

    def groups(self, stack: Stack) -> tuple[str, ...]:
        return self.enc_groups if stack == "encoder" else self.dec_groups

    def per_head(self, stack: Stack) -> int:
        """Units per head of a layer (1 at ``head``, the groups at ``group``, tokens at ``token``)."""
        if self.granularity == "group":
            return len(self.groups(stack))
        if self.granularity == "token":
            return self.enc_tokens if stack == "encoder" else self.dec_tokens
        return 1

    def per_layer(self, stack: Stack) -> int:
        if self.granularity == "layer":
            return 1
        return self.heads(stack) * self.per_head(stack)

    def offset(self, stack: Stack) -> int:
        """Index of the first unit of a stack (0 for the encoder)."""
        return 0 if stack == "encoder" else self.n_enc_layers * self.per_layer("encoder")

    def __len__(self) -> int:
        return self.offset("decoder") + self.n_dec_layers * self.per_layer("decoder")

    @property
    def sites(self) -> list[str]:
        """Hook names of every layer, encoder first (the order of the units)."""
        return [site_name(s, layer) for s in STACKS for layer in range(self.layers(s))]

    def unit_range(self, site: str) -> tuple[int, int]:
        """``(start, stop)``: the units of one site (a layer) are contiguous in the order."""
        stack, _, layer, *_ = site.split(".")
        if stack not in STACKS or not 0 <= int(layer) < self.layers(stack):  # type: ignore[arg-type]
            raise KeyError(f"{site!r} is not a layer of this space; see UnitSpace.sites")
        start = self.offset(stack) + int(layer) * self.per_layer(stack)  # type: ignore[arg-type]
        return start, start + self.per_layer(stack)  # type: ignore[arg-type]

    def index(
        self, stack: Stack, layer: int, head: int | None = None, group: str | None = None, token: int | None = None
    ) -> int:
        """The index of one unit; give exactly the fields this granularity has."""
        if stack not in STACKS:
            raise InputError(f"unknown stack {stack!r}; expected 'encoder' or 'decoder'")
        if not 0 <= layer < self.layers(stack):
            raise InputError(f"{stack} layer {layer} out of range [0, {self.layers(stack)})")
        wants = {"head": self.granularity != "layer", "group": self.granularity == "group",
                 "token": self.granularity == "token"}
        given = {"head": head is not None, "group": group is not None, "token": token is not None}
        if wants != given:
            need = [k for k, v in wants.items() if v]
            raise InputError(f"a {self.granularity!r} unit is addressed by stack, layer and {need or 'nothing more'}")
        local = 0
        if head is not None:
            if not 0 <= head < self.heads(stack):
                raise InputError(f"{stack} head {head} out of range [0, {self.heads(stack)})")
            local = head * self.per_head(stack)
        if group is not None:
            if group not in self.groups(stack):
                raise InputError(f"{stack} group {group!r} is not a unit group; expected one of {self.groups(stack)}")
            local += self.groups(stack).index(group)
        if token is not None:
            if not 0 <= token < self.per_head(stack):
                raise InputError(f"{stack} token {token} out of range [0, {self.per_head(stack)})")
            local += token
        return self.offset(stack) + layer * self.per_layer(stack) + local

    def unit(self, i: int) -> Unit:
        """The :class:`Unit` record of index ``i`` (decoded arithmetically, no list needed)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"unit {i} out of range for a space of {n} units")
        i = int(i) % n
        stack: Stack = "encoder" if i < self.offset("decoder") else "decoder"
        layer, local = divmod(i - self.offset(stack), self.per_layer(stack))
        if self.granularity == "layer":
            return Unit(i, stack, layer)
        head, sub = divmod(local, self.per_head(stack))
        if self.granularity == "group":
            return Unit(i, stack, layer, head, group=self.groups(stack)[sub])
        if self.granularity == "token":
            return Unit(i, stack, layer, head, token=sub)
        return Unit(i, stack, layer, head)

    @cached_property
    def units(self) -> list[Unit]:
        """Every unit, in index order."""
        return [self.unit(i) for i in range(len(self))]

    def describe(self, i: int) -> str:
        """Readable name of unit ``i``, e.g. ``'unit 37: encoder L1 H2 query (12 positions)'``."""
        unit = self.unit(i)
        n = len(self._positions(unit.stack, unit.group, unit.token))
        where = self.target.name
        if self.apply_to is not None and unit.head is not None and self.granularity != "head":
            where = f"{self.layout.name}, reused as indices in {self.apply_to.name}"
        heads = f" x {self.heads(unit.stack)} heads" if unit.head is None else ""
        return f"unit {unit.index}: {unit} ({n} position{'s' if n != 1 else ''}{heads} of {where})"

    def select(
        self,
        stack: Stack | None = None,
        layer: int | Sequence[int] | None = None,
        head: int | Sequence[int] | None = None,
        group: str | Sequence[str] | None = None,
        token: int | Sequence[int] | None = None,
    ) -> Tensor:
        """Bool mask ``[len(self)]`` of the units matching every given field (None = any).

        A value no unit of this space has (``group="traget"``, ``layer=99``), or a combination
        that matches no unit, is an :class:`~interp.errors.InputError` naming the valid values:
        an empty mask would patch nothing and look like a task-vector run."""
        wanted = {"stack": stack, "layer": layer, "head": head, "group": group, "token": token}
        for name, value in wanted.items():
            values = value if isinstance(value, (list, tuple, range)) else (value,)
            if value is not None and any(not _is_index(v, named=name in ("stack", "group")) for v in values):
                kind = "a name" if name in ("stack", "group") else "an integer"
                example = {"stack": "'decoder'", "group": "'target'"}.get(name, "0")
                raise InputError(f"select({name}={value!r}): {name} must be {kind} or a list of them",
                                 fix=f"Pass e.g. select({name}={example})")
        wanted = {k: tuple(v if isinstance(v, str) else int(v) for v in (vs if isinstance(vs, (list, tuple, range)) else (vs,)))
                  for k, vs in wanted.items() if vs is not None}
        for name, values in wanted.items():
            present = sorted({getattr(u, name) for u in self.units} - {None})
            unknown = [v for v in values if v not in present]
            if unknown:
                valid = f"valid: {_listing(present)}" if present else f"a {self.granularity!r} space has no {name}s"
                raise InputError(f"select({name}={unknown[0]!r}) matches no unit of {self!r}; {valid}")
        mask = torch.tensor([all(getattr(u, k) in v for k, v in wanted.items()) for u in self.units], dtype=torch.bool)
        if wanted and not mask.any():
            raise InputError(f"no unit of {self!r} has all of {wanted}", fix="check the per-stack layer and head counts")
        return mask

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the space without a model (JSON-able); stored with
        every saved policy so that readers never guess which units its logits cover."""
        return {
            "granularity": self.granularity, "n_enc_layers": self.n_enc_layers, "n_dec_layers": self.n_dec_layers,
            "n_heads": self.n_heads, "n_dec_heads": self.n_dec_heads, "enc_groups": list(self.enc_groups),
            "dec_groups": list(self.dec_groups), "layout": self.layout.to_dict(),
            "apply_to": self.apply_to.to_dict() if self.apply_to is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnitSpace:
        """Inverse of :meth:`to_dict`; a missing field is a named error."""
        required = ("granularity", "n_enc_layers", "n_dec_layers", "n_heads", "layout")
        missing = [k for k in required if k not in d]
        if missing:
            raise InputError(f"unit space description lacks {missing}; write it with UnitSpace.to_dict()")
        return cls(
            d["granularity"], d["n_enc_layers"], d["n_dec_layers"], d["n_heads"],
            layout=PromptLayout.from_dict(d["layout"]),
            apply_to=PromptLayout.from_dict(d["apply_to"]) if d.get("apply_to") else None,
            enc_groups=tuple(d.get("enc_groups", ENCODER_GROUPS)), dec_groups=tuple(d.get("dec_groups", DECODER_GROUPS)),
            n_dec_heads=d.get("n_dec_heads"),
        )

    def __repr__(self) -> str:
        apply = f", apply_to={self.apply_to.name!r}" if self.apply_to is not None else ""
        return (
            f"UnitSpace({self.granularity!r}, {len(self)} units, layers {self.n_enc_layers}+{self.n_dec_layers}, "
            f"heads {self.n_heads}/{self.heads('decoder')}, layout={self.layout.name!r}{apply})"
        )

    # --- official vectors -----------------------------------------------------------------

    def from_official(self, vector: Any) -> Tensor:
        """An official Bernoulli sample (0/1 floats, ``[..., units]``) as a bool mask of this space."""
        t = torch.as_tensor(np.asarray(vector) if not isinstance(vector, Tensor) else vector)
        if t.dim() == 0 or t.shape[-1] != len(self):
            raise InputError(
                f"unit mask (or official vector) has shape {tuple(t.shape)}; a {self.granularity!r} space of this model "
                f"has {len(self)} units (last dim). Is the granularity or the model right?"
            )
        if t.dtype != torch.bool:
            bad = t.real[(t != 0) & (t != 1)] if not t.is_complex() else t.real.flatten()
            if bad.numel():
                raise InputError(f"a unit mask must hold only 0 and 1 (Bernoulli outcomes), got {t.dtype} values such as "
                                 + ", ".join(f"{v:g}" for v in bad[:3].tolist()),
                                 fix="Threshold probabilities first (policy.mask(0.5)) or pass a bool mask")
            t = t != 0
        return t

    def to_official(self, mask: Tensor) -> Tensor:
        """A mask ``[..., units]`` as the official float 0/1 vector (same order)."""
        return self.from_official(mask).float()

    # --- positions ------------------------------------------------------------------------

    def _positions(self, stack: Stack, group: str | None, token: int | None) -> tuple[int, ...]:
        """Positions of the target layout's ``stack`` sequence one unit covers (ascending)."""
        if group is not None:
            return self.layout.token_groups(stack)[group]
        if token is not None:
            return (token,)
        return tuple(range(len(self.target.slots(stack))))

    def unit_cells(self, i: int) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
        """``(site, heads, positions)`` a unit patches in a forward of :attr:`target`."""
        unit = self.unit(i)
        heads = tuple(range(self.heads(unit.stack))) if unit.head is None else (unit.head,)
        return unit.site, heads, self._positions(unit.stack, unit.group, unit.token)

    def check_target(self, layout: PromptLayout) -> None:
        """Raise unless ``layout`` is the layout this space patches (same slots)."""
        target = self.target
        if layout.encoder_slots == target.encoder_slots and layout.decoder_slots == target.decoder_slots:
            return
        raise InputError(
            f"this {self.granularity!r} UnitSpace addresses positions of layout {target.name!r}, the forward "
            f"runs {layout.name!r}: build UnitSpace.for_model(model, {self.granularity!r}, layout={layout.name!r}) "
            f"to patch the same tokens by slot, or pass apply_to={layout.name!r} to reuse "
            f"{self.layout.name!r} position indices (the official quirk)"
        )

    def site_index(self) -> dict[str, Tensor]:
        """Per site, the unit covering each ``(position, head)`` of the target: ``[pos, head]`` long.

        Cells no unit covers hold ``len(self)``, so ``padded_mask[:, index]`` (with a False
        column appended to the mask) gives the ``[batch, pos, head]`` patch mask of a site
        in one gather. Cached.
        """
        if "site_index" not in self._cache:
            self._cache["site_index"] = self._site_index()
        return self._cache["site_index"]

    def _site_index(self) -> dict[str, Tensor]:
        n = len(self)
        maps: dict[str, Tensor] = {}
        for stack in STACKS:
            n_pos, n_heads = len(self.target.slots(stack)), self.heads(stack)
            per_head = self.per_head(stack)
            # local[pos, head]: index of the covering unit within its layer (n = none)
            if self.granularity == "layer":
                local = np.zeros((n_pos, n_heads), dtype=np.int64)
            elif self.granularity == "head":
                local = np.broadcast_to(np.arange(n_heads), (n_pos, n_heads)).copy()
            else:
                sub = np.full(n_pos, -1, dtype=np.int64)  # group / token of each position
                if self.granularity == "group":
                    groups = self.layout.token_groups(stack)
                    for g, name in enumerate(self.groups(stack)):
                        sub[list(groups[name])] = g
                else:
                    sub[: per_head] = np.arange(per_head)
                local = np.arange(n_heads)[None, :] * per_head + sub[:, None]
                local[sub < 0] = -1
            for layer in range(self.layers(stack)):
                base = self.offset(stack) + layer * self.per_layer(stack)
                maps[site_name(stack, layer)] = torch.from_numpy(np.where(local < 0, n, base + local))
        return maps


def _stacks(model: PromptModel) -> tuple[StackInfo, StackInfo]:
    """The encoder and decoder :class:`~interp.models.StackInfo` of a model (a unit space numbers both)."""
    stacks = model.stacks
    if tuple(stacks) != STACKS:
        raise InputError(f"a unit space numbers the stacks {STACKS}; the model has {tuple(stacks)}")
    return stacks["encoder"], stacks["decoder"]


def _is_index(value: Any, named: bool) -> bool:
    """A name (``named``) or an integer (numpy / 0-d tensor integers too), never a bool."""
    import operator

    if named or isinstance(value, (bool, str)):
        return named and isinstance(value, str)
    try:
        operator.index(value)
    except TypeError:
        return False
    return True
