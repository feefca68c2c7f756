"""Upper bounds of counts and sizes, checked before a stage does any work.

Two layers. While the command line is parsed, every count has a fixed ceiling stated in
``--help`` (:data:`MAX_PROMPTS`, :data:`MAX_SAMPLES`, ...), far above any meaningful run, so
that ``--n-eval 1e9`` never starts. Once the model is loaded, :func:`check_memory` compares
the prompts a stage builds at once with the memory this machine has available: a prompt set
takes ``7 * n * canvas**2 * 4`` bytes (:func:`interp.data.tasks.build_prompts`: canvases and
cells in float32), and a stage that would not fit is a :class:`~interp.errors.ConfigError`
naming the option and the largest value that fits, instead of an allocation failure midway.
"""

from __future__ import annotations

import argparse
from typing import Any

from interp.errors import ConfigError

#: prompts per task of any one option (n-collect, n-candidates, n-eval, sweep-prompts, ...)
MAX_PROMPTS = 100_000
#: REINFORCE unit sets per step (the official run draws 320)
MAX_SAMPLES = 65_536
#: REINFORCE steps, seeds and other loop counts
MAX_STEPS = 1_000_000
MAX_SEEDS = 1_000
#: the bytes one prompt's canvases and cells take, per canvas pixel (float32, 7 images' worth)
BYTES_PER_PIXEL = 7 * 4


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def prompt_sets(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """``(option, value, prompts held per unit of value)`` for the stage the parsed options run.

    Candidates and training prompts are one task's; evaluation, sweep and comparison prompts
    are built for every task at once (the same pairs; evaluation adds the composite task).
    """
    tasks = max(1, len(getattr(args, "tasks", None) or ()))
    sets = [("--n-candidates", "n_candidates", 1), ("--n-collect", "n_collect", 1), ("--n-train", "n_train", 1),
            ("--n-search-eval", "n_search_eval", 1), ("--n-eval", "n_eval", tasks + 1),
            ("--sweep-prompts", "sweep_prompts", tasks), ("--compare-eval", "compare_eval", tasks)]
    return [(option, int(getattr(args, name)), each) for option, name, each in sets if getattr(args, name, None)]


def check_memory(args: argparse.Namespace, model: Any, available: int | None = None) -> None:
    """A :class:`ConfigError` if one of the stage's prompt sets would not fit in memory."""
    available = available_memory() if available is None else available
    grid = getattr(model, "grid", None)
    if available is None or grid is None:
        return
    per_prompt = BYTES_PER_PIXEL * grid.canvas_size ** 2
    for option, value, each in prompt_sets(args):
        need = value * each * per_prompt
        if need > available:
            largest = max(1, available // (each * per_prompt))
            raise ConfigError(
                f"{option} {value} needs about {need / 2**30:.1f} GiB for its {value * each} prompts of "
                f"{grid.canvas_size} px; {available / 2**30:.1f} GiB are available",
                fix=f"Pass {option} {largest} or less (or free memory)")
