"""Path patching: every path open is the plain patch, every path closed the clean forward, and on a
model built so that one decoder head alone carries the sender's effect, the paths say so."""

from __future__ import annotations

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_prompts
from interp.taskvectors.lens import target_rows
from interp.taskvectors.patching import Intervention, MeanPatcher
from interp.taskvectors.paths import DIRECT, TOTAL, PathPatcher, path_effects, sender_sets
from interp.taskvectors.collect import collect
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model

CARRIER = (0, 1)  # the decoder head (layer, head) that alone can carry the effect in the constructed model
SENDER = (1, 2)  # encoder (layer, head): the last encoder layer, so no encoder head composes with it


def constructed_model():
    """Only decoder head CARRIER writes to the residual stream (every other decoder head's W_O
    columns are zero). The target cell's tokens read other tokens only through decoder attention
    (MLPs and norms act per token), so every effect of an encoder head on the target cell's
    logits travels through CARRIER."""
    model = random_model(seed=7, with_vqgan=True)
    with torch.no_grad():
        for layer, block in enumerate(model.decoder.blocks):
            d = block.attn.d_head
            for head in range(block.attn.n_heads):
                if (layer, head) != CARRIER:
                    block.attn.proj.weight[:, head * d : (head + 1) * d] = 0
                else:  # a loud carrier, so its effect stands far above float noise
                    block.attn.proj.weight[:, head * d : (head + 1) * d] *= 10
    return model


@pytest.fixture(scope="module")
def model():
    return constructed_model()


@pytest.fixture(scope="module")
def prompts(model):
    return build_prompts(SyntheticPascal(seed=4, size_per_split=40), "lowlight", 0, 4, model.grid, seed=1, split="val")


@pytest.fixture(scope="module")
def means(model, prompts):
    """Means far from the prompts' own z (random, by slot), so every patched head moves things."""
    stats = collect(model, [prompts.canvases], "one_shot", task="lowlight", progress=False)
    g = torch.Generator().manual_seed(3)
    return {site: 3 * torch.randn(m.shape, generator=g, dtype=torch.float64) for site, m in stats.means().items()}


@pytest.fixture(scope="module")
def patcher(model, means):
    return MeanPatcher(model, means, "zero_shot", UnitSpace.for_model(model, "head"))


def sender_mask(space, layer, head):
    return torch.tensor([u.stack == "encoder" and u.layer == layer and u.head == head for u in space.units])


def test_every_path_open_is_the_plain_patch_and_every_path_closed_is_clean(model, prompts, patcher) -> None:
    paths = PathPatcher(patcher)
    canvases = prompts.canvases
    senders = torch.stack([sender_mask(patcher.space, 0, h) | sender_mask(patcher.space, 1, 3 - h) for h in range(4)])
    clean_logits, clean_z, resid_pre = paths.clean(canvases)
    opened, _ = paths.sender_run(canvases, senders, clean_z, hold=False)
    assert torch.equal(opened, patcher(canvases, senders))  # nothing held: the plain patch
    closed = paths.receiver_logits(resid_pre, {}, [])[0]
    assert torch.equal(closed, clean_logits)  # no receiver: the clean forward
    held, recorded = paths.sender_run(canvases, senders, clean_z, hold=True)
    assert (held - clean_logits).abs().max() > 1e-4  # the direct path moves the query cell's codes
    # holding every head but the senders, each decoder head's recorded z differs from its clean z
    assert all((recorded[s] - clean_z[s]).abs().amax() > 1e-5 for s in recorded)


def test_constructed_model_one_carrier(model, prompts, patcher) -> None:
    paths = PathPatcher(patcher)
    canvases = prompts.canvases
    senders = sender_mask(patcher.space, *SENDER)[None].expand(len(canvases), -1)
    clean_logits, clean_z, resid_pre = paths.clean(canvases)
    total, _ = paths.sender_run(canvases, senders, clean_z, hold=False)
    direct, recorded = paths.sender_run(canvases, senders, clean_z, hold=True)
    rows = target_rows(model, "zero_shot")
    assert (total[:, rows] - clean_logits[:, rows]).abs().max() > 3e-3  # the sender matters for the target
    assert torch.equal(direct[:, rows], clean_logits[:, rows])  # no head open: nothing reaches the target
    receivers = [(layer, head) for layer in range(2) for head in range(4)]
    through = paths.receiver_logits(resid_pre, recorded, receivers)
    for (layer, head), logits in zip(receivers, through):
        if (layer, head) == CARRIER:
            torch.testing.assert_close(logits[:, rows], total[:, rows], atol=1e-5, rtol=0)
        else:
            assert torch.equal(logits[:, rows], clean_logits[:, rows])  # zero W_O: exactly nothing


def test_path_effects_table(model, prompts, means, patcher) -> None:
    space = patcher.space
    mask = sender_mask(space, *SENDER) | sender_mask(space, 0, 0)
    mask[-1] = True  # a decoder unit of the vector: not a sender
    names, sets = sender_sets(space, mask)
    assert names == ["all", "L0H0", "L1H2"] and sets.sum(1).tolist() == [2, 1, 1]
    two = prompts.select([0, 1])
    table = path_effects(patcher, two, mask, batch_size=2, progress=False)
    assert len(table) == 3 * (8 + 2)
    one = table[table.sender == "L1H2"].set_index("receiver")["effect"]
    carrier = f"L{CARRIER[0]}H{CARRIER[1]}"
    assert one[TOTAL] != 0  # the sender changes the lowlight MSE
    others = [r for r in one.index if r not in (carrier, DIRECT, TOTAL)]
    assert (one[others] == 0).all()  # heads with no W_O carry nothing, exactly
    none = MeanPatcher(model, means, "zero_shot", space, Intervention("scaled", 0.0))
    assert (path_effects(none, two, mask, batch_size=2, progress=False)["effect"] == 0).all()  # alpha 0: no effect
