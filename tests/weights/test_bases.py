"""Task-vector bases: PCA is exact at M = T, AE error falls with M, the folder format round-trips."""

from __future__ import annotations

import json

import pytest
import torch

from interp.weights import Basis, BasisError, TaskVector, TaskVectorError, build_basis, gram_matrix

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
    (folder / "method_info.json").write_text(json.dumps(dict(info, method="RandomSampleMethod")))
    with pytest.raises(BasisError, match="unknown basis method .RandomSampleMethod."):
        Basis.load(folder)
    (folder / "method_info.json").write_text(json.dumps(info))
    torch.save({"basis_vectors": [basis.vectors[0]], "weird": torch.nn.Linear(1, 1)}, folder / "basis_vectors.pt")
    with pytest.raises(BasisError, match="weights_only"):
        Basis.load(folder, require_recovery=False)
    (folder / "basis_vectors.pt").unlink()
    with pytest.raises(FileNotFoundError, match="basis_vectors.pt"):
        Basis.load(folder, require_recovery=False)


# --- conventions against upstream (uiuctml/TaskVectorBasis), the upstream rules rebuilt from their description ---
def upstream_gram_trainer(G: torch.Tensor, M: int, tau: float, steps: int, lr: float, weight_decay: float,
                          seed: int, softmax_w: bool = False):
    """GramTrainer as described: seed the global generator, A = randn(T, M), W = zeros(M, T), one Adam
    (weight decay in the gradient) on sum(E * (G @ E)) / T^2, E = softmax(A/tau, 0) W' - I, no clipping."""
    T = G.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        A = torch.randn(T, M, requires_grad=True)
    W = torch.zeros(M, T, requires_grad=True)
    opt = torch.optim.Adam([A, W], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        Wp = torch.softmax(W / tau, dim=0) if softmax_w else W
        E = torch.softmax(A / tau, dim=0) @ Wp - torch.eye(T)
        loss = torch.sum(E * (G @ E)) / (T * T)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return A.detach(), W.detach()


@pytest.fixture(scope="module")
def big(tvs) -> dict[str, TaskVector]:
    """The fixture's vectors times 4: tr(G)/T is about 2194, far from 1."""
    return {k: 4.0 * v for k, v in tvs.items()}


def test_gram_scaling_conventions(big):
    kw = dict(M=3, steps=300, lr=0.05, progress=False)
    G = gram_matrix(list(big.values()))
    s = float(torch.trace(G)) / T
    assert 2000 < s < 2400
    trace = build_basis(big, weight_decay=1e-2, **kw)
    none = build_basis(big, weight_decay=1e-2, gram_scaling="none", **kw)
    # each side equals the upstream trainer, bit for bit, on its own Gram
    A, W = upstream_gram_trainer(G.float(), 3, 1.0, 300, 0.05, 1e-2, seed=0)
    assert torch.equal(none.artifact["A"], A) and torch.equal(none.artifact["W"], W)
    A, W = upstream_gram_trainer((G / s).float(), 3, 1.0, 300, 0.05, 1e-2, seed=0)
    assert torch.equal(trace.artifact["A"], A) and torch.equal(trace.artifact["W"], W)
    # with weight decay the scaling changes the optimum (the decay is s times stronger under "trace")
    assert (trace.artifact["A"] - none.artifact["A"]).abs().max() > 1.0
    assert trace.diagnostics["relative_error"] > 2 * none.diagnostics["relative_error"]
    # without it (and without clipping) both reach the same basis up to Adam's eps
    a = build_basis(big, weight_decay=0.0, **kw)
    b = build_basis(big, weight_decay=0.0, gram_scaling="none", **kw)
    assert (a.artifact["A"] - b.artifact["A"]).abs().max() < 1e-3
    assert a.diagnostics["relative_error"] == pytest.approx(b.diagnostics["relative_error"], rel=1e-5)
    assert trace.info["gram_scaling"] == "trace" and none.info["gram_scaling"] == "none"
    with pytest.raises(BasisError, match="gram_scaling"):
        build_basis(big, M=2, gram_scaling="mean", progress=False)


def test_softmax_w_built_and_stored_after_the_softmax(tmp_path, tvs):
    basis = build_basis(tvs, M=3, steps=200, lr=0.05, softmax_w=True, progress=False)
    G = gram_matrix(list(tvs.values()))
    _, W_raw = upstream_gram_trainer((G / (float(torch.trace(G)) / T)).float(), 3, 1.0, 200, 0.05, 1e-6, 0, softmax_w=True)
    assert torch.equal(basis.artifact["W"], torch.softmax(W_raw, dim=0))  # tau_final = 1: stored after the softmax
    assert torch.allclose(basis.recovery.sum(0), torch.ones(T))
    loaded = Basis.load(basis.save(tmp_path / "smw"))
    assert loaded.info["softmax_w"] is True and torch.equal(loaded.recovery, basis.recovery)
    double = Basis.load(tmp_path / "smw", softmax_w="upstream_loader")  # upstream's loader: softmax once more
    assert torch.allclose(double.recovery, torch.softmax(basis.recovery, dim=0))


def write_ae_folder(folder, vectors, A, W, metadata):
    folder.mkdir()
    torch.save({"basis_vectors": vectors, "num_basis": len(vectors), "method": "AutoencoderBasisMethod"},
               folder / "basis_vectors.pt")
    torch.save({"A": A, "W": W, "B": torch.softmax(A, dim=0), "metadata": metadata}, folder / "AWB.pt")
    (folder / "method_info.json").write_text(json.dumps(metadata))


def test_softmax_w_folders_read_both_ways(tmp_path):
    """An upstream-written softmax_w folder (W stored after the softmax, no tau_final in the metadata)
    and one that stores the raw W are read to the same recovered vectors."""
    g = torch.Generator().manual_seed(3)
    vectors = [{"w": torch.randn(2, 3, generator=g)} for _ in range(2)]
    A, W_raw = torch.randn(4, 2, generator=g), torch.randn(2, 4, generator=g)
    tau = 2.0
    W_after = torch.softmax(W_raw / tau, dim=0)
    meta = {"method": "AutoencoderBasisMethod", "M": 2, "seed": 0, "datasets": list("abcd"), "tau_init": tau,
            "softmax_w": True, "w_activation": "linear", "encoder": "softmax"}
    write_ae_folder(tmp_path / "upstream", vectors, A, W_after, meta)
    write_ae_folder(tmp_path / "raw", vectors, A, W_raw, dict(meta, W_stored="before_softmax"))
    write_ae_folder(tmp_path / "activation", vectors, A, W_raw, dict(meta, softmax_w=False, w_activation="softmax"))
    expected = sum(W_after[m, 2] * vectors[m]["w"] for m in range(2))
    for name in ("upstream", "raw", "activation"):
        basis = Basis.load(tmp_path / name)
        assert torch.allclose(basis.recovery, W_after, atol=1e-7), name
        assert torch.allclose(basis.recover("c")["w"], expected, atol=1e-6), name
    assert torch.equal(Basis.load(tmp_path / "raw", softmax_w="as_stored").recovery, W_raw)
    upstream = Basis.load(tmp_path / "upstream", softmax_w="upstream_loader").recovery
    assert torch.allclose(upstream, torch.softmax(W_after / tau, dim=0))  # the double softmax of upstream's loader
    assert (upstream - W_after).abs().max() > 0.05
    with pytest.raises(BasisError, match="softmax_w must be"):
        Basis.load(tmp_path / "upstream", softmax_w="twice")


def test_random_basis_matches_the_upstream_rule_and_round_trips(tmp_path, tvs):
    basis = build_basis(tvs, M=4, method="random", seed=5, progress=False, chunk_size=7)
    D = 57
    V = torch.stack([flat(tv) for tv in tvs.values()], dim=1).float()  # [D, T]
    generator = torch.Generator().manual_seed(5)  # upstream: randn(D, M) from a seeded generator, reduced QR
    Q, _ = torch.linalg.qr(torch.randn(D, 4, generator=generator), mode="reduced")
    stacked = torch.stack([flat(TaskVector(v)) for v in basis.vectors], dim=1).float()
    assert torch.equal(stacked, Q)
    assert torch.allclose(Q.T @ Q, torch.eye(4), atol=1e-6)
    torch.testing.assert_close(basis.recovery, Q.T @ V, rtol=0, atol=1e-5)
    recovered = flat(basis.recover("task1")).float()
    torch.testing.assert_close(recovered, Q @ (Q.T @ V[:, 1]), rtol=0, atol=1e-5)
    folder = basis.save(tmp_path / "random")
    assert sorted(p.name for p in folder.iterdir()) == ["basis_vectors.pt", "method_info.json", "random_basis.pt"]
    payload = torch.load(folder / "random_basis.pt", weights_only=True)
    assert payload["projection_coefficients"].shape == (4, T) and payload["seed"] == 5 and payload["total_dim"] == D
    loaded = Basis.load(folder)
    assert loaded.method == "RandomBasisMethod" and torch.equal(loaded.recovery, basis.recovery)
    assert torch.equal(loaded.recover("task1")["layer.bias"], basis.recover("task1")["layer.bias"])
    (folder / "basis_vectors.pt").unlink()  # upstream's design: the basis is regenerated from the seed
    regenerated = Basis.load(folder)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(regenerated.vectors, basis.vectors) for k in a)
    exact = build_basis(tvs, M=D, method="random", progress=False)
    assert max(exact.relative_errors(tvs).values()) < 1e-10
    with pytest.raises(BasisError, match=r"M must be an int in \[1, D=57\]"):
        build_basis(tvs, M=D + 1, method="random", progress=False)


