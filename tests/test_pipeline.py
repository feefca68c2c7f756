"""The pipeline stages end to end on a small random model (what `interp demo` runs)."""

from __future__ import annotations

import pytest
import torch

from interp.models import save_model
from interp.pipeline import (
    PipelineConfig, import_official_policy, load_model_spec, load_policies, load_source, load_stats,
    stage_collect, stage_evaluate, stage_search, stage_sweep, stage_taskness,
)
from interp.run import RunDir
from interp.taskvectors.search.reinforce import ReinforceConfig
from tests.conftest import random_model


def test_all_stages_write_their_artifacts(tmp_path) -> None:
    save_model(random_model(with_vqgan=True), tmp_path / "m.safetensors")
    model = load_model_spec(str(tmp_path / "m.safetensors"))
    source = load_source("synthetic:7")
    cfg = PipelineConfig(tasks=("segmentation", "inpainting", "lowlight"), n_collect=6, n_candidates=12,
                         n_train=3, n_search_eval=3, n_eval=4, composition=("inpainting", "lowlight"))
    run = RunDir.create(tmp_path / "run", command="test", config={})
    stats = stage_collect(run, model, source, cfg)
    assert {t: s.n_prompts for t, s in stats.items()} == {t: 6 for t in cfg.tasks}
    table = stage_taskness(run, stats)
    assert {"stack", "layer", "head", "group", "taskness"} <= set(table.columns)
    policies = stage_search(run, model, source, stats, cfg, ReinforceConfig(steps=2, samples=6, eval_every=1))
    assert set(policies) == set(cfg.tasks)
    assert policies["lowlight"].metadata["config"]["steps"] == 2 and policies["lowlight"].space.granularity == cfg.granularity
    stage_sweep(run, model, source, stats, cfg, granularity="layer", n_prompts=2)
    results = stage_evaluate(run, model, source, stats, policies, cfg)
    conditions = set(results["condition"])
    assert {"one_shot", "zero_shot", "zero_shot+tv", "zero_shot+random"} <= conditions
    assert "zero_shot+tv[inpainting+lowlight]" in conditions
    for name in ("taskness.csv", "sweep.csv", "results.csv", "results.md", "stats/segmentation.safetensors",
                 "reinforce/lowlight/seed0/policy.safetensors", "reinforce/lowlight/seed0/log.csv", "manifest.json"):
        assert (run.path / name).exists(), name
    # later stages read what earlier ones wrote
    reloaded = load_stats(run, cfg.tasks, model)
    torch.testing.assert_close(reloaded["lowlight"].mean("decoder.blocks.0.attn.hook_z"), stats["lowlight"].mean("decoder.blocks.0.attn.hook_z"), equal_nan=True)
    reread = load_policies(run, cfg.tasks)["lowlight"]
    assert torch.equal(reread.probabilities(), policies["lowlight"].probabilities())
    assert reread.space == policies["lowlight"].space and reread.metadata == policies["lowlight"].metadata


def test_missing_inputs_are_named(tmp_path) -> None:
    run = RunDir.create(tmp_path / "run", command="test", config={})
    with pytest.raises(FileNotFoundError, match="interp collect"):
        load_stats(run, ("segmentation",))
    with pytest.raises(FileNotFoundError, match="interp search"):
        load_policies(run, ("segmentation",))
    with pytest.raises(ValueError, match="unknown data source"):
        load_source("imagenet")


def test_official_policy_import_needs_opt_in(tmp_path) -> None:
    import pickle

    path = tmp_path / "bernoullis_0_1_0_0_10_0.1_-1.0_best.pkl"
    path.write_bytes(pickle.dumps([0.5, -2.0, 1.0]))
    with pytest.raises(PermissionError, match="allow_pickle=True"):
        import_official_policy(path)
    assert import_official_policy(path, allow_pickle=True).tolist() == [0.5, -2.0, 1.0]
