"""An offline Pascal-5i analogue: procedurally drawn scenes with 20 shape classes.

Each class is a shape family (disk, square, triangle, ...) with a class-typical colour (hue,
saturation and value jittered a little per object), so the class can be read from shape and
colour — segmentation is learnable from the example, and colorization from context. A scene
is a textured background (gradient, stripes or value noise, plus grain), 0-2 distractor
objects of other classes behind, and 1-2 objects of the scene's *primary* class on top; the
mask of a class is the set of visible pixels of its objects. Classes are split like Pascal-5i:
fold ``f`` holds classes ``5f+1 .. 5f+5``; image ``i`` of a split has primary class
``1 + i mod 20`` (balanced classes) and is listed under that class only.

Determinism: image ``i`` of ``split`` is drawn from a ``torch.Generator`` seeded with
``derive_seed("synthetic", seed, split, i)``. Scene parameters are computed per image in
Python, and pixels only with exactly rounded tensor operations (+ - * / sqrt floor compare),
so an image is bitwise the same alone or inside any batch. The scene does not depend on the
resolution (only the pixel grain does): render at any size. Rendering is vectorised over the
batch and the objects (coordinate tests in each object's frame, grouped by shape family).
"""

from __future__ import annotations

import colorsys
import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

from interp.data.shapes import SHAPES
from interp.data.source import (
    NUM_CLASSES,
    SPLITS,
    DataError,
    Entry,
    PromptSource,
    Sample,
    check_fold,
    check_split,
    derive_seed,
    fold_classes,
)

#: synthetic seed of the held-out data (the demo's, the model card's); training of the tiny
#: model draws from other seeds
HELD_OUT_SEED = 1234

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "disk", "square", "triangle", "cross", "heart",            # fold 0
    "ring", "diamond", "pentagon", "bar", "crescent",          # fold 1
    "ellipse", "frame", "hexagon", "flower", "chevron",        # fold 2
    "half_disk", "star", "ell", "trapezoid", "bowtie",         # fold 3
)  # fmt: skip

