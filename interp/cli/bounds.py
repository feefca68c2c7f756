"""Upper bounds of counts and sizes, checked before a stage does any work.

Three layers. While the command line is parsed, every count has a fixed ceiling stated in
``--help`` (:data:`MAX_PROMPTS`, :data:`MAX_SAMPLES`, ...), far above any meaningful run, so
that ``--n-eval 1e9`` never starts. Once the data source is open, :func:`check_data` compares
the prompt counts with what the fold's split lists hold: more prompts than distinct (query,
support) pairs would only repeat prompts, and training plus held-out search prompts beyond the
split's images would repeat a training query among the held-out ones (pairs take their queries
in list order, wrapping as the official loader does). Once the model is loaded,
:func:`check_memory` compares the prompts a stage builds at once with the memory this machine
has available: a prompt set takes ``7 * n * canvas**2 * 4`` bytes
(:func:`interp.data.tasks.build_prompts`: canvases and cells in float32), and a stage that would
not fit is a :class:`~interp.errors.ConfigError` naming the option and the largest value that
fits, instead of an allocation failure midway. Each is a named error with the largest value
that holds.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any, Sequence

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


def distinct_pairs(entries: Sequence[Any]) -> int:
    """Distinct one-shot pairs of a split list: per class, every query with every other image."""
    return sum(k * (k - 1) for k in Counter(entry.class_id for entry in entries).values())


#: ``(options, split, what)``: counts bounded by the data (``what``: "pairs" = distinct pairs of
#: the split, "queries" = images of the split, for the sum of the options)
DATA_BOUNDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("n_candidates",), "trn", "pairs"), (("sweep_prompts",), "trn", "pairs"),
    (("n_train", "n_search_eval"), "trn", "queries"), (("n_train", "compare_search_eval"), "trn", "queries"),
    (("n_eval",), "val", "pairs"), (("compare_eval",), "val", "pairs"),
)

#: the :class:`~interp.pipeline.PipelineConfig` fields among the bounded options (read by some stages only)
PIPELINE_FIELDS = ("n_candidates", "n_train", "n_search_eval", "n_eval")


def check_data(args: argparse.Namespace, source: Any, read: Sequence[str]) -> None:
    """A :class:`ConfigError` if a prompt count of the stage (its options in ``read`` or its own)
    asks the fold's split for more than it holds (see the module docstring)."""
    fold = getattr(args, "fold", 0)
    lists: dict[str, list] = {}
    for names, split, what in DATA_BOUNDS:
        values = [getattr(args, n, None) for n in names]
        if any(v is None for v in values) or not all(n in read or n not in PIPELINE_FIELDS for n in names):
            continue
        if split not in lists:
            lists[split] = source.entries(fold, split)
        entries = lists[split]
        bound = distinct_pairs(entries) if what == "pairs" else len(entries)
        if sum(values) > bound:
            options = " + ".join(f"--{n.replace('_', '-')} {v}" for n, v in zip(names, values))
            reason = ("distinct (query, support) pairs; more would only repeat prompts" if what == "pairs" else
                      "images; more would repeat a training query among the held-out search prompts")
            raise ConfigError(f"{options} asks for {sum(values)} prompts, but fold {fold}'s {split} split of "
                              f"{getattr(source, 'name', 'the data')} holds {bound} {reason}",
                              fix=f"Keep {' + '.join('--' + n.replace('_', '-') for n in names)} at {bound} or less")


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
