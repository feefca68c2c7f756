"""Task-vector bases: PCA is exact at M = T, AE error falls with M, the folder format round-trips."""

from __future__ import annotations

import json

import pytest
import torch

from interp.weights import Basis, BasisError, TaskVector, TaskVectorError, build_basis, gram_matrix
from tests.weights import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
T = 6


@pytest.fixture(scope="module")
def tvs() -> dict[str, TaskVector]:
    """Six task vectors sharing a 3-dimensional structure plus noise (two blocks, D = 57)."""
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(3, 50, generator=g)
    return {
        f"task{i}": TaskVector({
            "layer.weight": (torch.randn(3, generator=g) @ shared).view(5, 10) + 0.3 * torch.randn(5, 10, generator=g),
            "layer.bias": torch.randn(7, generator=g),
        }, name=f"task{i}")
        for i in range(T)
    }


def flat(tv) -> torch.Tensor:
    return torch.cat([tv[k].reshape(-1) for k in ("layer.weight", "layer.bias")]).double()


def test_gram_is_chunked_vtv(tvs):
    V = torch.stack([flat(tv) for tv in tvs.values()], dim=1)  # [D, T]
    assert torch.allclose(gram_matrix(list(tvs.values()), chunk_size=7), V.T @ V)


def test_pca_with_m_equal_t_reconstructs_exactly(tvs):
    basis = build_basis(tvs, M=T, method="pca", progress=False)
    assert basis.M == T and basis.task_names == list(tvs)
    errors = basis.relative_errors(tvs)
    assert max(errors.values()) < 1e-10
    truncated = build_basis(tvs, M=2, method="pca", progress=False)
    assert min(truncated.relative_errors(tvs).values()) > 1e-4
    chunked = build_basis(tvs, M=T, method="pca", chunk_size=5, progress=False)
    assert torch.allclose(chunked.recover("task3")["layer.weight"], tvs["task3"]["layer.weight"], atol=1e-5)


def test_ae_error_falls_with_m(tvs):
    errors = {}
    for M in (1, 3, T):
        basis = build_basis(tvs, M=M, method="ae", steps=1000, lr=0.05, progress=False)
        errors[M] = basis.diagnostics["relative_error"]
        assert errors[M] >= basis.diagnostics["spectral_lower_bound"] - 1e-6
        assert basis.recovery.shape == (M, T)
        mix = basis.artifact["B"]  # softmax(A / tau): each basis vector a convex mix of task vectors
        assert torch.allclose(mix.sum(0), torch.ones(M)) and (mix >= 0).all()
    assert errors[1] > errors[3] > errors[T]
    assert errors[T] < 1e-3
    per_task = basis.relative_errors(tvs)
    assert max(per_task.values()) < 1e-2


def test_addition_and_negation(tvs):
    basis = build_basis(tvs, M=3, method="ae", steps=300, lr=0.05, progress=False)
    added = basis.addition()
    expected = sum(basis.basis_vector(m) for m in range(basis.M))
    assert all(torch.allclose(added[k], expected[k]) for k in added)
    recovered = basis.recover("task2")
    manual = sum(float(basis.recovery[m, 2]) * basis.basis_vector(m) for m in range(basis.M))
    assert all(torch.allclose(recovered[k], manual[k], atol=1e-6) for k in recovered)
    negated = -basis.recover(2)
    assert torch.allclose(negated["layer.bias"], -recovered["layer.bias"])
    assert set(basis.recover_all()) == set(tvs)
    with pytest.raises(KeyError, match="unknown task"):
        basis.recover("nope")


