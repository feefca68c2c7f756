"""The ``interp`` command: every subcommand on one tiny run, every option reaching its config,
and bad values stopped with one line (exit status 2) before any model loads."""

from __future__ import annotations

import argparse
import functools
import inspect
import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from interp import pipeline
from interp.cli import commands, main
from interp.cli.stages import PIPELINE_KINDS
from interp.models import save_model
from interp.pipeline import PipelineConfig, SearchOptions
from interp.taskvectors.patching import Intervention
from interp.taskvectors.policy import Policy
from interp.taskvectors.search.reinforce import ReinforceConfig
from tests.conftest import random_model, torch_threads

TASKS = "lowlight,inpainting"


def _tiny_args(run: Path, model: Path) -> list[str]:
    return ["--run", str(run), "--model", str(model), "--data", "synthetic:7", "--tasks", TASKS, "--n-collect", "3",
            "--n-candidates", "4", "--n-train", "2", "--n-search-eval", "2", "--n-eval", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "random.safetensors"
    save_model(random_model(with_vqgan=True), path)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, model_file) -> Path:
    """One run directory through collect -> taskness -> search -> sweep -> evaluate, via ``main``."""
    run = tmp_path_factory.mktemp("cli") / "run"
    common = _tiny_args(run, model_file)
    with torch_threads(1):
        for argv in (["collect", *common], ["taskness", *common],
                     ["search", *common, "--steps", "2", "--samples", "4", "--eval-every", "1", "--chunk", "4", "--seed", "3"],
                     ["sweep", *common, "--sweep-granularity", "layer", "--sweep-prompts", "2", "--reward", "token"],
                     ["evaluate", *common]):
            assert main(argv) == 0, argv
    return run


def test_stages_write_their_artifacts(tiny_run, capsys) -> None:
    for name in ("stats/lowlight.safetensors", "stats/inpainting.safetensors", "taskness.csv", "sweep.csv", "results.csv",
                 "reinforce/lowlight/seed0/policy.safetensors", "reinforce/inpainting/seed0/log.csv", "prompts/lowlight.safetensors"):
        assert (tiny_run / name).is_file(), name
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert manifest["config"]["tasks"] == ["lowlight", "inpainting"] and "handler" not in manifest["config"]
    from safetensors import safe_open

    with safe_open(str(tiny_run / "reinforce/lowlight/seed0/policy.safetensors"), "pt") as f:
        config = json.loads(f.metadata()["config"])
    assert (config["steps"], config["samples"], config["seed"]) == (2, 4, 3)  # --seed reaches ReinforceConfig


def test_figures_of_the_tiny_run(tiny_run, capsys) -> None:
    assert main(["figures", str(tiny_run), "--formats", "html", "--only", "results", "--only", "reinforce-curves"]) == 0
    written = [Path(line) for line in capsys.readouterr().out.splitlines() if line.endswith(".html")]
    assert tiny_run / "figures" / "results.html" in written and all(p.is_file() for p in written)
    assert any("reinforce" in p.name for p in written)


def test_import_policy_needs_allow_pickle(tiny_run, model_file, tmp_path, capsys) -> None:
    import pickle

    from interp.taskvectors.units import UnitSpace

    n = len(UnitSpace.for_model(random_model(), "group"))
    path = tmp_path / "bernoullis.pkl"
    path.write_bytes(pickle.dumps([0.25] * n))
    argv = ["import-policy", str(path), "--task", "lowlight", "--run", str(tmp_path / "run"), "--model", str(model_file)]
    assert main(argv) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert main([*argv, "--allow-pickle"]) == 0
    policy = Policy.load(tmp_path / "run/reinforce/lowlight/seed0/policy.safetensors")
    assert torch.equal(policy.probabilities(), torch.sigmoid(torch.full((n,), 0.25))) and policy.space.granularity == "group"
    assert main([*argv, "--allow-pickle"]) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    path.write_bytes(pickle.dumps([0.25] * (n - 1)))
    assert main([*argv, "--allow-pickle", "--force"]) == 2
    assert f"number {n}" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# every option reaches its config