def test_parameters_only_key_set():
    """TaskVectorBasis builds task vectors over named_parameters(); interp keeps float buffers by default."""
    base = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    tuned = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    with torch.no_grad():
        tuned[1].running_mean.fill_(0.5)
    everything = TaskVector.from_modules(base, tuned)
    params = TaskVector.from_modules(base, tuned, keys="parameters")
    assert list(params) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert list(everything) == list(params) + ["1.running_mean", "1.running_var"]
    assert all(torch.equal(params[k], everything[k]) for k in params)
    with pytest.raises(ValueError, match="keys must be"):
        TaskVector.from_modules(base, tuned, keys="buffers")


def test_random_folder_written_upstream_style_without_basis_vectors(tmp_path):
    """random_basis.pt + method_info.json as upstream writes them (torch.Size shapes), no basis_vectors.pt."""
    shapes = {"w": torch.Size([3, 2]), "b": torch.Size([2])}
    generator = torch.Generator().manual_seed(9)
    Q, _ = torch.linalg.qr(torch.randn(8, 2, generator=generator), mode="reduced")
    coefficients = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    payload = {"projection_coefficients": coefficients, "seed": 9, "M": 2, "total_dim": 8, "keys_order": ["w", "b"],
               "param_shapes": shapes, "dataset_names": ["x", "y", "z"], "storage_info": {}}
    torch.save(payload, tmp_path / "random_basis.pt")
    (tmp_path / "method_info.json").write_text(json.dumps(
        {"method": "RandomBasisMethod", "M": 2, "seed": 9, "datasets": ["x", "y", "z"], "timestamp": "t"}))
    basis = Basis.load(tmp_path)
    assert basis.task_names == ["x", "y", "z"] and basis.M == 2
    expected = Q @ coefficients[:, 1]
    recovered = basis.recover("y")
    torch.testing.assert_close(torch.cat([recovered["w"].reshape(-1), recovered["b"]]), expected, rtol=0, atol=1e-6)
    torch.save(dict(payload, total_dim=9), tmp_path / "random_basis.pt")
    with pytest.raises(BasisError, match="total_dim 9 but param_shapes add up to 8"):
        Basis.load(tmp_path)
