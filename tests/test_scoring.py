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


def test_soft_reward_on_one_hot_logits_is_the_pixel_reward_before_truncation(model, canvases) -> None:
    """Very peaked logits make the soft decode the hard one; the soft reward then differs from
    the official pixel reward only by the integer truncation (MSE) or the sigmoid rounding (IoU)."""
    from interp.metrics import soft_iou, soft_mse
    from interp.models.pixels import decode_prediction

    layout = zero_shot(model.grid)
    logits = model(canvases, layout)
    peaked = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float() * 1e4
    hard = decode_prediction(model.vqgan, logits.argmax(-1), layout)
    truth = canvas_pixels(canvases)
    soft = Scorer(model, "lowlight", layout, "soft")(canvases, peaked)
    torch.testing.assert_close(soft.reward, -soft_mse(hard, truth, model.grid).double())
    quantized = (hard * 255).floor() / 255  # on integer levels the soft MSE is the official one
    torch.testing.assert_close(soft_mse(quantized, truth, model.grid), pixel_mse((hard * 255).floor().int(), truth, model.grid))
    official = Scorer(model, "lowlight", layout)(canvases, peaked).reward
    assert (soft.reward - official).abs().max() < 0.05  # truncation to 0..255 moves MSE by a little
    seg = Scorer(model, "segmentation", layout, "soft")
    torch.testing.assert_close(seg(canvases, peaked).reward, soft_iou(hard, truth, model.grid).double())
    assert seg.name == "soft_iou" and reward_name("lowlight", "soft") == "-soft_mse"


def test_soft_reward_has_a_gradient_through_the_logits(model, canvases) -> None:
    layout = zero_shot(model.grid)
    logits = model(canvases, layout).detach().requires_grad_(True)
    for task in ("lowlight", "segmentation"):
        Scorer(model, task, layout, "soft").soft_rewards(canvases, logits).sum().backward()
        assert logits.grad is not None and logits.grad.abs().max() > 0
        logits.grad = None


def test_soft_iou_of_the_truth_itself_is_near_one() -> None:
    from interp.canvas import CanvasGrid
    from interp.metrics import pixel_iou, soft_iou

    grid = CanvasGrid(64, 8)
    truth = (torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).expand(-1, 3, -1, -1).int() * 255
    assert soft_iou(truth.float() / 255, truth, grid).min() > 0.999
    inverted = 255 - truth
    assert soft_iou(inverted.float() / 255, truth, grid).max() < 0.01
    assert torch.equal(pixel_iou(truth, truth, grid), torch.ones(3))
    empty = torch.zeros(1, 3, 64, 64, dtype=torch.int32)
    assert float(soft_iou(empty.float(), empty, grid)[0]) == pytest.approx(1.0, abs=1e-3)  # empty_iou = 1
