"""Per-slot activation statistics: collection, exact merging, safe files with named errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp.canvas import one_shot, zero_shot
from interp.models import MAEVQGAN, MAEConfig
from interp.taskvectors.collect import collect
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.stats_file import (
    CorruptStatsError, LayoutMismatchError, MissingSidecarError, ModelMismatchError, ShapeMismatchError, StatsError,
    file_sha256,
)
from tests.conftest import random_model


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.fixture(scope="module")
def batches():
    g = torch.Generator().manual_seed(3)
    return [torch.randn(3, 3, 64, 64, generator=g), torch.randn(2, 3, 64, 64, generator=g)]


@pytest.fixture(scope="module")
def stats(model, batches):
    return collect(model, batches, "one_shot", task="seg", dataset="synthetic", seed=7, progress=False)


def test_collect_matches_the_cache(model, batches, stats) -> None:
    layout = one_shot(model.grid)
    canvases = torch.cat(batches)
    with torch.no_grad():
        _, cache = model.run_with_cache(canvases, layout, names_filter=lambda n: n.endswith("attn.hook_z"))
    assert sorted(stats.sites) == sorted(cache.keys()) and len(stats.sites) == 4
    assert stats.n_prompts == 5 and stats.fingerprint == model.config.fingerprint()
    for site in stats.sites:
        z = cache[site].double()  # [batch, pos, head, d_head]
        slots = list(layout.slots(site.split(".")[0]))
        assert stats.sum[site].dtype == torch.float64 and stats.count[site].dtype == torch.int64
        assert stats.sum[site].shape == (model.grid.num_slots, 4, z.shape[-1])
        torch.testing.assert_close(stats.mean(site)[slots], z.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats.sum_sq[site][slots], z.square().sum(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats.var(site)[slots], z.var(0, unbiased=False), rtol=1e-9, atol=1e-12)
        expected_count = torch.zeros(model.grid.num_slots, dtype=torch.int64)
        expected_count[slots] = 5
        assert torch.equal(stats.count[site], expected_count)
    # the encoder never sees the target cell one-shot: its mean is undefined there
    target = list(model.grid.quadrant_slots("target"))
    assert stats.mean("encoder.blocks.0.attn.hook_z")[target].isnan().all()
    assert not stats.mean("decoder.blocks.0.attn.hook_z").isnan().any()


def test_shards_merge_exactly(model, batches, stats) -> None:
    shards = [collect(model, [b], task="seg", dataset="synthetic", seed=s, progress=False) for s, b in enumerate(batches)]
    merged = shards[0] + shards[1]
    assert merged.n_prompts == 5 and merged.seed == [0, 1] and merged.dataset == "synthetic"
    for site in stats.sites:
        assert torch.equal(merged.sum[site], stats.sum[site])
        assert torch.equal(merged.sum_sq[site], stats.sum_sq[site])
        assert torch.equal(merged.count[site], stats.count[site])
    assert torch.equal(sum(shards).sum[stats.sites[0]], merged.sum[stats.sites[0]])
    with pytest.raises(StatsError, match="taskness"):
        shards[0] + collect(model, [batches[0]], task="lowlight", progress=False)
    with pytest.raises(LayoutMismatchError):
        shards[0] + collect(model, [batches[0]], "zero_shot", task="seg", progress=False)


def test_collect_options_and_errors(model, batches) -> None:
    resid = collect(model, iter(batches), sites="hook_resid_post", progress=False)
    assert sorted(resid.sites) == [f"{s}.blocks.{i}.hook_resid_post" for s in ("decoder", "encoder") for i in (0, 1)]
    assert resid.sum["encoder.blocks.1.hook_resid_post"].shape == (65, 32)
    with pytest.raises(ValueError, match="no batches"):
        collect(model, [], progress=False)
    with pytest.raises(TypeError, match="canvas tensors"):
        collect(model, [{"canvas": batches[0]}], progress=False)
    with pytest.raises(ValueError, match="matches no hook point"):
        collect(model, batches, sites="hook_nothing", progress=False)
    with pytest.raises(ShapeMismatchError, match="position dim"):
        collect(model, batches, sites="decoder.hook_logits", progress=False)  # CLS row dropped


def test_save_load_roundtrip(model, stats, tmp_path) -> None:
    path = stats.save(tmp_path / "run")
    assert path == tmp_path / "run" / "seg.safetensors"
    sidecar = json.loads((tmp_path / "run" / "seg.json").read_text())
    assert sidecar["model_fingerprint"] == model.config.fingerprint()
    assert sidecar["layout"]["name"] == "one_shot" and sidecar["task"] == "seg"
    assert sidecar["n_prompts"] == 5 and sidecar["dataset"] == "synthetic" and sidecar["seed"] == 7
    assert sidecar["interp_version"] and sidecar["sha256"] == file_sha256(path)
    assert set(load_file(path)) == {f"{s}.{f}" for s in stats.sites for f in ("sum", "sum_sq", "count")}
    for where in (path, tmp_path / "run", tmp_path / "run" / "seg.json"):
        loaded = ActivationStats.load(where, model=model, layout="one_shot", task="seg")
        assert loaded.layout == stats.layout and loaded.n_prompts == 5 and loaded.seed == 7
        for site in stats.sites:
            assert torch.equal(loaded.sum[site], stats.sum[site])
            assert torch.equal(loaded.count[site], stats.count[site])
    assert stats.save(tmp_path / "x.safetensors") == tmp_path / "x.safetensors"


def test_load_errors_say_what_to_do(model, stats, tmp_path) -> None:
    path = stats.save(tmp_path / "seg.safetensors")
    with pytest.raises(LayoutMismatchError, match="collected under layout 'one_shot'"):
        ActivationStats.load(path, layout=zero_shot(model.grid))
    other = MAEVQGAN(MAEConfig(img_size=64, patch_size=8, embed_dim=32, depth=1, num_heads=4,
                               decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=4, vocab_size=64))
    with pytest.raises(ModelMismatchError, match="collect again with this model"):
        ActivationStats.load(path, model=other)
    with pytest.raises(StatsError, match="holds task 'seg'"):
        ActivationStats.load(path, task="colorization")

    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptStatsError, match="not a readable safetensors"):
        ActivationStats.load(path)
    path.write_bytes(data)

    # the description lives in the header: the JSON copy is not needed (a kill before it is harmless)
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text("{not json")
    assert ActivationStats.load(path).n_prompts == stats.n_prompts
    sidecar.unlink()
    assert ActivationStats.load(path).n_prompts == stats.n_prompts

    site = stats.sites[0]
    tensors = load_file(path)
    header = {"format": "interp.activation_stats", "description": json.dumps({k: v for k, v in meta.items() if k != "sha256"})}
    tensors[f"{site}.sum"][0, 0] += 1  # modified tensors, header intact
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(CorruptStatsError, match="SHA-256"):
        ActivationStats.load(path)
    save_file(tensors, str(path), metadata={**header, "description": "{not json"})
    with pytest.raises(CorruptStatsError, match="header"):
        ActivationStats.load(path)

    # files from before the header description: the JSON sidecar is needed and checked
    tensors = load_file(path)
    save_file(tensors, str(path))
    meta["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CorruptStatsError, match="SHA-256"):
        ActivationStats.load(path)
    sidecar.write_text("{not json")
    with pytest.raises(CorruptStatsError, match="sidecar"):
        ActivationStats.load(path)
    sidecar.unlink()
    with pytest.raises(MissingSidecarError, match="copy the sidecar"):
        ActivationStats.load(path)

    # tensors consistent with the checksum but not with the sidecar's shapes
    tensors[f"{site}.sum"] = tensors[f"{site}.sum"][:, :2].contiguous()
    save_file(tensors, str(path))
    meta["sha256"] = file_sha256(path)
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ShapeMismatchError, match=site):
        ActivationStats.load(path)
    with pytest.raises(FileNotFoundError, match="run collect"):
        ActivationStats.load(tmp_path / "missing.safetensors")
