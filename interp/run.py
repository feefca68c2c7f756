"""A run directory: everything one command produced, in one place (DESIGN.md §3, ../shared).

``manifest.json`` records the command, its config, seeds and package versions; tensors are
safetensors, tables CSV (+ Markdown for reading), figures go under ``figures/``. Guarantees:

* every write is atomic (:func:`interp.io.atomic_write`), so a killed run never leaves a
  half-written file; temporaries a kill left behind are removed when the run is reopened;
* every resumable output records the config that made it (:mod:`interp.provenance`) and a
  resume with another config is refused (``force=True`` / ``--force`` recomputes);
* one writer at a time: :meth:`RunDir.create` takes a lock (``.lock``, via ``filelock``) that
  a second process fails to get at once, with a message naming the holder.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from interp.errors import InputError, InterpError
from interp.io import atomic_write, clean_temporaries, write_csv, write_json

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
    _LOCKS[key] = lock
    write_json(path / ".lock.holder.json", {"pid": os.getpid(), "host": socket.gethostname(),
                                             "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                             "command": " ".join(sys.argv)})


def unlock_run(path: Path) -> None:
    """Release this process's lock of a run directory (also released when the process ends)."""
    lock = _LOCKS.pop(Path(path).resolve(), None)
    if lock is not None:
        lock.release()


class MissingArtifactError(InputError, FileNotFoundError):
    """A stage's input that an earlier stage has not written into the run yet."""


@dataclass
class RunDir:
    """A directory holding one run's artifacts."""

    path: Path

    @classmethod
    def create(cls, path: str | Path, command: list[str] | str, config: Mapping[str, Any]) -> RunDir:
        """Create (or reopen, to resume) a run directory and write its manifest.

        Takes the directory's writer lock (held until the process ends or :meth:`release`) and
        removes temporaries a killed writer left behind.
        """
        run = cls(Path(path))
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
        if previous:
            manifest["created"] = previous.get("created", manifest["created"])
            manifest["resumed"] = previous.get("resumed", 0) + 1
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
            return manifest
        except (ValueError, UnicodeDecodeError) as error:
            raise InputError(f"{path} is not a valid run manifest (truncated or edited: {error})",
                             fix="Delete manifest.json (the next command writes a new one; the other files are kept) "
                                 "or use a new run directory") from None

    def update_manifest(self, **fields: Any) -> None:
        write_json(self.path / "manifest.json", {**self.manifest(), **fields})

    def file(self, name: str) -> Path:
        """Path of an artifact inside the run (parent folders created)."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # --- layout: where each stage's artifacts live ---------------------------------------------

    def stats_path(self, task: str) -> Path:
        """``stats/<task>.safetensors``: the task's activation statistics (``collect``)."""
        return self.path / "stats" / f"{task}.safetensors"

    def search_dir(self, task: str, method: str = "reinforce") -> Path:
        """``<method>/<task>/``: one search's policy, checkpoint and log."""
        return self.path / method / task

    def policy_path(self, task: str, method: str = "reinforce") -> Path:
        return self.search_dir(task, method) / "policy.safetensors"

    def checkpoint_path(self, task: str, method: str = "reinforce") -> Path:
        return self.search_dir(task, method) / "checkpoint.pt"

    def log_path(self, task: str, method: str = "reinforce") -> Path:
        return self.search_dir(task, method) / "log.csv"

    def searched_tasks(self, method: str = "reinforce", artifact: str = "policy.safetensors") -> list[str]:
        """The tasks for which ``method`` left ``artifact`` (``policy.safetensors``, ``log.csv``), by name."""
        folder = self.path / method
        return sorted(p.parent.name for p in folder.glob(f"*/{artifact}")) if folder.is_dir() else []

    def _require(self, paths: Mapping[str, Path], what: str, command: str) -> None:
        missing = [t for t, p in paths.items() if not p.exists()]
        if missing:
            folder = next(iter(paths.values())).parent
            raise MissingArtifactError(f"no {what} for {missing} in {folder}",
                                       fix=f"run `interp {command} --run {self.path}` first")

    def load_stats(self, tasks: Sequence[str], model: Any = None) -> dict[str, Any]:
        """Each task's :class:`~interp.taskvectors.stats.ActivationStats` (checked against ``model``)."""
        from interp.taskvectors.stats import ActivationStats

        paths = {t: self.stats_path(t) for t in tasks}
        self._require(paths, "statistics", "collect")
        return {t: ActivationStats.load(p, model=model) for t, p in paths.items()}

    def load_policies(self, tasks: Sequence[str], method: str = "reinforce") -> dict[str, Any]:
        """Each task's :class:`~interp.taskvectors.policy.Policy` found by ``method``."""
        from interp.taskvectors.policy import Policy

        paths = {t: self.policy_path(t, method) for t in tasks}
        self._require(paths, f"{method} policy", "search")
        return {t: Policy.load(p) for t, p in paths.items()}

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