@pytest.mark.parametrize("method,artifact", [("ae", "AWB.pt"), ("pca", "pca_components.pt")])
def test_folder_format_roundtrip(tmp_path, tvs, method, artifact):
    basis = build_basis(tvs, M=3, method=method, steps=200, progress=False, model="tiny")
    folder = basis.save(tmp_path / f"tiny_{method.upper()}_M3_{T}task")
    assert sorted(p.name for p in folder.iterdir()) == sorted(["basis_vectors.pt", "method_info.json", artifact])
    data = torch.load(folder / "basis_vectors.pt", weights_only=True)
    assert set(data) == {"basis_vectors", "num_basis", "method"} and data["num_basis"] == 3
    assert isinstance(data["basis_vectors"], list) and set(data["basis_vectors"][0]) == {"layer.weight", "layer.bias"}
    info = json.loads((folder / "method_info.json").read_text())
    assert info["datasets"] == list(tvs) and info["M"] == 3
    payload = torch.load(folder / artifact, weights_only=True)
    if method == "ae":
        assert info["method"] == "AutoencoderBasisMethod" and set(payload) == {"A", "W", "B", "metadata"}
        assert payload["A"].shape == (T, 3) and payload["W"].shape == (3, T)
        assert payload["metadata"]["tau_init"] == 1.0 and payload["metadata"]["datasets"] == list(tvs)
    else:
        assert info["method"] == "PCABasisMethod"
        assert payload["coefficients"].shape == (3, T) and payload["mean_vector"].shape == (57,)
        assert payload["keys_order"] == ["layer.weight", "layer.bias"] and payload["total_dim"] == 57
    loaded = Basis.load(folder)
    assert loaded.method == basis.method and loaded.task_names == list(tvs)
    for name in tvs:
        a, b = loaded.recover(name), basis.recover(name)
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert torch.allclose(loaded.addition()["layer.weight"], basis.addition()["layer.weight"])


def test_loads_a_hand_written_official_layout(tmp_path):
    """A folder written the way the official PCABasisMethod writes it (torch.Size shapes and all)."""
    basis_vectors = [{"w": torch.tensor([[1.0, 0.0]])}, {"w": torch.tensor([[0.0, 2.0]])}]
    torch.save({"basis_vectors": basis_vectors, "num_basis": 2, "method": "PCABasisMethod"}, tmp_path / "basis_vectors.pt")
    torch.save({
        "coefficients": torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.5, 1.0]]), "mean_vector": torch.tensor([0.1, 0.2]),
        "singular_values": torch.tensor([2.0, 1.0]), "M_actual": 2, "total_dim": 2, "keys_order": ["w"],
        "param_shapes": {"w": torch.Size([1, 2])}, "dataset_names": ["a", "b", "c"],
        "storage_info": {"compact_size_mb": 0.0, "full_matrix_size_gb": 0.0, "compression_ratio": 1.0},
    }, tmp_path / "pca_components.pt")
    (tmp_path / "method_info.json").write_text(json.dumps(
        {"method": "PCABasisMethod", "M": 2, "seed": 0, "datasets": ["a", "b", "c"], "timestamp": "x"}))
    basis = Basis.load(tmp_path)
    assert basis.task_names == ["a", "b", "c"]
    assert torch.allclose(basis.recover("b")["w"], torch.tensor([[0.1 - 1.0, 0.2 + 1.0]]))
    assert torch.allclose(basis.addition()["w"], torch.tensor([[1.0, 2.0]]))


def test_named_errors(tmp_path, tvs):
    with pytest.raises(BasisError, match="M must be"):
        build_basis(tvs, M=T + 1, method="pca", progress=False)
    with pytest.raises(BasisError, match="unknown basis method"):
        build_basis(tvs, M=2, method="ica", progress=False)
    odd = dict(tvs, extra=TaskVector({"layer.weight": torch.zeros(5, 10)}))
    with pytest.raises(TaskVectorError, match="layer.bias"):
        build_basis(odd, M=2, method="pca", progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Basis.load(tmp_path / "missing")
    basis = build_basis(tvs, M=2, method="ae", steps=50, progress=False)
    folder = basis.save(tmp_path / "b")
    (folder / "AWB.pt").unlink()
    with pytest.raises(FileNotFoundError, match="AWB.pt"):
        Basis.load(folder)
    addition_only = Basis.load(folder, require_recovery=False)
    assert addition_only.addition().numel() == 57
    with pytest.raises(BasisError, match="addition only"):
        addition_only.recover(0)
    info = json.loads((folder / "method_info.json").read_text())
    (folder / "method_info.json").write_text(json.dumps(dict(info, method="RandomBasisMethod")))
    with pytest.raises(BasisError, match="unknown basis method 'RandomBasisMethod'"):
        Basis.load(folder)
    (folder / "method_info.json").write_text(json.dumps(info))
    torch.save({"basis_vectors": [basis.vectors[0]], "weird": torch.nn.Linear(1, 1)}, folder / "basis_vectors.pt")
    with pytest.raises(BasisError, match="weights_only"):
        Basis.load(folder, require_recovery=False)
    (folder / "basis_vectors.pt").unlink()
    with pytest.raises(FileNotFoundError, match="basis_vectors.pt"):
        Basis.load(folder, require_recovery=False)
