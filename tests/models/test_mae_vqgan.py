"""MAEVQGAN behaviour that the reference fixtures do not pin down: hook names, attention
paths, input errors, official key layout, nnsight access and the predicted canvas."""

from __future__ import annotations

import json

import pytest
import torch

from interp.canvas import one_shot, zero_shot
from interp.models import MAEVQGAN, ModelConfig
from interp.models.checkpoint import official_mae_key, to_official_keys
from tests.conftest import random_model

BLOCK_HOOKS = [
    "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
    "attn.hook_pattern", "attn.hook_z", "attn.hook_result", "hook_attn_out", "hook_resid_mid",
    "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
]


def test_golden_hook_names(tiny_random) -> None:
    expected = {"encoder.hook_embed", "decoder.hook_embed", "decoder.hook_logits"}
    expected |= {f"{s}.blocks.{i}.{h}" for s in ("encoder", "decoder") for i in range(2) for h in BLOCK_HOOKS}
    assert set(tiny_random.hook_dict) == expected
    assert all(hp.name == name for name, hp in tiny_random.hook_dict.items())


def test_hook_shapes(tiny_random, canvases) -> None:
    _, cache = tiny_random.run_with_cache(canvases, "one_shot")
    enc, dec = 1 + 48, 1 + 64  # one-shot: CLS + 48 visible of 64 patches; decoder: all slots
    assert cache["encoder.hook_embed"].shape == (2, enc, 32)
    assert cache["encoder.blocks.0.attn.hook_q"].shape == (2, enc, 4, 8)
    assert cache["encoder.blocks.0.attn.hook_pattern"].shape == (2, 4, enc, enc)
    assert cache["encoder.blocks.1.attn.hook_result"].shape == (2, enc, 4, 32)
    assert cache["encoder.blocks.1.mlp.hook_post"].shape == (2, enc, 128)
    assert cache["decoder.blocks.0.attn.hook_z"].shape == (2, dec, 4, 4)
    assert cache["decoder.hook_logits"].shape == (2, 64, 64)
    torch.testing.assert_close(cache["encoder.blocks.0.attn.hook_pattern"].sum(-1), torch.ones(2, 4, enc))


def test_sdpa_and_explicit_attention_agree(tiny_random, canvases) -> None:
    fused = tiny_random(canvases, "zero_shot")
    explicit = tiny_random.run_with_hooks(
        canvases, "zero_shot", fwd_hooks=[(lambda n: n.endswith("hook_pattern"), lambda t, h: None)]
    )
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    # editing the pattern takes effect
    uniform = tiny_random.run_with_hooks(
        canvases, "zero_shot", fwd_hooks=[("encoder.blocks.0.attn.hook_pattern", lambda t, h: torch.full_like(t, 1 / t.shape[-1]))]
    )
    assert not torch.allclose(fused, uniform)


def test_hook_result_sums_to_attention_output(tiny_random, canvases) -> None:
    _, cache = tiny_random.run_with_cache(canvases, names_filter=lambda n: n.startswith("encoder.blocks.0.") and ("result" in n or "attn_out" in n))
    attn = tiny_random.encoder.blocks[0].attn
    total = cache["encoder.blocks.0.attn.hook_result"].sum(2) - (attn.n_heads - 1) * attn.proj.bias
    torch.testing.assert_close(total, cache["encoder.blocks.0.hook_attn_out"], atol=1e-5, rtol=1e-5)


