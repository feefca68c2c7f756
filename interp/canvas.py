"""The visual-prompt canvas: grid geometry, quadrants, slots and prompt layouts.

A visual prompt is one image holding a 2x2 grid of cells on a white background::

    +----------------+----------------+
    | example_input  | example_output |
    +----------------+----------------+
    | query          | target (hidden)|
    +----------------+----------------+

Each cell is ``canvas // 2 - padding`` pixels; the cells sit in the corners, so the
``2 * padding`` pixels between them stay white (224 canvas, padding 1: 111-px cells).

Every token of the model is addressed by its **slot**: 0 is CLS, ``1 + p`` is patch ``p``
(row-major over the patch grid). A :class:`PromptLayout` says which slots the encoder and
the decoder sequences hold, in order, so that activations collected under one layout can be
compared with or patched into another by slot instead of by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Literal

import torch
from torch import Tensor

from interp.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

QUADRANTS = ("example_input", "example_output", "query", "target")
Quadrant = Literal["example_input", "example_output", "query", "target"]
Stack = Literal["encoder", "decoder"]
CLS_SLOT = 0


def normalize(images: Tensor) -> Tensor:
    """ImageNet-normalise images in [0, 1], channels at dim -3."""
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


def denormalize(canvas: Tensor) -> Tensor:
    """Inverse of :func:`normalize`: back to [0, 1] pixel values (not clamped)."""
    mean = canvas.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = canvas.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return canvas * std + mean


@dataclass(frozen=True)
class CanvasGrid:
    """Geometry of a square canvas cut into patches and a 2x2 grid of cells."""

    canvas_size: int = 224
    patch_size: int = 16
    padding: int = 1

    def __post_init__(self) -> None:
        if self.canvas_size % self.patch_size:
            raise ValueError(
                f"canvas_size {self.canvas_size} is not a multiple of patch_size "
                f"{self.patch_size}; choose sizes that tile, e.g. 224/16 or 64/8"
            )
        if (self.canvas_size // self.patch_size) % 2:
            raise ValueError(
                f"{self.canvas_size // self.patch_size} patches per side cannot be split into "
                "quadrants; use an even number of patches per side"
            )
        if not 0 <= self.padding < self.canvas_size // 4:
            raise ValueError(f"padding {self.padding} must be in [0, canvas_size/4)")

    @property
    def patches_per_side(self) -> int:
        return self.canvas_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.patches_per_side**2

    @property
    def num_slots(self) -> int:
        """CLS plus every patch."""
        return self.num_patches + 1

    @property
    def cell_size(self) -> int:
        return self.canvas_size // 2 - self.padding

    def cell_origin(self, quadrant: Quadrant) -> tuple[int, int]:
        """(top, left) pixel of a quadrant's cell."""
        row, col = divmod(_quadrant_index(quadrant), 2)
        far = self.canvas_size - self.cell_size
        return (far if row else 0, far if col else 0)

    def cell(self, canvas: Tensor, quadrant: Quadrant) -> Tensor:
        """The pixels of one cell, ``[..., C, cell, cell]`` (a view)."""
        top, left = self.cell_origin(quadrant)
        return canvas[..., top : top + self.cell_size, left : left + self.cell_size]

    def quadrant_patches(self, quadrant: Quadrant) -> tuple[int, ...]:
        """Row-major patch indices of a quadrant (the 7x7 block of a 14x14 grid)."""
        row, col = divmod(_quadrant_index(quadrant), 2)
        half = self.patches_per_side // 2
        return tuple(
            r * self.patches_per_side + c
            for r in range(row * half, (row + 1) * half)
            for c in range(col * half, (col + 1) * half)
        )

    def quadrant_slots(self, quadrant: Quadrant) -> tuple[int, ...]:
        return tuple(1 + p for p in self.quadrant_patches(quadrant))

    @cached_property
    def slot_quadrant(self) -> tuple[str, ...]:
        """Name of the group each slot belongs to: 'cls' or a quadrant name."""
        names = ["cls"] * self.num_slots
        for quadrant in QUADRANTS:
            for slot in self.quadrant_slots(quadrant):
                names[slot] = quadrant
        return tuple(names)

    def patch_image(self, canvas: Tensor) -> Tensor:
        """Cut a canvas ``[B, C, H, W]`` into patches ``[B, num_patches, C, p, p]``."""
        b, c, _, _ = canvas.shape
        n, p = self.patches_per_side, self.patch_size
        x = canvas.reshape(b, c, n, p, n, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, n * n, c, p, p)


