"""Training data as a pure function of (seed, step): prompts of every task, contrast prompts
and plain synthetic images, drawn in the main process or in data-loader workers."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from interp.canvas import CanvasGrid, normalize
from interp.data.source import Entry, Pair, derive_seed
from interp.data.synthetic import SyntheticPascal
from interp.data.registry import TASKS
from interp.data.tasks import Cells, PromptBatch, build_task_prompts

if TYPE_CHECKING:
    from interp.train.config import TrainConfig


class CanvasStream:
    """Training canvases as a pure function of the step: prompts of every task and plain images."""

    def __init__(self, grid: CanvasGrid, seed: int) -> None:
        self.grid = grid
        self.seed = seed
        self.source = SyntheticPascal(seed=derive_seed("train", seed), size_per_split={"trn": 20000, "val": 40})
        self._by_class: dict[int, dict[int, list[str]]] = {}  # fold -> class -> image names

    def pairs(self, fold: int, n: int, seed: int) -> list[Pair]:
        """``n`` random (query, support) pairs of one class each, from the fold's training images.

        Unlike :meth:`PromptSource.sample_pairs` (query ``i`` = split entry ``i``, as the official
        evaluation), queries are drawn at random too, so training sees every image as a query.
        """
        if fold not in self._by_class:
            by_class: dict[int, list[str]] = {}
            for entry in self.source.entries(fold, "trn"):
                by_class.setdefault(entry.class_id, []).append(entry.name)
            self._by_class[fold] = by_class
        by_class = self._by_class[fold]
        classes = sorted(by_class)
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            cls = classes[rng.randrange(len(classes))]
            query, support = rng.sample(by_class[cls], 2)
            out.append(Pair(Entry(query, cls), Entry(support, cls)))
        return out

    def task_batches(self, step: int, pairs: int, stage: str, tasks: tuple[str, ...] = TASKS) -> dict[str, PromptBatch]:
        """The step's prompts of each task over the same random pairs (fold ``step % 4``); ``stage``
        names the draw, so different stages of one step see different pairs."""
        seed = derive_seed(stage, self.seed, step)
        return build_task_prompts(
            self.source, fold=step % 4, n=pairs, grid=self.grid, seed=seed, split="trn", tasks=tasks,
            pairs=self.pairs(step % 4, pairs, seed),
        )

    def prompts(self, step: int, pairs: int, stage: str, tasks: tuple[str, ...] = TASKS) -> Tensor:
        """``[len(tasks) * pairs, 3, H, W]``: the same random pairs under each task (normalised canvases)."""
        batches = self.task_batches(step, pairs, stage, tasks)
        return torch.cat([batches[t].canvases for t in tasks])

    def contrast_prompts(self, step: int, pairs: int, tasks: tuple[str, ...]) -> Tensor:
        """``[2 * len(tasks) * pairs, 3, H, W]``: for each task, its pairs as "keep" prompts
        (output = input: degraded images stay degraded) and as "invert" prompts (output and input
        swapped: clean images get degraded).

        Their queries look like the task's queries (or its targets), so the query alone no longer
        tells the task: only the example pair does. Training-only; never evaluated.
        """
        batches = self.task_batches(step, pairs, "contrast", tasks)
        canvases = []
        for task in tasks:
            example_input, example_output, query, target = batches[task].cells
            canvases.append(Cells(example_input, example_input, query, query).canvas(self.grid))
            canvases.append(Cells(example_output, example_input, target, query).canvas(self.grid))
        return torch.cat(canvases)

    def plain(self, step: int, n: int, stage: str) -> Tensor:
        """``[n, 3, H, W]`` whole synthetic images (no grid), normalised."""
        g = torch.Generator().manual_seed(derive_seed(stage, "plain", self.seed, step))
        indices = torch.randint(0, self.source.num_images("trn"), (n,), generator=g).tolist()
        return normalize(self.source.plain_images("trn", indices, size=self.grid.canvas_size))


class StepCanvases(torch.utils.data.Dataset):
    """Item ``step`` is that step's training canvases (a pure function of the step), so a
    :class:`~torch.utils.data.DataLoader` can draw the next steps in worker processes."""

    def __init__(self, stream: CanvasStream, cfg: "TrainConfig", phase: str) -> None:
        self.stream, self.cfg, self.phase = stream, cfg, phase

    def __len__(self) -> int:
        return self.cfg.vqgan_steps if self.phase == "vqgan" else self.cfg.mae_steps

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        cfg, stream, phase = self.cfg, self.stream, self.phase
        if phase == "vqgan":  # 3/4 prompts of every task, 1/4 plain images
            pairs = max(1, (cfg.vqgan_batch * 3 // 4) // len(TASKS))
            return {"canvases": torch.cat([stream.prompts(step, pairs, "vqgan"), stream.plain(step, cfg.vqgan_batch - pairs * len(TASKS), "vqgan")])}
        prompts = stream.prompts(step, cfg.prompt_pairs, phase)
        if cfg.focus_pairs:
            prompts = torch.cat([prompts, stream.prompts(step, cfg.focus_pairs, "focus-extra", cfg.focus_tasks)])
        if cfg.contrast_pairs:
            prompts = torch.cat([prompts, stream.contrast_prompts(step, cfg.contrast_pairs, cfg.contrast_tasks)])
        half = cfg.random_batch // 2
        g = torch.Generator().manual_seed(derive_seed("mae-mix", cfg.seed, step))
        mixed = torch.cat([prompts[torch.randperm(len(prompts), generator=g)[:half]], stream.plain(step, cfg.random_batch - half, phase)])
        return {"prompts": prompts, "mixed": mixed}

    def loader(self, start: int) -> torch.utils.data.DataLoader:
        """Steps ``start .. len - 1`` in order, drawn by ``cfg.workers`` processes ahead of use."""
        workers = self.cfg.workers
        return torch.utils.data.DataLoader(
            self, batch_size=None, sampler=range(start, len(self)), num_workers=workers,
            prefetch_factor=4 if workers else None, pin_memory=self.cfg.device.startswith("cuda"),
        )
