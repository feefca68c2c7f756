"""Shared probes of the robustness suite: a payload that must never run, and the check that an
error is a named one (an :class:`~interp.errors.InterpError` whose message names the problem)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from interp.errors import InterpError


class Payload:
    """Unpickling this runs ``touch <marker>``: the file must never appear."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path: Path):
    """Where a payload would leave its trace; checked after the test."""
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "a pickle payload ran"


def malicious_files(folder: Path, marker: Path, name: str) -> dict[str, Path]:
    """The hostile variants of one file name: empty, random bytes, JSON, a pickle payload and a
    ``torch.save`` zip carrying the payload."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, data in (("empty", b""), ("random", bytes(range(256)) * 8), ("json", b'{"model": [1, 2, 3]}'),
                       ("pickle", pickle.dumps({"model": Payload(marker)}))):
        out[kind] = folder / kind / name
        out[kind].parent.mkdir()
        out[kind].write_bytes(data)
    out["torch_payload"] = folder / "torch_payload" / name
    out["torch_payload"].parent.mkdir()
    torch.save({"model": Payload(marker), "state_dict": Payload(marker)}, out["torch_payload"])
    return out


def truncated(path: Path, fraction: float = 0.5) -> Path:
    """A copy of ``path`` cut to ``fraction`` of its bytes (a killed download)."""
    out = path.with_name("truncated_" + path.name)
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def assert_named(error: BaseException, *words: str) -> None:
    """A named error whose message names every one of ``words`` (a path, a value, a hint)."""
    assert isinstance(error, InterpError), f"raw {type(error).__name__}: {error}"
    text = str(error)
    for word in words:
        assert str(word) in text, f"{word!r} not in: {text}"
