"""Counts bounded by the data and by memory: named errors before any work, nothing written."""

from __future__ import annotations

import argparse

import pytest

from interp.cli import main
from interp.cli.bounds import check_data, check_memory, distinct_pairs
from interp.data.source import Entry
from interp.data.synthetic import SyntheticPascal
from interp.errors import ConfigError
from interp.models.presets import random_model


def test_distinct_pairs_count_every_query_with_every_other_image_of_its_class() -> None:
    entries = [Entry("a", 1), Entry("b", 1), Entry("c", 1), Entry("d", 2), Entry("e", 2), Entry("f", 3)]
    assert distinct_pairs(entries) == 3 * 2 + 2 * 1 + 0


def test_the_data_bounds_follow_the_split_lists() -> None:
    source = SyntheticPascal(seed=7, size_per_split={"trn": 60, "val": 40})
    trn, val = len(source.entries(0, "trn")), distinct_pairs(source.entries(0, "val"))
    read = ("n_train", "n_search_eval", "n_eval")
    check_data(argparse.Namespace(fold=0, n_train=trn - 2, n_search_eval=2, n_eval=val), source, read)  # at the bounds
    with pytest.raises(ConfigError, match=f"holds {trn} images.*repeat a training query") as error:
        check_data(argparse.Namespace(fold=0, n_train=trn - 2, n_search_eval=3, n_eval=1), source, read)
    assert f"at {trn} or less" in error.value.fix
    with pytest.raises(ConfigError, match=f"--n-eval {val + 1} .* {val} distinct"):
        check_data(argparse.Namespace(fold=0, n_train=1, n_search_eval=1, n_eval=val + 1), source, read)
    # an option the stage does not read is not checked; a stage's own option always is
    check_data(argparse.Namespace(fold=0, n_train=1, n_search_eval=1, n_eval=val + 1), source, ("n_train",))
    with pytest.raises(ConfigError, match="--compare-eval"):
        check_data(argparse.Namespace(fold=0, compare_eval=val + 1), source, ())


@pytest.mark.parametrize("argv, words", [
    (["search", "--n-train", "990", "--n-search-eval", "11"], "--n-train 990 + --n-search-eval 11 asks for 1001"),
    (["evaluate", "--n-eval", "12251"], "holds 12250 distinct"),
    (["evaluate", "--n-train", "999", "--n-search-eval", "2"], "holds 1000 images"),
    (["compare-search", "--n-train", "10", "--compare-search-eval", "991"], "--compare-search-eval 991"),
])
def test_the_cli_names_a_count_the_data_cannot_give_and_writes_nothing(argv, words, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main([*argv, "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert words in err and "or less" in err and "unexpected" not in err, err
    assert not run.exists() or not any(p.name != ".lock" for p in run.iterdir())


def test_a_prompt_set_over_the_available_memory_is_named_with_the_largest_that_fits() -> None:
    model = random_model()
    per_prompt = 7 * 4 * model.grid.canvas_size ** 2
    args = argparse.Namespace(tasks=("lowlight", "inpainting"), n_eval=100)
    check_memory(args, model, available=100 * 3 * per_prompt)  # tasks + the composite, exactly fits
    with pytest.raises(ConfigError, match="--n-eval 100 needs") as error:
        check_memory(args, model, available=100 * 3 * per_prompt - 1)
    assert "--n-eval 99 or less" in error.value.fix
