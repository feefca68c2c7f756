"""Task-vector bases: T task vectors compressed into M basis vectors (AE/Gram, PCA or random).

Zeng et al., "Task Vector Bases: A Unified and Scalable Framework for Compressed Task
Arithmetic", 2025 (seed 003; official code ``uiuctml/TaskVectorBasis``, ``src/basis_vectors.py``
and ``src/basis_pipeline.py``). Write ``V = [v_1 .. v_T]`` (D x T, one flattened task vector a
column). Both methods produce M basis vectors that are linear mixtures of the task vectors,
``S = V C`` (C is T x M), and a recovery matrix R (M x T) with ``v_t ~ S R[:, t]`` (+ a mean
for PCA). Everything the methods need from V is its T x T Gram matrix ``G = V^T V``, which is
accumulated over parameter blocks in chunks of ``chunk_size`` rows, so no D x T or D x D matrix
is ever formed; the basis vectors are then mixed block by block, chunk by chunk.

This module holds the :class:`Basis` and its files; :mod:`interp.weights.basis_build` builds one.

Files (the published layout, read with ``torch.load(weights_only=True)``; only plain dicts,
lists, tensors, ``torch.Size`` and numbers are written):

* ``basis_vectors.pt``: ``{"basis_vectors": [M dicts name -> tensor], "num_basis": M, "method": ...}``
* ``method_info.json``: ``method`` (``AutoencoderBasisMethod`` / ``PCABasisMethod`` /
  ``RandomBasisMethod``), ``M``, ``seed``, ``datasets`` (the task order), the hyper-parameters
  and a timestamp;
* ``AWB.pt`` (AE): ``{"A": (T, M), "W": (M, T), "B": softmax(A/tau) (T, M), "metadata": {...}}``.
  ``W`` is the recovery matrix as stored: with ``softmax_w`` the upstream writer (and
  :func:`~interp.weights.basis_build.build_basis`) stores it *after* the softmax; upstream's
  loader applies ``softmax(W / tau_final)`` once more. Interp reads W as the recovery matrix
  (see ``softmax_w=`` of :meth:`Basis.load` for the other readings);
* ``pca_components.pt`` (PCA): ``coefficients`` (M, T), ``mean_vector`` (D,),
  ``singular_values`` (M,), ``M_actual``, ``total_dim``, ``keys_order``, ``param_shapes``,
  ``dataset_names``, ``storage_info``;
* ``random_basis.pt`` (Random): ``projection_coefficients`` (M, T), ``seed``, ``M``,
  ``total_dim``, ``keys_order``, ``param_shapes``, ``dataset_names``, ``storage_info``; the basis
  vectors are the columns of Q (QR of a seeded ``D x M`` fp32 ``randn``), regenerated from the
  seed when ``basis_vectors.pt`` is absent (upstream's design).

Key sets: upstream's TaskVectorBasis builds task vectors over ``named_parameters()`` only;
``TaskVector.from_modules(..., keys="parameters")`` does the same (interp's default keeps float
buffers too). Whatever keys the folder holds are read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor

from interp.errors import InputError
from interp.weights.arithmetic import TaskVector, named_task_vectors

TaskVectors = Union[Sequence[TaskVector], Mapping[str, TaskVector]]

AE, PCA, RANDOM = "AutoencoderBasisMethod", "PCABasisMethod", "RandomBasisMethod"
_ALIASES = {"ae": AE, "gram": AE, "autoencoder": AE, AE.lower(): AE, "pca": PCA, PCA.lower(): PCA,
            "random": RANDOM, RANDOM.lower(): RANDOM}
_SHORT = {AE: "ae", PCA: "pca", RANDOM: "random"}
FILES = {"basis": "basis_vectors.pt", "info": "method_info.json", AE: "AWB.pt", PCA: "pca_components.pt",
         RANDOM: "random_basis.pt"}
SOFTMAX_W = ("auto", "as_stored", "upstream_loader")


class BasisError(InputError):
    """A basis that cannot be built, saved or read; the message names the problem and the fix."""


def basis_method(name: str) -> str:
    """The canonical basis method of a name or alias; a BasisError naming the supported ones otherwise."""
    found = _ALIASES.get(str(name).lower())
    if found is None:
        raise BasisError(
            f"unknown basis method {name!r}; supported: 'ae' (AutoencoderBasisMethod), 'pca' (PCABasisMethod) "
            "and 'random' (RandomBasisMethod)"
        )
    return found


def named_basis_inputs(task_vectors: TaskVectors) -> tuple[list[TaskVector], list[str]]:
    """The task vectors of a basis and their names (``task<i>`` by default), checked to fit together."""
    return named_task_vectors(task_vectors, default_prefix="task", error=BasisError, same_keys=True)


# --- chunked linear algebra over task vectors ------------------------------------------------
def chunk_ranges(numel: int, chunk_size: int):
    """``(start, stop)`` of consecutive chunks of ``chunk_size`` elements covering ``numel``."""
    for start in range(0, numel, chunk_size):
        yield start, min(start + chunk_size, numel)


@torch.no_grad()
def combine_vectors(
    vectors: Sequence[Mapping[str, Tensor]], C: Tensor, chunk_size: int
) -> list[dict[str, Tensor]]:
    """``out[m] = sum_t C[t, m] * vectors[t]`` for every block (C is T x M), chunked."""
    T, M = C.shape
    out: list[dict[str, Tensor]] = [{} for _ in range(M)]
    for key, first in vectors[0].items():
        flats = [v[key].reshape(-1) for v in vectors]
        results = [torch.empty(first.numel(), dtype=first.dtype, device=first.device) for _ in range(M)]
        coef = C.to(first.device, torch.float32 if first.dtype != torch.float64 else torch.float64)
        for i, j in chunk_ranges(first.numel(), chunk_size):
            X = torch.stack([f[i:j] for f in flats], dim=1).to(coef.dtype)  # [rows, T]
            Y = X @ coef  # [rows, M]
            for m in range(M):
                results[m][i:j] = Y[:, m].to(first.dtype)
        for m in range(M):
            out[m][key] = results[m].view(first.shape)
    return out


@dataclass
class Basis:
    """M basis vectors for T tasks, with what is needed to recover each task's vector.

    ``vectors[m]`` is a dict name -> tensor; ``recovery`` (M x T) gives
    ``v_t ~ sum_m recovery[m, t] * vectors[m]`` (+ ``mean`` for PCA).
    """

    method: str  # "AutoencoderBasisMethod" | "PCABasisMethod" | "RandomBasisMethod"
    vectors: list[dict[str, Tensor]]
    task_names: list[str]
    recovery: Tensor | None  # [M, T]; None when the method artifact was not loaded
    mean: dict[str, Tensor] | None = None  # PCA only
    info: dict[str, Any] = field(default_factory=dict)  # method_info.json
    artifact: dict[str, Any] = field(default_factory=dict)  # AWB.pt / pca_components.pt / random_basis.pt payload
    diagnostics: dict[str, Any] = field(default_factory=dict)  # in memory only (not saved)

    @property
    def M(self) -> int:
        return len(self.vectors)

    @property
    def T(self) -> int:
        return len(self.task_names)

    @property
    def keys(self) -> list[str]:
        return list(self.vectors[0])

    def __repr__(self) -> str:
        return f"Basis({_SHORT.get(self.method, self.method)}, M={self.M}, T={self.T}, tasks={self.task_names})"

    def basis_vector(self, m: int) -> TaskVector:
        """Basis vector ``m`` as a task vector."""
        return TaskVector(self.vectors[m], name=f"basis{m}")

    def addition(self) -> TaskVector:
        """Task addition: the sum of the M basis vectors (scale it with ``apply_to(model, coef)``)."""
        total = {k: torch.zeros_like(v) for k, v in self.vectors[0].items()}
        with torch.no_grad():
            for vector in self.vectors:
                for k, v in vector.items():
                    total[k].add_(v)
        return TaskVector(total, name="basis_addition")

    def _task_index(self, task: int | str) -> int:
        if isinstance(task, int):
            if not -self.T <= task < self.T:
                raise IndexError(f"task index {task} out of range for {self.T} tasks")
            return task % self.T
        if task not in self.task_names:
            raise KeyError(f"unknown task {task!r}; the basis was built from {self.task_names}")
        return self.task_names.index(task)

    def recover(self, task: int | str) -> TaskVector:
        """One task's vector recovered from the basis (for negation: ``-basis.recover(t)``)."""
        if self.recovery is None:
            missing = FILES.get(self.method, "the method artifact")
            raise BasisError(
                f"this basis has no recovery matrix ({missing} was not loaded); it supports addition only"
            )
        t = self._task_index(task)
        weights = self.recovery[:, t].reshape(-1, 1).double()  # [M, 1]
        start = [self.mean] if self.mean is not None else []
        C = torch.cat([torch.ones(1, 1, dtype=torch.float64), weights]) if start else weights
        (vector,) = combine_vectors(start + self.vectors, C, chunk_size=2_000_000)
        return TaskVector(vector, name=self.task_names[t])

    def recover_all(self) -> dict[str, TaskVector]:
        """Every task's recovered vector, by task name."""
        return {name: self.recover(i) for i, name in enumerate(self.task_names)}

    def relative_errors(self, task_vectors: TaskVectors) -> dict[str, float]:
        """``||v_t - recover(t)||^2 / ||v_t||^2`` per task (the task vectors in basis order)."""
        tvs, names = named_basis_inputs(task_vectors)
        if len(tvs) != self.T:
            raise BasisError(f"got {len(tvs)} task vectors for a basis of {self.T} tasks")
        out = {}
        for t, (tv, name) in enumerate(zip(tvs, names)):
            diff = tv - self.recover(t)
            out[self.task_names[t]] = diff.dot(diff) / max(tv.dot(tv), 1e-30)
        return out

    # --- files ---------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the published folder layout into ``folder`` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vectors = [{k: v.detach().cpu().contiguous() for k, v in vec.items()} for vec in self.vectors]
        torch.save({"basis_vectors": vectors, "num_basis": self.M, "method": self.method}, folder / FILES["basis"])
        if self.method in FILES and self.artifact:
            torch.save(self.artifact, folder / FILES[self.method])
        (folder / FILES["info"]).write_text(json.dumps(self.info, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, require_recovery: bool = True, softmax_w: str = "auto") -> "Basis":
        """Read a basis folder (ours or a published one) with ``torch.load(weights_only=True)``.

        ``require_recovery=False`` accepts folders without ``AWB.pt`` / ``pca_components.pt`` /
        ``random_basis.pt`` (addition only). A Random folder without ``basis_vectors.pt``
        regenerates its vectors from the seed.

        ``softmax_w`` says how the AE recovery matrix is read from ``AWB.pt``:

        * ``"auto"`` (default): W as stored is the recovery matrix (what upstream's writer and
          interp store, after the softmax when ``softmax_w`` is true), unless the metadata says
          the stored W is the raw one: ``"W_stored": "before_softmax"``, or
          ``w_activation == "softmax"`` without ``softmax_w`` (upstream then trains with
          ``softmax(W / tau)`` but stores W raw); then ``softmax(W / tau_final, dim=0)``.
        * ``"as_stored"``: W as stored, always.
        * ``"upstream_loader"``: what upstream's ``load_method_from_artifacts`` +
          ``recover_task_vectors_from_basis`` compute: ``softmax(W / tau, dim=0)`` when the
          metadata has ``softmax_w`` true, with ``tau = metadata.get("tau_final", tau_init)``
          (on a folder written by upstream, the softmax a second time).
        """
        if softmax_w not in SOFTMAX_W:
            raise BasisError(f"softmax_w must be one of {SOFTMAX_W}, got {softmax_w!r}")
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"basis folder {folder} does not exist")
        info_path = folder / FILES["info"]
        if not info_path.is_file():
            raise FileNotFoundError(f"{info_path} is missing: a basis folder needs {FILES['info']} (method, datasets)")
        try:
            info = json.loads(info_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BasisError(f"{info_path} is not valid JSON ({error})", fix="rewrite it with Basis.save") from None
        if not isinstance(info, dict):
            raise BasisError(f"{info_path} holds a JSON {type(info).__name__}, not an object", fix="rewrite it with Basis.save")
        method = basis_method(info.get("method", "?"))
        artifact_path = _artifact_path(folder, method)
        artifact: dict[str, Any] = {}
        if artifact_path is None:
            if require_recovery:
                raise FileNotFoundError(
                    f"{folder} has no {FILES[method]}, needed to recover task vectors (negation); "
                    "pass require_recovery=False to load it for addition only"
                )
        else:
            artifact = dict(_read(artifact_path, "the recovery artifact"))
        needed = {AE: ("W",), PCA: ("coefficients", "mean_vector", "keys_order", "param_shapes"),
                  RANDOM: ("projection_coefficients", "keys_order", "param_shapes")}[method]
        absent = [k for k in needed if k not in artifact]
        if artifact and absent:
            raise BasisError(f"{artifact_path} lacks {absent}; it is not a {method} recovery artifact", fix="rewrite it with Basis.save")
        if method == RANDOM and artifact and not (folder / FILES["basis"]).is_file():
            seed = artifact.get("seed", info.get("seed", 0))
            keys = list(artifact["keys_order"])
            D = sum(math.prod(tuple(artifact["param_shapes"][k])) for k in keys)
            if int(artifact.get("total_dim", D)) != D:
                raise BasisError(f"{artifact_path}: total_dim {artifact['total_dim']} but param_shapes add up to {D}",
                                 fix="rewrite the basis with Basis.save")
            M = artifact["projection_coefficients"].shape[0]
            Q = random_orthonormal(D, M, int(seed))
            vectors = [unflatten(Q[:, m], keys, artifact["param_shapes"]) for m in range(M)]
        else:
            vectors = _read_vectors(folder / FILES["basis"])
        names = info.get("datasets") or artifact.get("dataset_names") or (artifact.get("metadata") or {}).get("datasets")
        recovery, mean = None, None
        if method == AE and artifact:
            W = _check_floats(artifact_path, {"W": artifact["W"]})["W"].float()
            recovery = _ae_recovery(W, {**info, **(artifact.get("metadata") or {})}, softmax_w)
        elif method == PCA and artifact:
            checked = _check_floats(artifact_path, {k: artifact[k] for k in ("coefficients", "mean_vector")})
            recovery = checked["coefficients"].float()
            mean = unflatten(checked["mean_vector"], list(artifact["keys_order"]), artifact["param_shapes"])
        elif method == RANDOM and artifact:
            key = "projection_coefficients"
            recovery = _check_floats(artifact_path, {key: artifact[key]})[key].float()
        if names is None:
            T = recovery.shape[1] if recovery is not None else None
            names = [f"task{i}" for i in range(T or 0)]
        if recovery is not None:
            if recovery.shape[0] != len(vectors) or recovery.shape[1] != len(names):
                raise BasisError(
                    f"{folder}: recovery matrix is {tuple(recovery.shape)} but there are {len(vectors)} basis "
                    f"vectors and {len(names)} datasets in {FILES['info']}"
                )
        return cls(method, vectors, list(names), recovery, mean, info, artifact)


def _read_vectors(path: Path) -> list[dict[str, Tensor]]:
    data = _read(path, "the basis vectors (needed for addition)")
    if not isinstance(data, Mapping) or "basis_vectors" not in data:
        raise BasisError(f"{path} has no 'basis_vectors' list")
    try:
        vectors = [dict(v) for v in data["basis_vectors"]]
    except (TypeError, ValueError):
        raise BasisError(f"{path}: 'basis_vectors' must be a list of name -> tensor dicts") from None
    if not vectors:
        raise BasisError(f"{path} holds no basis vectors")
    _check_floats(path, {f"{i}.{k}": v for i, vec in enumerate(vectors) for k, v in vec.items()})
    return vectors


def _ae_recovery(W: Tensor, metadata: Mapping[str, Any], softmax_w: str) -> Tensor:
    """The AE recovery matrix from the stored W under the ``softmax_w`` reading of :meth:`Basis.load`."""
    flagged = bool(metadata.get("softmax_w", False))
    tau_final = float(metadata.get("tau_final", metadata.get("tau_init", 1.0)))
    if softmax_w == "as_stored":
        return W
    if softmax_w == "upstream_loader":
        return torch.softmax(W / tau_final, dim=0) if flagged else W
    raw = metadata.get("W_stored") == "before_softmax" or (
        not flagged and str(metadata.get("w_activation", "linear")).lower() == "softmax"
    )
    return torch.softmax(W / tau_final, dim=0) if raw else W


def random_orthonormal(D: int, M: int, seed: int) -> Tensor:
    """``Q`` (D x M, orthonormal columns): the reduced QR of a ``D x M`` fp32 ``randn`` drawn
    from a CPU generator seeded with ``seed`` (upstream ``RandomBasisMethod``'s basis)."""
    generator = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, M, generator=generator, dtype=torch.float32), mode="reduced")
    return Q


