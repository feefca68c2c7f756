"""The named-error base: message format, exit status, pickling, and the package's errors under it."""

import pickle

import pytest

from interp.errors import CheckpointError, ConfigError, DiskFullError, InputError, InterpError, ResumeConflict, UnsafeFileError


def test_message_is_problem_then_fix():
    assert str(ConfigError("--steps must be positive, got -3", fix="pass --steps 1 or more")) == (
        "--steps must be positive, got -3. pass --steps 1 or more"
    )
    assert str(InputError("bad file.", fix="Use another.")) == "bad file. Use another."
    assert str(InputError("no fix")) == "no fix"


@pytest.mark.parametrize("error", [ConfigError("a", "b"), CheckpointError("c"), ResumeConflict("d", "e"), DiskFullError("/tmp/x")])
def test_errors_pickle_with_their_fix(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)


def test_exit_status_and_compatible_bases():
    assert ConfigError("x").exit_status == InputError("x").exit_status == ResumeConflict("x").exit_status == 2
    assert InterpError("x").exit_status == DiskFullError("p").exit_status == 1
    assert isinstance(InputError("x"), ValueError) and isinstance(UnsafeFileError("x"), PermissionError)
    full = DiskFullError("/runs/a/stats.safetensors")
    assert isinstance(full, OSError) and full.errno == 28 and "/runs/a/stats.safetensors" in str(full)


def test_package_errors_are_named_errors():
    from interp.data.source import DataError
    from interp.models.checkpoint import CheckpointError as FromCheckpoint
    from interp.taskvectors.stats_file import CorruptStatsError, StatsError
    from interp.viz.figures import FigureError
    from interp.weights.arithmetic import TaskVectorError
    from interp.weights.bases import BasisError

    assert FromCheckpoint is CheckpointError
    for cls in (DataError, StatsError, CorruptStatsError, TaskVectorError, BasisError):
        assert issubclass(cls, InputError) and issubclass(cls, ValueError)
    assert issubclass(FigureError, InterpError) and issubclass(FigureError, RuntimeError)
