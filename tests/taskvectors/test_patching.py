"""Batched mean patching: the official patched cases, batch rows vs one forward per sample."""

from __future__ import annotations

import pytest
import torch

from interp.canvas import one_shot, zero_shot
from interp.taskvectors.patching import Intervention, MeanPatcher, patch_hooks, patched, patched_forward
from interp.taskvectors.collect import collect
from interp.taskvectors.stats_file import ModelMismatchError
from interp.taskvectors.unit import GRANULARITIES
from interp.taskvectors.unit_maps import official_triples
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model

ATOL = 1e-4


# --- the official implementation's patched forwards -----------------------------------------


@pytest.fixture(scope="module")
def injection(mae_small, mae_golden):
    """One-shot mean z by slot over the two injection canvases (the reference 'task mean')."""
    return collect(mae_small, [mae_golden["inject_canvases"]], "one_shot", task="inject", progress=False)


@pytest.mark.parametrize("case", [0, 1, 2])
def test_reference_zero_shot_group_patch(mae_small, mae_golden, injection, case: int) -> None:
    space = UnitSpace.for_model(mae_small, "group")  # zero-shot units, official granularity 1
    with torch.no_grad():
        logits = patched_forward(
            mae_small, mae_golden["canvas"], "zero_shot", injection, space, mae_golden[f"patched.{case}.sample"]
        )
    torch.testing.assert_close(logits, mae_golden[f"patched.{case}.logits"], atol=ATOL, rtol=0)
    assert (logits - mae_golden["zeroshot.logits"]).abs().max() > 100 * ATOL


def test_reference_one_shot_token_patch(mae_small, mae_golden, injection) -> None:
    """Zero-shot token indices on one-shot positions: the official quirk, asked for by apply_to."""
    space = UnitSpace.for_model(mae_small, "token", layout="zero_shot", apply_to="one_shot")
    assert len(space) == 31872
    with torch.no_grad():
        logits = patched_forward(
            mae_small, mae_golden["canvas"], "one_shot", injection, space, mae_golden["patched_oneshot_g2.sample"]
        )
    torch.testing.assert_close(logits, mae_golden["patched_oneshot_g2.logits"], atol=ATOL, rtol=0)
    assert (logits - mae_golden["oneshot.logits"]).abs().max() > 100 * ATOL


# --- batched rows against one forward per sample --------------------------------------------


@pytest.fixture(scope="module")
def model():
    return random_model(seed=2)


@pytest.fixture(scope="module")
def means(model):
    canvases = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    return collect(model, [canvases], "one_shot", task="t", progress=False)


def per_sample(model, canvas, layout, means, space, row) -> torch.Tensor:
    """The plain loop: one run_with_hooks per sample, editing the official triples in place."""
    by_site: dict[str, list[tuple[int, int]]] = {}
    for layer, head, pos in official_triples(space, row):
        stack, local = ("encoder", layer) if layer < space.n_enc_layers else ("decoder", layer - space.n_enc_layers)
        by_site.setdefault(f"{stack}.blocks.{local}.attn.hook_z", []).append((pos, head))

    def make(site, cells):
        positions = torch.tensor([p for p, _ in cells])
        heads = torch.tensor([h for _, h in cells])
        slots = torch.tensor(layout.slots(site.split(".")[0]))[positions]
        values = means.mean(site)[slots, heads]

        def hook(z, hook):
            z = z.clone()
            z[:, positions, heads] = values.to(z.dtype)
            return z

        return hook

    return model.run_with_hooks(canvas, layout, fwd_hooks=[(s, make(s, c)) for s, c in by_site.items()])