def _quadrant_index(quadrant: str) -> int:
    try:
        return QUADRANTS.index(quadrant)
    except ValueError:
        raise ValueError(f"unknown quadrant {quadrant!r}; expected one of {QUADRANTS}") from None


@dataclass(frozen=True)
class PromptLayout:
    """Which canvas slots the encoder and the decoder see, in sequence order.

    ``encoder_patches`` are the visible patches (the encoder gets CLS + these);
    ``decoder_patches`` are the patches the decoder sequence holds (CLS + these), a superset
    of the visible ones; the decoder predicts a code for each of them, and the rest of them,
    ``masked_patches``, are filled with the mask token. Both are kept ascending, as in the
    official evaluation order.
    """

    name: str
    grid: CanvasGrid
    encoder_patches: tuple[int, ...]
    decoder_patches: tuple[int, ...]

    def __post_init__(self) -> None:
        for field, patches in (("encoder", self.encoder_patches), ("decoder", self.decoder_patches)):
            if list(patches) != sorted(set(patches)):
                raise ValueError(f"{field} patches of layout {self.name!r} must be ascending and unique")
            if patches and not 0 <= patches[0] <= patches[-1] < self.grid.num_patches:
                raise ValueError(
                    f"{field} patches of layout {self.name!r} must lie in [0, {self.grid.num_patches})"
                )
        if not set(self.encoder_patches) <= set(self.decoder_patches):
            raise ValueError(f"layout {self.name!r}: every visible patch must be in the decoder sequence")

    @property
    def masked_patches(self) -> tuple[int, ...]:
        visible = set(self.encoder_patches)
        return tuple(p for p in self.decoder_patches if p not in visible)

    @property
    def encoder_slots(self) -> tuple[int, ...]:
        """Slot of each encoder position: CLS, then the visible patches."""
        return (CLS_SLOT, *(1 + p for p in self.encoder_patches))

    @property
    def decoder_slots(self) -> tuple[int, ...]:
        """Slot of each decoder position: CLS, then the decoder patches."""
        return (CLS_SLOT, *(1 + p for p in self.decoder_patches))

    def slots(self, stack: Stack) -> tuple[int, ...]:
        if stack == "encoder":
            return self.encoder_slots
        if stack == "decoder":
            return self.decoder_slots
        raise ValueError(f"unknown stack {stack!r}; expected 'encoder' or 'decoder'")

    def positions(self, stack: Stack, slots: Iterable[int]) -> list[int]:
        """Sequence positions of the given slots in one stack (error if a slot is absent)."""
        index = {slot: i for i, slot in enumerate(self.slots(stack))}
        missing = [s for s in slots if s not in index]
        if missing:
            raise ValueError(f"layout {self.name!r} has no {stack} tokens at slots {missing[:10]}")
        return [index[s] for s in slots]

    def token_groups(self, stack: Stack) -> dict[str, tuple[int, ...]]:
        """Sequence positions per token group ('cls' and each quadrant present), in canvas order."""
        groups: dict[str, list[int]] = {}
        for position, slot in enumerate(self.slots(stack)):
            groups.setdefault(self.grid.slot_quadrant[slot], []).append(position)
        order = ("cls", *QUADRANTS)
        return {name: tuple(groups[name]) for name in order if name in groups}

    def to_dict(self) -> dict:
        """JSON-able description (name, grid, patch lists); inverse of :meth:`from_dict`."""
        grid = self.grid
        return {
            "name": self.name, "canvas_size": grid.canvas_size, "patch_size": grid.patch_size,
            "padding": grid.padding, "encoder_patches": list(self.encoder_patches),
            "decoder_patches": list(self.decoder_patches),
        }

    @classmethod
    def from_dict(cls, d: dict) -> PromptLayout:
        grid = CanvasGrid(d["canvas_size"], d["patch_size"], d.get("padding", 1))
        return cls(d["name"], grid, tuple(d["encoder_patches"]), tuple(d["decoder_patches"]))

    def mask(self) -> Tensor:
        """Official-style mask over all patches: 1 = hidden from the encoder, ``[num_patches]``."""
        mask = torch.ones(self.grid.num_patches)
        mask[list(self.encoder_patches)] = 0
        return mask