PIPELINE_ARGS = {"tasks": ("lowlight", ("lowlight",)), "fold": ("2", 2), "seed": ("5", 5), "n_collect": ("3", 3),
                 "n_candidates": ("7", 7), "granularity": ("head", "head"), "n_train": ("4", 4),
                 "n_search_eval": ("5", 5), "n_eval": ("6", 6), "composition": ("none", None)}
REINFORCE_ARGS = {"steps": ("3", 3), "samples": ("6", 6), "lr": ("0.5", 0.5), "init": ("-2", -2.0),
                  "sparsity": ("0.1", 0.1), "eval_every": ("2", 2), "select": ("threshold", "threshold")}
SEARCH_ARGS = {"reward": ("token", "token"), "chunk": ("8", 8), "decode": ("band", "band"),
               "intervention": ("scaled", Intervention("scaled", 1.0))}  # --alpha: test_search_intervention_reaches_the_problem


def _argv(values: dict) -> list[str]:
    return [x for name, (text, _) in values.items() for x in (f"--{name.replace('_', '-')}", text)]


@pytest.fixture
def captured(monkeypatch):
    """Stage functions replaced by recorders (no model, no statistics needed)."""
    calls: dict[str, tuple] = {}

    def recorder(name):
        @functools.wraps(getattr(pipeline, name))
        def record(*args, **kwargs):
            calls[name] = (args, kwargs)
            import pandas as pd

            return {} if name == "stage_search" else pd.DataFrame({"taskness": [0.0], "delta": [0.0]})
        return record

    for name in ("stage_collect", "stage_taskness", "stage_search", "stage_sweep", "stage_evaluate"):
        monkeypatch.setattr(pipeline, name, recorder(name))
    monkeypatch.setattr(pipeline, "load_model_spec", lambda spec, device="cpu": ("model", spec, device))
    monkeypatch.setattr(pipeline, "load_stats", lambda run, tasks, model=None: {})
    monkeypatch.setattr(pipeline, "load_policies", lambda run, tasks, *args: {})
    return calls


def test_every_config_field_has_a_checked_option() -> None:
    assert set(PIPELINE_ARGS) == {f.name for f in fields(PipelineConfig)} == set(PIPELINE_KINDS)
    assert set(REINFORCE_ARGS) | {"seed"} == {f.name for f in fields(ReinforceConfig)}
    assert set(SEARCH_ARGS) == {f.name for f in fields(SearchOptions)}


@pytest.mark.parametrize("stage", ["collect", "search", "sweep", "evaluate"])
def test_every_option_reaches_its_config(stage, captured, tmp_path, capsys) -> None:
    extra = _argv(REINFORCE_ARGS) + _argv(SEARCH_ARGS) if stage == "search" else []
    assert main([stage, "--run", str(tmp_path / "run"), "--data", "synthetic:9", "--device", "cpu", *_argv(PIPELINE_ARGS), *extra]) == 0
    args, _ = captured[f"stage_{stage}"]
    cfg = next(a for a in args if isinstance(a, PipelineConfig))
    assert cfg == PipelineConfig(**{k: v for k, (_, v) in PIPELINE_ARGS.items()})
    assert args[1][0] == "model" and str(args[1][1]) == "tiny" and args[1][2] == "cpu" and args[2].name.startswith("synthetic")
    if stage == "search":
        rcfg = next(a for a in args if isinstance(a, ReinforceConfig))
        assert rcfg == ReinforceConfig(**{k: v for k, (_, v) in REINFORCE_ARGS.items()}, seed=5)
        assert captured["stage_search"][1]["options"] == SearchOptions(**{k: v for k, (_, v) in SEARCH_ARGS.items()})