def _check_floats(path: Path, tensors: Mapping[str, Any]) -> Mapping[str, Any]:
    """``tensors`` if every one is a finite float tensor, else a BasisError naming the first bad one."""
    for name, value in tensors.items():
        if not isinstance(value, Tensor) or not value.is_floating_point():
            kind = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise BasisError(f"{path}: {name} is {kind}, not a float tensor", fix="rewrite the basis with Basis.save")
        if not bool(torch.isfinite(value).all()):
            raise BasisError(f"{path}: {name} holds NaN or infinite values", fix="rebuild the basis (build_basis)")
    return tensors


def _read(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it holds {what}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle that needs code execution, or not a torch file
        raise BasisError(
            f"{path} cannot be read with torch.load(weights_only=True) ({error}); it must hold only "
            "tensors, lists, dicts and numbers"
        ) from None


def _artifact_path(folder: Path, method: str) -> Path | None:
    path = folder / FILES[method]
    if path.is_file():
        return path
    if method == AE:  # the official loader takes any AWB*.pt
        found = sorted(folder.glob("AWB*.pt"))
        return found[0] if found else None
    return None


def unflatten(flat: Tensor, keys: Sequence[str], shapes: Mapping[str, Any]) -> dict[str, Tensor]:
    """``flat`` (D,) split into ``keys`` with ``shapes`` (the PCA mean, Random basis vectors)."""
    out, start = {}, 0
    for key in keys:
        shape = tuple(shapes[key])
        n = math.prod(shape)
        out[key] = flat[start : start + n].reshape(shape)
        start += n
    if start != flat.numel():
        raise BasisError(f"a flat vector has {flat.numel()} values but the shapes account for {start}")
    return out
