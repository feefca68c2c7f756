"""Task arithmetic: task vectors as named weight deltas.

A task vector is ``theta_finetuned - theta_pretrained`` (Ilharco et al., "Editing models with
task arithmetic", ICLR 2023; official code ``mlfoundations/task_vectors``, ``src/task_vectors.py``).
Here a :class:`TaskVector` is an immutable mapping ``name -> delta tensor`` over the floating
point entries of a state dict (parameters and float buffers such as BatchNorm running
statistics). Integer and bool entries (``num_batches_tracked``, index buffers) have no
meaningful difference and are skipped, as the official code skips int64/uint8 entries.

Where the official class warns and drops keys that are not in both operands, this one refuses
with a :class:`TaskVectorError` that names the missing / extra keys and mismatched shapes:
a silently dropped block is the hardest bug to find in weight space.

Algebra: ``tv1 + tv2``, ``tv1 - tv2``, ``-tv``, ``c * tv`` and ``sum([...])`` return new task
vectors. ``tv.apply_to(model, coef)`` returns ``theta_0 + coef * tv`` as a module (a deep copy
unless ``inplace=True``); :func:`interp.weights.search.search_coefficient` picks ``coef`` on a
validation metric, as the official scripts do on a grid of coefficients in [0, 1].

Files: task vectors are saved and read as safetensors; checkpoints in torch format are read
with ``torch.load(weights_only=True)`` only (no pickle code execution).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn

from interp.errors import InputError

Scalar = Union[int, float, Tensor]
_FORMAT = "interp.task_vector"


class TaskVectorError(InputError):
    """Task vectors or weights that do not fit together; the message names the keys and the fix."""


def key_listing(names: Iterable[str], limit: int = 8) -> str:
    """Names for a message: the first ``limit`` quoted, then how many more."""
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}{more}]"


def check_same_keys(
    reference: Mapping[str, Tensor],
    other: Mapping[str, Tensor],
    what: str = "task vectors",
    names: tuple[str, str] = ("the first", "the second"),
) -> None:
    """Raise :class:`TaskVectorError` unless both mappings have the same keys and shapes."""
    missing = [k for k in reference if k not in other]
    extra = [k for k in other if k not in reference]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) of {names[0]} missing from {names[1]}: {key_listing(missing)}")
        if extra:
            parts.append(f"{len(extra)} key(s) of {names[1]} not in {names[0]}: {key_listing(extra)}")
        raise TaskVectorError(
            f"{what} do not have the same keys: " + "; ".join(parts)
            + ". Build both from the same architecture (or select common keys with .select())."
        )
    shapes = [
        f"{k}: {tuple(reference[k].shape)} vs {tuple(other[k].shape)}"
        for k in reference
        if tuple(reference[k].shape) != tuple(other[k].shape)
    ]
    if shapes:
        raise TaskVectorError(
            f"{what} disagree in shape for {len(shapes)} key(s): {key_listing(shapes)}; "
            "they come from different architectures or configs"
        )


def named_task_vectors(
    task_vectors: "TaskVector | Sequence[TaskVector] | Mapping[str, TaskVector]",
    default_prefix: str = "tv",
    error: type[InputError] = TaskVectorError,
    same_keys: bool = False,
) -> tuple[list["TaskVector"], list[str]]:
    """``(vectors, names)`` of one vector, a list (names from ``.name``, else ``<prefix><i>``) or a
    dict name -> vector; ``error`` for none or repeated names, ``same_keys`` checks they fit together."""
    if isinstance(task_vectors, TaskVector):
        task_vectors = [task_vectors]
    if isinstance(task_vectors, Mapping):
        names, tvs = [str(k) for k in task_vectors], list(task_vectors.values())
    else:
        tvs = list(task_vectors)
        names = [tv.name if isinstance(tv, TaskVector) and tv.name else f"{default_prefix}{i}" for i, tv in enumerate(tvs)]
    if not tvs:
        raise error("no task vectors given; pass a list or dict of TaskVector")
    bad = [i for i, tv in enumerate(tvs) if not isinstance(tv, TaskVector)]
    if bad:
        raise TypeError(f"items {bad} are not TaskVector; build them with TaskVector.from_modules(...) / from_files")
    if len(set(names)) != len(names):
        raise error(f"task vector names are not unique: {names}; pass a dict name -> TaskVector")
    if same_keys:
        for tv, name in zip(tvs[1:], names[1:]):
            check_same_keys(tvs[0], tv, "task vectors", (names[0], name))
    return tvs, names


def _is_scalar(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return isinstance(value, Tensor) and value.numel() == 1 and value.dtype.is_floating_point


class TaskVector(Mapping[str, Tensor]):
    """Named weight deltas ``theta_finetuned - theta_pretrained`` (float entries only).

    ``TaskVector({"fc.weight": delta, ...}, name="segmentation")``; usually built by
    :meth:`from_state_dicts`, :meth:`from_modules` or :meth:`from_files`.
    """

    __slots__ = ("_vector", "name")

    def __init__(self, vector: Mapping[str, Tensor], name: str | None = None) -> None:
        bad = [k for k, v in vector.items() if not isinstance(v, Tensor) or not v.dtype.is_floating_point]
        if bad:
            raise TaskVectorError(
                f"a task vector holds floating-point tensors only; not so for {key_listing(bad)}. "
                "Build it with TaskVector.from_state_dicts, which skips integer/bool entries."
            )
        self._vector: dict[str, Tensor] = dict(vector)
        self.name = name

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_state_dicts(
        cls,
        pretrained: Mapping[str, Any],
        finetuned: Mapping[str, Any],
        name: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> "TaskVector":
        """``finetuned - pretrained`` over the float entries; keys and shapes must match exactly.

        Integer/bool tensors and non-tensor entries (``_extra_state``) are skipped. ``dtype``
        casts the deltas (default: the dtype of the subtraction).
        """
        pre = {k: v for k, v in pretrained.items() if isinstance(v, Tensor)}
        fine = {k: v for k, v in finetuned.items() if isinstance(v, Tensor)}
        check_same_keys(pre, fine, "pretrained and fine-tuned state dicts", ("pretrained", "fine-tuned"))
        vector: dict[str, Tensor] = {}
        with torch.no_grad():
            for key, p in pre.items():
                f = fine[key]
                if not p.dtype.is_floating_point:
                    continue  # counters and indices (e.g. BatchNorm num_batches_tracked)
                if not f.dtype.is_floating_point:
                    raise TaskVectorError(
                        f"{key!r} is {p.dtype} in the pretrained but {f.dtype} in the fine-tuned weights"
                    )
                delta = f.detach().to(p.device) - p.detach()
                vector[key] = delta.to(dtype) if dtype is not None else delta
        return cls(vector, name=name)

    @classmethod
    def from_modules(
        cls,
        pretrained: nn.Module,
        finetuned: nn.Module,
        name: str | None = None,
        dtype: torch.dtype | None = None,
        keys: str = "all",
    ) -> "TaskVector":
        """Task vector between two modules of the same architecture (their state dicts).

        ``keys="all"`` (interp's default, as ``task_vectors`` and aTLAS upstream): every float
        entry of the state dict, float buffers included; ``keys="parameters"``: the
        ``named_parameters()`` only, in that order (upstream TaskVectorBasis's key set).
        ``dtype=torch.float16`` rounds the fp32 difference to fp16, as upstream aTLAS stores them.
        """
        if keys not in ("all", "parameters"):
            raise ValueError(f"keys must be 'all' or 'parameters', got {keys!r}")
        pre, fine = pretrained.state_dict(), finetuned.state_dict()
        if keys == "parameters":
            names = [k for k, _ in pretrained.named_parameters()]
            pre = {k: pre[k] for k in names if k in pre}
            fine = {k: fine[k] for k in names if k in fine}
        return cls.from_state_dicts(pre, fine, name=name, dtype=dtype)

    @classmethod
    def from_files(
        cls,
        pretrained_path: str | Path,
        finetuned_path: str | Path,
        name: str | None = None,
        key: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> "TaskVector":
        """Task vector between two weight files: ``.safetensors``, or torch files read with
        ``weights_only=True`` (``key`` picks a nested state dict such as ``"model"``)."""
        from interp.models.checkpoint import read_state_dict  # lazy: keeps this module light

        pre = read_state_dict(pretrained_path, key)
        fine = read_state_dict(finetuned_path, key)
        return cls.from_state_dicts(pre, fine, name=name or Path(finetuned_path).stem, dtype=dtype)

    # --- mapping protocol ----------------------------------------------------------------------
    def __getitem__(self, key: str) -> Tensor:
        return self._vector[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._vector)

    def __len__(self) -> int:
        return len(self._vector)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"TaskVector({label}{len(self)} tensors, {self.numel():,} values)"

    def numel(self) -> int:
        """Number of scalar values."""
        return sum(v.numel() for v in self._vector.values())

    # --- algebra -------------------------------------------------------------------------------
    def _binary(self, other: "TaskVector", sign: float) -> "TaskVector":
        if not isinstance(other, TaskVector):
            return NotImplemented
        check_same_keys(self, other, "task vectors", (f"{self.name or 'left'}", f"{other.name or 'right'}"))
        with torch.no_grad():
            return TaskVector({k: v + sign * other[k].to(v.device) for k, v in self._vector.items()})

    def __add__(self, other: "TaskVector") -> "TaskVector":
        return self._binary(other, 1.0)

    def __radd__(self, other: Any) -> "TaskVector":
        if other is None or (isinstance(other, int) and other == 0):
            return self  # so that sum([tv1, tv2, ...]) works
        return self.__add__(other)

    def __sub__(self, other: "TaskVector") -> "TaskVector":
        return self._binary(other, -1.0)

    def __neg__(self) -> "TaskVector":
        with torch.no_grad():
            return TaskVector({k: -v for k, v in self._vector.items()}, name=f"-{self.name}" if self.name else None)

    def __mul__(self, coef: Scalar) -> "TaskVector":
        if not _is_scalar(coef):
            if isinstance(coef, TaskVector):
                raise TypeError("task vector * task vector is not defined; use tv.dot(other) for the inner product")
            return NotImplemented
        with torch.no_grad():
            return TaskVector({k: v * coef for k, v in self._vector.items()}, name=self.name)

    __rmul__ = __mul__

    def __truediv__(self, coef: Scalar) -> "TaskVector":
        if not _is_scalar(coef):
            return NotImplemented
        return self * (1.0 / float(coef))

    def dot(self, other: "TaskVector") -> float:
        """Inner product over all blocks (float64 accumulation)."""
        check_same_keys(self, other)
        return float(sum((v.double() * other[k].double().to(v.device)).sum() for k, v in self._vector.items()))

    def norm(self) -> float:
        """Euclidean norm over all blocks."""
        return math.sqrt(max(self.dot(self), 0.0))

    def cosine(self, other: "TaskVector") -> float:
        """Cosine similarity with another task vector."""
        return self.dot(other) / max(self.norm() * other.norm(), 1e-30)

    def select(self, keys: Iterable[str] | Callable[[str], bool]) -> "TaskVector":
        """The sub-vector over ``keys`` (a list, or a predicate on the name)."""
        if callable(keys):
            chosen = [k for k in self._vector if keys(k)]
        else:
            chosen = list(keys)
            unknown = [k for k in chosen if k not in self._vector]
            if unknown:
                raise TaskVectorError(f"select: keys not in the task vector: {key_listing(unknown)}")
        return TaskVector({k: self._vector[k] for k in chosen}, name=self.name)

    def to(self, *args: Any, **kwargs: Any) -> "TaskVector":
        """A copy moved/cast like ``Tensor.to`` (device, dtype)."""
        return TaskVector({k: v.to(*args, **kwargs) for k, v in self._vector.items()}, name=self.name)

    def flatten(self, keys: Sequence[str] | None = None) -> Tensor:
        """All deltas concatenated into one vector ``[D]`` (in ``keys`` order, default: own order)."""
        keys = list(self._vector) if keys is None else keys
        return torch.cat([self._vector[k].reshape(-1) for k in keys])

    # --- applying ------------------------------------------------------------------------------
    def apply_to_state_dict(
        self, state_dict: Mapping[str, Any], coef: Scalar = 1.0
    ) -> dict[str, Any]:
        """``state_dict`` with ``coef * delta`` added to every key of this vector (a new dict;
        entries the vector does not touch are passed through)."""
        self._check_fits(state_dict, "the state dict")
        out = dict(state_dict)
        with torch.no_grad():
            for key, delta in self._vector.items():
                base = state_dict[key]
                out[key] = (base + coef * delta.to(base.device, base.dtype)).to(base.dtype)
        return out

    def apply_to(self, model: nn.Module, coef: Scalar = 1.0, inplace: bool = False) -> nn.Module:
        """``theta_0 + coef * tau`` as a module: a deep copy of ``model`` unless ``inplace``."""
        target = model if inplace else copy.deepcopy(model)
        tensors = named_tensors(target)
        self._check_fits(tensors, "the model")
        done: set[int] = set()
        with torch.no_grad():
            for key, delta in self._vector.items():
                tensor = tensors[key]
                if id(tensor) in done:  # tied weights: one tensor, several names
                    continue
                done.add(id(tensor))
                tensor.add_(delta.to(tensor.device, tensor.dtype), alpha=float(coef))
        return target

    def _check_fits(self, tensors: Mapping[str, Any], where: str) -> None:
        """Every key of this vector is in ``tensors`` (a state dict or a model's tensors) with its shape."""
        missing = [k for k in self._vector if k not in tensors]
        if missing:
            raise TaskVectorError(
                f"task vector {self.name or ''} has {len(missing)} key(s) not in {where}: "
                f"{key_listing(missing)}; was it built for another model (or with a prefix such as 'model.')?"
            )
        bad = [
            f"{k}: {tuple(v.shape)} vs {tuple(tensors[k].shape)}"
            for k, v in self._vector.items()
            if tuple(v.shape) != tuple(tensors[k].shape)
        ]
        if bad:
            raise TaskVectorError(f"task vector and {where} disagree in shape: {key_listing(bad)}")

    # --- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
        """Write as safetensors (name and metadata in the header)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "name": self.name or "", **{str(k): str(v) for k, v in (metadata or {}).items()}}
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in self._vector.items()}
        save_file(tensors, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "TaskVector":
        """Read a task vector written by :meth:`save` (or any safetensors file of float deltas)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"task vector file {path} does not exist")
        if path.suffix != ".safetensors":
            raise TaskVectorError(f"{path}: task vectors are stored as .safetensors (see TaskVector.save)")
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as handle:
                meta = handle.metadata() or {}
                vector = {k: handle.get_tensor(k) for k in handle.keys()}
        except Exception as error:  # SafetensorError: truncated, not safetensors, bad header
            raise TaskVectorError(f"{path} is not a readable safetensors file ({error})",
                                  fix="write task vectors with TaskVector.save") from None
        bad = [k for k, v in vector.items() if not v.is_floating_point()]
        if bad or not vector:
            raise TaskVectorError(f"{path} holds {'no tensors' if not vector else f'non-float tensors {key_listing(bad)}'}; "
                                  "a task vector is float weight deltas", fix="write task vectors with TaskVector.save")
        return cls(vector, name=meta.get("name") or path.stem)


def named_tensors(model: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers of ``model`` by state-dict name, tied names included."""
    named = {k: v for k, v in model.named_parameters(remove_duplicate=False)}
    named.update({k: v for k, v in model.named_buffers(remove_duplicate=False) if v is not None})
    return named
