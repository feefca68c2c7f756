"""A run directory: everything one command produced, in one place (DESIGN.md §3, ../shared).

``manifest.json`` records the command, its config, seeds and package versions; tensors are
safetensors, tables CSV (+ Markdown for reading), figures go under ``figures/``. Guarantees:

* every write is atomic (:func:`interp.io.atomic_write`), so a killed run never leaves a
  half-written file; temporaries a kill left behind are removed when the run is reopened;
* every resumable output records the config that made it (:mod:`interp.provenance`) and a
  resume with another config is refused (``force=True`` / ``--force`` recomputes);
* one writer at a time: :meth:`RunDir.create` takes a lock (``.lock``, via ``filelock``) that
  a second process fails to get at once, with a message naming the holder;
* the run directory is a boundary (:func:`interp.io.add_boundary`): once locked, nothing is
  written through a symbolic link that leads out of it, and :meth:`RunDir.create` opens only a
  new or empty folder or an existing interp run (:func:`check_run_path`), so it never replaces
  or deletes a file of a folder interp did not make.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from interp.errors import InputError, InterpError
from interp.io import (
    TEMPORARY_PREFIX, TEMPORARY_SUFFIX, add_boundary, atomic_write, clean_temporaries, make_dirs, write_csv, write_error,
    write_json,
)

def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("interp", "torch", "numpy", "pandas", "safetensors", "nnsight", "plotly"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


class RunLockedError(InterpError):
    """Another process is writing into the run directory."""

    exit_status = 2


#: run directories this process holds the lock of (a process may reopen its own run)
_LOCKS: dict[Path, Any] = {}


def lock_run(path: Path) -> None:
    """Take the run directory's writer lock for this process, or fail at once naming the holder."""
    from filelock import FileLock, Timeout

    key = path.resolve()
    if key in _LOCKS:
        return
    if (path / ".lock").is_symlink():
        raise RunLockedError(f"{path / '.lock'} is a symbolic link; interp does not write through links",
                             fix=f"Remove it (`rm {path / '.lock'}`) if no interp command is running in {path}, and rerun")
    lock = FileLock(str(path / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = path / ".lock.holder.json"
        try:
            who = json.loads(holder.read_text())
            who = f"pid {who.get('pid')} on {who.get('host')} since {who.get('since')} ({who.get('command')})"
        except (OSError, ValueError):
            who = "another process"
        raise RunLockedError(f"run directory {path} is in use by {who}",
                             fix="Wait for it to finish, or write to another run directory (--run / --out)") from None
    except OSError as error:
        named = write_error(error, path / ".lock")
        if named is None:
            raise InputError(f"cannot lock the run directory {path} ({error.strerror or error})",
                             fix="Write to another run directory (--run / --out)") from None
        raise named from None
    _LOCKS[key] = lock
    add_boundary(path)
    write_json(path / ".lock.holder.json", {"pid": os.getpid(), "host": socket.gethostname(),
                                             "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                             "command": " ".join(sys.argv)})


def unlock_run(path: Path) -> None:
    """Release this process's lock of a run directory (also released when the process ends)."""
    lock = _LOCKS.pop(Path(path).resolve(), None)
    if lock is not None:
        lock.release()


class NotARunError(InputError):
    """A folder that is neither new, nor empty, nor a run directory interp wrote."""


#: what interp itself leaves in a run folder before its manifest exists
_OWN_NAMES = (".lock", ".lock.holder.json")


def is_interp_manifest(path: Path) -> bool:
    """Whether ``path`` is a ``manifest.json`` as :meth:`RunDir.create` writes it."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(manifest, dict) and {"command", "config", "versions"} <= set(manifest)


def _has_lock_record(path: Path) -> bool:
    """Whether ``path`` holds the ``.lock.holder.json`` every interp writer leaves (a run whose
    manifest was deleted, as the damaged-manifest error suggests, is still a run)."""
    try:
        record = json.loads((path / ".lock.holder.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and {"pid", "host", "since", "command"} <= set(record)


def check_run_path(path: str | Path) -> Path:
    """``path`` if interp may write a run there: a new folder, an empty one, or an interp run.

    Anything else (an empty name, a file, a folder of other files, a path too long or looping)
    is a named error, before anything is written: interp never replaces a file it did not make.
    """
    text = str(path)
    if not text.strip():
        raise NotARunError("an empty run directory name (it would make the current directory a run)",
                           fix="Name a new folder, e.g. --run runs/pipeline")
    path = Path(text).expanduser()
    try:
        exists, is_dir = path.exists(), path.is_dir()
        entries = sorted(os.listdir(path)) if is_dir else []
        path.resolve(strict=False)
    except (OSError, RuntimeError) as error:  # too long, a link loop, no permission
        reason = getattr(error, "strerror", None) or str(error)
        raise NotARunError(f"cannot use {text[:120]}{'...' if len(text) > 120 else ''} as a run directory ({reason})",
                           fix="Name a short folder path without looping symbolic links") from None
    if exists and not is_dir:
        raise NotARunError(f"{path} is a file, not a run directory", fix="Name a new folder or an existing run")
    if not exists or is_interp_manifest(path / "manifest.json") or _has_lock_record(path):
        return path
    foreign = [e for e in entries if e not in _OWN_NAMES and not (e.startswith(TEMPORARY_PREFIX) and e.endswith(TEMPORARY_SUFFIX))]
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        where = " (the current directory)" if path.resolve() == Path.cwd().resolve() else ""
        raise NotARunError(f"{path}{where} holds files interp did not write ({shown}) and no interp manifest.json, "
                           "so it is not a run directory",
                           fix="Name a new (or empty) folder for the run; interp writes only into its own runs")
    return path


class MissingArtifactError(InputError, FileNotFoundError):
    """A stage's input that an earlier stage has not written into the run yet."""


#: the manifest fields interp reads back, with their kinds (a hand edit of another kind is named)
_MANIFEST_FIELDS = {"command": str, "config": dict, "created": str, "resumed": int, "versions": dict, "torch_threads": int}
_KIND_NAMES = {str: "a string", dict: "an object", int: "a count"}


@contextmanager
def _named(path: Path) -> Iterator[None]:
    """A failed ``mkdir`` of a run folder as its named error."""
    try:
        yield
    except OSError as error:
        raise (write_error(error, path) or NotARunError(f"cannot create the run directory {path} ({error.strerror or error})",
                                                        fix="Name a folder you can write")) from None


@dataclass
class RunDir:
    """A directory holding one run's artifacts (``RunDir("runs/demo")``: a str path is fine)."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @classmethod
    def create(cls, path: str | Path, command: list[str] | str, config: Mapping[str, Any]) -> RunDir:
        """Create (or reopen, to resume) a run directory and write its manifest (reopened: the
        earlier manifest's fields are kept, this command's replace its own, the last 20 earlier
        commands are listed).

        Takes the directory's writer lock (held until the process ends or :meth:`release`) and
        removes temporaries a killed writer left behind.
        """
        run = cls(check_run_path(path))
        with _named(run.path):
            run.path.mkdir(parents=True, exist_ok=True)
        lock_run(run.path)
        clean_temporaries(run.path)
        manifest = {
            "command": command if isinstance(command, str) else " ".join(map(str, command)),
            "config": dict(config),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(),
            "torch_threads": torch.get_num_threads(),
        }
        previous = run.manifest()
        if previous:  # reopened: what earlier commands recorded (a demo's stage timings, ...) is kept
            earlier = previous.get("earlier_commands", []) + [previous.get("command")]
            manifest = {**previous, **manifest, "created": previous.get("created", manifest["created"]),
                        "resumed": previous.get("resumed", 0) + 1, "earlier_commands": earlier[-20:]}
        write_json(run.path / "manifest.json", manifest)
        return run

    def release(self) -> None:
        """Give up the writer lock :meth:`create` took."""
        unlock_run(self.path)

    def manifest(self) -> dict[str, Any]:
        """The run's ``manifest.json`` (``{}`` when absent); a damaged one is a named error."""
        path = self.path / "manifest.json"
        if not path.exists():
            return {}
        try:
            manifest = json.loads(path.read_text())
            if not isinstance(manifest, dict):
                raise ValueError(f"a {type(manifest).__name__}, not an object")
            for key, kind in _MANIFEST_FIELDS.items():
                value = manifest.get(key)
                if value is not None and (not isinstance(value, kind) or isinstance(value, bool)
                                          or (key == "resumed" and value < 0)):
                    raise ValueError(f"its {key!r} is {value!r}, not {_KIND_NAMES[kind]}")
            return manifest
        except (ValueError, UnicodeDecodeError, OSError) as error:
            raise InputError(f"{path} is not a valid run manifest (truncated or edited: {error})",
                             fix="Delete manifest.json (the next command writes a new one; the other files are kept) "
                                 "or use a new run directory") from None

    def update_manifest(self, **fields: Any) -> None:
        write_json(self.path / "manifest.json", {**self.manifest(), **fields})

    def file(self, name: str) -> Path:
        """Path of an artifact inside the run (parent folders created)."""
        path = self.path / name
        make_dirs(path.parent)
        return path

    # --- layout: where each stage's artifacts live ---------------------------------------------

    def stats_path(self, task: str) -> Path:
        """``stats/<task>.safetensors``: the task's activation statistics (``collect``)."""
        return self.path / "stats" / f"{task}.safetensors"

    def collected_tasks(self) -> list[str]:
        """The tasks whose statistics ``collect`` wrote into this run, by name."""
        folder = self.path / "stats"
        return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []

    def search_dir(self, task: str, method: str = "reinforce", seed: int = 0) -> Path:
        """``<method>/<task>/seed<k>/``: one search's policy, checkpoint and log (search seed ``k``;
        0 is the pipeline's own search prompts)."""
        return self.path / method / task / f"seed{int(seed)}"

    def policy_path(self, task: str, method: str = "reinforce", seed: int = 0) -> Path:
        return self.search_dir(task, method, seed) / "policy.safetensors"

    def checkpoint_path(self, task: str, method: str = "reinforce", seed: int = 0) -> Path:
        return self.search_dir(task, method, seed) / "checkpoint.pt"

    def log_path(self, task: str, method: str = "reinforce", seed: int = 0) -> Path:
        return self.search_dir(task, method, seed) / "log.csv"

    def searched_tasks(self, method: str = "reinforce", artifact: str = "policy.safetensors", seed: int = 0) -> list[str]:
        """The tasks for which ``method`` left ``artifact`` (``policy.safetensors``, ``log.csv``), by name."""
        folder = self.path / method
        return sorted(p.parent.parent.name for p in folder.glob(f"*/seed{int(seed)}/{artifact}")) if folder.is_dir() else []

    def searches(self, method: str) -> list[tuple[str, int]]:
        """Every ``(task, seed)`` for which ``method`` left a policy, sorted."""
        folder = self.path / method
        found = folder.glob("*/seed*/policy.safetensors") if folder.is_dir() else []
        return sorted((p.parent.parent.name, int(p.parent.name[4:])) for p in found if p.parent.name[4:].isdigit())

    def searched_methods(self) -> list[str]:
        """The search methods that left a policy in this run (seed 0), known methods only."""
        from interp.taskvectors.search import METHODS

        return [m for m in METHODS if self.searched_tasks(m)]

    def comparison(self) -> RunDir:
        """The run directory of ``interp compare-search`` inside this run (``compare/``): its searches,
        at the comparison's own sizes and seeds, never mix with the pipeline's."""
        return RunDir(self.path / "compare")

    def _require(self, paths: Mapping[str, Path], what: str, command: str) -> None:
        missing = [t for t, p in paths.items() if not p.exists()]
        if missing:
            folder = next(iter(paths.values())).parent
            raise MissingArtifactError(f"no {what} for {missing} in {folder}",
                                       fix=f"run `interp {command} --run {self.path}` first")

    def load_stats(self, tasks: Sequence[str], model: Any = None, layout: str | None = None) -> dict[str, Any]:
        """Each task's :class:`~interp.taskvectors.stats.ActivationStats`, checked against ``model``,
        ``layout`` (if given) and the task its file is named for (a swapped file is a named error)."""
        from interp.taskvectors.stats import ActivationStats

        paths = {t: self.stats_path(t) for t in tasks}
        self._require(paths, "statistics", "collect")
        return {t: ActivationStats.load(p, model=model, layout=layout, task=t) for t, p in paths.items()}

    def load_policies(self, tasks: Sequence[str], method: str = "reinforce", seed: int = 0) -> dict[str, Any]:
        """Each task's :class:`~interp.taskvectors.policy.Policy` found by ``method`` (search seed ``seed``);
        a file that records another task (copied over from another folder) is a named error."""
        from interp.taskvectors.policy import Policy, PolicyError

        paths = {t: self.policy_path(t, method, seed) for t in tasks}
        self._require(paths, f"{method} policy", f"search --method {method}")
        policies = {t: Policy.load(p) for t, p in paths.items()}
        for task, policy in policies.items():
            if policy.task is not None and policy.task != task:
                raise PolicyError(f"{paths[task]} holds the policy of task {policy.task!r}, not {task!r} (copied from another task?)",
                                  fix=f"Search {task!r} again (`interp search --method {method} --tasks {task} --force`) or restore its own policy file")
        return policies

    # --- writers -------------------------------------------------------------------------------

    def write_table(self, name: str, table: Any) -> Path:
        """Write a pandas DataFrame as ``name.csv`` and ``name.md``; returns the CSV path."""
        return write_csv(table, self.file(f"{name}.csv"), markdown=True)

    def write_tensors(self, name: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
        from safetensors.torch import save_file

        path = self.file(f"{name}.safetensors")
        with atomic_write(path) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata or {}))
        return path
