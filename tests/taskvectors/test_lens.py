"""The code lens: the last readouts are the model's own prediction bit for bit; the rest differ."""

from __future__ import annotations

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_prompts
from interp.taskvectors.evaluate import score_condition
from interp.taskvectors.collect import collect
from interp.taskvectors.lens import lens_logits, lens_scores, readouts, solved_at, target_rows
from interp.taskvectors.patching import MeanPatcher
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model


@pytest.fixture(scope="module")
def model():
    return random_model(seed=3, with_vqgan=True)


@pytest.fixture(scope="module")
def prompts(model):
    return build_prompts(SyntheticPascal(seed=4, size_per_split=40), "segmentation", 0, 3, model.grid, seed=1, split="val")


@pytest.fixture(scope="module")
def tv(model, prompts):
    means = collect(model, [prompts.canvases], "one_shot", task="segmentation", progress=False)
    space = UnitSpace.for_model(model, "head")
    mask = torch.zeros(len(space), dtype=torch.bool)
    mask[::3] = True
    return MeanPatcher(model, means, "zero_shot", space).hooks(mask[None])


@pytest.mark.parametrize("layout", ["one_shot", "zero_shot"])
def test_last_readouts_are_the_prediction_bit_for_bit(model, prompts, tv, layout) -> None:
    hooks = tv if layout == "zero_shot" else ()
    with torch.no_grad(), model.hooks(hooks):
        own = model(prompts.canvases, layout)
    reads, logits = lens_logits(model, prompts.canvases, layout, hooks)
    labels = [r.label for r in reads]
    assert labels == ["enc 0", "enc 1", "dec embed", "dec 0", "dec 1"]
    assert logits.shape == (5, *own.shape)
    assert torch.equal(logits[-1], own)  # last decoder layer
    assert torch.equal(logits[1], own)  # last encoder layer: the early exit that skips nothing
    rows = target_rows(model, layout)
    others = [i for i in range(own.shape[1]) if i not in rows]
    for r in (0, 2, 3):  # earlier readouts change the target cell's logits, and only those
        assert (logits[r][:, rows] - own[:, rows]).abs().max() > 1e-3
        assert torch.equal(logits[r][:, others], own[:, others])


def test_lens_scores_match_the_official_scoring(model, prompts, tv) -> None:
    result = lens_scores(model, prompts, tv, batch_size=2, keep_images=2, progress=False)
    assert list(result.metric) == ["one_shot", "zero_shot", "zero_shot+tv"]
    for condition, layout, hooks in (("one_shot", "one_shot", ()), ("zero_shot", "zero_shot", ()),
                                     ("zero_shot+tv", "zero_shot", tv)):
        own = score_condition(model, prompts, layout, hooks, keep_images=2)
        torch.testing.assert_close(result.metric[condition][-1], own.metric, equal_nan=True, atol=0, rtol=0)
        assert torch.equal(result.images[condition][-1], own.image)
        assert result.images[condition].shape[:2] == (len(readouts(model)), 2)
    table = result.table()
    assert len(table) == 3 * 5 and set(table["readout"]) == set(result.labels)
    assert set(solved_at(table)) == {"one_shot", "zero_shot", "zero_shot+tv"}
    assert not torch.equal(result.metric["zero_shot"], result.metric["zero_shot+tv"])  # the patch reaches the lens
