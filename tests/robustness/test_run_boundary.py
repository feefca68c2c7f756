"""The run directory is a boundary: nothing is written through a symbolic link that leads out of
it, ``--run`` is a new folder, an empty one or an interp run (anything else is refused before a
file is touched), only temporaries interp named are cleaned, and every writing command (figures
included) takes the run's lock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from interp.cli import main
from interp.io import OutsideRunError, atomic_write, clean_temporaries, write_json
from interp.models import save_model
from interp.run import NotARunError, RunDir, check_run_path, unlock_run
from tests.conftest import random_model
from tests.robustness.probes import assert_named


def _args(run: Path, model: Path) -> list[str]:
    return ["--run", str(run), "--model", str(model), "--data", "synthetic:7", "--tasks", "lowlight,inpainting", "--n-collect", "2",
            "--n-candidates", "2", "--n-eval", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "random.safetensors"
    save_model(random_model(with_vqgan=True), path)
    return path


@pytest.fixture(scope="module")
def collected(tmp_path_factory, model_file) -> Path:
    """A run through collect and taskness (statistics and a table to draw)."""
    run = tmp_path_factory.mktemp("boundary") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for stage in ("collect", "taskness"):
            assert main([stage, *_args(run, model_file)]) == 0
    finally:
        torch.set_num_threads(threads)
        unlock_run(run)  # the later commands lock it again, as a new process would
    return run


@pytest.fixture
def run(collected, tmp_path) -> Path:
    """A private copy of the collected run (each test plants its own links)."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(collected, copy, ignore=shutil.ignore_patterns(".lock"))
    yield copy
    unlock_run(copy)


def _outside(tmp_path: Path) -> Path:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    return elsewhere


def _untouched(elsewhere: Path) -> None:
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert (elsewhere / "keep.txt").read_text() == "mine"


def test_atomic_write_refuses_a_directory_link_out_of_a_locked_run(tmp_path) -> None:
    run = RunDir.create(tmp_path / "run", command="test", config={})
    elsewhere = _outside(tmp_path)
    (run.path / "figures").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutsideRunError) as error, atomic_write(run.path / "figures" / "results.html") as tmp:
        tmp.write_text("x")
    assert_named(error.value, "outside the run directory", str(run.path / "figures"))
    with pytest.raises(OutsideRunError):
        run.file("figures/sub/x.csv")  # no folder is made through the link either
    _untouched(elsewhere)
    # a link that stays inside the run is fine, and a link to a single file is replaced, not written through
    (run.path / "inner").mkdir()
    (run.path / "alias").symlink_to(run.path / "inner", target_is_directory=True)
    write_json(run.path / "alias" / "a.json", {"v": 1})
    (run.path / "one.json").symlink_to(elsewhere / "keep.txt")
    write_json(run.path / "one.json", {"v": 2})
    assert (run.path / "inner" / "a.json").is_file() and not (run.path / "one.json").is_symlink()
    _untouched(elsewhere)
    run.release()


@pytest.mark.parametrize("link, argv", [
    ("figures", ["figures", "{run}", "--formats", "html"]),
    ("stats", ["collect", "--force", *_args(Path("{run}"), Path("{model}"))]),
    ("prompts", None),  # evaluate: checked through RunDir.write_tensors below (needs a policy)
])
def test_no_stage_writes_through_a_planted_directory_link(link, argv, run, model_file, tmp_path, capsys) -> None:
    elsewhere = _outside(tmp_path)
    target = run / link
    if target.exists():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    target.symlink_to(elsewhere, target_is_directory=True)
    if argv is None:
        with pytest.raises(OutsideRunError):
            RunDir.create(run, command="test", config={}).write_tensors("prompts/lowlight", {"x": torch.zeros(2)})
    else:
        argv = [a.replace("{run}", str(run)).replace("{model}", str(model_file)) for a in argv]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "outside the run directory" in err and "unexpected" not in err, err
    _untouched(elsewhere)


def test_import_policy_force_does_not_write_through_a_task_link(run, model_file, tmp_path, capsys) -> None:
    import pickle

    from interp.taskvectors.units import UnitSpace

    space = UnitSpace.for_model(random_model(with_vqgan=True), "group")
    official = tmp_path / "bernoullis.pkl"
    official.write_bytes(pickle.dumps([0.0] * len(space)))
    elsewhere = _outside(tmp_path)
    (run / "reinforce").mkdir()
    (run / "reinforce" / "lowlight").symlink_to(elsewhere, target_is_directory=True)
    argv = ["import-policy", str(official), "--task", "lowlight", "--run", str(run), "--model", str(model_file),
            "--allow-pickle", "--force"]
    assert main(argv) == 2
    assert "outside the run directory" in capsys.readouterr().err
    _untouched(elsewhere)


