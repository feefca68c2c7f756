"""The interface every prompt source shares (Pascal-5i and its synthetic analogue).

A *source* is a labelled image collection cut like Pascal-5i: 20 classes (ids 1..20, the VOC
convention of the ``name__class`` split lists; 0 is background), 4 folds of 5 classes (fold
``f`` holds classes ``5f+1 .. 5f+5``), and two splits, ``"trn"`` and ``"val"``. A split of a
fold lists :class:`Entry` ``(name, class_id)`` items; :meth:`PromptSource.load` turns one
into a :class:`Sample` (image in [0, 1] plus the binary mask of that class) at any size; and
:meth:`PromptSource.sample_pairs` draws (query, support) pairs of the same class.

Pair sampling follows the official evaluation (github amirbar/visual_prompting,
evaluate/pascal_dataloader.py ``sample_episode``; alhojel/visual_task_vectors,
evaluate/multitask_dataloader.py): query ``i`` is entry ``i mod len(entries)`` of the list,
the support is drawn uniformly from the other entries of the same class. The official code
uses the global NumPy RNG; here a seeded ``random.Random`` makes it reproducible.

:func:`select_pairs` is the official pair filtering (alhojel/visual_task_vectors,
filter_pairings.ipynb): given scored pairs, keep the best pair per support, then the best
per query, then the top ``n``.
"""

from __future__ import annotations

import hashlib
import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, NamedTuple, Sequence

import torch
from torch import Tensor

from interp.errors import InputError

Split = Literal["trn", "val"]
SPLITS: tuple[str, ...] = ("trn", "val")
NUM_CLASSES = 20
NUM_FOLDS = 4
CLASSES_PER_FOLD = NUM_CLASSES // NUM_FOLDS


class DataError(InputError):
    """A data file is missing, unreadable or malformed (the message names the file)."""


class Entry(NamedTuple):
    """One line of a split list: an image name and a class id (1..20) it contains."""

    name: str
    class_id: int

    def __str__(self) -> str:  # the split-list spelling, e.g. 2007_000033__01
        return f"{self.name}__{self.class_id:02d}"


class Pair(NamedTuple):
    """A one-shot prompt's images: the query and the support (example) of the same class."""

    query: Entry
    support: Entry


@dataclass(frozen=True)
class Sample:
    """One loaded image: ``image [3, S, S]`` float in [0, 1], ``mask [S, S]`` bool of ``class_id``."""

    image: Tensor
    mask: Tensor
    class_id: int
    name: str


def fold_classes(fold: int) -> tuple[int, ...]:
    """Class ids (1-based) of a Pascal-5i fold: ``5f+1 .. 5f+5``."""
    check_fold(fold)
    return tuple(range(fold * CLASSES_PER_FOLD + 1, (fold + 1) * CLASSES_PER_FOLD + 1))


def class_fold(class_id: int) -> int:
    """The fold a class id (1..20) belongs to."""
    if not 1 <= class_id <= NUM_CLASSES:
        raise ValueError(f"class id {class_id} outside 1..{NUM_CLASSES}")
    return (class_id - 1) // CLASSES_PER_FOLD


def check_fold(fold: int) -> None:
    if fold not in range(NUM_FOLDS):
        raise ValueError(f"fold {fold!r} does not exist; Pascal-5i folds are 0..{NUM_FOLDS - 1}")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed mixed from integers and strings, stable across runs and platforms."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


# ---------------------------------------------------------------------------------------------
# split lists (HSNet / official format: one ``name__class`` per line)


def parse_split_list(text: str, path: str | Path = "<text>") -> list[Entry]:
    """Parse ``name__class`` lines (CRLF tolerated, blank lines skipped) into entries."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        name, sep, cls = line.rpartition("__")
        if not sep or not name or not cls.isdigit() or not 1 <= int(cls) <= NUM_CLASSES:
            raise DataError(
                f"{path}:{number}: expected 'name__class' with class 1..{NUM_CLASSES}, got {line!r}"
            )
        entries.append(Entry(name, int(cls)))
    return entries


def read_split_list(path: str | Path) -> list[Entry]:
    """Read one split-list file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"split list {path} not found; give the directory holding trn/fold0..3.txt and "
            "val/fold0..3.txt, or none to build the lists from the masks"
        )
    return parse_split_list(read_text(path, "split list"), path)


