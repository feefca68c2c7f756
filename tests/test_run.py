"""Run-directory guarantees: resumes never mix configs, one writer at a time, kills resume bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interp.errors import InputError, ResumeConflict
from interp.models import save_model
from interp.pipeline import PipelineConfig, load_model_spec, load_source, stage_collect, stage_search
from interp.run import RunDir, RunLockedError
from interp.taskvectors.search.reinforce import ReinforceConfig
from tests.conftest import random_model

ROOT = Path(__file__).resolve().parents[1]
CFG = PipelineConfig(tasks=("lowlight", "segmentation"), n_collect=3, n_candidates=6, n_train=2, n_search_eval=2)
RCFG = ReinforceConfig(steps=4, samples=4, eval_every=1, lr=0.1)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(random_model(with_vqgan=True), path)
    return path


@pytest.fixture(scope="module")
def model(model_file):
    return load_model_spec(str(model_file))


def tensors(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a run's statistics and policies, by file and name."""
    out = {}
    for path in sorted(run.rglob("*.safetensors")):
        if path.parent.name == "prompts":
            continue
        out.update({f"{path.relative_to(run)}:{k}": v for k, v in load_file(str(path)).items()})
    return out


def test_collect_with_another_config_is_refused_and_force_recomputes(tmp_path, model) -> None:
    run = RunDir.create(tmp_path / "run", command="test", config={})
    first = stage_collect(run, model, load_source("synthetic:1"), CFG)
    assert first["lowlight"].extra["provenance"]["data"] == "synthetic:1"
    assert oct(run.stats_path("lowlight").stat().st_mode & 0o777) == "0o644"
    stage_collect(run, model, load_source("synthetic:1"), CFG)  # same config: resumes
    for source, cfg, field in [
        (load_source("synthetic:2"), CFG, "data: 'synthetic:1' -> 'synthetic:2'"),
        (load_source("synthetic:1"), replace(CFG, n_collect=4), "n_collect: 3 -> 4"),
        (load_source("synthetic:1"), replace(CFG, seed=5), "seed: 0 -> 5"),
    ]:
        with pytest.raises(ResumeConflict, match="--force") as info:
            stage_collect(run, model, source, cfg)
        assert field in str(info.value) and "new run directory" in str(info.value)
    retrained = random_model(seed=1, with_vqgan=True)  # same config, other weights
    with pytest.raises(ResumeConflict, match="model.weights"):
        stage_collect(run, retrained, load_source("synthetic:1"), CFG)
    again = stage_collect(run, model, load_source("synthetic:2"), CFG, force=True)
    assert again["lowlight"].extra["provenance"]["data"] == "synthetic:2"
    assert stage_collect(run, model, load_source("synthetic:2"), CFG)["lowlight"].n_prompts == 3


def test_search_resumed_with_another_lr_is_refused_and_force_recomputes(tmp_path, model) -> None:
    source = load_source("synthetic:1")
    run = RunDir.create(tmp_path / "run", command="test", config={})
    stats = stage_collect(run, model, source, CFG)
    stage_search(run, model, source, stats, CFG, RCFG)
    run.policy_path("lowlight").unlink()  # the reproduction: the checkpoint stays
    other = replace(RCFG, lr=0.5)
    with pytest.raises(ResumeConflict, match=r"config.lr: 0.1 -> 0.5") as info:
        stage_search(run, model, source, stats, CFG, other)
    assert "checkpoint.pt" in str(info.value)
    with pytest.raises(ResumeConflict, match="config.lr"):  # the finished task's policy likewise
        stage_search(run, model, source, stats, replace(CFG, tasks=("segmentation",)), other)
    forced = stage_search(run, model, source, stats, CFG, other, force=True)
    fresh_run = RunDir.create(tmp_path / "fresh", command="test", config={})
    fresh = stage_search(fresh_run, model, source, stage_collect(fresh_run, model, source, CFG), CFG, other)
    for task in CFG.tasks:
        assert forced[task].metadata["config"]["lr"] == 0.5
        assert torch.equal(forced[task].logits, fresh[task].logits)