#: class-typical colour (hue, saturation, value); hues step 7/20 of the wheel so folds mix colours
CLASS_HSV: tuple[tuple[float, float, float], ...] = tuple(
    (((k * 7) % NUM_CLASSES) / NUM_CLASSES, 0.9 if k % 2 == 0 else 0.6, 0.95 if (k // 2) % 2 == 0 else 0.72)
    for k in range(NUM_CLASSES)
)

MAX_PRIMARY = 2
MAX_DISTRACTORS = 2
OBJECT_SLOTS = MAX_DISTRACTORS + MAX_PRIMARY  # draw order: distractors, then primary objects
NOISE_GRID = 6  # value-noise control points per side (background and object texture)
_UNIFORMS = 64  # uniforms drawn per scene (fixed, so adding a parameter never shifts others)
_PIXEL_BUDGET = 1 << 21  # pixels per rendering chunk (images x S x S)


# ---------------------------------------------------------------------------------------------
# scene parameters (pure Python per image: independent of batching)


def _scene_params(u: Sequence[float], primary: int) -> dict:
    """Objects (in draw order) and background of one scene from its uniforms."""
    draws = iter(u)
    take = lambda: next(draws)  # noqa: E731
    n_primary = 2 if take() < 0.25 else 1
    n_distractors = min(int(take() * 3), MAX_DISTRACTORS)
    objects = []
    for slot in range(OBJECT_SLOTS):
        is_primary = slot >= MAX_DISTRACTORS
        other = 1 + (primary + min(int(take() * (NUM_CLASSES - 1)), NUM_CLASSES - 2)) % NUM_CLASSES
        cls = primary if is_primary else other  # other != primary by construction
        present = slot - MAX_DISTRACTORS < n_primary if is_primary else slot < n_distractors
        low, high = (0.5, 0.75) if is_primary and n_primary == 1 else (0.34, 0.5) if is_primary else (0.2, 0.36)
        cx, cy = -0.5 + 1.0 * take(), -0.5 + 1.0 * take()
        radius = low + (high - low) * take()
        angle = 2 * math.pi * take()
        h, s, v = CLASS_HSV[cls - 1]
        h = (h + (take() - 0.5) * 0.06) % 1.0
        s = min(max(s + (take() - 0.5) * 0.2, 0.0), 1.0)
        v = min(max(v + (take() - 0.5) * 0.2, 0.0), 1.0)
        shade_angle, shade_amp, texture = 2 * math.pi * take(), 0.25 * take(), 0.1 + 0.25 * take()
        objects.append(
            {
                "cls": cls,
                "present": present,
                "cx": cx,
                "cy": cy,
                "radius": radius,
                "cos": math.cos(angle),
                "sin": math.sin(angle),
                "rgb": colorsys.hsv_to_rgb(h, s, v),
                "shade": (shade_amp * math.cos(shade_angle), shade_amp * math.sin(shade_angle)),
                "texture": texture,
            }
        )
    kind = min(int(take() * 3), 2)  # 0 gradient, 1 stripes, 2 value noise
    colours = []
    for _ in range(2):
        rgb = [0.15 + 0.7 * take() for _ in range(3)]
        mean = sum(rgb) / 3
        colours.append([mean + 0.45 * (c - mean) for c in rgb])  # desaturated: objects stand out
    direction = 2 * math.pi * take()
    background = {
        "kind": kind,
        "c1": colours[0],
        "c2": colours[1],
        "dir": (math.cos(direction), math.sin(direction)),
        "freq": 1.5 + 4.0 * take(),
        "phase": take(),
        "grain": 0.02 + 0.05 * take(),
    }
    return {"objects": objects, "background": background}


def _value_noise(grid: Tensor, size: int) -> Tensor:
    """Bilinear upsampling of control points ``[B, G, G]`` to ``[B, S, S]`` (exact ops only)."""
    g = grid.shape[-1]
    pos = (torch.arange(size, dtype=torch.float32) + 0.5) / size * (g - 1)  # [S]
    i0 = pos.floor().clamp(max=g - 2).long()
    f = pos - i0.float()
    rows0, rows1 = grid[:, i0], grid[:, i0 + 1]  # [B, S, G]
    top = rows0[:, :, i0] * (1 - f) + rows0[:, :, i0 + 1] * f  # [B, S, S]
    bottom = rows1[:, :, i0] * (1 - f) + rows1[:, :, i0 + 1] * f
    fy = f.view(1, size, 1)
    return top * (1 - fy) + bottom * fy


def render_scenes(scenes: Sequence[dict], noise: Tensor, grain: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Draw scenes: ``noise [B, 2, G, G]`` control points, ``grain [B, S, S]`` in [0, 1].

    Returns images ``[B, 3, S, S]`` in [0, 1] and label maps ``[B, S, S]`` uint8 (0 background,
    else the class id of the visible object).
    """
    b, k = len(scenes), OBJECT_SLOTS
    obj = [[scene["objects"][j] for j in range(k)] for scene in scenes]
    field = lambda key: torch.tensor([[o[key] for o in row] for row in obj], dtype=torch.float32)  # noqa: E731
    cls = torch.tensor([[o["cls"] for o in row] for row in obj], dtype=torch.long)  # [B, K]
    present = torch.tensor([[o["present"] for o in row] for row in obj], dtype=torch.bool)
    cx, cy, radius = field("cx"), field("cy"), field("radius")
    cos, sin, texture = field("cos"), field("sin"), field("texture")
    rgb = torch.tensor([[o["rgb"] for o in row] for row in obj], dtype=torch.float32)  # [B, K, 3]
    shade = torch.tensor([[o["shade"] for o in row] for row in obj], dtype=torch.float32)  # [B, K, 2]

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    x, y = coords.view(1, 1, 1, size), coords.view(1, 1, size, 1)
    e = lambda t: t[..., None, None]  # noqa: E731  [B, K] -> [B, K, 1, 1]
    dx, dy = x - e(cx), y - e(cy)  # [B, K, 1, S], [B, K, S, 1]
    lx = (dx * e(cos) + dy * e(sin)) / e(radius)  # [B, K, S, S], object frame
    ly = (dy * e(cos) - dx * e(sin)) / e(radius)
    inside = torch.zeros(b, k, size, size, dtype=torch.bool)
    for family in torch.unique(cls[present]).tolist():
        select = present & (cls == family)
        inside[select] = SHAPES[family - 1](lx[select], ly[select])

    bg = [scene["background"] for scene in scenes]
    c1 = torch.tensor([g["c1"] for g in bg], dtype=torch.float32)[:, :, None, None]  # [B, 3, 1, 1]
    c2 = torch.tensor([g["c2"] for g in bg], dtype=torch.float32)[:, :, None, None]
    ux = torch.tensor([g["dir"][0] for g in bg], dtype=torch.float32).view(b, 1, 1)
    uy = torch.tensor([g["dir"][1] for g in bg], dtype=torch.float32).view(b, 1, 1)
    freq = torch.tensor([g["freq"] for g in bg], dtype=torch.float32).view(b, 1, 1)
    phase = torch.tensor([g["phase"] for g in bg], dtype=torch.float32).view(b, 1, 1)
    kind = torch.tensor([g["kind"] for g in bg], dtype=torch.long).view(b, 1, 1)
    amp = torch.tensor([g["grain"] for g in bg], dtype=torch.float32).view(b, 1, 1, 1)
    proj = x[0] * ux + y[0] * uy  # [B, S, S]
    gradient = (proj * 0.35 + 0.5).clamp(0, 1)
    wave = proj * freq + phase
    tri = ((wave - wave.floor()) * 2 - 1).abs()
    stripes = tri * tri * (3 - tri * 2)
    textures = _value_noise(noise.reshape(b * 2, *noise.shape[-2:]), size).view(b, 2, size, size)
    t = torch.where(kind == 0, gradient, torch.where(kind == 1, stripes, textures[:, 0]))
    image = c1 + (c2 - c1) * t[:, None]  # [B, 3, S, S]

    label = torch.zeros(b, size, size, dtype=torch.uint8)
    detail = (textures[:, 1] - 0.5)[:, None]  # [B, 1, S, S]
    for j in range(k):  # draw order
        light = (lx[:, j] * shade[:, j, 0, None, None] + ly[:, j] * shade[:, j, 1, None, None] + 1).clamp(min=0.5)
        colour = rgb[:, j, :, None, None] * light[:, None] * (detail * texture[:, j, None, None, None] + 1)
        image = torch.where(inside[:, j, None], colour, image)
        label = torch.where(inside[:, j], cls[:, j, None, None].to(torch.uint8), label)
    image = (image + (grain[:, None] - 0.5) * amp).clamp(0, 1)
    return image, label


# ---------------------------------------------------------------------------------------------
# the source


class SyntheticPascal(PromptSource):
    """Procedural Pascal-5i analogue behind the :class:`PromptSource` interface.

    ``size_per_split``: images per split (an int for both, or ``{"trn": ..., "val": ...}``);
    ``chunk``: most images drawn at once (also capped by a pixel budget). Names are
    ``"{split}_{index:06d}"``.
    """

    name = "synthetic"
    classes = SYNTHETIC_CLASSES

    def __init__(
        self,
        seed: int = 0,
        size_per_split: int | Mapping[str, int] = {"trn": 4000, "val": 1000},  # noqa: B006 (read-only)
        chunk: int = 512,
    ) -> None:
        self.seed = seed
        sizes = {s: size_per_split for s in SPLITS} if isinstance(size_per_split, int) else dict(size_per_split)
        if set(sizes) != set(SPLITS) or min(sizes.values()) < 2 * NUM_CLASSES:
            raise ValueError(
                f"size_per_split must give both {SPLITS} at least {2 * NUM_CLASSES} images "
                f"(two per class, for pairs); got {size_per_split!r}"
            )
        self.sizes = sizes
        self.chunk = chunk

    # -- naming -------------------------------------------------------------------------------

    def num_images(self, split: str) -> int:
        check_split(split)
        return self.sizes[split]

    @staticmethod
    def image_name(split: str, index: int) -> str:
        return f"{split}_{index:06d}"

    def parse_name(self, name: str) -> tuple[str, int]:
        split, _, index = name.partition("_")
        if split not in SPLITS or not index.isdigit() or not int(index) < self.sizes[split]:
            raise DataError(
                f"no synthetic image named {name!r}; names are '<split>_<index>' with split in "
                f"{SPLITS} and index below {self.sizes}"
            )
        return split, int(index)

    @staticmethod
    def primary_class(index: int) -> int:
        """Class id (1..20) of image ``index``'s primary objects."""
        return 1 + index % NUM_CLASSES

    def entries(self, fold: int, split: str = "val") -> list[Entry]:
        check_fold(fold)
        classes = set(fold_classes(fold))
        return [
            Entry(self.image_name(split, i), self.primary_class(i))
            for i in range(self.num_images(split))
            if self.primary_class(i) in classes
        ]

    # -- rendering ----------------------------------------------------------------------------

    def render(self, split: str, indices: Sequence[int], size: int) -> tuple[Tensor, Tensor]:
        """Images ``[N, 3, S, S]`` in [0, 1] and label maps ``[N, S, S]`` uint8 of some indices."""
        check_split(split)
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < self.sizes[split]]
        if bad:
            raise IndexError(f"synthetic {split} has {self.sizes[split]} images; no index {bad[0]}")
        images, labels = [], []
        step = max(1, min(self.chunk, _PIXEL_BUDGET // (size * size)))  # bounds peak memory
        for start in range(0, len(indices), step):
            scenes, noises, grains = [], [], []
            for i in indices[start : start + step]:
                generator = torch.Generator().manual_seed(derive_seed("synthetic", self.seed, split, i))
                u = torch.rand(_UNIFORMS, generator=generator, dtype=torch.float64).tolist()
                scenes.append(_scene_params(u, self.primary_class(i)))
                noises.append(torch.rand(2, NOISE_GRID, NOISE_GRID, generator=generator))
                grains.append(torch.rand(size, size, generator=generator))  # last: size-dependent
            image, label = render_scenes(scenes, torch.stack(noises), torch.stack(grains), size)
            images.append(image)
            labels.append(label)
        if not images:
            return torch.zeros(0, 3, size, size), torch.zeros(0, size, size, dtype=torch.uint8)
        return torch.cat(images), torch.cat(labels)

    def plain_images(self, split: str = "trn", indices: Sequence[int] | None = None, size: int = 64) -> Tensor:
        """Whole images ``[N, 3, S, S]`` in [0, 1] (all of the split unless ``indices``)."""
        if indices is None:
            indices = range(self.num_images(split))
        return self.render(split, indices, size)[0]

    def load(self, name: str, class_id: int, size: int) -> Sample:
        split, index = self.parse_name(name)
        image, label = self.render(split, [index], size)
        return Sample(image=image[0], mask=label[0] == class_id, class_id=class_id, name=name)

    def load_many(self, entries: Sequence[Entry], size: int) -> tuple[Tensor, Tensor]:
        """Batched: every distinct image is drawn once."""
        names = list(dict.fromkeys(entry.name for entry in entries))
        parsed = [self.parse_name(name) for name in names]
        position: dict[str, int] = {}
        images, labels = [], []
        for split in SPLITS:
            chosen = [(name, index) for name, (s, index) in zip(names, parsed) if s == split]
            if not chosen:
                continue
            image, label = self.render(split, [index for _, index in chosen], size)
            for offset, (name, _) in enumerate(chosen):
                position[name] = sum(len(x) for x in images) + offset
            images.append(image)
            labels.append(label)
        if not entries:
            return torch.zeros(0, 3, size, size), torch.zeros(0, size, size, dtype=torch.bool)
        all_images, all_labels = torch.cat(images), torch.cat(labels)
        where = torch.tensor([position[entry.name] for entry in entries], dtype=torch.long)
        classes = torch.tensor([entry.class_id for entry in entries], dtype=torch.uint8)
        return all_images[where], all_labels[where] == classes[:, None, None]
