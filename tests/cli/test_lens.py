"""``interp lens`` and ``interp paths`` on a tiny run: their files, their figures, the ``add``
intervention's zero-shot statistics (collected once, then reused), and bad options stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from interp.cli import main
from interp.models import save_model
from interp.run import RunDir
from interp.taskvectors.policy import Policy
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with lowlight's statistics (``interp collect``) and a policy over encoder and decoder units."""
    folder = tmp_path_factory.mktemp("lens")
    model = random_model(seed=5, with_vqgan=True)
    save_model(model, folder / "model.safetensors")
    common = ["--run", str(folder / "run"), "--model", str(folder / "model.safetensors"), "--data", "synthetic:7",
              "--tasks", "lowlight", "--n-collect", "3", "--n-candidates", "4", "--n-eval", "3", "--device", "cpu"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["collect", *common]) == 0
    finally:
        torch.set_num_threads(threads)
    space = UnitSpace.for_model(model, "head")
    logits = torch.full((len(space),), -3.0)
    logits[[i for i, u in enumerate(space.units) if (u.stack, u.head) in (("encoder", 1), ("encoder", 2), ("decoder", 0))]] = 3.0
    Policy(space, logits, logits.clone(), {"task": "lowlight", "method": "reinforce"}).save(
        RunDir(folder / "run").policy_path("lowlight"))
    return folder / "run", common


def test_lens_command(run, capsys) -> None:
    path, common = run
    assert main(["lens", *common, "--task", "lowlight", "--n-prompts", "3", "--prompt", "1", "--formats", "html"]) == 0
    out = capsys.readouterr().out
    assert "zero_shot+tv" in out and "90% of the way" in out
    table = pd.read_csv(path / "lens" / "lowlight.csv")
    assert len(table) == 3 * 5 and set(table["n"]) == {3} and set(table["intervention"]) == {"replace"}
    assert (path / "lens" / "lowlight.safetensors").is_file()
    for stem in ("lens_lowlight_layers", "lens_lowlight_strip"):
        assert (path / "figures" / f"{stem}.html").is_file()


def test_paths_command_with_add(run, capsys) -> None:
    path, common = run
    argv = ["paths", *common, "--task", "lowlight", "--n-prompts", "2", "--formats", "html", "--intervention", "add",
            "--alpha", "0.5"]
    assert main(argv) == 0
    zs = path / "stats_zero_shot" / "lowlight.safetensors"
    assert zs.is_file()
    meta = json.loads(zs.with_suffix(".json").read_text())
    assert meta["layout"]["name"] == "zero_shot" and meta["extra"]["provenance"]["stage"] == "collect_zero_shot"
    table = pd.read_csv(path / "paths" / "lowlight.csv")
    assert set(table["sender"]) == {"all", "L0H1", "L0H2", "L1H1", "L1H2"}  # the vector's encoder heads
    assert set(table["receiver"]) >= {"direct", "total", "L0H0", "L1H3"} and set(table["intervention"]) == {"add(a=0.5)"}
    assert (path / "figures" / "paths_lowlight.html").is_file()
    stamp = zs.stat().st_mtime_ns
    assert main(argv) == 0  # the zero-shot statistics are reused, not collected again
    assert zs.stat().st_mtime_ns == stamp


def test_bad_options_stop_with_one_line(run, capsys) -> None:
    _, common = run
    assert main(["lens", *common, "--task", "lowlight", "--intervention", "subtract"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["lens", *common, "--task", "lowlight", "--alpha", "nan"]) == 2
    assert main(["paths", *common, "--task", "segmentation"]) == 2  # no statistics for it in the run
    assert "interp collect" in capsys.readouterr().err


def test_interventions_command(run, capsys) -> None:
    path, common = run
    assert main(["interventions", *common, "--kinds", "replace,scaled:1,scaled:0,add:0"]) == 0
    table = pd.read_csv(path / "interventions.csv")
    by = table.set_index("condition")["mean"]
    assert by["zero_shot+tv:scaled(a=1)"] == by["zero_shot+tv:replace"]  # scaled(1) is replace bit for bit
    assert by["zero_shot+tv:scaled(a=0)"] == by["zero_shot+tv:add(a=0)"] == table["zero_shot"].iloc[0]  # alpha 0: no patch
    assert table["best"].sum() >= 1 and "lowlight: best" in capsys.readouterr().out
    assert main(["interventions", *common, "--kinds", "subtract:1"]) == 2


def test_the_task_vector_is_the_policys_kept_set_unless_a_threshold_is_given(run, capsys) -> None:
    """A REINFORCE policy whose size was chosen keeps fewer units than p > 0.5: lens, paths and
    interventions patch the kept set (what `interp evaluate` scores); --threshold overrides it."""
    path, common = run
    original = RunDir(path).policy_path("lowlight")
    saved = original.read_bytes()
    policy = Policy.load(original)
    kept = torch.zeros(len(policy.space), dtype=torch.bool)
    kept[int(policy.mask().nonzero()[0])] = True  # one of the units above 0.5
    Policy(policy.space, policy.logits, policy.best_logits, policy.metadata, kept=kept).save(original)
    try:
        for argv, units in ((["--kinds", "replace"], 1), (["--kinds", "replace", "--threshold", "0.5"], int(policy.mask(0.5).sum()))):
            assert main(["interventions", *common, *argv]) == 0
            assert set(pd.read_csv(path / "interventions.csv")["units"]) == {units}
    finally:
        original.write_bytes(saved)
    capsys.readouterr()
