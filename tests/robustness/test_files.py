"""Corrupt and hostile files for every loader: each is refused with a named error that names
the file, and no pickle payload ever runs (``torch.load(weights_only=True)`` / safetensors / JSON)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from interp.data.source import read_split_list
from interp.models.checkpoint import load_model, load_official, read_torch_checkpoint, save_model, to_official_keys
from interp.models.presets import random_config, random_model
from interp.pipeline import import_official_policy
from interp.taskvectors.policy import Policy
from interp.taskvectors.units import UnitSpace
from interp.weights import Basis, TaskVector
from tests.robustness.probes import Payload, assert_named, malicious_files, marker, truncated  # noqa: F401  (marker: fixture)

KINDS = ("empty", "random", "json", "pickle", "torch_payload", "truncated")


@pytest.fixture(scope="module")
def model():
    return random_model(with_vqgan=True)


@pytest.fixture(scope="module")
def good(tmp_path_factory, model) -> dict[str, Path]:
    """One valid file per loader (truncated copies of them are the ``truncated`` probe)."""
    root = tmp_path_factory.mktemp("good")
    save_model(model, root / "model.safetensors")
    state = model.state_dict()
    save_file({k: v.contiguous() for k, v in to_official_keys(state).items()}, str(root / "mae.safetensors"))
    save_file({k[6:]: v.contiguous() for k, v in state.items() if k.startswith("vqgan.")}, str(root / "vqgan.safetensors"))
    torch.save({"model": {k: v for k, v in to_official_keys(state).items()}}, root / "checkpoint-1000.pth")
    space = UnitSpace.for_model(model, "group")
    Policy(space, torch.zeros(len(space)), metadata={"task": "lowlight"}).save(root / "policy.safetensors")
    TaskVector({"w": torch.ones(3, 4)}, name="tv").save(root / "tv.safetensors")
    (root / "fold0.txt").write_text("2007_000001__1\n2007_000002__1\n")
    return {"model": root / "model.safetensors", "official": root / "checkpoint-1000.pth", "policy": root / "policy.safetensors",
            "task_vector": root / "tv.safetensors", "split_list": root / "fold0.txt", "mae": root / "mae.safetensors",
            "vqgan": root / "vqgan.safetensors"}


LOADERS = {
    "model": ("model.safetensors", load_model),
    "official": ("checkpoint-1000.pth", lambda p: load_official(p, config=random_config())),
    "official_safetensors": ("mae.safetensors", lambda p: load_official(p, config=random_config())),
    "torch_checkpoint": ("checkpoint-1000.pth", read_torch_checkpoint),
    "policy": ("policy.safetensors", Policy.load),
    "task_vector": ("tv.safetensors", TaskVector.load),
    "split_list": ("fold0.txt", read_split_list),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_every_loader_refuses_bad_files_by_name(loader, kind, good, tmp_path, marker) -> None:
    name, load = LOADERS[loader]
    if (loader, kind) == ("split_list", "empty"):
        pytest.skip("an empty split list is valid (a fold without images); sampling from it names the list")
    if kind == "truncated":
        source = good.get(loader, good.get({"official_safetensors": "mae", "torch_checkpoint": "official"}.get(loader, loader)))
        path = truncated(source)
        if loader == "split_list":
            path.write_text("2007_000001__")  # a line cut in the middle
    else:
        path = malicious_files(tmp_path, marker, name)[kind]
    with pytest.raises(Exception) as info:
        load(path)
    assert_named(info.value, path.name)


def test_good_files_load(good, model) -> None:
    """The probes above start from files that do load (so a refusal is about the damage)."""
    assert load_model(good["model"]).config == model.config
    assert load_official(good["official"], config=random_config()) is not None
    assert load_official(good["mae"], good["vqgan"], config=random_config(with_vqgan=True)) is not None
    assert Policy.load(good["policy"]).metadata["task"] == "lowlight"
    assert TaskVector.load(good["task_vector"]).name == "tv"
    assert len(read_split_list(good["split_list"])) == 2


def test_vqgan_mismatch_names_the_vqgan_file(good, tmp_path) -> None:
    state = {k: v for k, v in json_free_vqgan(good["vqgan"]).items() if not k.startswith("decoder.conv_out")}
    save_file(state, str(tmp_path / "last.safetensors"))
    with pytest.raises(Exception) as info:
        load_official(good["mae"], tmp_path / "last.safetensors", config=random_config(with_vqgan=True))
    assert_named(info.value, "last.safetensors (VQGAN)", "decoder.conv_out")
    assert str(good["mae"]) not in str(info.value)


def json_free_vqgan(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_model_file_with_a_broken_config(good, tmp_path) -> None:
    from safetensors.torch import load_file

    for config in ("{not json", json.dumps({"mae": {"depth": "two"}}), json.dumps([1, 2])):
        path = tmp_path / "broken.safetensors"
        save_file(load_file(str(good["model"])), str(path), metadata={"config": config})
        with pytest.raises(Exception) as info:
            load_model(path)
        assert_named(info.value, "broken.safetensors")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int64])
def test_official_weights_of_any_dtype_load_and_run(dtype, good, tmp_path, model) -> None:
    from safetensors.torch import load_file

    state = load_file(str(good["mae"]))
    path = tmp_path / f"mae_{dtype}.safetensors".replace("torch.", "")
    save_file({k: (v * 8).round().to(dtype) if not dtype.is_floating_point else v.to(dtype) for k, v in state.items()}, str(path))
    loaded = load_official(path, config=random_config())
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    canvas = torch.randn(1, 3, 64, 64)
    logits = loaded(canvas)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    if dtype in (torch.float16, torch.bfloat16, torch.float64):
        reference = load_official(good["mae"], config=random_config())(canvas)
        torch.testing.assert_close(logits, reference, atol=0.1 if dtype == torch.bfloat16 else 1e-2, rtol=0)
    kept = load_official(path, config=random_config(), dtype=torch.float64)
    assert {p.dtype for p in kept.parameters()} == {torch.float64} and kept(canvas.double()).dtype == torch.float64


def test_official_policy_pickle_never_runs_without_opt_in(tmp_path, marker) -> None:

    path = tmp_path / "bernoullis_0.pkl"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(Exception) as info:
        import_official_policy(path)
    assert_named(info.value, "bernoullis_0.pkl", "--allow-pickle")


# --------------------------------------------------------------------------------------------
# task-vector bases (a folder of torch files and a JSON)


@pytest.fixture(scope="module")
def basis_folder(tmp_path_factory) -> Path:
    from interp.weights import build_basis

    g = torch.Generator().manual_seed(0)
    tvs = {f"t{i}": TaskVector({"w": torch.randn(4, 5, generator=g)}, name=f"t{i}") for i in range(3)}
    return build_basis(tvs, M=2, method="pca", progress=False).save(tmp_path_factory.mktemp("basis") / "pca")


def _damaged_basis(folder: Path, tmp_path: Path, file: str, content) -> Path:
    copy = tmp_path / "basis"
    shutil.copytree(folder, copy)
    target = copy / file
    if isinstance(content, bytes):
        target.write_bytes(content)
    elif callable(content):
        content(target)
    else:
        torch.save(content, target)
    return copy


def _nan_coefficients(path: Path) -> None:
    artifact = torch.load(path, weights_only=True)
    artifact["coefficients"] = torch.full_like(artifact["coefficients"], float("nan"))
    torch.save(artifact, path)


BASIS_DAMAGE = {
    "info_truncated": ("method_info.json", b'{"method": "pc'),
    "info_utf16": ("method_info.json", '{"method": "pca"}'.encode("utf-16")),
    "info_list": ("method_info.json", b"[1, 2]"),
    "vectors_random": ("basis_vectors.pt", bytes(range(256))),
    "vectors_int": ("basis_vectors.pt", {"basis_vectors": [{"w": torch.ones(4, 5, dtype=torch.int64)}]}),
    "vectors_not_dicts": ("basis_vectors.pt", {"basis_vectors": [1, 2]}),
    "pca_missing_keys": ("pca_components.pt", {"coefficients": torch.ones(2, 3)}),
    "pca_nan": ("pca_components.pt", _nan_coefficients),
}


@pytest.mark.parametrize("damage", sorted(BASIS_DAMAGE))
def test_damaged_basis_folders_are_named_errors(damage, basis_folder, tmp_path) -> None:
    assert Basis.load(basis_folder).vectors
    file, content = BASIS_DAMAGE[damage]
    folder = _damaged_basis(basis_folder, tmp_path, file, content)
    with pytest.raises(Exception) as info:
        Basis.load(folder)
    assert_named(info.value, file)


def test_basis_with_a_pickle_payload_never_runs(basis_folder, tmp_path, marker) -> None:

    folder = _damaged_basis(basis_folder, tmp_path, "basis_vectors.pt", {"basis_vectors": [Payload(marker)]})
    with pytest.raises(Exception) as info:
        Basis.load(folder)
    assert_named(info.value, "basis_vectors.pt")


# --------------------------------------------------------------------------------------------
# resumable states (REINFORCE and search checkpoints)


@pytest.mark.parametrize("kind", ["empty", "random", "pickle", "torch_payload", "truncated", "wrong dict"])
def test_damaged_search_checkpoints_are_named_errors(kind, tmp_path, marker) -> None:
    from interp.taskvectors.search.reinforce import ReinforceConfig, reinforce_loop

    cfg = ReinforceConfig(steps=2, samples=4, eval_every=1)
    losses = lambda samples: samples.double().sum(1)  # noqa: E731
    good = tmp_path / "good" / "checkpoint.pt"
    good.parent.mkdir()
    reinforce_loop(5, losses, None, cfg, checkpoint=good, progress=False)
    if kind == "truncated":
        path = truncated(good)
    elif kind == "wrong dict":
        path = tmp_path / "checkpoint.pt"
        torch.save({"logits": torch.zeros(5)}, path)
    else:
        path = malicious_files(tmp_path / "bad", marker, "checkpoint.pt")[kind]
    with pytest.raises(Exception) as info:
        reinforce_loop(5, losses, None, cfg, checkpoint=path, progress=False)
    assert_named(info.value, path.name, "start over")