def one_shot(grid: CanvasGrid = CanvasGrid()) -> PromptLayout:
    """Encoder sees every patch but the target cell; decoder sees all slots."""
    target = set(grid.quadrant_patches("target"))
    visible = tuple(p for p in range(grid.num_patches) if p not in target)
    return PromptLayout("one_shot", grid, visible, tuple(range(grid.num_patches)))


def zero_shot(grid: CanvasGrid = CanvasGrid()) -> PromptLayout:
    """No example pair: encoder sees the query cell only; decoder sees the bottom half."""
    query = grid.quadrant_patches("query")
    bottom = tuple(sorted(query + grid.quadrant_patches("target")))
    return PromptLayout("zero_shot", grid, query, bottom)


def custom_layout(
    grid: CanvasGrid,
    visible: Iterable[int],
    decoder: Iterable[int] | None = None,
    name: str = "custom",
) -> PromptLayout:
    """A layout from any set of visible patches (decoder: all patches unless given)."""
    decoder_patches = range(grid.num_patches) if decoder is None else decoder
    return PromptLayout(name, grid, tuple(sorted(set(visible))), tuple(sorted(set(decoder_patches))))


LAYOUTS = {"one_shot": one_shot, "zero_shot": zero_shot}


def get_layout(layout: PromptLayout | str, grid: CanvasGrid) -> PromptLayout:
    """Resolve a layout given by name ('one_shot', 'zero_shot') for a grid, checking geometry."""
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise InputError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)} or a PromptLayout")
        return LAYOUTS[layout](grid)
    if not isinstance(layout, PromptLayout):
        raise InputError(f"layout must be one of {sorted(LAYOUTS)} or a PromptLayout, got {type(layout).__name__}")
    if layout.grid.patches_per_side != grid.patches_per_side or layout.grid.canvas_size != grid.canvas_size:
        raise InputError(
            f"layout {layout.name!r} is for a {layout.grid.canvas_size}px canvas with "
            f"{layout.grid.patch_size}px patches, the model for {grid.canvas_size}px / {grid.patch_size}px"
        )
    return layout


def assemble_canvas(
    example_input: Tensor,
    example_output: Tensor,
    query: Tensor,
    target: Tensor | None = None,
    grid: CanvasGrid = CanvasGrid(),
    normalized: bool = True,
) -> Tensor:
    """Place four cells ``[..., 3, cell, cell]`` in [0, 1] on a white canvas.

    ``target`` may be None (the model never sees it; the cell stays white). Cells of another
    size are resized bilinearly. Returns ``[..., 3, canvas, canvas]``, ImageNet-normalised
    unless ``normalized=False``.
    """
    cells = dict(zip(QUADRANTS, (example_input, example_output, query, target)))
    reference = example_input
    canvas = reference.new_ones((*reference.shape[:-3], 3, grid.canvas_size, grid.canvas_size))
    for quadrant, image in cells.items():
        if image is None:
            continue
        if image.shape[-3] != 3:
            raise ValueError(f"{quadrant} cell has {image.shape[-3]} channels; expected 3 (RGB)")
        grid.cell(canvas, quadrant)[...] = resize_cell(image, grid.cell_size)
    return normalize(canvas) if normalized else canvas


def resize_cell(image: Tensor, size: int) -> Tensor:
    """Bilinearly resize ``[..., C, h, w]`` to ``size x size`` (no-op when already that size)."""
    if image.shape[-2:] == (size, size):
        return image
    lead = image.shape[:-3]
    flat = image.reshape(-1, *image.shape[-3:]).float()
    out = torch.nn.functional.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return out.reshape(*lead, *out.shape[-3:]).to(image.dtype)

