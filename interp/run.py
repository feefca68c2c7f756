"""A run directory: everything one command produced, in one place (DESIGN §3).

``manifest.json`` records the command, its config, seeds and package versions; tensors are
safetensors, tables CSV (+ Markdown for reading), figures go under ``figures/``. Every write
is atomic (temporary file, then rename), so a killed run never leaves a half-written file
and a resumed run can trust what it finds.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from interp.errors import InputError
from interp.io import atomic_write, write_csv, write_json

#: the old name of :func:`interp.io.atomic_write`, kept for callers not yet moved over
atomic_path = atomic_write


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


class MissingArtifactError(InputError, FileNotFoundError):
    """A stage's input that an earlier stage has not written into the run yet."""


@dataclass
class RunDir:
    """A directory holding one run's artifacts."""

    path: Path

    @classmethod
    def create(cls, path: str | Path, command: list[str] | str, config: Mapping[str, Any]) -> RunDir:
        """Create (or reopen, to resume) a run directory and write its manifest."""
        run = cls(Path(path))
        run.path.mkdir(parents=True, exist_ok=True)
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

    def manifest(self) -> dict[str, Any]:
        path = self.path / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}

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
