"""VQGAN re-implementation against the official taming/MAE-VQGAN reference fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interp.models.vqgan import VQGAN, VQGANConfig

@pytest.fixture(scope="module")
def small(reference_dir: Path) -> tuple[VQGAN, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    config = VQGANConfig.from_taming(json.loads((reference_dir / "vqgan_small.config.json").read_text()))
    model = VQGAN(config)
    model.load_state_dict(load_file(reference_dir / "vqgan_small.safetensors"), strict=True)
    return model.eval(), load_file(reference_dir / "vqgan_small.golden.safetensors")


def test_config_roundtrip(reference_dir: Path) -> None:
    raw = json.loads((reference_dir / "vqgan_small.config.json").read_text())
    config = VQGANConfig.from_taming(raw)
    assert config.to_taming() == raw
    assert VQGANConfig.from_taming(config.to_taming()) == config
    assert config.downsample_factor == 16 and VQGANConfig.large().downsample_factor == 16


def test_encode_to_codes_matches_reference(small) -> None:
    model, golden = small
    with torch.no_grad():
        codes = model.encode_to_codes(golden["canvas"])
    assert codes.dtype == torch.int64 and codes.shape == golden["tokens"].shape
    mismatches = (codes != golden["tokens"]).nonzero().tolist()
    assert not mismatches, f"{len(mismatches)} codes differ, first at {mismatches[:5]}"


def test_decode_codes_matches_reference(small) -> None:
    model, golden = small
    with torch.no_grad():
        pixels = model.decode_codes(golden["tokens"])
    assert pixels.shape == golden["decoded"].shape
    err = (pixels - golden["decoded"]).abs().max().item()
    assert err < 1e-4, f"max abs error {err:.3g}"


def test_large_config_matches_official_keys(reference_dir: Path) -> None:
    manifest = json.loads((reference_dir / "vqgan_imagenet_f16_1024.keys.json").read_text())
    expected = {k: tuple(v) for k, v in manifest.items()}
    with torch.device("meta"):
        model = VQGAN(VQGANConfig.large())
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    assert not missing and not extra, f"missing {missing[:10]} ({len(missing)}), extra {extra[:10]} ({len(extra)})"
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not wrong, f"shape mismatches (got, expected): {wrong}"


def test_straight_through_encode_trains_encoder() -> None:
    torch.manual_seed(0)
    config = VQGANConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,),
                         z_channels=8, resolution=32, n_embed=16, embed_dim=4)
    model = VQGAN(config)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z_q, codes, (codebook_loss, commitment_loss) = model.encode(x)
    assert z_q.shape == (2, 4, 16, 16) and codes.shape == (2, 256) and codes.dtype == torch.int64
    # z_q equals the codebook vectors in value
    looked_up = model.quantize.embedding.weight[codes].view(2, 16, 16, 4).permute(0, 3, 1, 2)
    torch.testing.assert_close(z_q, looked_up)
    recon = model.decode(z_q)
    assert recon.shape == x.shape
    loss = (recon - x).pow(2).mean() + codebook_loss + 0.25 * commitment_loss
    loss.backward()
    for name in ("encoder.conv_in.weight", "quant_conv.weight", "quantize.embedding.weight",
                 "decoder.conv_out.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_decode_codes_rectangular_grid() -> None:
    config = VQGANConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                         z_channels=8, resolution=32, n_embed=16, embed_dim=4)
    model = VQGAN(config)
    with torch.no_grad():
        out = model.decode_codes(torch.zeros(1, 6, dtype=torch.int64), grid=(2, 3))
    assert out.shape == (1, 3, 4, 6) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        model.decode_codes(torch.zeros(1, 6, dtype=torch.int64))


def test_soft_decode_of_one_hot_probabilities_is_the_hard_decode(small) -> None:
    """The soft decode's latent is ``probs @ codebook``: one-hot rows pick codebook rows exactly,
    so the pixels equal ``decode_codes`` bit for bit on the CPU (stated tolerance: 0; 20 rows
    also cross the 16-row batch split); a softened distribution gives other pixels."""
    model, golden = small
    n = int(golden["tokens"].shape[1] ** 0.5)
    codes = torch.randint(0, model.config.n_embed, (20, n * n), generator=torch.Generator().manual_seed(0))
    probs = torch.nn.functional.one_hot(codes, model.config.n_embed).float()
    with torch.no_grad():
        hard = model.decode_codes(codes, grid=(n, n))
        soft = model.decode_soft(probs, grid=(n, n))
        torch.testing.assert_close(soft, hard, rtol=0, atol=0)
        blurred = model.decode_soft(0.6 * probs + 0.4 / model.config.n_embed, grid=(n, n))
    assert (blurred - hard).abs().max() > 1e-3
    probs.requires_grad_(True)
    model.decode_soft(probs[:2], grid=(n, n)).sum().backward()
    assert probs.grad is not None and probs.grad[:2].abs().sum() > 0
    with pytest.raises(ValueError, match="probs must be"):
        model.decode_soft(probs[:, :3], grid=(n, n))