def test_search_takes_each_methods_own_options(captured, tmp_path, capsys) -> None:
    from interp.taskvectors.search.greedy import GreedyConfig

    run = ["--run", str(tmp_path / "run"), "--device", "cpu"]
    assert main(["search", *run, "--method", "greedy", "--pool", "5", "--max-units", "3"]) == 0
    cfg = next(a for a in captured["stage_search"][0] if isinstance(a, GreedyConfig))
    assert (cfg.pool, cfg.max_units, cfg.tol) == (5, 3, GreedyConfig().tol)
    assert main(["search", *run, "--method", "gradient", "--pool", "5"]) == 2  # greedy's option, not gradient's
    assert "takes no --pool" in capsys.readouterr().err


def test_search_help_lists_every_method(capsys) -> None:
    from interp.taskvectors.search import METHODS

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = capsys.readouterr().out
    assert all(method in out for method in METHODS) and "--pool" in out and "greedy 24" in out


def test_sweep_options_reach_the_stage(captured, tmp_path, capsys) -> None:
    assert main(["sweep", "--run", str(tmp_path), "--sweep-granularity", "group", "--sweep-prompts", "3", "--reward", "token"]) == 0
    assert captured["stage_sweep"][0][-3:] == ("group", 3, "token")


def test_demo_seed_reaches_the_search(monkeypatch, tmp_path) -> None:
    import interp.demo

    seen = {}
    monkeypatch.setattr(interp.demo, "run_demo", lambda run, seed, full: seen.update(seed=seed, full=full) or 0)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--seed", "7"]) == 0
    assert seen == {"seed": 7, "full": False}
    assert main(["demo", "--out", str(tmp_path / "demo2"), "--full"]) == 0 and seen == {"seed": 0, "full": True}
    cfg, options = interp.demo.demo_search("inpainting", seed=7)
    assert cfg.seed == 7 and options.reward == "soft"  # the registry's agreeing reward


def test_train_options_reach_train_config(monkeypatch, tmp_path, capsys) -> None:
    import interp.train
    from interp.cli.train import TRAIN_KINDS

    seen = {}
    monkeypatch.setattr(interp.train, "train_tiny", lambda out, cfg, command: seen.update(out=out, cfg=cfg))
    values = {f.name: f.default for f in fields(interp.train.TrainConfig)}
    assert set(values) == set(TRAIN_KINDS)
    changed = {"seed": 3, "mae_steps": 7, "focus_tasks": ("lowlight",), "contrast_tasks": (), "mask_ratio": 0.5, "workers": 1}
    argv = [x for k, v in changed.items() for x in (f"--{k.replace('_', '-')}", ",".join(v) if isinstance(v, tuple) else str(v))]
    assert main(["train-tiny", "--out", str(tmp_path / "t"), *argv]) == 0
    assert seen["cfg"] == interp.train.TrainConfig(**{**values, **changed})


@pytest.mark.parametrize("stage", ["collect", "search"])
def test_force_reaches_the_stages_that_resume(stage, captured, tmp_path, capsys) -> None:
    original = getattr(pipeline, f"stage_{stage}").__wrapped__
    assert "force" in inspect.signature(original).parameters
    for argv, expected in (([], False), (["--force"], True)):
        assert main([stage, "--run", str(tmp_path), *argv]) == 0
        assert captured[f"stage_{stage}"][1]["force"] == expected
    assert main(["evaluate", "--run", str(tmp_path), "--force"]) == 0  # always recomputes: accepted


# --------------------------------------------------------------------------------------------
# bad values: one line, exit status 2, before any model loads

