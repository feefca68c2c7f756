"""The ``interp`` command as a user runs it: bad flags and bad inputs end in one line on stderr
naming the problem and the fix, exit status 2 (usage / input) or 1 (failure), no traceback
unless ``--debug`` or ``INTERP_DEBUG=1`` asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def interp(*argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    if not env:
        environment.pop("INTERP_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "interp.cli", *argv], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_a_bad_flag_is_one_line_with_exit_status_2(tmp_path) -> None:
    result = interp("search", "--steps", "-3", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("interp search: error: argument --steps: must be in [1, 1000000], got -3")
    assert "interp search --help" in lines[0] and not (tmp_path / "runs").exists()


def test_an_input_error_at_run_time_with_debug_shows_the_traceback(tmp_path) -> None:
    """(Without INTERP_DEBUG the same error is one line: tests/test_cli.py checks it in-process.)"""
    result = interp("taskness", "--run", "empty-run", cwd=tmp_path, env={"INTERP_DEBUG": "1"})
    assert result.returncode == 2 and "Traceback" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("interp taskness: error: ") and "interp collect" in last