def read_text(path: str | Path, kind: str) -> str:
    """A UTF-8 text file; another encoding (UTF-16 from some editors) is an error naming it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{kind} {path} is not UTF-8 text ({error.reason} at byte {error.start})",
                        fix="save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)") from None


def write_split_list(path: str | Path, entries: Iterable[Entry]) -> None:
    """Write entries as ``name__class`` lines (LF endings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{entry}\n" for entry in entries))


# ---------------------------------------------------------------------------------------------
# the shared interface


class PromptSource(ABC):
    """A Pascal-5i-like image collection: classes, folds, split lists, loading, pair sampling."""

    #: short identifier recorded in prompt metadata ("pascal5i", "synthetic")
    name: str = "source"
    #: the 20 class names, index ``k`` is class id ``k + 1``
    classes: tuple[str, ...] = ()

    def fold_classes(self, fold: int) -> tuple[int, ...]:
        return fold_classes(fold)

    @abstractmethod
    def entries(self, fold: int, split: str = "val") -> list[Entry]:
        """The split list of one fold: every (name, class) of the fold's classes, in order."""

    @abstractmethod
    def load(self, name: str, class_id: int, size: int) -> Sample:
        """Image ``name`` resized to ``size x size`` with the mask of ``class_id``."""

    def load_many(self, entries: Sequence[Entry], size: int) -> tuple[Tensor, Tensor]:
        """Images ``[N, 3, S, S]`` and masks ``[N, S, S]`` of many entries (sources may batch)."""
        if not entries:
            return torch.zeros(0, 3, size, size), torch.zeros(0, size, size, dtype=torch.bool)
        samples = [self.load(entry.name, entry.class_id, size) for entry in entries]
        return torch.stack([s.image for s in samples]), torch.stack([s.mask for s in samples])

    def sample_pairs(self, fold: int, split: str, n: int, seed: int = 0) -> list[Pair]:
        """``n`` (query, support) pairs of the same class, query ``i`` = entry ``i mod len``."""
        entries = self.entries(fold, split)
        if not entries:
            raise DataError(f"the {split} list of fold {fold} of {self.name} is empty ({self.list_origin(fold, split)})",
                            fix="use another fold, or a split list that names images of the fold's classes")
        return sample_pairs(entries, n, seed)

    def list_origin(self, fold: int, split: str) -> str:
        """Where the ``(split, fold)`` list comes from (for error messages)."""
        return f"{type(self).__name__}.entries({fold}, {split!r})"


def sample_pairs(entries: Sequence[Entry], n: int, seed: int = 0) -> list[Pair]:
    """Official episode sampling over a split list, made reproducible by ``seed``.

    Query ``i`` is ``entries[i % len(entries)]`` (evaluate/pascal_dataloader.py ``__getitem__``
    wraps the index the same way); the support is uniform over the other names listed for the
    query's class. A class with a single name cannot form a pair: error.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not entries:
        raise ValueError("cannot sample pairs from an empty split list")
    by_class: dict[int, list[str]] = {}
    for entry in entries:
        by_class.setdefault(entry.class_id, []).append(entry.name)
    rng = random.Random(derive_seed("pairs", seed))
    pairs = []
    for i in range(n):
        query = entries[i % len(entries)]
        others = [name for name in by_class[query.class_id] if name != query.name]
        if not others:
            raise ValueError(
                f"class {query.class_id} has no image besides {query.name!r} in this split list; "
                "a one-shot pair needs two images of the class"
            )
        pairs.append(Pair(query, Entry(others[rng.randrange(len(others))], query.class_id)))
    return pairs


# ---------------------------------------------------------------------------------------------
# official pair filtering


def select_pairs(records: Any, n: int, higher_is_better: bool = True) -> Any:
    """Keep the best (query, support) pairs the way the official pipeline does.

    ``records`` are scored one-shot pairs: tuples ``(query, support, score)``, dicts with keys
    ``query``/``support``/``score`` (or ``query_name``/``support_name``), or a pandas DataFrame
    with such columns. Order of operations (alhojel/visual_task_vectors, filter_pairings.ipynb):
    sort by support then best score and keep the first row per support; sort by query then best
    score and keep the first row per query; then keep the ``n`` best. Ties keep input order.
    Returns the kept records, best first, in the input's kind (list, or DataFrame).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    frame = None
    if hasattr(records, "to_dict") and hasattr(records, "columns"):
        frame = records
        rows: list[Any] = frame.to_dict("records")
    else:
        rows = list(records)
    keyed = [(_pair_fields(row), position) for position, row in enumerate(rows)]
    sign = -1.0 if higher_is_better else 1.0

    def rank(score: float) -> float:  # smaller ranks first; NaN scores rank last
        return math.inf if math.isnan(score) else sign * score

    def best_per(field: int, items: list) -> list:
        # stable sort by (key, best score first); first of each key wins
        ordered = sorted(items, key=lambda item: (str(item[0][field]), rank(item[0][2])))
        kept, seen = [], set()
        for item in ordered:
            if item[0][field] not in seen:
                seen.add(item[0][field])
                kept.append(item)
        return kept

    kept = best_per(0, best_per(1, keyed))
    kept = sorted(kept, key=lambda item: rank(item[0][2]))[:n]
    positions = [position for _, position in kept]
    if frame is not None:
        return frame.iloc[positions]
    return [rows[p] for p in positions]


def _pair_fields(row: Any) -> tuple[Any, Any, float]:
    if isinstance(row, dict):
        query = row.get("query", row.get("query_name"))
        support = row.get("support", row.get("support_name"))
        if query is None or support is None or "score" not in row:
            raise ValueError(
                f"record {row!r} needs keys 'query'/'support' (or 'query_name'/'support_name') and 'score'"
            )
        return query, support, float(row["score"])
    query, support, score = row
    return query, support, float(score)
