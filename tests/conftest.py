"""Shared fixtures: where the official reference fixtures live, and the small reference model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(
            f"{REFERENCE} not found: reference tests need ../shared beside the clone (CI has it)"
        )
    return REFERENCE


@pytest.fixture(scope="session")
def mae_small(reference_dir: Path):
    """The official-architecture MAE with random weights of the reference fixtures."""
    from safetensors.torch import load_file

    from interp.models import MAEConfig, ModelConfig, load_official

    config = MAEConfig.from_dict(json.loads((reference_dir / "mae_small.config.json").read_text()))
    return load_official(reference_dir / "mae_small.safetensors", config=ModelConfig(config))


@pytest.fixture(scope="session")
def mae_golden(reference_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(reference_dir / "mae_small.golden.safetensors")


def random_model(seed: int = 0, with_vqgan: bool = False):
    """A small MAE-VQGAN (64px canvas, 8px patches) with random, non-trivial weights."""
    from interp.models import MAEVQGAN, MAEConfig, ModelConfig, VQGANConfig

    mae = MAEConfig(
        img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=4,
        decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=4, vocab_size=64,
    )
    vqgan = VQGANConfig(
        ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), z_channels=8,
        resolution=64, n_embed=64, embed_dim=8,
    ) if with_vqgan else None
    torch.manual_seed(seed)
    model = MAEVQGAN(ModelConfig(mae, vqgan))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("vqgan."):
                param.normal_(0, 0.2)
    return model.eval()


@pytest.fixture
def tiny_random():
    return random_model()


@pytest.fixture
def canvases() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
