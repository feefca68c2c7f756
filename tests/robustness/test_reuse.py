"""Every stage checks what it reuses: evaluate and sweep refuse statistics and policies made with
another model (same config, other weights), data, fold or sizes, and every loader refuses a file
that records another task or layout than the one it is read for (swapped, copied, zero-shot)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from interp.cli import main
from interp.models import save_model
from interp.models.presets import random_model
from interp.run import unlock_run

TASKS = "lowlight,inpainting"


def _args(run: Path, model: Path, **changes: str) -> list[str]:
    options = {"--run": str(run), "--model": str(model), "--data": "synthetic:7", "--tasks": TASKS, "--n-collect": "2",
               "--n-candidates": "3", "--n-train": "2", "--n-search-eval": "2", "--n-eval": "2", "--device": "cpu",
               "--composition": "none", **changes}
    return [x for pair in options.items() for x in pair]


SEARCH = ["--steps", "1", "--samples", "2", "--chunk", "4", "--eval-every", "1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The run's model and one of the same config with other weights."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, seed in (("model", 0), ("other", 1)):
        out[name] = root / f"{name}.safetensors"
        save_model(random_model(seed=seed, with_vqgan=True), out[name])
    return out


@pytest.fixture(scope="module")
def searched(tmp_path_factory, models) -> Path:
    run = tmp_path_factory.mktemp("reuse") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["collect", *_args(run, models["model"])]) == 0
        assert main(["search", *_args(run, models["model"]), *SEARCH]) == 0
    finally:
        torch.set_num_threads(threads)
        unlock_run(run)
    return run


@pytest.fixture
def run(searched, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(searched, copy, ignore=shutil.ignore_patterns(".lock"))
    yield copy
    unlock_run(copy)


def _fails(argv: list[str], capsys, *words: str) -> None:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "unexpected" not in err, err
    for word in words:
        assert word in err, (word, err)


def test_evaluate_with_the_same_options_runs(run, models, capsys) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["evaluate", *_args(run, models["model"])]) == 0
    finally:
        torch.set_num_threads(threads)
    assert (run / "results.csv").is_file()


@pytest.mark.parametrize("stage", ["evaluate", "sweep"])
@pytest.mark.parametrize("change, field", [({"--fold": "1"}, "fold"), ({"--data": "synthetic:8"}, "data"),
                                           ({"--n-collect": "3"}, "n_collect"), ({"--seed": "5"}, "seed"),
                                           ({"--model": "other"}, "model.weights")])
def test_evaluate_and_sweep_refuse_what_another_config_made(stage, change, field, run, models, capsys) -> None:
    change = {k: str(models["other"]) if v == "other" else v for k, v in change.items()}
    extra = ["--sweep-granularity", "layer", "--sweep-prompts", "2"] if stage == "sweep" else []
    _fails([stage, *_args(run, models["model"], **change), *extra], capsys, "made with another config", field, "--force")
    assert not (run / ("results.csv" if stage == "evaluate" else "sweep.csv")).exists()


def test_a_policy_searched_on_other_statistics_is_refused_by_evaluate(run, models, capsys) -> None:
    """Statistics collected again (another --n-collect, with --force) no longer match what the
    policies were searched on: evaluate refuses the policies, naming their statistics."""
    changed = _args(run, models["model"], **{"--n-collect": "3"})
    assert main(["collect", "--force", *changed]) == 0
    capsys.readouterr()
    _fails(["evaluate", *changed], capsys, "policy.safetensors", "statistics.n_collect")


def test_a_policy_searched_with_another_n_train_is_refused_by_evaluate(run, models, capsys) -> None:
    _fails(["evaluate", *_args(run, models["model"], **{"--n-train": "3"})], capsys, "policy.safetensors", "n_train")


def test_swapped_statistics_are_refused(run, models, capsys) -> None:
    stats = run / "stats"
    for suffix in (".safetensors", ".json"):
        (stats / f"lowlight{suffix}").rename(stats / f"tmp{suffix}")
        (stats / f"inpainting{suffix}").rename(stats / f"lowlight{suffix}")
        (stats / f"tmp{suffix}").rename(stats / f"inpainting{suffix}")
    for stage in ("evaluate", "search", "taskness", "collect"):
        _fails([stage, *_args(run, models["model"]), *(SEARCH if stage == "search" else [])], capsys, "holds task")


def test_a_policy_copied_over_another_tasks_is_refused(run, models, capsys) -> None:
    shutil.copy(run / "reinforce" / "inpainting" / "seed0" / "policy.safetensors",
                run / "reinforce" / "lowlight" / "seed0" / "policy.safetensors")
    _fails(["evaluate", *_args(run, models["model"])], capsys, "holds the policy of task 'inpainting'")


def test_zero_shot_statistics_in_place_of_one_shot_ones_are_refused(run, models, capsys) -> None:
    from interp.models.checkpoint import load_model
    from interp.taskvectors.collect import collect
    from interp.taskvectors.stats import ActivationStats

    model = load_model(models["model"])
    one_shot = ActivationStats.load(run / "stats" / "lowlight.safetensors")
    canvases = torch.randn(2, 3, model.grid.canvas_size, model.grid.canvas_size)
    zero_shot = collect(model, [canvases], layout="zero_shot", task="lowlight", progress=False)
    zero_shot.extra["provenance"] = one_shot.extra["provenance"]  # even with the right provenance copied in
    zero_shot.save(run / "stats" / "lowlight.safetensors")
    for stage in ("evaluate", "sweep", "collect"):
        _fails([stage, *_args(run, models["model"])], capsys, "layout")


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.__setitem__("step", -1), "step is -1"), (lambda s: s.__setitem__("step", "x"), "not a count"),
    (lambda s: s.__setitem__("step", 1.5), "not a count"), (lambda s: s.__setitem__("log", 5), "log is"),
    (lambda s: s.__setitem__("optimizer", {"a": 1}), "optimizer"), (lambda s: s.__setitem__("best_score", "x"), "best_score"),
    (lambda s: s.__setitem__("provenance", [1]), "provenance"), (lambda s: s["logits"].__setitem__(0, float("nan")), "NaN"),
    (lambda s: s.__setitem__("best_logits", s["best_logits"][:3]), "differ in shape"),
])
def test_a_damaged_search_checkpoint_is_named(edit, words, run, models, capsys) -> None:
    for task in TASKS.split(","):
        folder = run / "reinforce" / task / "seed0"
        (folder / "policy.safetensors").unlink()
        state = torch.load(folder / "checkpoint.pt", weights_only=True)
        edit(state)
        torch.save(state, folder / "checkpoint.pt")
    _fails(["search", *_args(run, models["model"]), *SEARCH], capsys, "checkpoint.pt", words, "start over")


@pytest.mark.parametrize("command", ["compare-search", "agreement"])
@pytest.mark.parametrize("change", [{"--data": "synthetic:8"}, {"--model": "other"}, {"--fold": "2"}])
def test_compare_search_and_agreement_check_the_statistics(command, change, run, models, capsys) -> None:
    change = {k: str(models["other"]) if v == "other" else v for k, v in change.items()}
    extra = ["--methods", "random", "--seeds", "1", "--compare-eval", "2", "--compare-search-eval", "2"] \
        if command == "compare-search" else []
    _fails([command, *_args(run, models["model"], **change), *extra], capsys, "made with another config")


COMPARE = ["--methods", "random", "--seeds", "1", "--compare-eval", "2", "--compare-search-eval", "2"]


@pytest.fixture(scope="module")
def compared(searched, models, tmp_path_factory) -> Path:
    """A copy of the searched run through one small compare-search."""
    run = tmp_path_factory.mktemp("compared") / "run"
    shutil.copytree(searched, run, ignore=shutil.ignore_patterns(".lock"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["compare-search", *_args(run, models["model"]), *COMPARE]) == 0
    finally:
        torch.set_num_threads(threads)
        unlock_run(run)
    return run


@pytest.mark.parametrize("damage, words", [
    ("compare/val/lowlight/seed0/random.safetensors", "comparison cache"),
    ("compare/sweep/lowlight/seed0.safetensors", "comparison cache"),
    ("compare/random/lowlight/seed0/policy.safetensors", "policy.safetensors"),
    ({"--compare-eval": "3"}, "made with another config"),
    ({"--compare-search-eval": "3"}, "made with another config"),
])
def test_compare_search_caches_are_checked(damage, words, compared, models, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(compared, run, ignore=shutil.ignore_patterns(".lock"))
    argv = ["compare-search", *_args(run, models["model"]), *COMPARE]
    if isinstance(damage, str):
        (run / damage).write_bytes(b"garbage")
    else:
        argv = [damage[argv[i - 1]] if i and argv[i - 1] in damage else a for i, a in enumerate(argv)]
        assert all(value in argv for value in damage.values())
    try:
        _fails(argv, capsys, words)
    finally:
        unlock_run(run)


@pytest.mark.parametrize("command", ["lens", "paths"])
def test_lens_and_paths_check_the_statistics_and_policy(command, run, models, capsys) -> None:
    extra = ["--task", "lowlight", "--n-prompts", "2", "--formats", "html"]
    _fails([command, *_args(run, models["model"], **{"--fold": "1"}), *extra], capsys, "made with another config", "fold")
    _fails([command, *_args(run, models["model"], **{"--data": "synthetic:8"}), *extra], capsys, "made with another config", "data")


def test_a_first_search_checks_the_statistics(run, models, capsys) -> None:
    shutil.rmtree(run / "reinforce")
    for change in ({"--data": "synthetic:8"}, {"--model": str(models["other"])}, {"--fold": "1"}):
        _fails(["search", *_args(run, models["model"], **change), *SEARCH], capsys, "made with another config")
    assert not (run / "reinforce").exists()
