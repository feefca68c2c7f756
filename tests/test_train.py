"""``interp train-tiny``: data as a pure function of the step, resumable runs, loadable weights."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import interp
from interp.canvas import CanvasGrid
from interp.train import CanvasStream, StepCanvases, TrainConfig, train_tiny

#: a few small steps: enough to exercise every code path in seconds
SMALL = TrainConfig(
    vqgan_steps=3, vqgan_batch=8, mae_steps=4, prompt_pairs=1, focus_pairs=1, contrast_pairs=1, random_batch=4,
    warmup=2, restart_every=2, checkpoint_every=2, threads=1,
)


def test_worker_processes_draw_the_same_canvases() -> None:
    stream = CanvasStream(CanvasGrid(64, 8), seed=0)
    data = StepCanvases(stream, replace(SMALL, workers=2), "mae")
    drawn = list(data.loader(start=1))
    assert len(drawn) == SMALL.mae_steps - 1
    for step, batch in zip(range(1, SMALL.mae_steps), drawn):
        direct = data[step]
        assert batch.keys() == direct.keys()
        assert all(torch.equal(batch[k], direct[k]) for k in batch)
    # 1 pair x 7 tasks + 1 focus pair x 2 focus tasks + 1 contrast pair x 3 tasks x (keep, invert),
    # and half prompts / half plain images
    assert drawn[0]["prompts"].shape == (7 + 2 + 6, 3, 64, 64)
    assert drawn[0]["mixed"].shape == (4, 3, 64, 64)


class _Crash(RuntimeError):
    pass


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch) -> None:
    train_tiny(tmp_path / "straight", SMALL)
    straight = load_file(tmp_path / "straight" / "tiny.safetensors")

    original = StepCanvases.__getitem__

    def crash_at_step_3(self, step):
        if self.phase == "mae" and step == 3:
            raise _Crash("killed")
        return original(self, step)

    monkeypatch.setattr(StepCanvases, "__getitem__", crash_at_step_3)
    with pytest.raises(_Crash):
        train_tiny(tmp_path / "resumed", SMALL)
    assert not (tmp_path / "resumed" / "tiny.safetensors").exists()
    monkeypatch.setattr(StepCanvases, "__getitem__", original)
    train_tiny(tmp_path / "resumed", SMALL)  # picks up the VQGAN and the step-2 MAE checkpoints
    resumed = load_file(tmp_path / "resumed" / "tiny.safetensors")

    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    model = interp.load_model(str(tmp_path / "resumed" / "tiny.safetensors"))
    assert model.config.mae.decoder_depth == SMALL.decoder_depth
    log = (tmp_path / "resumed" / "loss_log.csv").read_text().splitlines()
    assert len(log) == 1 + SMALL.vqgan_steps + SMALL.mae_steps  # header + one row a step, no duplicates


def test_training_pairs_are_random_queries_of_one_class() -> None:
    """Every training image can be a query (the evaluation order, query i = entry i, would
    show the model the same few queries at every step)."""
    stream = CanvasStream(CanvasGrid(64, 8), seed=0)
    drawn = [stream.pairs(fold=1, n=8, seed=step) for step in range(5)]
    queries = {p.query.name for pairs in drawn for p in pairs}
    assert len(queries) >= 35  # 40 draws from 5000 images
    for pair in (p for pairs in drawn for p in pairs):
        assert pair.query.class_id == pair.support.class_id and pair.query.name != pair.support.name
        assert stream.source.primary_class(stream.source.parse_name(pair.query.name)[1]) == pair.query.class_id
        assert pair.query.class_id in range(6, 11)  # fold 1
    assert stream.pairs(1, 8, seed=3) == drawn[3]  # a pure function of the seed


def test_contrast_prompts_keep_and_invert_each_task() -> None:
    grid = CanvasGrid(64, 8)
    stream = CanvasStream(grid, seed=0)
    tasks = ("lowlight", "inpainting")
    contrast = stream.contrast_prompts(step=5, pairs=2, tasks=tasks)
    assert contrast.shape == (2 * 2 * 2, 3, 64, 64)
    batches = stream.task_batches(step=5, pairs=2, stage="contrast", tasks=tasks)  # the same pairs under the tasks
    for i, task in enumerate(tasks):
        keep, invert = contrast[4 * i : 4 * i + 2], contrast[4 * i + 2 : 4 * i + 4]
        original = batches[task].canvases
        # keep: output = input, so the degraded query is its own target
        assert torch.equal(grid.cell(keep, "target"), grid.cell(original, "query"))
        assert torch.equal(grid.cell(keep, "example_output"), grid.cell(original, "example_input"))
        # invert: the clean target is the query, the degraded query the target
        assert torch.equal(grid.cell(invert, "query"), grid.cell(original, "target"))
        assert torch.equal(grid.cell(invert, "target"), grid.cell(original, "query"))
        assert not torch.equal(grid.cell(invert, "target"), grid.cell(invert, "query"))
