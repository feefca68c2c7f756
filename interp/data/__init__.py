"""Task data: prompt sources (Pascal-5i, its synthetic analogue) and the seven task canvases.

``source.py`` is the interface both sources share, ``pascal.py`` and ``synthetic.py`` the
sources, ``registry.py`` defines every task (one entry each), ``tasks.py`` turns (query,
support) pairs into the four cells and the canvas.
"""

from interp.data.source import (
    DataError,
    Entry,
    Pair,
    PromptSource,
    Sample,
    class_fold,
    fold_classes,
    read_split_list,
    sample_pairs,
    select_pairs,
)
from interp.data.registry import REGISTRY, TASKS, Task, get_task
from interp.data.tasks import (
    Cells,
    PromptBatch,
    build_prompts,
    build_task_prompts,
    make_cells,
    prompt_seed,
)

__all__ = [
    "DataError",
    "Entry",
    "Pair",
    "PromptSource",
    "Sample",
    "class_fold",
    "fold_classes",
    "read_split_list",
    "sample_pairs",
    "select_pairs",
    "REGISTRY",
    "TASKS",
    "Task",
    "get_task",
    "Cells",
    "PromptBatch",
    "build_prompts",
    "build_task_prompts",
    "make_cells",
    "prompt_seed",
    "Pascal5i",
    "SyntheticPascal",
]


def __getattr__(name: str):  # the sources import PIL / draw code only when asked for
    if name == "Pascal5i":
        from interp.data.pascal import Pascal5i

        return Pascal5i
    if name == "SyntheticPascal":
        from interp.data.synthetic import SyntheticPascal

        return SyntheticPascal
    raise AttributeError(f"module 'interp.data' has no attribute {name!r}")
