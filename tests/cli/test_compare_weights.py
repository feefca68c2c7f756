"""``interp compare-weights``: its options reach the comparison's configs; bad values are named."""

from __future__ import annotations

from dataclasses import replace

import pytest

from interp.cli import main, parse
from interp.cli.compare_weights import configs, quick_config
from interp.comparison.weights import CompareConfig


def test_options_reach_the_configs(tmp_path) -> None:
    args = parse(["compare-weights", "--out", str(tmp_path / "w"), "--activation-run", str(tmp_path / "none"),
                  "--tasks", "lowlight,identity", "--steps", "5", "--batch-size", "3", "--lr", "0.01",
                  "--atlas-steps", "4", "--n-eval", "6", "--seed", "2"])
    cfg, pipeline, data = configs(args)
    assert cfg.tasks == ("lowlight", "identity") and cfg.seed == 2 and cfg.atlas_steps == 4
    assert cfg.finetune == replace(CompareConfig().finetune, steps=5, batch_size=3, lr=0.01, seed=2)
    assert pipeline.n_eval == 6 and data == "synthetic:1234"  # no activation run: the demo's held-out data


def test_quick_keeps_the_quick_sizes(tmp_path) -> None:
    cfg, pipeline, _ = configs(parse(["compare-weights", "--out", str(tmp_path / "w"), "--quick",
                                      "--activation-run", str(tmp_path / "none")]))
    assert cfg == replace(quick_config(), finetune=replace(quick_config().finetune, seed=0))
    assert pipeline.n_eval == 4


@pytest.mark.parametrize("bad", [["--tasks", "nope"], ["--steps", "0"], ["--lr", "-1"]])
def test_bad_values_are_one_line_exit_2(bad, tmp_path, capsys) -> None:
    assert main(["compare-weights", "--out", str(tmp_path / "w"), *bad]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