def test_only_interp_temporaries_are_cleaned(run, tmp_path) -> None:
    mine = [run / ".notes.tmp", run / "stats" / ".draft.safetensors.x1.tmp"]
    for path in mine:
        path.write_text("mine")
    orphan = run / "stats" / ".interp-lowlight.safetensors.abc.tmp"
    orphan.write_text("half")
    elsewhere = _outside(tmp_path)
    (elsewhere / ".interp-x.y.tmp").write_text("not under the run")
    (run / "linked").symlink_to(elsewhere, target_is_directory=True)
    RunDir.create(run, command="test", config={})
    assert all(p.read_text() == "mine" for p in mine) and not orphan.exists()
    assert (elsewhere / ".interp-x.y.tmp").exists()  # links are not followed
    assert clean_temporaries(run) == []


def test_a_folder_that_is_not_a_run_is_refused_before_anything_is_written(model_file, tmp_path, capsys, monkeypatch) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    files = {"notes.txt": "mine", ".draft.tmp": "mine", "manifest.json": '{"name": "my package"}'}
    for name, text in files.items():
        (folder / name).write_text(text)
    for stage in ("taskness", "collect", "evaluate"):
        assert main([stage, *_args(folder, model_file)]) == 2
        err = capsys.readouterr().err
        assert "not a run directory" in err and "unexpected" not in err, err
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert all((folder / n).read_text() == t for n, t in files.items())
    with pytest.raises(NotARunError):
        RunDir.create(folder, command="test", config={})
    # the current directory (--run "" or ".") is refused the same way
    monkeypatch.chdir(folder)
    for name in ("", "."):
        assert main(["taskness", "--run", name]) == 2
        assert "--run" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)


def test_run_names_that_cannot_be_a_folder_are_named(tmp_path, capsys) -> None:
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for name in (str(tmp_path / ("a" * 300)), str(tmp_path / "x" / ("b/" * 3000)), str(tmp_path / "loop1" / "run")):
        with pytest.raises(NotARunError) as error:
            check_run_path(name)
        assert_named(error.value, "cannot use")
        assert main(["taskness", "--run", name]) == 2
        assert "unexpected" not in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_run_path(empty) == empty and check_run_path(tmp_path / "new") == tmp_path / "new"


def test_a_planted_lock_link_is_refused(tmp_path, capsys) -> None:
    run = RunDir.create(tmp_path / "run", command="test", config={})
    run.release()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (run.path / ".lock").unlink()
    (run.path / ".lock").symlink_to(victim)
    assert main(["taskness", "--run", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert ".lock is a symbolic link" in err and "unexpected" not in err
    assert victim.read_text() == "mine"


def test_figures_take_the_run_lock(run, capsys) -> None:
    holder = FileLock(str(run / ".lock"), timeout=0)
    holder.acquire()  # another writer (a search, another figures) holds the run
    try:
        assert main(["figures", str(run), "--formats", "html"]) == 2
        assert "in use by" in capsys.readouterr().err
        assert not (run / "figures").exists()
    finally:
        holder.release()
    assert main(["figures", str(run), "--formats", "HTML"]) == 0  # formats are case-blind
    assert (run / "figures" / "taskness.html").is_file()
    assert json.loads((run / "manifest.json").read_text())["command"]
    assert not os.path.exists(run / "figures" / ".lock")


def test_a_read_only_file_system_is_named(tmp_path, capsys, monkeypatch) -> None:
    """(As root, permissions do not stop a write: the file system's EROFS is simulated.)"""
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "mkdir", read_only)
        assert main(["taskness", "--run", str(tmp_path / "new")]) == 1
        err = capsys.readouterr().err
        assert "not writable" in err and "unexpected" not in err, err
    run = RunDir.create(tmp_path / "run", command="test", config={})
    run.release()
    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", read_only)
        assert main(["taskness", "--run", str(run.path)]) == 1
        err = capsys.readouterr().err
        assert "not writable" in err and "unexpected" not in err, err


def test_search_force_deletes_nothing_through_a_task_link(run, model_file, tmp_path, capsys) -> None:
    """``search --force`` removes a task's old policy, checkpoint and log: never through a link."""
    elsewhere = _outside(tmp_path)
    (elsewhere / "seed0").mkdir()
    (elsewhere / "seed0" / "policy.safetensors").write_text("mine")
    (run / "reinforce").mkdir()
    (run / "reinforce" / "lowlight").symlink_to(elsewhere, target_is_directory=True)
    argv = ["search", "--force", *_args(run, model_file), "--steps", "1", "--samples", "2", "--chunk", "4"]
    assert main(argv) == 2
    assert "outside the run directory" in capsys.readouterr().err
    assert (elsewhere / "seed0" / "policy.safetensors").read_text() == "mine"


def test_a_run_whose_damaged_manifest_was_deleted_is_still_a_run(run, capsys) -> None:
    """The damaged-manifest error says to delete manifest.json: the run must still open."""
    (run / "manifest.json").write_text("{")
    assert main(["taskness", "--run", str(run)]) == 2
    assert "Delete manifest.json" in capsys.readouterr().err
    (run / "manifest.json").unlink()
    assert check_run_path(run) == run
    assert main(["taskness", "--run", str(run), "--tasks", "lowlight,inpainting"]) == 0
    assert json.loads((run / "manifest.json").read_text())["command"]  # a new manifest
