"""Basis.load refuses recovery artifacts that are not finite float tensors, naming the file and entry."""

from __future__ import annotations

import pytest
import torch

from interp.weights import Basis, BasisError, TaskVector, build_basis


@pytest.fixture(scope="module")
def tvs() -> dict[str, TaskVector]:
    g = torch.Generator().manual_seed(1)
    return {f"t{i}": TaskVector({"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}) for i in range(3)}


@pytest.mark.parametrize(("method", "file", "entry"), [("ae", "AWB.pt", "W"), ("pca", "pca_components.pt", "coefficients"),
                                                       ("pca", "pca_components.pt", "mean_vector")])
def test_int_and_nan_recovery_tensors_are_named(tvs, tmp_path, method, file, entry) -> None:
    folder = build_basis(tvs, M=2, method=method, steps=20, progress=False).save(tmp_path / method)
    good = torch.load(folder / file, weights_only=True)
    assert Basis.load(folder).recover("t0").numel() == 15  # the untouched folder loads

    torch.save(dict(good, **{entry: good[entry].round().long()}), folder / file)
    with pytest.raises(BasisError, match=rf"{file}: {entry} is torch.int64, not a float tensor"):
        Basis.load(folder)
    nan = good[entry].clone()
    nan.view(-1)[0] = float("nan")
    torch.save(dict(good, **{entry: nan}), folder / file)
    with pytest.raises(BasisError, match=rf"{file}: {entry} holds NaN or infinite values"):
        Basis.load(folder)
