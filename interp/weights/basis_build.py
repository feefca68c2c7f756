"""Building a task-vector basis (Zeng et al. 2025, ``uiuctml/TaskVectorBasis``): the Gram
matrix of the task vectors, then one of three methods (:func:`build_basis`).

* **AE / Gram** (``AutoencoderBasisMethod``): ``C = softmax(A / tau, dim=0)`` (each basis
  vector a convex combination of task vectors), recovery ``W`` (optionally ``softmax(W / tau,
  dim=0)``, upstream's ``softmax_w``); A (T x M, ``randn`` from ``seed``) and W (M x T, zeros)
  are trained with Adam (``weight_decay`` added to the gradient, as upstream) on
  ``L = ||V - V C W||^2 / T^2 = tr(E^T G E) / T^2`` with ``E = C W - I``, optionally annealing
  tau. The Gram scaling (``gram_scaling``) is a convention, see :func:`build_basis`.
* **PCA** (``PCABasisMethod``): centre the task vectors, eigendecompose the centred Gram
  ``H G H`` (``H = I - 11^T/T``), basis ``m`` = ``U[:, m] S[m]`` = ``V H r_m`` (the official
  "variance-scaled" components), coefficients ``Vh[:M]`` (M x T), recovery
  ``v_t = mean + sum_m Vh[m, t] s_m``. With M = T (or T - 1) it reconstructs exactly.
* **Random** (``RandomBasisMethod``): the M orthonormal columns of ``Q`` from the QR of a
  ``D x M`` fp32 ``randn`` drawn from a generator seeded with ``seed`` (regenerable from the seed),
  recovery = the projections ``Q^T V`` (M x T). A baseline: it holds D x M floats at once.

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

from interp.weights.bases import (
    AE, PCA, RANDOM, Basis, BasisError, TaskVectors, chunk_ranges, combine_vectors, basis_method, named_basis_inputs, random_orthonormal,
    unflatten,
)

GRAM_SCALINGS = ("trace", "none")


@torch.no_grad()
def gram_matrix(task_vectors: Sequence[Mapping[str, Tensor]], chunk_size: int = 2_000_000) -> Tensor:
    """``G = V^T V`` (T x T, float64), accumulated block by block in ``chunk_size``-row pieces."""
    T = len(task_vectors)
    G = torch.zeros(T, T, dtype=torch.float64)
    for key in task_vectors[0]:
        flats = [tv[key].reshape(-1) for tv in task_vectors]
        for i, j in chunk_ranges(flats[0].numel(), chunk_size):
            X = torch.stack([f[i:j] for f in flats], dim=1).double()  # [rows, T]
            G += (X.T @ X).cpu()
    return G


# --- the two methods -------------------------------------------------------------------------
def _train_gram(
    G: Tensor, M: int, tau: float, steps: int, lr: float, weight_decay: float,
    grad_clip: float | None, anneal_tau: tuple[int, float] | None, seed: int, progress: bool,
    gram_scaling: str = "trace", softmax_w: bool = False,
) -> tuple[Tensor, Tensor, float, list[float]]:
    """Adam on A (T x M) and W (M x T) for ``tr(E^T Gs E) / T^2``, ``E = softmax(A/tau) W' - I``
    with ``W' = W`` or ``softmax(W/tau, dim=0)`` (official ``GramTrainer._loss``, full-batch) and
    ``Gs`` = G scaled per ``gram_scaling``. Returns A, W (raw, before any softmax), the final tau
    and the log of the unscaled loss ``tr(E^T G E) / T^2``."""
    T = G.shape[0]
    scale = float(torch.trace(G)) / T if gram_scaling == "trace" else 1.0
    Gn = (G / scale if scale > 0 else G).float()
    scale = scale if scale > 0 else 1.0
    generator = torch.Generator().manual_seed(seed)  # the values of upstream's torch.manual_seed(seed); randn
    A = torch.randn(T, M, generator=generator).requires_grad_(True)
    W = torch.zeros(M, T).requires_grad_(True)
    optimizer = torch.optim.Adam([A, W], lr=lr, weight_decay=weight_decay)
    eye = torch.eye(T)
    log: list[float] = []
    for step in tqdm(range(1, steps + 1), desc="Gram basis", disable=not progress):
        recovery = torch.softmax(W / tau, dim=0) if softmax_w else W
        E = torch.softmax(A / tau, dim=0) @ recovery - eye  # [T, T]
        loss = torch.sum(E * (Gn @ E)) / (T * T)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([A, W], grad_clip)
        optimizer.step()
        if anneal_tau and step % anneal_tau[0] == 0:
            tau = max(0.1, tau * anneal_tau[1])  # the official floor
        log.append(float(loss.detach()) * scale)
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
    gram_scaling: str = "trace",
    softmax_w: bool = False,
) -> Basis:
    """Compress T task vectors into ``M`` basis vectors with ``method`` ``"ae"``, ``"pca"`` or
    ``"random"``.

    Hyper-parameter defaults are the official ``AutoencoderBasisMethod`` ones (its example run
    uses ``tau=5.0, steps=20000``). ``chunk_size`` bounds the rows of V held at once (x T).
    ``model`` is recorded in ``method_info.json``. Task order = list order or dict order.

    AE only:

    * ``gram_scaling``: ``"trace"`` (interp's default) optimises on ``G / s`` with
      ``s = tr(G) / T`` (the mean squared norm of the task vectors, so the scaled Gram has trace
      T), i.e. on ``L / s``; ``"none"`` optimises on G itself, as upstream's ``GramTrainer``.
      The two are not the same optimisation: Adam's ``weight_decay`` adds
      ``weight_decay * [A, W]`` to the gradient of the optimised loss, so ``"trace"`` minimises
      ``L / s + weight_decay/2 * (||A||^2 + ||W||^2)``, the decay ``s`` times stronger relative
      to L than upstream's ``L + weight_decay/2 * (...)`` (``grad_clip`` and Adam's ``eps`` see
      the scale too). Only with ``weight_decay=0`` and ``grad_clip=None`` is the minimiser the
      same (and Adam, invariant to a constant loss scale up to ``eps``, follows nearly the same
      path). Task vectors with ``s = 1`` give bit-identical A and W either way. The saved
      ``loss`` diagnostic is always the unscaled L; ``metadata["gram_scaling"]`` records the choice.
      Upstream accumulates G in fp32 (``gram_dtype`` "float32"); here G is accumulated in fp64
      and cast to fp32 for the optimisation.
    * ``softmax_w``: train with the recovery ``softmax(W / tau, dim=0)`` (upstream's
      ``softmax_w=True``); the saved ``W`` is then ``softmax(W / tau_final, dim=0)``, the matrix
      that recovers the task vectors (upstream's writer does the same), and the metadata says
      ``"W_stored": "after_softmax"``. See :meth:`Basis.load` for reading such folders.
    """
    tvs, names = named_basis_inputs(task_vectors)
    T = len(tvs)
    method = basis_method(method)
    keys = list(tvs[0])
    total_dim = sum(v.numel() for v in tvs[0].values())
    top = total_dim if method == RANDOM else T
    if not isinstance(M, int) or not 1 <= M <= top:
        raise BasisError(f"M must be an int in [1, {'D' if method == RANDOM else 'T'}={top}], got {M!r}")
    if chunk_size < 1:
        raise BasisError(f"chunk_size must be positive, got {chunk_size}")
    if gram_scaling not in GRAM_SCALINGS:
        raise BasisError(f"gram_scaling must be one of {GRAM_SCALINGS}, got {gram_scaling!r}")
    G = gram_matrix(tvs, chunk_size)
    evals = torch.linalg.eigvalsh(G).clamp_min(0).flip(0)  # descending
    trace = float(evals.sum()) or 1.0
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    diagnostics: dict[str, Any] = {"gram": G, "spectral_lower_bound": float(evals[M:].sum()) / trace}

    if method == AE:
        A, W, tau_final, log = _train_gram(
            G, M, tau, steps, lr, weight_decay, grad_clip, anneal_tau, seed, progress, gram_scaling, softmax_w
        )
        B = torch.softmax(A / tau_final, dim=0)  # [T, M]
        if softmax_w:
            W = torch.softmax(W / tau_final, dim=0)  # what recovers the task vectors, as upstream saves it
        vectors = combine_vectors(tvs, B.double(), chunk_size)
        E = (B @ W).double() - torch.eye(T, dtype=torch.float64)
        diagnostics.update(loss=log, relative_error=float(torch.trace(E.T @ G @ E)) / trace)
        metadata = {  # the fields of the official GramRunConfig, then timestamp and method
            "model": model, "finetuning_mode": "standard", "datasets": names, "M": M, "steps": steps,
            "lr": lr, "tau_init": tau, "anneal_every": anneal_tau[0] if anneal_tau else None,
            "anneal_factor": anneal_tau[1] if anneal_tau else None, "weight_decay": weight_decay,
            "grad_clip": grad_clip, "batch_cols": None, "device": "cpu", "seed": seed,
            "softmax_w": softmax_w, "encoder": "softmax", "w_activation": "linear", "gram_dtype": "float64",
            "notes": "built by interp.weights.bases", "task_scenario": T, "tau_final": tau_final,
            "timestamp": stamp, "method": AE, "gram_scaling": gram_scaling, "W_stored": "after_softmax",
        }
        artifact = {"A": A, "W": W, "B": B, "metadata": metadata}
        return Basis(AE, vectors, names, W.clone(), None, dict(metadata), artifact, diagnostics)

    if method == RANDOM:
        return _random_basis(tvs, names, M, seed, chunk_size, model, stamp, diagnostics)

    C, coefficients, singular, centred = _pca(G, M)
    vectors = combine_vectors(tvs, C, chunk_size)
    (mean,) = combine_vectors(tvs, torch.full((T, 1), 1.0 / T, dtype=torch.float64), chunk_size)
    k = coefficients.shape[0]
    diagnostics["relative_error"] = float(centred[k:].sum()) / trace
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


def _random_basis(
    tvs: Sequence[Mapping[str, Tensor]], names: list[str], M: int, seed: int, chunk_size: int,
    model: str, stamp: str, diagnostics: dict[str, Any],
) -> Basis:
    """Upstream's ``RandomBasisMethod``: Q (D x M, orthonormal) regenerated from ``seed``, the
    projections ``Q^T V`` (M x T) as the recovery, the ``random_basis.pt`` payload."""
    keys = list(tvs[0])
    shapes = {key: tvs[0][key].shape for key in keys}
    Q = random_orthonormal(sum(v.numel() for v in tvs[0].values()), M, seed)  # [D, M] fp32
    projections = torch.zeros(M, len(tvs), dtype=torch.float64)
    start = 0
    for key in keys:
        flats = [tv[key].reshape(-1) for tv in tvs]
        for i, j in chunk_ranges(flats[0].numel(), chunk_size):
            X = torch.stack([f[i:j] for f in flats], dim=1).double()  # [rows, T]
            projections += Q[start + i : start + j].double().T @ X.cpu()
        start += flats[0].numel()
    vectors = [unflatten(Q[:, m], keys, shapes) for m in range(M)]
    projections = projections.float()
    G = diagnostics["gram"]
    residual = torch.trace(G) - (projections.double() ** 2).sum()
    diagnostics["relative_error"] = float(residual) / (float(torch.trace(G)) or 1.0)
    total_dim = Q.shape[0]
    compact_mb = projections.numel() * 4 / 1024**2
    artifact = {
        "projection_coefficients": projections,  # (M, T)
        "seed": seed, "M": M, "total_dim": total_dim, "keys_order": keys, "param_shapes": shapes,
        "dataset_names": names,
        "storage_info": {"compact_size_mb": compact_mb, "full_matrix_size_gb": total_dim * M * 4 / 1024**3,
                         "compression_ratio": total_dim * M * 4 / 1024**2 / compact_mb},
    }
    info = {"method": RANDOM, "M": M, "seed": seed, "datasets": names, "timestamp": stamp,
            "model": model, "finetuning_mode": "standard", "task_scenario": len(tvs)}
    return Basis(RANDOM, vectors, names, projections.clone(), None, info, artifact, diagnostics)
