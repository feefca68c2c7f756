"""Prompt batches: a (query, support) pair and a task become the four canvas cells and the canvas.

A prompt pairs a *support* image (the example) with a *query* image of the same class. Every
task (:mod:`interp.data.registry`, one entry per task) maps an image ``x`` (and its class mask
``m``) to an (input, output) pair; the example row shows the support's pair, the bottom row
the query's. The black square of the in-painting tasks sits at one random spot, the same in
the example and the query.

:func:`build_prompts` assembles a :class:`PromptBatch` with :mod:`interp.canvas`: the canvases
are ImageNet-normalised and *include* the target cell (metrics read it; the model's layout
hides it). Randomness is per prompt: prompt ``i`` of a batch built with ``seed`` uses
``prompt_seed(seed, i)``, so :func:`make_cells` can rebuild any single prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import torch
from torch import Tensor

from interp.canvas import CanvasGrid, assemble_canvas, resize_cell
from interp.data.registry import TASKS, TaskImages, get_task, square_side
from interp.data.source import Entry, Pair, PromptSource, Sample, derive_seed


@dataclass(frozen=True)
class Cells:
    """The four cells of one prompt or a batch: each ``[..., 3, cell, cell]`` in [0, 1]."""

    example_input: Tensor
    example_output: Tensor
    query: Tensor
    target: Tensor

    def as_tuple(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (self.example_input, self.example_output, self.query, self.target)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.as_tuple())

    def __getitem__(self, index) -> "Cells":
        """Index the batch dimension of every cell."""
        return Cells(*(cell[index] for cell in self.as_tuple()))

    def canvas(self, grid: CanvasGrid = CanvasGrid(), normalized: bool = True) -> Tensor:
        """The prompt canvas ``[..., 3, H, W]`` with all four cells (see ``assemble_canvas``)."""
        return assemble_canvas(*self.as_tuple(), grid=grid, normalized=normalized)

    def to(self, *args, **kwargs) -> "Cells":
        return Cells(*(cell.to(*args, **kwargs) for cell in self.as_tuple()))


# ---------------------------------------------------------------------------------------------
# per-prompt randomness and the black square


def prompt_seed(seed: int, index: int) -> int:
    """The seed of prompt ``index`` in a batch built with ``seed``."""
    return derive_seed("prompt", seed, index)


def square_origin(cell_size: int, seed: int) -> tuple[int, int]:
    """(top, left) of the black square, uniform over positions that fit (official ``randint``)."""
    generator = torch.Generator().manual_seed(seed)
    high = cell_size - square_side(cell_size) + 1
    top, left = torch.randint(0, high, (2,), generator=generator).tolist()
    return top, left


def black_square(images: Tensor, origins: Tensor, side: int) -> Tensor:
    """Copy of ``images [N, 3, S, S]`` with a black ``side``-square at each ``origins [N, 2]``."""
    size = images.shape[-1]
    coords = torch.arange(size, device=images.device)
    top, left = origins[:, 0:1].to(images.device), origins[:, 1:2].to(images.device)
    rows = (coords >= top) & (coords < top + side)  # [N, S]
    cols = (coords >= left) & (coords < left + side)  # [N, S]
    inside = rows[:, :, None] & cols[:, None, :]  # [N, S, S]
    return images.masked_fill(inside[:, None], 0.0)


def task_cells(
    task: str,
    support_images: Tensor,
    support_masks: Tensor,
    query_images: Tensor,
    query_masks: Tensor,
    origins: Tensor | None = None,
) -> Cells:
    """Batched cells of one task.

    ``*_images [N, 3, c, c]`` in [0, 1], ``*_masks [N, c, c]`` bool, ``origins [N, 2]`` (top,
    left) of the black square (needed by the in-painting tasks). Returns :class:`Cells` of
    ``[N, 3, c, c]`` tensors; cells may share storage with the inputs (do not edit in place).
    """
    spec = get_task(task)
    holed: tuple[Tensor | None, Tensor | None] = (None, None)
    if spec.square:
        if origins is None:
            raise ValueError(f"task {task!r} needs the square origins")
        side = square_side(support_images.shape[-1])
        holed = (black_square(support_images, origins, side), black_square(query_images, origins, side))
    cells = spec.cells(TaskImages(support_images, support_masks, query_images, query_masks, *holed))
    return Cells(*cells)


def make_cells(task: str, support: Sample, query: Sample, cell_size: int, seed: int = 0) -> Cells:
    """The four ``[3, cell, cell]`` cells of one prompt; ``seed`` places the black square."""
    images, masks = [], []
    for sample in (support, query):
        images.append(resize_cell(sample.image.float(), cell_size))
        masks.append(_resize_mask(sample.mask, cell_size))
    origins = torch.tensor([square_origin(cell_size, seed)])
    cells = task_cells(task, images[0][None], masks[0][None], images[1][None], masks[1][None], origins)
    return cells[0]


def _resize_mask(mask: Tensor, size: int) -> Tensor:
    if mask.shape[-2:] == (size, size):
        return mask.bool()
    return resize_cell(mask.float()[None], size)[0] >= 0.5


# ---------------------------------------------------------------------------------------------
# prompt batches


@dataclass
class PromptBatch:
    """``N`` prompts of one task.

    ``canvases [N, 3, H, W]`` ImageNet-normalised with the target cell drawn; ``cells`` the
    four cells ``[N, 3, c, c]`` in [0, 1]; ``pairs[i]`` the (query, support) entries and
    ``seeds[i]`` the per-prompt seed of prompt ``i``.
    """

    task: str
    grid: CanvasGrid
    canvases: Tensor
    cells: Cells
    pairs: list[Pair]
    seeds: list[int]
    source: str = ""
    fold: int | None = None
    split: str | None = None
    seed: int | None = None

    def __len__(self) -> int:
        return self.canvases.shape[0]

    def metadata(self) -> list[dict]:
        """One JSON-able dict per prompt (names, class, seed, task, source, fold, split)."""
        return [
            {
                "index": i,
                "task": self.task,
                "query_name": pair.query.name,
                "support_name": pair.support.name,
                "class_id": pair.query.class_id,
                "seed": self.seeds[i],
                "source": self.source,
                "fold": self.fold,
                "split": self.split,
            }
            for i, pair in enumerate(self.pairs)
        ]

    def select(self, index: Sequence[int] | slice | Tensor) -> "PromptBatch":
        """A sub-batch (e.g. the training prompts ``[:10]``)."""
        if isinstance(index, slice):
            positions = list(range(len(self)))[index]
        else:
            positions = [int(i) for i in index]
        where = torch.tensor(positions, dtype=torch.long)
        return replace(
            self,
            canvases=self.canvases[where],
            cells=self.cells[where],
            pairs=[self.pairs[i] for i in positions],
            seeds=[self.seeds[i] for i in positions],
        )

    def to(self, *args, **kwargs) -> "PromptBatch":
        return replace(self, canvases=self.canvases.to(*args, **kwargs), cells=self.cells.to(*args, **kwargs))


def build_prompts(
    source: PromptSource,
    task: str,
    fold: int,
    n: int,
    grid: CanvasGrid = CanvasGrid(),
    seed: int = 0,
    split: str = "val",
    pairs: Sequence[Pair] | None = None,
) -> PromptBatch:
    """``n`` prompts of ``task`` from one fold and split of ``source``.

    Pairs come from ``source.sample_pairs(fold, split, n, seed)`` unless given (e.g. kept by
    :func:`~interp.data.source.select_pairs`; the first ``n`` are used). Bitwise deterministic
    in ``seed``. Memory: canvases and cells take ~``7 * n * canvas**2 * 4`` bytes (1.4 GB for
    1000 prompts at 224 px), so build large sets in chunks (``seed`` and pairs fixed).
    """
    return build_task_prompts(source, fold, n, grid, seed, split, tasks=(task,), pairs=pairs)[task]


def build_task_prompts(
    source: PromptSource,
    fold: int,
    n: int,
    grid: CanvasGrid = CanvasGrid(),
    seed: int = 0,
    split: str = "val",
    tasks: Sequence[str] = TASKS,
    pairs: Sequence[Pair] | None = None,
) -> dict[str, PromptBatch]:
    """Prompts for several tasks over the *same* pairs and squares (images loaded once)."""
    for task in tasks:
        get_task(task)
    if pairs is None:
        pairs = source.sample_pairs(fold, split, n, seed)
    elif len(pairs) < n:
        raise ValueError(f"{len(pairs)} pairs given for n={n} prompts")
    pairs = list(pairs)[:n]
    cell = grid.cell_size
    seeds = [prompt_seed(seed, i) for i in range(len(pairs))]
    entries: list[Entry] = [pair.support for pair in pairs] + [pair.query for pair in pairs]
    images, masks = source.load_many(entries, cell)  # [2N, 3, c, c], [2N, c, c]
    support_images, query_images = images.float().split(len(pairs))
    support_masks, query_masks = masks.bool().split(len(pairs))
    origins = torch.tensor([square_origin(cell, s) for s in seeds], dtype=torch.long).view(-1, 2)
    batches = {}
    for task in tasks:
        cells = task_cells(task, support_images, support_masks, query_images, query_masks, origins)
        batches[task] = PromptBatch(
            task=task,
            grid=grid,
            canvases=cells.canvas(grid),
            cells=cells,
            pairs=pairs,
            seeds=seeds,
            source=source.name,
            fold=fold,
            split=split,
            seed=seed,
        )
    return batches
