"""The weight- vs activation-space comparison end to end, resumed, and refusing other weights (small sizes)."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import pytest
import torch

from interp.comparison.activation import pipeline_from_run
from interp.comparison.table import COLUMNS, METHODS, summary_table
from interp.comparison.weights import CompareConfig, compare
from interp.data.synthetic import SyntheticPascal
from interp.pipeline import PipelineConfig, stage_collect
from interp.run import RunDir
from interp.taskvectors.policy import Policy
from interp.taskvectors.units import UnitSpace
from interp.weights.mae import FinetuneConfig, mae_parameter_names
from tests.conftest import random_model

SMALL = CompareConfig(
    tasks=("segmentation", "lowlight"),
    finetune=FinetuneConfig(steps=2, batch_size=4, warmup=1),
    n_val=4, n_pool=8, coefs=(0.0, 1.0), atlas_prompts=4, atlas_steps=2, basis_steps=20, batch_size=16,
)
PIPELINE = PipelineConfig(tasks=("segmentation",), n_collect=4, n_candidates=6, n_eval=4)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def source():
    return SyntheticPascal(seed=7, size_per_split={"trn": 200, "val": 80})


def _fake_activation_run(path, model, source):
    """A pipeline run dir holding segmentation statistics and a hand-made policy (no lowlight)."""
    run = RunDir.create(path, command="test", config={})
    stage_collect(run, model, source, PIPELINE, batch_size=8)
    space = UnitSpace.for_model(model, PIPELINE.granularity)
    logits = torch.full((len(space),), -3.0)
    logits[::7] = 3.0  # a few units on
    meta = {"task": "segmentation", "method": "reinforce", "config": {"steps": 2, "samples": 4}}
    Policy(space, logits, logits.clone(), meta).save(run.policy_path("segmentation"))
    run.update_manifest(pipeline=asdict(PIPELINE), timings_s={"collect": 1.0, "search": 3.0})
    return space, int((logits > 0).sum())


def test_compare_end_to_end_and_resume(source, tmp_path, monkeypatch):
    model = random_model(with_vqgan=True)
    space, n_on = _fake_activation_run(tmp_path / "act", model, source)
    run = RunDir.create(tmp_path / "weights", command="test", config={})
    table = compare(model, source, PIPELINE, SMALL, run=run, activation_run=tmp_path / "act", progress=False)

    assert list(table.columns) == list(COLUMNS)
    assert set(table["method"]) == set(METHODS)
    assert len(table) == len(METHODS) * len(SMALL.tasks)
    assert list(table["task"].unique()) == list(SMALL.tasks)
    assert (run.path / "comparison.csv").exists() and (run.path / "comparison.md").exists()
    for task in SMALL.tasks:
        assert (run.path / "task_vectors" / f"{task}.safetensors").exists()
    by = table.set_index(["task", "method"])
    for method in METHODS:
        if method != "activation_tv":
            assert by.loc[("segmentation", method), "n"] > 0, method
    assert by.loc[("segmentation", "zero_shot"), "metric"] == "iou"
    assert by.loc[("lowlight", "zero_shot"), "metric"] == "mse"
    # costs: storage grows with what a method keeps
    D = sum(p.numel() for n, p in model.named_parameters() if n in mae_parameter_names(model))
    assert by.loc[("lowlight", "finetuned"), "storage_floats"] == D
    assert by.loc[("lowlight", "task_arithmetic"), "storage_floats"] == D + 1
    assert by.loc[("lowlight", "atlas"), "storage_floats"] > 2 * D
    assert by.loc[("lowlight", "zero_shot"), "storage_floats"] == 0
    # activation task vectors: a number where the run has the task, a reason where it has not
    seg = by.loc[("segmentation", "activation_tv")]
    assert seg["n"] > 0 and not math.isnan(seg["value"]) and seg["storage_floats"] > 0
    assert f"{n_on}/{len(space)}" in seg["notes"]
    low = by.loc[("lowlight", "activation_tv")]
    assert low["n"] == 0 and math.isnan(low["value"]) and "no activation task vector" in low["notes"]

    # resume: the task vectors and aTLAS coefficients on disk are used, nothing is trained again
    import interp.comparison.store as store

    monkeypatch.setattr(store, "finetune_task", lambda *a, **k: pytest.fail("fine-tuned again on resume"))
    monkeypatch.setattr(store, "train_atlas", lambda *a, **k: pytest.fail("aTLAS trained again on resume"))
    again = compare(model, source, PIPELINE, SMALL, run=run, activation_run=tmp_path / "missing", progress=False)
    assert set(again["method"]) == set(METHODS)
    assert again.set_index(["task", "method"]).loc[("lowlight", "finetuned"), "value"] == pytest.approx(
        by.loc[("lowlight", "finetuned"), "value"])
    assert "not found" in again.set_index(["task", "method"]).loc[("segmentation", "activation_tv"), "notes"]

    # other base weights or settings: the stored task vectors are refused, not silently reused
    with pytest.raises(ValueError, match="other base weights"):
        compare(random_model(seed=1, with_vqgan=True), source, PIPELINE, SMALL, run=run, progress=False)
    other = replace(SMALL, finetune=replace(SMALL.finetune, lr=1.0))
    with pytest.raises(ValueError, match="other settings"):
        compare(model, source, PIPELINE, other, run=run, progress=False)

    # the held-out prompts follow the activation run's recorded pipeline config
    recorded, _ = pipeline_from_run(tmp_path / "act", PipelineConfig())
    assert recorded == PIPELINE
    assert pipeline_from_run(tmp_path / "missing", PIPELINE) == (PIPELINE, None)
    summary = summary_table(table)
    assert list(summary["method"]) == list(METHODS) and "segmentation (IOU ↑)" in summary.columns
