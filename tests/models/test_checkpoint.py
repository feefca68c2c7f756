"""Checkpoint loading: official pickled files read safely, strict keys, our safetensors format."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp.models import CheckpointError, MAEConfig, ModelConfig, VQGANConfig, load_model, load_official, save_model
from tests.conftest import random_model


@pytest.fixture(scope="module")
def small_config(reference_dir) -> ModelConfig:
    mae = MAEConfig.from_dict(json.loads((reference_dir / "mae_small.config.json").read_text()))
    vqgan = VQGANConfig.from_taming(json.loads((reference_dir / "vqgan_small.config.json").read_text()))
    return ModelConfig(mae, vqgan)


def _official_files(reference_dir, tmp_path, vae_inside: bool):
    """Write checkpoint-1000.pth / last.ckpt as the official training scripts do."""
    mae_sd = load_file(reference_dir / "mae_small.safetensors")
    vqgan_sd = load_file(reference_dir / "vqgan_small.safetensors")
    model = dict(mae_sd, **({f"vae.{k}": v for k, v in vqgan_sd.items()} if vae_inside else {}))
    args = argparse.Namespace(model="mae_vit_large_patch16", lr=1e-4, output_dir=tmp_path)
    torch.save({"model": model, "optimizer": {"state": {}}, "epoch": 1000, "args": args}, tmp_path / "checkpoint-1000.pth")
    lightning = dict(vqgan_sd, **{"loss.discriminator.main.0.weight": torch.zeros(4, 3, 4, 4)})
    torch.save({"state_dict": lightning, "global_step": 7, "epoch": 3}, tmp_path / "last.ckpt")
    return tmp_path / "checkpoint-1000.pth", tmp_path / "last.ckpt"


@pytest.mark.parametrize("vae_inside", [False, True])
def test_official_checkpoints_load_and_match_reference(reference_dir, tmp_path, small_config, mae_golden, vae_inside) -> None:
    mae_path, vqgan_path = _official_files(reference_dir, tmp_path, vae_inside)
    model = load_official(mae_path, None if vae_inside else vqgan_path, config=small_config)
    with torch.no_grad():
        logits = model(mae_golden["canvas"])
    torch.testing.assert_close(logits, mae_golden["oneshot.logits"], atol=1e-4, rtol=0)
    vq_golden = load_file(reference_dir / "vqgan_small.golden.safetensors")
    assert torch.equal(model.vqgan.encode_to_codes(vq_golden["canvas"]), vq_golden["tokens"])
    assert not model.encoder.pos_embed.requires_grad


def test_missing_vqgan_weights_are_named(reference_dir, tmp_path, small_config) -> None:
    mae_path, _ = _official_files(reference_dir, tmp_path, vae_inside=False)
    with pytest.raises(CheckpointError, match="pass vqgan_checkpoint"):
        load_official(mae_path, config=small_config)


def test_wrong_keys_are_listed(reference_dir, tmp_path, small_config) -> None:
    sd = load_file(reference_dir / "mae_small.safetensors")
    sd.pop("decoder_pred.bias")
    sd["decoder_pred.extra"] = torch.zeros(1)
    sd["norm.weight"] = torch.zeros(5)
    save_file(sd, tmp_path / "mae.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_official(tmp_path / "mae.safetensors", config=ModelConfig(small_config.mae))
    message = str(error.value)
    assert "decoder.pred.bias" in message and "decoder.pred.extra" in message
    assert "encoder.norm.weight: file (5,)" in message


def test_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth not found"):
        load_official(tmp_path / "nope.pth")


def test_pickled_module_needs_code_execution(tmp_path) -> None:
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match=r"needs pickle code execution.*torch\.nn\.modules\.linear\.Linear"):
        load_official(tmp_path / "module.pth")


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_pickle_never_runs(tmp_path) -> None:
    marker = tmp_path / "executed"
    torch.save({"model": {"w": torch.ones(1)}, "x": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="needs pickle code execution"):
        load_official(tmp_path / "evil.pth")
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"definitely not a zip file")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_official(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(tmp_path / "junk.safetensors")


def test_safetensors_roundtrip(tmp_path, canvases) -> None:
    model = random_model(seed=3, with_vqgan=True)
    save_model(model, tmp_path / "m.safetensors", metadata={"note": "test"})
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(canvases, "zero_shot"), model(canvases, "zero_shot"), atol=0, rtol=0)
    save_file({"w": torch.zeros(1)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="no model config"):
        load_model(tmp_path / "plain.safetensors")
