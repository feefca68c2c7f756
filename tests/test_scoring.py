"""The scoring seam: one Scorer per (model, task, layout, kind, decode), from logits."""

from __future__ import annotations

import math

import pytest
import torch

from interp.canvas import zero_shot
from interp.metrics import code_cross_entropy, pixel_mse
from interp.models.pixels import canvas_pixels, full_grid_codes, predict_pixels
from interp.scoring import Scorer, reward_from_logits, reward_name
from tests.conftest import random_model


@pytest.fixture(scope="module")
def model():
    return random_model(with_vqgan=True)


def test_full_grid_codes_is_the_official_hstack(model) -> None:
    layout = zero_shot(model.grid)
    codes = torch.randint(0, 64, (2, len(layout.decoder_patches)))
    assert torch.equal(full_grid_codes(codes, layout), torch.hstack([codes, codes]))


def test_pixel_reward_is_minus_official_mse(model, canvases) -> None:
    layout = zero_shot(model.grid)
    logits = model(canvases, layout)
    score = Scorer(model, "lowlight", layout)(canvases, logits)
    image = predict_pixels(model.vqgan, canvases, logits.argmax(-1), layout)
    assert torch.equal(score.image, image)
    expected = pixel_mse(image, canvas_pixels(canvases), model.grid)
    assert torch.equal(score.metric, expected) and torch.equal(score.reward, -expected.double())
    assert torch.equal(reward_from_logits(model, "lowlight", canvases, logits, layout, "pixel"), score.reward)


def test_band_decode_differs_from_official_on_zero_shot(model, canvases) -> None:
    logits = model(canvases, "zero_shot")
    official = Scorer(model, "lowlight", "zero_shot")(canvases, logits)
    band = Scorer(model, "lowlight", "zero_shot", decode="band")(canvases, logits)
    assert not torch.equal(official.image, band.image)
    # one-shot covers every row: both decodes are the same image
    logits = model(canvases, "one_shot")
    assert torch.equal(Scorer(model, "lowlight", "one_shot")(canvases, logits).image,
                       Scorer(model, "lowlight", "one_shot", decode="band")(canvases, logits).image)


def test_token_reward_and_empty_iou(model, canvases) -> None:
    layout = zero_shot(model.grid)
    logits = model(canvases, layout)
    scorer = Scorer(model, "segmentation", layout, "token")
    codes = scorer.target_codes(canvases)
    score = scorer(canvases, logits, codes)
    assert score.image is None and torch.equal(score.metric, code_cross_entropy(logits, codes, layout))
    assert torch.equal(score.reward, -score.metric.double()) and scorer.name == "-code_ce"
    # an all-black target and prediction: IoU 0/0 is NaN as a metric, empty_iou as a reward
    black = torch.full_like(canvases, -3.0)
    seg = Scorer(model, "segmentation", layout, decoder=lambda codes, grid: torch.zeros(
        codes.shape[0], 3, grid[0] * model.grid.patch_size, grid[1] * model.grid.patch_size))
    score = seg(black, logits)
    assert math.isnan(score.metric[0]) and score.reward.tolist() == [1.0, 1.0]
    assert reward_name("segmentation", "pixel") == "iou" and reward_name("lowlight", "pixel") == "-mse"


def test_bad_kind_and_decode_are_named(model) -> None:
    with pytest.raises(ValueError, match="reward kind"):
        Scorer(model, "lowlight", kind="pixels")
    with pytest.raises(ValueError, match="decode must be"):
        Scorer(model, "lowlight", decode="fast")
