"""The task registry: every visual task defined once, in one entry.

A :class:`Task` says what the four canvas cells of a prompt hold (``cells``: from the support
and query images, their class masks and, for tasks that paint the black square, the images
with the square), which metric scores it (``"iou"`` on a white-on-black mask, or ``"mse"``),
the cell the metric reads (``region``) and, for a composite task, the tasks it composes
(``parts``: ``inpainting_lowlight`` is ``inpainting`` + ``lowlight``, so their task vectors
are composed for it). Adding a task is one entry of :data:`REGISTRY`; prompts
(:mod:`interp.data.tasks`), metrics (:func:`interp.metrics.task_metric`), the CLI's choices,
figures and colours all read it. :data:`SELECTIONS` names the task lists other modules use
by default (the pipeline's tasks, the fine-tuned ones, the tiny model's training emphasis),
in the order they rely on.

The cells follow the official dataloaders (alhojel/visual_task_vectors,
evaluate/rl_dataloader.py: ``segmentation_grid``, ``lowlight_grid``, ``neutral_copy_grid``,
``inpaint_black_grid`` with ``r=1``, ``colorization_grid``, ``inpaint_black_grid_and_lowlight``,
``segmentation_and_inpaint_grid``; their task indices 0..6 are the order of :data:`TASKS`).
Grayscale uses the ITU-R 601 luma weights of PIL's ``convert("L")`` (torchvision
``Grayscale(3)``), computed in float. The black square has side ``cell // 4``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping

from torch import Tensor

from interp.canvas import Quadrant

LOWLIGHT_FACTOR = 0.5
LUMA = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------------------------------------
# pixel transforms the cells are made of


def grayscale(images: Tensor) -> Tensor:
    """Luma replicated to 3 channels, ``[..., 3, H, W]`` -> same shape."""
    weights = images.new_tensor(LUMA).view(3, 1, 1)
    return (images * weights).sum(dim=-3, keepdim=True).expand_as(images).clone()


def mask_image(masks: Tensor) -> Tensor:
    """Binary masks ``[..., H, W]`` as white-on-black RGB images ``[..., 3, H, W]``."""
    return masks.float().unsqueeze(-3).expand(*masks.shape[:-2], 3, *masks.shape[-2:]).clone()


def square_side(cell_size: int) -> int:
    """Side of the in-painting square: ``cell // 4`` (official ``min(h, w) // 4``)."""
    return cell_size // 4


# ---------------------------------------------------------------------------------------------
# tasks


@dataclass(frozen=True)
class TaskImages:
    """What a task's cells are made from, each batched ``[N, ...]``: images ``[N, 3, c, c]`` in
    [0, 1], masks ``[N, c, c]`` bool, and (tasks with ``square``) the images with the black square."""

    support: Tensor
    support_mask: Tensor
    query: Tensor
    query_mask: Tensor
    support_holed: Tensor | None = None
    query_holed: Tensor | None = None


Cells4 = tuple[Tensor, Tensor, Tensor, Tensor]  # example_input, example_output, query, target


@dataclass(frozen=True)
class Task:
    """One visual task (see the module docstring)."""

    name: str
    cells: Callable[[TaskImages], Cells4]
    metric: Literal["iou", "mse"] = "mse"
    region: Quadrant = "target"
    parts: tuple[str, ...] = ()
    square: bool = False  # its cells need the images with the black square
    # the cheapest training reward measured to agree with the metric (Pearson >= 0.5 with the official
    # pixel reward over random unit sets: `interp agreement`, README "Which reward a search trains on");
    # "pixel" (the official reward itself) where no cheaper one was measured to agree
    reward: Literal["token", "soft", "pixel"] = "pixel"

    @property
    def is_composite(self) -> bool:
        return bool(self.parts)


def _entries(*tasks: Task) -> dict[str, Task]:
    return {t.name: t for t in tasks}


REGISTRY: Mapping[str, Task] = _entries(
    Task("segmentation", lambda x: (x.support, mask_image(x.support_mask), x.query, mask_image(x.query_mask)),
         metric="iou", reward="token"),
    Task("lowlight", lambda x: (LOWLIGHT_FACTOR * x.support, x.support, LOWLIGHT_FACTOR * x.query, x.query), reward="token"),
    Task("identity", lambda x: (x.support, x.support, x.query, x.query)),
    Task("inpainting", lambda x: (x.support_holed, x.support, x.query_holed, x.query), square=True, reward="soft"),
    Task("colorization", lambda x: (grayscale(x.support), x.support, grayscale(x.query), x.query), reward="soft"),
    Task("inpainting_lowlight",
         lambda x: (LOWLIGHT_FACTOR * x.support_holed, x.support, LOWLIGHT_FACTOR * x.query_holed, x.query),
         parts=("inpainting", "lowlight"), square=True),
    Task("segmentation_inpainting",
         lambda x: (x.support_holed, mask_image(x.support_mask), x.query_holed, mask_image(x.query_mask)),
         metric="iou", parts=("segmentation", "inpainting"), square=True),
)

#: every task name, in registry order (the official task indices)
TASKS: tuple[str, ...] = tuple(REGISTRY)

#: named task lists, in the order their users rely on
SELECTIONS: Mapping[str, tuple[str, ...]] = {
    "pipeline": ("segmentation", "lowlight", "inpainting", "colorization"),  # `interp run` / PipelineConfig.tasks
    "finetune": ("segmentation", "lowlight", "inpainting", "colorization", "identity"),  # weight-space task vectors
    "train_focus": ("segmentation", "segmentation_inpainting"),  # the tiny model's hardest tasks
    "train_contrast": ("lowlight", "colorization", "inpainting"),  # its contrast prompts
}
#: the composite whose parts' task vectors the pipeline composes by default
DEFAULT_COMPOSITE = "inpainting_lowlight"


def get_task(name: str) -> Task:
    """The registry entry of a task; a ValueError naming the known tasks otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; expected one of {TASKS}") from None


def selection(name: str) -> tuple[str, ...]:
    """A named task list of :data:`SELECTIONS`."""
    if name not in SELECTIONS:
        raise KeyError(f"no task selection {name!r}; known: {sorted(SELECTIONS)}")
    return SELECTIONS[name]


def composites() -> dict[str, tuple[str, ...]]:
    """``{composite task: its parts}`` for every composite task."""
    return {t.name: t.parts for t in REGISTRY.values() if t.is_composite}


def composite_of(parts: tuple[str, ...] | list[str]) -> str | None:
    """The composite task made of exactly ``parts`` (in any order), None if there is none."""
    wanted = sorted(parts)
    found = [name for name, own in composites().items() if sorted(own) == wanted]
    return found[0] if found else None


__all__ = [
    "DEFAULT_COMPOSITE", "LOWLIGHT_FACTOR", "LUMA", "REGISTRY", "SELECTIONS", "TASKS", "Task", "TaskImages",
    "composite_of", "composites", "get_task", "grayscale", "mask_image",
    "selection", "square_side",
]
