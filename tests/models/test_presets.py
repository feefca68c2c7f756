"""Model presets: one home for the configs training, bench, tests and weights use."""

from __future__ import annotations

import pytest
import torch

from interp.models import presets


def test_presets_have_the_documented_geometry() -> None:
    assert presets.tiny().mae.grid.num_patches == 64 and presets.tiny().vqgan.n_embed == 256
    assert presets.tiny(4, 128).mae.decoder_depth == 4 and presets.tiny(4, 128).mae.decoder_embed_dim == 128
    small, large = presets.small(), presets.large()
    assert (small.mae.depth, small.mae.decoder_depth, small.mae.num_heads) == (large.mae.depth, large.mae.decoder_depth, large.mae.num_heads)
    assert small.mae.embed_dim < large.mae.embed_dim
    assert presets.preset("small") == small


def test_unknown_preset_is_named() -> None:
    with pytest.raises(ValueError, match="'huge'.*large"):
        presets.preset("huge")


def test_random_models_are_seeded_and_differ_as_documented() -> None:
    a, b = presets.random_model(1), presets.random_model(1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.vqgan is None and presets.random_model(with_vqgan=True).vqgan is not None
    smoke, fresh = presets.random_smoke_model(0), presets.initialized(presets.random_config(True), 0)
    # the smoke model keeps the fixed sin-cos position table of the official initialisation
    assert torch.equal(smoke.encoder.pos_embed, fresh.encoder.pos_embed)
    assert not torch.equal(smoke.encoder.blocks[0].attn.qkv.weight, fresh.encoder.blocks[0].attn.qkv.weight)
