"""Activation statistics on disk: the file format, its checks and the named errors they raise.

``<name>.safetensors`` holds ``<site>.sum`` / ``.sum_sq`` / ``.count`` and, in its header, the
description (model fingerprint, layout, task, prompts, dataset, seed, ``extra``, the SHA-256 of
the tensors), committed in one atomic rename; ``<name>.json`` beside it is a readable copy
(files from before the header description carry it only there, with the file's SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.canvas import PromptLayout, get_layout
from interp.errors import InputError
from interp.io import atomic_write, write_text
from interp.models.protocol import PromptModel

FORMAT = "interp.activation_stats"
FORMAT_VERSION = 1
FIELDS = ("sum", "sum_sq", "count")
DEFAULT_HOOK = "attn.hook_z"


class StatsError(InputError):
    """Base of every problem with saved or combined activation statistics."""


class CorruptStatsError(StatsError):
    """The tensor file or its sidecar cannot be read or do not match each other."""


class MissingSidecarError(StatsError):
    """A tensor file without the JSON sidecar that says what it holds."""


class ModelMismatchError(StatsError):
    """Statistics collected with another model (config fingerprint differs)."""


class LayoutMismatchError(StatsError):
    """Statistics collected under another prompt layout."""


class ShapeMismatchError(StatsError):
    """Tensors whose shapes disagree with each other, the sidecar or the model."""


def interp_version() -> str:
    try:
        from interp import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def same_slots(a: PromptLayout, b: PromptLayout) -> bool:
    return a.encoder_slots == b.encoder_slots and a.decoder_slots == b.decoder_slots


def save_stats(stats: Any, path: str | os.PathLike) -> Path:
    """:meth:`ActivationStats.save`: one ``.safetensors`` (tensors + description in its header) and a JSON copy."""

    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"{_slug(stats.task or 'activations')}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for site in stats.sites:
        for name in FIELDS:
            tensors[f"{site}.{name}"] = getattr(stats, name)[site].detach().cpu().contiguous()
        check_values(site, *(tensors[f"{site}.{name}"] for name in FIELDS), stats.n_prompts, f"statistics for {path.name}, site {site}")
    meta = stats.sidecar()
    meta["tensors"] = path.name
    meta["tensors_sha256"] = _tensor_digest(tensors)
    # one unit: the description travels inside the tensor file's header, so a kill before the
    # readable JSON copy below is written never blocks a resume
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "sidecar": sidecar_path(path).name,
                                               "description": json.dumps(meta, default=_json_default)})
        meta["sha256"] = file_sha256(tmp)
    write_text(sidecar_path(path), json.dumps(meta, indent=1, default=_json_default))
    return path


def load_stats_file(cls: Any, path: str | os.PathLike, model: PromptModel | None = None, layout: PromptLayout | str | None = None,
                    task: str | None = None, verify: bool = True, device: torch.device | str = "cpu") -> Any:
    """:meth:`ActivationStats.load` (``cls`` is the class to build)."""

    path = _resolve_stats_path(Path(path))
    sidecar = sidecar_path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise CorruptStatsError(f"{path} is not a readable safetensors file ({e}); collect again") from None
    embedded = "description" in header  # written since the description went into the header
    if not embedded and not sidecar.is_file():
        raise MissingSidecarError(
            f"{path} has no sidecar {sidecar.name} beside it, so what it holds (model, layout, task) is "
            "unknown; copy the sidecar next to it (it was written with the tensors) or collect again"
        )
    where = f"the header of {path}" if embedded else f"sidecar {sidecar}"
    try:
        meta = json.loads(header["description"] if embedded else sidecar.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, not {FORMAT!r}")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"format version {meta['format_version']} is newer than this interp reads; upgrade")
        stats_layout = PromptLayout.from_dict(meta["layout"])
        sites: dict[str, list[int]] = meta["sites"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptStatsError(
            f"{where} is not a valid activation-statistics description ({e}); restore it or collect again"
        ) from None
    if verify and not embedded and meta.get("sha256") != file_sha256(path):
        raise CorruptStatsError(
            f"{path} does not match the SHA-256 in its sidecar: it was truncated, modified or replaced; "
            "restore both files together or collect again (verify=False skips this check)"
        )
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types
        raise CorruptStatsError(f"{path} is not a readable safetensors file ({e}); collect again") from None

    if verify and embedded and meta.get("tensors_sha256") != _tensor_digest(tensors):
        raise CorruptStatsError(
            f"{path} does not match the SHA-256 of its tensors recorded in its header: it was modified; "
            "collect again (verify=False skips this check)"
        )
    if model is not None and meta.get("model_fingerprint") != model.config_hash():
        raise ModelMismatchError(
            f"{path.name} was collected with model config {meta.get('model_fingerprint')}, this model is "
            f"{model.config_hash()}: collect again with this model, or load the model the "
            "statistics were collected with"
        )
    if layout is not None:
        wanted = get_layout(layout, stats_layout.grid) if isinstance(layout, str) else layout
        if not same_slots(wanted, stats_layout):
            raise LayoutMismatchError(
                f"{path.name} was collected under layout {stats_layout.name!r}, not {wanted.name!r}; collect "
                f"under {wanted.name!r}, or load without layout= (patching looks statistics up by slot, and "
                "one-shot statistics cover every slot a zero-shot forward needs)"
            )
    if task is not None and meta.get("task") != task:
        raise StatsError(f"{path.name} holds task {meta.get('task')!r}, not {task!r}; load the file of that task")

    try:
        n_prompts, extra = meta.get("n_prompts", 0), meta.get("extra") or {}
        if isinstance(n_prompts, bool) or not isinstance(n_prompts, int) or n_prompts < 0:
            raise ValueError(f"n_prompts is {n_prompts!r}, not a count")
        if not isinstance(extra, dict):
            raise ValueError(f"extra is a {type(extra).__name__}, not an object")
        for key in ("task", "model_fingerprint"):
            if meta.get(key) is not None and not isinstance(meta[key], str):
                raise ValueError(f"{key} is {meta[key]!r}, not a string")
        if not isinstance(sites, dict) or not all(isinstance(v, list) and all(type(n) is int for n in v) for v in sites.values()):
            raise ValueError("sites is not a {site: [shape]} object")
    except ValueError as e:
        raise CorruptStatsError(f"{where} is not a valid activation-statistics description ({e}); restore it or collect again") from None
    stats = cls(
        stats_layout, meta.get("model_fingerprint"), meta.get("task"), meta.get("dataset"), meta.get("seed"),
        n_prompts, dict(extra),
    )
    expected_keys = {f"{s}.{f}" for s in sites for f in FIELDS}
    if set(tensors) != expected_keys:
        diff = sorted(set(tensors) ^ expected_keys)
        raise ShapeMismatchError(
            f"{path.name} holds tensors {diff[:4]} that its sidecar does not describe (or lacks them); "
            "restore the matching pair of files"
        )
    num_slots = stats_layout.grid.num_slots
    for site, shape in sites.items():
        s, sq, c = (tensors[f"{site}.{f}"] for f in FIELDS)
        problems = []
        if list(s.shape) != shape or list(sq.shape) != shape:
            problems.append(f"sum {tuple(s.shape)} / sum_sq {tuple(sq.shape)} vs sidecar {tuple(shape)}")
        if tuple(c.shape) != (num_slots,):
            problems.append(f"count {tuple(c.shape)} vs ({num_slots},) slots")
        if shape and shape[0] != num_slots:
            problems.append(f"{shape[0]} slots, the layout's grid has {num_slots}")
        if s.dtype != torch.float64 or sq.dtype != torch.float64 or c.dtype != torch.int64:
            problems.append(f"dtypes {s.dtype}/{sq.dtype}/{c.dtype}, expected float64/float64/int64")
        if model is not None:
            expected = _expected_shape(model, site)
            if expected is not None and tuple(shape) != expected:
                problems.append(f"shape {tuple(shape)}, the model's {site} gives {expected}")
        if problems:
            raise ShapeMismatchError(
                f"{path.name}, site {site}: " + "; ".join(problems) + ". Collect the statistics again"
            )
        check_values(site, s, sq, c, n_prompts, f"{path.name}, site {site}")
        stats.sum[site], stats.sum_sq[site], stats.count[site] = s, sq, c
    return stats


class ValueStatsError(StatsError):
    """Statistics whose values cannot be (NaN or infinite sums, negative or impossible counts)."""


def check_values(site: str, total: Tensor, squares: Tensor, count: Tensor, n_prompts: int, where: str) -> None:
    """Raise :class:`ValueStatsError` unless a site's sums are finite and its counts possible.

    Counts are in ``[0, n_prompts]`` (``n_prompts`` > 0) and some slot saw a prompt; ``sum``
    and ``sum_sq`` are finite and ``sum_sq >= 0``.
    """
    problems = []
    if count.numel() and int(count.min()) < 0:
        problems.append(f"negative counts (min {int(count.min())})")
    if n_prompts and count.numel() and int(count.max()) > n_prompts:
        problems.append(f"counts up to {int(count.max())} from {n_prompts} prompts")
    if n_prompts and count.numel() and int(count.max()) == 0:
        problems.append("no slot counted a prompt")
    for name, t in (("sum", total), ("sum_sq", squares)):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            problems.append(f"{bad} NaN or infinite values in {name}")
    if squares.numel() and float(squares.min()) < 0:
        problems.append("negative sum_sq")
    if problems:
        raise ValueStatsError(f"{where}: " + "; ".join(problems) + " (a diverged model or an edited file)",
                              fix="Collect the statistics again (check the model's weights are finite)")


def sidecar_path(path: Path) -> Path:
    """``x.safetensors`` -> ``x.json``."""
    return path.with_name(path.name[: -len(".safetensors")] + ".json") if path.name.endswith(
        ".safetensors"
    ) else path.with_suffix(".json")


def _resolve_stats_path(path: Path) -> Path:
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if path.is_dir():
        found = sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise FileNotFoundError(
                f"{path} holds {len(found)} .safetensors files ({[p.name for p in found[:5]]}); "
                "pass the file of the task you want"
            )
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"no activation statistics at {path}; run collect(...).save({str(path)!r}) first")
    return path


def _expected_shape(model: PromptModel, site: str) -> tuple[int, ...] | None:
    """``(num_slots, heads, d_head)`` of an ``attn.hook_z`` site of the model; None for other sites."""
    stack = model.stacks.get(site.split(".", 1)[0])
    if not site.endswith(DEFAULT_HOOK) or stack is None:
        return None
    return (model.grid.num_slots, stack.heads, stack.d_head)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tensor_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "activations"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"metadata value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