def random_masks(n: int, units: int, seed: int, p: float = 0.3) -> torch.Tensor:
    return torch.rand(n, units, generator=torch.Generator().manual_seed(seed)) < p


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_batch_rows_equal_per_sample_patching(model, means, granularity) -> None:
    layout = zero_shot(model.grid)
    space = UnitSpace.for_model(model, granularity, layout=layout)
    canvases = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    masks = random_masks(6, len(space), seed=7, p=0.5 if granularity == "layer" else 0.2)
    with torch.no_grad():
        # one prompt, six unit sets (the REINFORCE case: the canvas batch of 1 is expanded)
        batched = patched_forward(model, canvases[:1], layout, means, space, masks)
        for b in range(6):
            expected = per_sample(model, canvases[:1], layout, means, space, masks[b])
            torch.testing.assert_close(batched[b : b + 1], expected, atol=1e-5, rtol=0)
        # three canvases x two masks as one batch of six rows
        rows = canvases.repeat_interleave(2, 0)
        row_masks = masks[:2].repeat(3, 1)
        batched = patched_forward(model, rows, layout, means, space, row_masks)
        for b in range(6):
            expected = per_sample(model, rows[b : b + 1], layout, means, space, row_masks[b])
            torch.testing.assert_close(batched[b : b + 1], expected, atol=1e-5, rtol=0)
        assert (batched[0] - batched[1]).abs().max() > 1e-3  # different masks, different outputs


def test_one_mask_row_broadcasts_over_canvases(model, means) -> None:
    layout = zero_shot(model.grid)
    space = UnitSpace.for_model(model, "head")
    canvases = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    mask = random_masks(1, len(space), seed=9)
    with torch.no_grad():
        batched = patched_forward(model, canvases, layout, means, space, mask[0])
        expected = torch.cat([per_sample(model, c[None], layout, means, space, mask[0]) for c in canvases])
    torch.testing.assert_close(batched, expected, atol=1e-5, rtol=0)


def test_all_false_mask_is_the_clean_forward(model, means) -> None:
    layout = zero_shot(model.grid)
    space = UnitSpace.for_model(model, "group")
    canvases = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(10))
    none = torch.zeros(2, len(space), dtype=torch.bool)
    assert patch_hooks(model, means, layout, space, none) == []
    with torch.no_grad():
        clean = model(canvases, layout)
        assert torch.equal(patched_forward(model, canvases, layout, means, space, none), clean)
        mixed = none.clone()
        mixed[1, ::3] = True
        out = patched_forward(model, canvases, layout, means, space, mixed)
    torch.testing.assert_close(out[0], clean[0], atol=1e-6, rtol=0)  # row 0 unpatched, in a patched batch
    assert (out[1] - clean[1]).abs().max() > 1e-3


def test_patcher_reuse_context_and_dict_means(model, means) -> None:
    layout = zero_shot(model.grid)
    space = UnitSpace.for_model(model, "token")
    canvas = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(11))
    masks = random_masks(4, len(space), seed=12)
    patcher = MeanPatcher(model, means.means(dtype=torch.float32), layout, space)  # a plain {site: mean} dict
    with torch.no_grad():
        first = patcher(canvas, masks[:2])
        second = patcher(canvas, masks[2:])
        with patched(model, means, layout, space, masks[2:]):
            again = model(canvas.expand(2, -1, -1, -1), layout)
    torch.testing.assert_close(again, second, atol=1e-6, rtol=0)
    assert not torch.allclose(first, second)
    assert not any(hp.has_hooks for hp in model.hook_dict.values())  # hooks removed


def test_patching_errors(model, means) -> None:
    layout = zero_shot(model.grid)
    space = UnitSpace.for_model(model, "group")
    canvases = torch.randn(3, 3, 64, 64)
    with pytest.raises(ValueError, match="3 canvases and 2 mask rows"):
        patched_forward(model, canvases, layout, means, space, random_masks(2, len(space), 0))
    with pytest.raises(ValueError, match="addresses positions of layout 'zero_shot'"):
        patched_forward(model, canvases, "one_shot", means, space, random_masks(1, len(space), 0))
    with pytest.raises(ValueError, match=f"{len(space)} units"):
        patched_forward(model, canvases, layout, means, space, torch.ones(1, len(space) + 1))
    # zero-shot statistics cannot patch a one-shot forward's example cells: undefined means
    zs = collect(model, [canvases], "zero_shot", progress=False)
    one = UnitSpace.for_model(model, "head", layout="one_shot")
    with pytest.raises(ValueError, match="never observed"):
        patched_forward(model, canvases, one_shot(model.grid), zs, one, torch.ones(1, len(one)))
    with pytest.raises(ModelMismatchError, match="collect them with this model"):
        patched_forward(model, canvases, layout, collect(random_model(seed=2, with_vqgan=True), [canvases[:1]],
                                                         progress=False), space, torch.ones(1, len(space)))
    with pytest.raises(KeyError, match="no means for"):
        patched_forward(model, canvases, layout, {}, space, torch.ones(1, len(space)))


