"""Building a task-vector basis (Zeng et al. 2025, ``uiuctml/TaskVectorBasis``): the Gram
matrix of the task vectors, then one of two methods (:func:`build_basis`).

* **AE / Gram** (``AutoencoderBasisMethod``): ``C = softmax(A / tau, dim=0)`` (each basis
  vector a convex combination of task vectors), recovery ``W``; A (T x M, randn) and W
  (M x T, zeros) are trained with Adam on ``||V - V C W||^2 / T^2 = tr(E^T G E) / T^2`` with
  ``E = C W - I``, optionally annealing tau. Here G is divided by ``tr(G)/T`` for the
  optimisation only (the minimiser is the same; Adam then behaves alike for task vectors of any
  scale), and the random init uses a local generator instead of the global seed.
* **PCA** (``PCABasisMethod``): centre the task vectors, eigendecompose the centred Gram
  ``H G H`` (``H = I - 11^T/T``), basis ``m`` = ``U[:, m] S[m]`` = ``V H r_m`` (the official
  "variance-scaled" components), coefficients ``Vh[:M]`` (M x T), recovery
  ``v_t = mean + sum_m Vh[m, t] s_m``. With M = T (or T - 1) it reconstructs exactly.

Addition is the sum of the basis vectors (the published usage, also for PCA, where the mean is
not added); negation recovers one task's vector (``-basis.recover("task")``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.weights.bases import AE, PCA, Basis, BasisError, TaskVectors, _chunks, _combine, _method, named_basis_inputs


@torch.no_grad()
def gram_matrix(task_vectors: Sequence[Mapping[str, Tensor]], chunk_size: int = 2_000_000) -> Tensor:
    """``G = V^T V`` (T x T, float64), accumulated block by block in ``chunk_size``-row pieces."""
    T = len(task_vectors)
    G = torch.zeros(T, T, dtype=torch.float64)
    for key in task_vectors[0]:
        flats = [tv[key].reshape(-1) for tv in task_vectors]
        for i, j in _chunks(flats[0].numel(), chunk_size):
            X = torch.stack([f[i:j] for f in flats], dim=1).double()  # [rows, T]
            G += (X.T @ X).cpu()
    return G


# --- the two methods -------------------------------------------------------------------------
def _train_gram(
    G: Tensor, M: int, tau: float, steps: int, lr: float, weight_decay: float,
    grad_clip: float | None, anneal_tau: tuple[int, float] | None, seed: int, progress: bool,
) -> tuple[Tensor, Tensor, float, list[float]]:
    """Adam on A (T x M) and W (M x T) for ``tr(E^T G E) / T^2``, ``E = softmax(A/tau) W - I``
    (official ``GramTrainer._loss``, full-batch). Returns A, W, the final tau, the loss log."""
    T = G.shape[0]
    scale = float(torch.trace(G)) / T
    Gn = (G / scale if scale > 0 else G).float()
    generator = torch.Generator().manual_seed(seed)
    A = torch.randn(T, M, generator=generator).requires_grad_(True)
    W = torch.zeros(M, T).requires_grad_(True)
    optimizer = torch.optim.Adam([A, W], lr=lr, weight_decay=weight_decay)
    eye = torch.eye(T)
    log: list[float] = []
    for step in tqdm(range(1, steps + 1), desc="Gram basis", disable=not progress):
        E = torch.softmax(A / tau, dim=0) @ W - eye  # [T, T]
        loss = torch.sum(E * (Gn @ E)) / (T * T)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([A, W], grad_clip)
        optimizer.step()
        if anneal_tau and step % anneal_tau[0] == 0:
            tau = max(0.1, tau * anneal_tau[1])  # the official floor
        log.append(float(loss.detach()) * (scale if scale > 0 else 1.0))
    return A.detach(), W.detach(), tau, log


def _pca(G: Tensor, M: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """From the Gram: mixing C (T x k) with basis = V C, coefficients Vh (k x T), singular values,
    and all centred eigenvalues (descending). Official: ``PCABasisMethod.svd_tall_cpu``."""
    T = G.shape[0]
    H = torch.eye(T, dtype=G.dtype) - 1.0 / T
    evals, vecs = torch.linalg.eigh(H @ G @ H)  # ascending
    order = torch.argsort(evals, descending=True)
    R = vecs[:, order[: min(M, T)]]  # [T, k], right singular vectors of the centred V
    S = evals[order[: min(M, T)]].clamp_min(0).sqrt()
    return H @ R, R.T.contiguous(), S, evals[order].clamp_min(0)


def build_basis(
    task_vectors: TaskVectors,
    M: int,
    method: str = "ae",
    tau: float = 1.0,
    steps: int = 4000,
    lr: float = 1e-2,
    weight_decay: float = 1e-6,
    grad_clip: float | None = None,
    anneal_tau: tuple[int, float] | None = None,
    chunk_size: int = 2_000_000,
    seed: int = 0,
    model: str = "",
    progress: bool = True,
) -> Basis:
    """Compress T task vectors into ``M`` basis vectors with ``method`` ``"ae"`` or ``"pca"``.

    Hyper-parameter defaults are the official ``AutoencoderBasisMethod`` ones (its example run
    uses ``tau=5.0, steps=20000``). ``chunk_size`` bounds the rows of V held at once (x T).
    ``model`` is recorded in ``method_info.json``. Task order = list order or dict order.
    """
    tvs, names = named_basis_inputs(task_vectors)
    T = len(tvs)
    method = _method(method)
    if not isinstance(M, int) or not 1 <= M <= T:
        raise BasisError(f"M must be an int in [1, T={T}], got {M!r}")
    if chunk_size < 1:
        raise BasisError(f"chunk_size must be positive, got {chunk_size}")
    keys = list(tvs[0])
    G = gram_matrix(tvs, chunk_size)
    evals = torch.linalg.eigvalsh(G).clamp_min(0).flip(0)  # descending
    trace = float(evals.sum()) or 1.0
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    diagnostics: dict[str, Any] = {"gram": G, "spectral_lower_bound": float(evals[M:].sum()) / trace}

    if method == AE:
        A, W, tau_final, log = _train_gram(G, M, tau, steps, lr, weight_decay, grad_clip, anneal_tau, seed, progress)
        B = torch.softmax(A / tau_final, dim=0)  # [T, M]
        vectors = _combine(tvs, B.double(), chunk_size)
        E = (B @ W).double() - torch.eye(T, dtype=torch.float64)
        diagnostics.update(loss=log, relative_error=float(torch.trace(E.T @ G @ E)) / trace)
        metadata = {  # the fields of the official GramRunConfig, then timestamp and method
            "model": model, "finetuning_mode": "standard", "datasets": names, "M": M, "steps": steps,
            "lr": lr, "tau_init": tau, "anneal_every": anneal_tau[0] if anneal_tau else None,
            "anneal_factor": anneal_tau[1] if anneal_tau else None, "weight_decay": weight_decay,
            "grad_clip": grad_clip, "batch_cols": None, "device": "cpu", "seed": seed,
            "softmax_w": False, "encoder": "softmax", "w_activation": "linear", "gram_dtype": "float64",
            "notes": "built by interp.weights.bases", "task_scenario": T, "tau_final": tau_final,
            "timestamp": stamp, "method": AE,
        }
        artifact = {"A": A, "W": W, "B": B, "metadata": metadata}
        return Basis(AE, vectors, names, W.clone(), None, dict(metadata), artifact, diagnostics)

    C, coefficients, singular, centred = _pca(G, M)
    vectors = _combine(tvs, C, chunk_size)
    (mean,) = _combine(tvs, torch.full((T, 1), 1.0 / T, dtype=torch.float64), chunk_size)
    k = coefficients.shape[0]
    diagnostics["relative_error"] = float(centred[k:].sum()) / trace
    total_dim = sum(v.numel() for v in tvs[0].values())
    coefficients, singular = coefficients.float(), singular.float()
    compact_mb = (coefficients.numel() + total_dim + singular.numel()) * 4 / 1024**2
    full_gb = total_dim * M * 4 / 1024**3
    artifact = {
        "coefficients": coefficients,  # (M, T)
        "mean_vector": torch.cat([mean[key].reshape(-1) for key in keys]).float(),  # (D,)
        "singular_values": singular,  # (M,)
        "M_actual": k,
        "total_dim": total_dim,
        "keys_order": keys,
        "param_shapes": {key: tvs[0][key].shape for key in keys},
        "dataset_names": names,
        "storage_info": {
            "compact_size_mb": compact_mb,
            "full_matrix_size_gb": full_gb,
            "compression_ratio": full_gb * 1024 / compact_mb if compact_mb else 0.0,
        },
    }
    info = {"method": PCA, "M": M, "seed": seed, "datasets": names, "timestamp": stamp,
            "model": model, "finetuning_mode": "standard", "task_scenario": T}
    return Basis(PCA, vectors, names, coefficients.clone(), mean, info, artifact, diagnostics)
