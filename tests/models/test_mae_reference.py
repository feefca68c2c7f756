"""The hooked MAE-VQGAN against outputs of the official implementation (../shared/reference).

Patching is done here only through the public hook API (``run_with_hooks`` on ``hook_z``), with
the official Bernoulli unit order expanded by the formula of the reference README; the
official (layer, head, position) lists in ``mae_small.patch_cases.json`` check that expansion.
"""

from __future__ import annotations

import json

import pytest
import torch

from interp.canvas import PromptLayout, one_shot, zero_shot

ATOL = 1e-4
ENC_LAYERS, DEC_LAYERS, HEADS = 24, 8, 16


def test_one_shot_logits(mae_small, mae_golden) -> None:
    layout = one_shot(mae_small.grid)
    order = torch.tensor(layout.encoder_patches + layout.masked_patches)
    assert torch.equal(order, mae_golden["ids_shuffle"][0])
    assert torch.equal(layout.mask(), mae_golden["oneshot.mask"][0])
    with torch.no_grad():
        logits = mae_small(mae_golden["canvas"], layout)
    torch.testing.assert_close(logits, mae_golden["oneshot.logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("index", [0, 12, 23, 24, 31])
def test_per_head_projected_outputs(mae_small, mae_golden, index: int) -> None:
    name = (
        f"encoder.blocks.{index}.attn.hook_result"
        if index < ENC_LAYERS
        else f"decoder.blocks.{index - ENC_LAYERS}.attn.hook_result"
    )
    with torch.no_grad():
        logits, cache = mae_small.run_with_cache(mae_golden["canvas"], "one_shot", names_filter=name)
    torch.testing.assert_close(cache[name], mae_golden[f"oneshot.head_out.{index}"], atol=ATOL, rtol=0)
    # computing hook_result must not change the forward
    torch.testing.assert_close(logits, mae_golden["oneshot.logits"], atol=ATOL, rtol=0)


def test_zero_shot_logits(mae_small, mae_golden) -> None:
    with torch.no_grad():
        logits = mae_small(mae_golden["canvas"], "zero_shot")
    torch.testing.assert_close(logits, mae_golden["zeroshot.logits"], atol=ATOL, rtol=0)


# --- patching -------------------------------------------------------------------------------


def _stack_layer(layer: int) -> tuple[str, int]:
    return ("encoder", layer) if layer < ENC_LAYERS else ("decoder", layer - ENC_LAYERS)


def expand_granularity1(sample: torch.Tensor, layout: PromptLayout) -> list[tuple[int, int, int]]:
    """Official (layer, head, position) triples of a granularity-1 sample (layers 24.. = decoder)."""
    enc_groups = layout.token_groups("encoder")
    dec_groups = layout.token_groups("decoder")
    groups = {
        "encoder": [enc_groups["cls"], enc_groups["query"]],
        "decoder": [dec_groups["cls"], dec_groups["query"], dec_groups["target"]],
    }
    triples = []
    for unit in sample.nonzero().flatten().tolist():
        if unit < ENC_LAYERS * HEADS * 2:
            layer, rest = divmod(unit, HEADS * 2)
            head, group = divmod(rest, 2)
            positions = groups["encoder"][group]
        else:
            layer, rest = divmod(unit - ENC_LAYERS * HEADS * 2, HEADS * 3)
            head, group = divmod(rest, 3)
            positions = groups["decoder"][group]
            layer += ENC_LAYERS
        triples += [(layer, head, pos) for pos in positions]
    return triples


def expand_granularity2(sample: torch.Tensor) -> list[tuple[int, int, int]]:
    """Granularity 2: ``l*800 + h*50 + token`` (encoder), then ``19200 + l*1584 + h*99 + token``."""
    triples = []
    for unit in sample.nonzero().flatten().tolist():
        if unit < ENC_LAYERS * HEADS * 50:
            layer, rest = divmod(unit, HEADS * 50)
            head, pos = divmod(rest, 50)
        else:
            layer, rest = divmod(unit - ENC_LAYERS * HEADS * 50, HEADS * 99)
            head, pos = divmod(rest, 99)
            layer += ENC_LAYERS
        triples.append((layer, head, pos))
    return triples


def mean_z_by_slot(model, canvases: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean ``hook_z`` over the canvases, one-shot, as ``{hook name: [slots, head, d_head]}``."""
    layout = one_shot(model.grid)
    with torch.no_grad():
        _, cache = model.run_with_cache(canvases, layout, names_filter=lambda n: n.endswith("hook_z"))
    means = {}
    for name, z in cache.items():
        slots = layout.slots(name.split(".")[0])
        by_slot = torch.zeros(model.grid.num_slots, *z.shape[2:])
        by_slot[list(slots)] = z.mean(0)
        means[name] = by_slot
    return means


def patched_forward(model, canvas, layout: PromptLayout, triples, means) -> torch.Tensor:
    """Replace ``hook_z`` at each (layer, head, position) by the mean at the same slot."""
    by_hook: dict[str, list[tuple[int, int]]] = {}
    for layer, head, pos in triples:
        stack, local = _stack_layer(layer)
        by_hook.setdefault(f"{stack}.blocks.{local}.attn.hook_z", []).append((head, pos))

    def make_hook(name: str, edits: list[tuple[int, int]]):
        heads = torch.tensor([h for h, _ in edits])
        positions = torch.tensor([p for _, p in edits])
        slots = torch.tensor(layout.slots(name.split(".")[0]))[positions]

        def hook(z: torch.Tensor, hook) -> torch.Tensor:
            z = z.clone()
            z[:, positions, heads] = means[name][slots, heads]
            return z

        return hook

    hooks = [(name, make_hook(name, edits)) for name, edits in by_hook.items()]
    with torch.no_grad():
        return model.run_with_hooks(canvas, layout, fwd_hooks=hooks)


@pytest.fixture(scope="module")
def injection(mae_small, mae_golden):
    return mean_z_by_slot(mae_small, mae_golden["inject_canvases"])


@pytest.fixture(scope="module")
def patch_cases(reference_dir):
    return json.loads((reference_dir / "mae_small.patch_cases.json").read_text())


@pytest.mark.parametrize("case", [0, 1, 2])
def test_patched_zero_shot_granularity1(mae_small, mae_golden, injection, patch_cases, case: int) -> None:
    layout = zero_shot(mae_small.grid)
    triples = expand_granularity1(mae_golden[f"patched.{case}.sample"], layout)
    official = patch_cases[case]
    assert len(triples) == official["n_indices"]
    assert [list(t) for t in triples[:50]] == official["indices_head_layer_pos"]
    logits = patched_forward(mae_small, mae_golden["canvas"], layout, triples, injection)
    torch.testing.assert_close(logits, mae_golden[f"patched.{case}.logits"], atol=ATOL, rtol=0)
    # the patch matters: it moves the logits well beyond the tolerance
    assert (logits - mae_golden["zeroshot.logits"]).abs().max() > 100 * ATOL


def test_patched_one_shot_granularity2(mae_small, mae_golden, injection) -> None:
    """The official code applies zero-shot token indices to the one-shot sequence (a quirk)."""
    layout = one_shot(mae_small.grid)
    triples = expand_granularity2(mae_golden["patched_oneshot_g2.sample"])
    logits = patched_forward(mae_small, mae_golden["canvas"], layout, triples, injection)
    torch.testing.assert_close(logits, mae_golden["patched_oneshot_g2.logits"], atol=ATOL, rtol=0)
    assert (logits - mae_golden["oneshot.logits"]).abs().max() > 100 * ATOL