def test_truncated_manifest_is_a_named_error(tmp_path) -> None:
    run = RunDir.create(tmp_path / "run", command="test", config={"a": 1})
    text = (run.path / "manifest.json").read_text()
    (run.path / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match="manifest.json is not a valid run manifest"):
        run.manifest()


def test_orphaned_temporaries_are_cleaned_on_reopen(tmp_path) -> None:
    run = RunDir.create(tmp_path / "run", command="test", config={})
    orphan = run.path / "stats" / ".interp-lowlight.safetensors.k2j3h4.tmp"
    orphan.parent.mkdir()
    orphan.write_bytes(b"half")
    RunDir.create(tmp_path / "run", command="test", config={})
    assert not orphan.exists()


CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import torch
    from interp.pipeline import PipelineConfig, load_model_spec, load_source, stage_collect, stage_search
    from interp.run import RunDir
    from interp.taskvectors.search.reinforce import ReinforceConfig
    torch.set_num_threads(1)
    mode, run_dir, model_file = sys.argv[1:4]
    run = RunDir.create(run_dir, command="child", config={})
    if mode == "hold":
        print("holding", flush=True)
        time.sleep(60)
    kill_at = int(os.environ.get("KILL_AT_REPLACE", "0"))
    calls = [0]
    real_replace = os.replace

    def replace(src, dst):  # SIGKILL at the chosen commit (before it happens)
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    os.replace = replace
    cfg = PipelineConfig(tasks=("lowlight", "segmentation"), n_collect=3, n_candidates=6, n_train=2, n_search_eval=2)
    model, source = load_model_spec(model_file), load_source("synthetic:1")
    stats = stage_collect(run, model, source, cfg)
    stage_search(run, model, source, stats, cfg, ReinforceConfig(steps=4, samples=4, eval_every=1, lr=0.1))
    print("done", flush=True)
""")


def child(mode: str, run: Path, model_file: Path, kill_at: int = 0, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "KILL_AT_REPLACE": str(kill_at), "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(run), str(model_file)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path, model_file) -> None:
    holder = child("hold", tmp_path / "run", model_file)
    try:
        assert holder.stdout.readline().strip() == "holding"
        start = time.monotonic()
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}") as info:
            RunDir.create(tmp_path / "run", command="second", config={})
        assert str(tmp_path / "run") in str(info.value) and time.monotonic() - start < 30
    finally:
        holder.kill()
        holder.wait()
    RunDir.create(tmp_path / "run", command="after", config={})  # the lock dies with its holder


@pytest.mark.slow
def test_sigkill_at_any_commit_resumes_to_the_uninterrupted_result(tmp_path, model_file) -> None:
    reference = child("run", tmp_path / "reference", model_file)
    out, err = reference.communicate(timeout=600)
    assert "done" in out, err
    expected = tensors(tmp_path / "reference")
    # commits of a fresh run: 1 lock holder, 2 manifest, 3/4 lowlight stats tensors / their JSON copy
    # (the window that blocked resumes), 5/6 segmentation's, 7-10 lowlight search checkpoints, ...
    # The resumed run: 1 holder, 2 manifest, 3/4 segmentation stats, 5-8 checkpoints: 7 is mid-search.
    run = tmp_path / "killed"
    for kill_at in (4, 7):
        killed = child("run", run, model_file, kill_at=kill_at)
        killed.communicate(timeout=600)
        assert killed.returncode == -9, f"not killed at commit {kill_at}"
    assert list(run.rglob(".*.tmp")), "a kill before a rename leaves its temporary"
    resumed = child("run", run, model_file)
    out, err = resumed.communicate(timeout=600)
    assert "done" in out, err
    got = tensors(run)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert not list(run.rglob(".*.tmp"))  # cleaned when the run was reopened


def test_run_dir_takes_a_str_path(tmp_path) -> None:
    """The documented route RunDir("runs/demo").load_stats(TASKS) works with a str."""
    from interp.run import MissingArtifactError, RunDir

    run = RunDir(str(tmp_path))
    assert run.path == tmp_path and run.stats_path("lowlight") == tmp_path / "stats" / "lowlight.safetensors"
    with pytest.raises(MissingArtifactError, match="interp collect"):
        run.load_stats(["lowlight"])
