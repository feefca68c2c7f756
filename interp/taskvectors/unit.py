"""One unit of a unit space, the names a space is built from (granularities, token groups, stacks),
and the hook names of a stack's layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from interp.canvas import QUADRANTS, Stack

Granularity = Literal["layer", "head", "group", "token"]
GRANULARITIES: tuple[str, ...] = ("layer", "head", "group", "token")
OFFICIAL_GRANULARITY = {"head": 0, "group": 1, "token": 2}
ENCODER_GROUPS: tuple[str, ...] = ("cls", "query")
DECODER_GROUPS: tuple[str, ...] = ("cls", "query", "target")
GROUP_NAMES: tuple[str, ...] = ("cls", *QUADRANTS)
STACKS: tuple[Stack, ...] = ("encoder", "decoder")


def site_name(stack: str, layer: int, hook: str = "attn.hook_z") -> str:
    """Hook name of one layer's site: ``encoder.blocks.3.attn.hook_z``."""
    return f"{stack}.blocks.{layer}.{hook}"


def stack_of(site: str) -> str:
    """The stack of a hook name (``"encoder"`` for ``encoder.blocks.3.attn.hook_z``); a ValueError
    for a hook point outside the stacks (its dim 1 would not be a sequence position)."""
    stack = site.split(".", 1)[0]
    if stack not in STACKS:
        raise ValueError(
            f"site {site!r} is not inside a stack; activation statistics need "
            "'encoder.…' or 'decoder.…' hook points whose dim 1 is the sequence position"
        )
    return stack


@dataclass(frozen=True)
class Unit:
    """One Bernoulli variable: a layer (and head, group or token) of one stack.

    ``layer`` counts within the stack; ``head`` is None at granularity ``layer``; ``group`` is
    set only at ``group``, ``token`` (a position of the defining layout) only at ``token``.
    """

    index: int
    stack: Stack
    layer: int
    head: int | None = None
    group: str | None = None
    token: int | None = None

    @property
    def site(self) -> str:
        """The ``hook_z`` this unit patches."""
        return site_name(self.stack, self.layer)

    def __str__(self) -> str:
        parts = [f"{self.stack} L{self.layer}"]
        if self.head is not None:
            parts.append(f"H{self.head}")
        if self.group is not None:
            parts.append(self.group)
        if self.token is not None:
            parts.append(f"token {self.token}")
        return " ".join(parts)
