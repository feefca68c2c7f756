"""The bundled tiny MAE-VQGAN: it loads offline, and it learns tasks in context.

On held-out synthetic prompts (a seed never used in training), one-shot prompting must beat
zero-shot by at least 20% (relative) on segmentation mIoU and on at least three of the
low-light, in-painting, colorization and identity MSEs (issue 4).
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_task_prompts
from interp.data.synthetic import HELD_OUT_SEED
from interp.canvas import get_layout
from interp.metrics import code_cross_entropy
from interp.taskvectors.evaluate import compare_layouts, relative_gain

MSE_TASKS = ("lowlight", "inpainting", "colorization", "identity")


@pytest.fixture(scope="module")
def tiny():
    return interp.load_model("tiny")


def test_tiny_loads_offline(tiny) -> None:
    assert tiny.grid.canvas_size == 64 and tiny.grid.patch_size == 8
    assert len(tiny.encoder.blocks) >= 4 and len(tiny.decoder.blocks) >= 2
    assert tiny.encoder.blocks[0].attn.n_heads >= 4 and tiny.decoder.blocks[0].attn.n_heads >= 4
    mae_params = sum(p.numel() for n, p in tiny.named_parameters() if not n.startswith("vqgan."))
    assert mae_params <= 5_000_000
    assert not tiny.training


@pytest.fixture(scope="module")
def held_out(tiny):
    source = SyntheticPascal(seed=HELD_OUT_SEED, size_per_split={"trn": 40, "val": 400})
    return build_task_prompts(source, fold=1, n=48, grid=tiny.grid, seed=7, split="val",
                              tasks=("segmentation", *MSE_TASKS))


@pytest.fixture(scope="module")
def gains(tiny, held_out):
    return relative_gain(compare_layouts(tiny, held_out))


def test_one_shot_helps_every_mse_task(gains) -> None:
    assert (gains[list(MSE_TASKS)] >= 0.05).all(), gains


def test_one_shot_beats_zero_shot_on_mse_tasks(gains) -> None:
    assert (gains[list(MSE_TASKS)] >= 0.2).sum() >= 3, gains


def test_segmentation_in_context_in_token_space(tiny, held_out) -> None:
    """With the example pair, the target cell's VQGAN codes are far more predictable."""
    batch = held_out["segmentation"]
    with torch.no_grad():
        codes = tiny.vqgan.encode_to_codes(batch.canvases)
        ce = {layout: code_cross_entropy(tiny(batch.canvases, layout), codes, get_layout(layout, tiny.grid)).mean()
              for layout in ("one_shot", "zero_shot")}
    assert ce["one_shot"] <= 0.8 * ce["zero_shot"], ce


def test_one_shot_beats_zero_shot_on_segmentation_iou(gains) -> None:
    assert gains["segmentation"] >= 0.2, gains
