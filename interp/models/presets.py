"""Model presets: the configs the project trains, benchmarks and tests with, in one place.

* :func:`tiny` — the bundled tiny model (``interp train-tiny``): 64 px canvas, 8 px patches.
* :func:`small` — the official depths and heads at narrow widths (the ``mae_small`` reference
  geometry), with a small f16 VQGAN: shaped like the real model, cheap to run.
* :func:`large` — the official MAE-VQGAN (ViT-L/16 + the f16 VQGAN with 1024 codes).
* :func:`random_model` / :func:`random_smoke_model` — very small random-weight models (64 px,
  8 px patches, 2 + 2 blocks) for unit tests and ``--quick`` smoke runs. Their numbers mean nothing.
"""

from __future__ import annotations

from typing import Callable

import torch

from interp.models.mae_vqgan import MAEVQGAN, MAEConfig, ModelConfig
from interp.models.vqgan import VQGANConfig


def tiny(decoder_depth: int = 3, decoder_embed_dim: int = 96) -> ModelConfig:
    """64x64 canvas, 8x8 patches (8x8 codes from an f8 VQGAN with 256 codes); the decoder
    (where hidden target patches read the query) can be made deeper or wider."""
    mae = MAEConfig(
        img_size=64, patch_size=8, embed_dim=128, depth=6, num_heads=8,
        decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth, decoder_num_heads=8,
        mlp_ratio=4.0, vocab_size=256,
    )
    vqgan = VQGANConfig(
        ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), z_channels=32,
        resolution=64, n_embed=256, embed_dim=32,
    )
    return ModelConfig(mae, vqgan)


def small() -> ModelConfig:
    """Official depths and heads (24 + 8 blocks, 16 heads, 224 px, 16 px patches) at widths 96 / 48."""
    mae = MAEConfig(
        img_size=224, patch_size=16, embed_dim=96, depth=24, num_heads=16,
        decoder_embed_dim=48, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0, vocab_size=1024,
    )
    vqgan = VQGANConfig(
        ch=32, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=1, attn_resolutions=(16,), z_channels=32,
        resolution=256, n_embed=1024, embed_dim=16,
    )
    return ModelConfig(mae, vqgan)


def large() -> ModelConfig:
    """``mae_vit_large_patch16`` with the official f16 VQGAN (~1.3 GB of float32 weights)."""
    return ModelConfig.large()


PRESETS: dict[str, Callable[[], ModelConfig]] = {"tiny": tiny, "small": small, "large": large}


def preset(name: str) -> ModelConfig:
    """The config named ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def initialized(config: ModelConfig, seed: int = 0) -> MAEVQGAN:
    """``config`` with the official initialisation (``initialize_weights``) after seeding torch."""
    torch.manual_seed(seed)
    return MAEVQGAN(config).initialize_weights()


def random_config(with_vqgan: bool = False) -> ModelConfig:
    """The test geometry: 64 px canvas, 8 px patches, 2 + 2 blocks of 4 heads, 64 codes."""
    mae = MAEConfig(
        img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=4,
        decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=4, vocab_size=64,
    )
    vqgan = VQGANConfig(
        ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), z_channels=8,
        resolution=64, n_embed=64, embed_dim=8,
    ) if with_vqgan else None
    return ModelConfig(mae, vqgan)


def _noise_mae_parameters(model: MAEVQGAN, trainable_only: bool) -> MAEVQGAN:
    """Redraw MAE parameters (not the VQGAN's) from N(0, 0.2): non-trivial attention patterns."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("vqgan.") and (param.requires_grad or not trainable_only):
                param.normal_(0, 0.2)
    return model.eval()


def random_model(seed: int = 0, with_vqgan: bool = False) -> MAEVQGAN:
    """The unit tests' model: :func:`random_config` with every MAE parameter ~ N(0, 0.2)
    (position tables included), in eval mode."""
    torch.manual_seed(seed)
    return _noise_mae_parameters(MAEVQGAN(random_config(with_vqgan)), trainable_only=False)


def random_smoke_model(seed: int = 0) -> MAEVQGAN:
    """``--quick`` smoke runs without the bundled tiny model: :func:`random_config` with a
    VQGAN, the official initialisation, then trainable MAE parameters ~ N(0, 0.2) (the sin-cos
    position tables stay)."""
    return _noise_mae_parameters(initialized(random_config(with_vqgan=True), seed), trainable_only=True)