BAD = [
    ["search", "--steps", "-3"], ["search", "--samples", "0"], ["search", "--eval-every", "0"], ["search", "--chunk", "0"],
    ["collect", "--n-train", "0"], ["collect", "--n-candidates", "0"], ["sweep", "--sweep-prompts", "0"],
    ["collect", "--tasks", ""], ["collect", "--tasks", "segmentaton"], ["collect", "--data", "synthetic:abc"],
    ["collect", "--data", "imagenet"], ["collect", "--data", "pascal:/no/such/dir"], ["search", "--reward", "pixels"],
    ["search", "--lr", "nan"], ["search", "--lr", "0"], ["collect", "--fold", "4"], ["collect", "--granularity", "unit"],
    ["collect", "--model", "missing.safetensors"], ["collect", "--composition", "lowlight"],
    ["collect", "--composition", "lowlight,colorization"], ["collect", "--n-collect", "9", "--n-candidates", "3"],
    ["train-tiny", "--mask-ratio", "1"], ["train-tiny", "--contrast-tasks", "segmentation"], ["demo", "--seed", "x"],
    ["figures", "/no/such/run"], ["frobnicate"], ["collect", "--no-such-flag"], ["collect", "--device", "tpu"],
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a) or "''")
def test_bad_values_are_one_line_exit_2(argv, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(pipeline, "load_model_spec", lambda *a, **k: pytest.fail("a model loaded before the check"))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("interp") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_device_cuda_without_cuda(monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["collect", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_run_naming_a_file(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["collect", "--run", str(tmp_path / "file")]) == 2
    assert "is a file, not a run directory" in capsys.readouterr().err


def test_failures_print_one_line_and_debug_shows_the_traceback(monkeypatch, tmp_path, capsys) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "load_model_spec", broken)
    argv = ["collect", "--run", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: boom" in err and "--debug" in err
    assert main(["--debug", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("INTERP_DEBUG", "1")
    assert main(argv) == 1
    assert "Traceback" in capsys.readouterr().err


def test_every_command_takes_threads_and_main_applies_it(monkeypatch, tmp_path, capsys) -> None:
    from interp.cli import build_parser, runtime

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert all(any("--threads" in a.option_strings for a in child._actions) for child in subparsers.choices.values())
    asked = []
    monkeypatch.setattr(runtime, "set_threads", lambda threads=None: asked.append(threads))
    def stop(*args, **kwargs):
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipeline, "load_model_spec", stop)
    assert main(["collect", "--run", str(tmp_path), "--threads", "1"]) == main(["collect", "--run", str(tmp_path)]) == 1
    assert asked == [1, None]  # None: interp.runtime's default (the cores this process may use)
    assert main(["collect", "--threads", "0"]) == 2 and "--threads" in capsys.readouterr().err


def test_missing_statistics_is_an_input_error(tmp_path, capsys) -> None:
    assert main(["taskness", "--run", str(tmp_path)]) == 2
    assert "interp collect" in capsys.readouterr().err
    assert main(["--", "taskness", "--run", str(tmp_path)]) == 2  # as torchrun passes it
    assert capsys.readouterr().err.startswith("interp taskness: error: ")


def test_help_lists_choices_and_ranges(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "{pixel,token,soft,auto}" in text and "an integer in [1, 100000]" in text and "segmentation, lowlight" in text
    assert set(commands()) >= {"collect", "taskness", "search", "sweep", "evaluate", "figures", "demo", "train-tiny", "import-policy"}


def test_evaluate_intervention_reaches_the_stage(captured, tmp_path, capsys) -> None:
    from interp.taskvectors.patching import Intervention

    assert main(["evaluate", "--run", str(tmp_path / "run"), "--intervention", "scaled", "--alpha", "0.5"]) == 0
    args, _ = captured["stage_evaluate"]
    assert args[-2:] == (Intervention("scaled", 0.5), None)  # scaled needs no zero-shot statistics
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--intervention", "nope"]) == 2


def test_search_intervention_reaches_the_problem(captured, tmp_path, capsys) -> None:
    from interp.taskvectors.patching import Intervention

    assert main(["search", "--run", str(tmp_path / "run"), "--intervention", "scaled", "--alpha", "2"]) == 0
    _, kwargs = captured["stage_search"]
    assert kwargs["options"].intervention == Intervention("scaled", 2.0) and kwargs["base_stats"] is None
