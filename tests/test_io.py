"""The shared atomic writer: commit or leave the old file, 0644, named disk-full / permission errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from interp.errors import DiskFullError
from interp.io import (
    NotWritableError, atomic_write, clean_temporaries, read_safetensors_metadata, write_csv, write_error, write_json,
)

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_commits_with_0644_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "sub" / "a.txt"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".interp-a.txt.") and tmp.suffix == ".tmp"
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert list(target.parent.iterdir()) == [target]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert list(tmp_path.iterdir()) == [target]


def test_clean_temporaries_removes_only_writer_leftovers(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    orphan = tmp_path / "d" / ".interp-stats.safetensors.abc123.tmp"
    orphan.write_text("x")
    keep = [tmp_path / "d" / "notes.tmp", tmp_path / "d" / ".stats.safetensors.abc123.tmp", tmp_path / ".mine.tmp"]
    for path in keep:
        path.write_text("mine")
    assert clean_temporaries(tmp_path) == [orphan]
    assert all(path.exists() for path in keep) and not orphan.exists()


def test_write_csv_rows_and_frames_and_markdown(tmp_path) -> None:
    rows = [{"step": 0, "loss": 0.5}, {"step": 1, "loss": 0.25, "held_out": 0.1}]
    path = write_csv(rows, tmp_path / "log.csv")
    assert path.read_text().splitlines() == ["step,loss,held_out", "0,0.5,", "1,0.25,0.1"]
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, 0.125]})
    write_csv(frame, tmp_path / "t.csv", markdown=True)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), frame)
    assert "0.1250" in (tmp_path / "t.md").read_text()


def test_read_safetensors_metadata(tmp_path) -> None:
    from safetensors.torch import save_file

    from interp.errors import InputError

    save_file({"x": torch.zeros(2)}, str(tmp_path / "a.safetensors"), metadata={"task": "lowlight"})
    assert read_safetensors_metadata(tmp_path / "a.safetensors") == {"task": "lowlight"}
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(InputError, match="bad.safetensors"):
        read_safetensors_metadata(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="does not exist"):
        read_safetensors_metadata(tmp_path / "missing.safetensors")


def test_library_write_errors_are_named() -> None:
    import errno

    from safetensors import SafetensorError

    assert isinstance(write_error(OSError(errno.ENOSPC, "No space left on device"), "p"), DiskFullError)
    assert isinstance(write_error(OSError(errno.EROFS, "Read-only file system"), "p"), NotWritableError)
    assert isinstance(write_error(SafetensorError("Error while serializing: I/O error: File too large (os error 27)"), "p"), DiskFullError)
    assert isinstance(write_error(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), "p"), DiskFullError)
    assert write_error(RuntimeError("shape mismatch"), "p") is None


@pytest.mark.parametrize("kind", ["safetensors", "torch", "json"])
def test_full_file_system_gives_disk_full_naming_the_path(tmp_path, kind) -> None:
    """A real short write: the child process may write at most 4 KiB per file (RLIMIT_FSIZE)."""
    target = tmp_path / f"out.{kind}"
    write = {
        "safetensors": "from safetensors.torch import save_file; save_file({'a': torch.zeros(100000)}, str(tmp))",
        "torch": "torch.save({'a': torch.zeros(100000)}, tmp)",
        "json": "tmp.write_text('x' * 100000)",
    }[kind]
    code = textwrap.dedent(f"""
        import resource, signal, sys, torch
        from interp.io import atomic_write
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            with atomic_write({str(target)!r}) as tmp:
                {write}
        except Exception as e:
            print(type(e).__name__, e)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("DiskFullError"), out.stdout + out.stderr
    assert str(target) in out.stdout and "no space left" in out.stdout
    assert list(tmp_path.iterdir()) == []  # no temporary left, no half file


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only directories")
def test_read_only_directory_is_named(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(NotWritableError, match="not writable"):
            write_json(folder / "a.json", {})
    finally:
        folder.chmod(0o755)