def test_layouts_give_rows_per_decoder_patch(tiny_random, canvases) -> None:
    assert tiny_random(canvases, one_shot(tiny_random.grid)).shape == (2, 64, 64)
    assert tiny_random(canvases, "zero_shot").shape == (2, 32, 64)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(2, 3, 32, 32), "32x32 pixels; this model takes 64x64"),
        (torch.randn(2, 1, 64, 64), "1 channels; expected 3"),
        (torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), "dtype torch.uint8"),
        (torch.randn(3, 64, 64), "add a batch dimension"),
    ],
)
def test_bad_canvas_is_named(tiny_random, bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_random(bad)


def test_bad_layout_is_named(tiny_random, canvases) -> None:
    with pytest.raises(ValueError, match="unknown layout 'two_shot'"):
        tiny_random(canvases, "two_shot")
    with pytest.raises(ValueError, match="224px canvas"):
        tiny_random(canvases, one_shot())


def test_large_config_has_official_keys(reference_dir) -> None:
    with torch.device("meta"):
        model = MAEVQGAN(ModelConfig.large())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mae_manifest = {k: tuple(v) for k, v in json.loads((reference_dir / "mae_vit_large_patch16.keys.json").read_text()).items()}
    vqgan_manifest = {k: tuple(v) for k, v in json.loads((reference_dir / "vqgan_imagenet_f16_1024.keys.json").read_text()).items()}
    mae_ours = {k: tuple(v.shape) for k, v in to_official_keys(model.state_dict()).items()}
    assert mae_ours == mae_manifest
    assert {official_mae_key(k): s for k, s in mae_manifest.items()} == {k: s for k, s in ours.items() if not k.startswith("vqgan.")}
    assert {k[len("vqgan."):]: s for k, s in ours.items() if k.startswith("vqgan.")} == vqgan_manifest


def test_nnsight_reads_and_writes_hook_z(tiny_random, canvases) -> None:
    from nnsight import NNsight

    def zero_heads(z, hook):
        z = z.clone()
        z[:, 1:5, 2] = 0
        return z

    expected = tiny_random.run_with_hooks(canvases, "zero_shot", fwd_hooks=[("encoder.blocks.1.attn.hook_z", zero_heads)])
    _, cache = tiny_random.run_with_cache(canvases, "zero_shot", names_filter="decoder.blocks.0.attn.hook_z")

    traced = NNsight(tiny_random)
    with traced.trace(canvases, "zero_shot"):  # access hook points in execution order
        traced.encoder.blocks[1].attn.hook_z.output[:, 1:5, 2] = 0
        patched_z = traced.decoder.blocks[0].attn.hook_z.output.clone().save()
        out = traced.output.save()
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    # the downstream read sees the upstream edit
    assert not torch.allclose(patched_z, cache["decoder.blocks.0.attn.hook_z"])


def test_nnsight_sees_lazy_hook_points_when_enabled(tiny_random, canvases) -> None:
    from nnsight import NNsight

    tiny_random.enable_all_hook_points()
    traced = NNsight(tiny_random)
    with traced.trace(canvases, "zero_shot"):
        result = traced.encoder.blocks[1].attn.hook_result.output.save()
        pattern = traced.decoder.blocks[0].attn.hook_pattern.output.save()
    _, cache = tiny_random.run_with_cache(canvases, "zero_shot")
    torch.testing.assert_close(pattern, cache["decoder.blocks.0.attn.hook_pattern"])
    torch.testing.assert_close(result, cache["encoder.blocks.1.attn.hook_result"])


def test_predict_canvas_pastes_only_hidden_patches(canvases) -> None:
    model = random_model(with_vqgan=True)
    from interp.models.pixels import canvas_pixels

    for layout in (one_shot(model.grid), zero_shot(model.grid)):
        predicted = model.predict_canvas(canvases, layout)
        assert predicted.shape == canvases.shape and 0 <= predicted.min() and predicted.max() <= 1
        assert torch.equal(predicted * 255, (predicted * 255).round())  # official integer pixels / 255
        visible = canvas_pixels(canvases).float() / 255.0
        target = model.grid.cell(predicted, "target")
        assert torch.equal(model.grid.cell(predicted, "query"), model.grid.cell(visible, "query"))
        assert not torch.equal(target, model.grid.cell(visible, "target"))


def test_predict_canvas_without_vqgan_is_named(tiny_random, canvases) -> None:
    with pytest.raises(RuntimeError, match="no VQGAN"):
        tiny_random.predict_canvas(canvases)


@pytest.mark.parametrize("stack, layer", [("encoder", 0), ("encoder", 1), ("decoder", 0), ("decoder", 1)])
def test_forward_from_cached_residual(tiny_random, canvases, stack, layer) -> None:
    name = f"{stack}.blocks.{layer}.hook_resid_pre"
    logits, cache = tiny_random.run_with_cache(canvases, "zero_shot", names_filter=name)
    resumed = tiny_random.forward_from(cache[name], "zero_shot", stack, layer)
    torch.testing.assert_close(resumed, logits, atol=1e-6, rtol=0)


def test_sincos_positions_match_reference(reference_dir) -> None:
    from safetensors.torch import load_file

    from interp.models.mae_vqgan import sincos_pos_embed

    sd = load_file(reference_dir / "mae_small.safetensors")
    torch.testing.assert_close(sincos_pos_embed(96, 14), sd["pos_embed"][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(sincos_pos_embed(48, 14), sd["decoder_pos_embed"][0], atol=1e-6, rtol=0)


def test_residual_stream_yields_every_block_input_in_forward_order(tiny_random, canvases) -> None:
    logits, cache = tiny_random.run_with_cache(canvases, "zero_shot", names_filter=lambda n: n.endswith("hook_resid_pre"))
    seen = [(stack, layer) for stack, layer, _ in tiny_random.residual_stream(canvases, "zero_shot")]
    expected = [(n.split(".")[0], int(n.split(".")[2])) for n in cache]
    assert seen == sorted(expected, key=lambda s: (s[0] != "encoder", s[1]))
    for stack, layer, resid in tiny_random.residual_stream(canvases, "zero_shot"):
        assert torch.equal(resid, cache[f"{stack}.blocks.{layer}.hook_resid_pre"])
