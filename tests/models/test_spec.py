"""ModelSpec: one grammar for the CLI and the pipeline, files checked before anything loads."""

from __future__ import annotations

import pytest

from interp.models.spec import ModelSpec, ModelSpecError


def test_forms_round_trip(tmp_path) -> None:
    mae, vq = tmp_path / "mae.pth", tmp_path / "vq.ckpt"
    mae.write_bytes(b"x")
    vq.write_bytes(b"x")
    assert ModelSpec.parse("tiny") == ModelSpec("bundled", ("tiny",))
    official = ModelSpec.parse(f"official:{mae},{vq}")
    assert official == ModelSpec("official", (str(mae), str(vq))) and official.check() is official
    assert str(official) == f"official:{mae},{vq}" and ModelSpec.parse(official) is official
    assert str(ModelSpec.parse("weights.safetensors")) == "weights.safetensors"


@pytest.mark.parametrize("text, match", [("official:", "names no checkpoint"), ("official:a,b,c", "names no checkpoint"),
                                         ("", "empty model spec")])
def test_bad_forms_are_named(text, match) -> None:
    with pytest.raises(ModelSpecError, match=match):
        ModelSpec.parse(text)


def test_missing_files_are_named(tmp_path) -> None:
    with pytest.raises(ModelSpecError, match="no model file .*missing.safetensors") as error:
        ModelSpec.parse(str(tmp_path / "missing.safetensors")).check()
    assert "official:" in error.value.fix


def test_tiny_loads() -> None:
    model = ModelSpec.parse("tiny").load()
    assert model.grid.canvas_size == 64 and not model.training