# --- intervention kinds: add the difference, scaled replace ---------------------------------


@pytest.fixture(scope="module")
def zs_canvas():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(21))


@pytest.fixture(scope="module")
def zs_means(model, zs_canvas):
    """Zero-shot means of one canvas: at the first patched layer they equal that canvas's clean z."""
    return collect(model, [zs_canvas], "zero_shot", task="t", progress=False)


def test_add_alpha_zero_is_the_zero_shot_forward_bit_for_bit(model, means, zs_means, zs_canvas) -> None:
    space = UnitSpace.for_model(model, "head")
    every = torch.ones(1, len(space), dtype=torch.bool)
    with torch.no_grad():
        clean = model(zs_canvas, "zero_shot")
        out = patched_forward(model, zs_canvas, "zero_shot", means, space, every, Intervention("add", 0.0), zs_means)
        moved = patched_forward(model, zs_canvas, "zero_shot", means, space, every, Intervention("add", 0.5), zs_means)
    assert torch.equal(out, clean)
    assert (moved - clean).abs().max() > 1e-3  # the hooks did run: alpha 0.5 moves the logits


def test_scaled_alpha_one_is_replace_bit_for_bit_and_zero_is_clean(model, means, zs_canvas) -> None:
    space = UnitSpace.for_model(model, "group")
    masks = random_masks(3, len(space), seed=22)
    canvas = zs_canvas
    with torch.no_grad():
        replace = patched_forward(model, canvas, "zero_shot", means, space, masks)
        scaled = patched_forward(model, canvas, "zero_shot", means, space, masks, Intervention("scaled", 1.0))
        none = patched_forward(model, canvas, "zero_shot", means, space, masks, Intervention("scaled", 0.0))
        half = patched_forward(model, canvas, "zero_shot", means, space, masks, Intervention("scaled", 0.5))
    assert torch.equal(scaled, replace)
    assert torch.equal(none, model(canvas, "zero_shot").expand_as(none))
    assert (half - replace).abs().max() > 1e-3 and (half - none).abs().max() > 1e-3


def _layer_mask(space, stack, layer):
    return torch.tensor([u.stack == stack and u.layer == layer for u in space.units])[None]


def test_add_against_a_hand_written_hook(model, means, zs_means, zs_canvas) -> None:
    """``z + alpha (m - b)`` on the masked cells, checked against a plain hook; with ``b`` the clean
    z of this very canvas at the only patched layer, ``add(1)`` lands on the mean (= replace)."""
    layout = zero_shot(model.grid)
    space = UnitSpace.for_model(model, "head")
    mask = _layer_mask(space, "encoder", 1)
    site = "encoder.blocks.1.attn.hook_z"
    slots = torch.tensor(layout.slots("encoder"))
    delta = (means.mean(site) - zs_means.mean(site))[slots].float()

    def hook(z, hook):
        return z + 0.7 * delta

    with torch.no_grad():
        expected = model.run_with_hooks(zs_canvas, layout, fwd_hooks=[(site, hook)])
        out = patched_forward(model, zs_canvas, layout, means, space, mask, Intervention("add", 0.7), zs_means)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
        add_one = patched_forward(model, zs_canvas, layout, means, space, mask, Intervention("add", 1.0), zs_means)
        replace = patched_forward(model, zs_canvas, layout, means, space, mask)
    torch.testing.assert_close(add_one, replace, atol=1e-4, rtol=0)
    assert (out - model(zs_canvas, layout)).abs().max() > 1e-3


def test_intervention_errors(model, means) -> None:
    from interp.errors import InputError

    space = UnitSpace.for_model(model, "head")
    with pytest.raises(InputError, match="unknown intervention kind"):
        Intervention("subtract")
    with pytest.raises(InputError, match="finite"):
        Intervention("add", float("nan"))
    with pytest.raises(InputError, match="needs the zero-shot means"):
        MeanPatcher(model, means, "zero_shot", space, Intervention("add", 1.0))
    assert Intervention("scaled", 2) == Intervention("scaled", 2.0)
    assert Intervention("scaled", 2).label == "scaled(a=2)" and Intervention().label == "replace"
