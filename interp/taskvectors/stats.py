"""Task activations: running per-slot statistics of hooked activations, mergeable and saved safely.

A task vector is built from the *mean* activation of each head at each token over many
prompts of one task. :class:`ActivationStats` keeps, per hooked site (``attn.hook_z`` of
every block by default)::

    sum     [num_slots, *act]  float64   sum over prompts of the activation at each slot
    sum_sq  [num_slots, *act]  float64   sum of its elementwise square
    count   [num_slots]        int64     prompts that had a token at the slot

indexed **by slot** (0 = CLS, 1 + p = patch p), not by sequence position, so statistics
collected under the one-shot layout are looked up at the slots of a zero-shot forward
(see :mod:`interp.taskvectors.patching`). Sums make the statistics exact to merge: shards
collected on other machines or GPUs add up (``a + b``, ``sum(shards)``) to the statistics of
the union, and means, variances and taskness (:mod:`interp.taskvectors.taskness`) all
derive from them.

:func:`collect` fills them with one batched forward per batch under ``torch.no_grad``; the
hooks accumulate on the model's device and nothing moves to the CPU until the end.

On disk (:meth:`ActivationStats.save`): ``<name>.safetensors`` with the tensors and, in its
header, a description naming the model config fingerprint, the layout (its slots), task,
prompt count, dataset, seed, interp version, ``extra`` (the pipeline records there the config
that made the file) and the SHA-256 of the tensors. Tensors and description are one file,
committed in one rename, so no kill can leave them out of step; ``<name>.json`` beside it is a
readable copy (files from before carry the description only there).
:meth:`ActivationStats.load` checks all of it and raises a :class:`StatsError` subclass that
says what is wrong and what to do. No pickle is written or read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.canvas import PromptLayout, get_layout
from interp.io import atomic_write, write_text
from interp.errors import InputError

FORMAT = "interp.activation_stats"
FORMAT_VERSION = 1
DEFAULT_HOOK = "attn.hook_z"
_FIELDS = ("sum", "sum_sq", "count")


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


def _version() -> str:
    try:
        from interp import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def _stack_of(site: str) -> str:
    stack = site.split(".", 1)[0]
    if stack not in ("encoder", "decoder"):
        raise ValueError(
            f"site {site!r} is not inside a stack; activation statistics need "
            "'encoder.…' or 'decoder.…' hook points whose dim 1 is the sequence position"
        )
    return stack


def _same_slots(a: PromptLayout, b: PromptLayout) -> bool:
    return a.encoder_slots == b.encoder_slots and a.decoder_slots == b.decoder_slots


def _combine(a: Any, b: Any) -> Any:
    """Metadata of two shards: kept when equal, else both listed (JSON-friendly)."""
    if a == b:
        return a
    left = a if isinstance(a, list) else [a]
    right = b if isinstance(b, list) else [b]
    return left + [x for x in right if x not in left]


@dataclass(eq=False)
class ActivationStats:
    """Per-site running ``sum``, ``sum_sq`` (float64) and ``count`` (int64) of activations, by slot.

    Build with :func:`collect` (or :meth:`empty` + :meth:`update`); combine shards with ``+``;
    read :meth:`mean` / :meth:`var`; persist with :meth:`save` / :meth:`load`.
    """

    layout: PromptLayout
    fingerprint: str | None = None
    task: str | None = None
    dataset: Any = None
    seed: Any = None
    n_prompts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    sum: dict[str, Tensor] = field(default_factory=dict)
    sum_sq: dict[str, Tensor] = field(default_factory=dict)
    count: dict[str, Tensor] = field(default_factory=dict)
    _slot_index: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def empty(
        cls,
        layout: PromptLayout,
        model: Any = None,
        task: str | None = None,
        dataset: Any = None,
        seed: Any = None,
        **extra: Any,
    ) -> ActivationStats:
        """No data yet; ``model`` (optional) records its config fingerprint."""
        fingerprint = model.config.fingerprint() if model is not None else None
        return cls(layout, fingerprint, task, dataset, seed, 0, dict(extra))

    # --- accumulation ---------------------------------------------------------------------

    @property
    def sites(self) -> list[str]:
        return list(self.sum)

    @property
    def num_slots(self) -> int:
        return self.layout.grid.num_slots

    def slot_index(self, stack: str, device: torch.device) -> Tensor:
        """Slot of each sequence position of a stack under :attr:`layout`, as a long tensor."""
        key = (stack, str(device))
        if key not in self._slot_index:
            self._slot_index[key] = torch.tensor(self.layout.slots(stack), dtype=torch.long, device=device)
        return self._slot_index[key]

    def update(self, site: str, activation: Tensor) -> None:
        """Add a batch ``[batch, pos, *act]`` of one site (positions of :attr:`layout`).

        Sums run in float64 on the activation's device; ``n_prompts`` is not touched (a
        prompt passes every site once; :func:`collect` counts prompts per forward).
        """
        slots = self.slot_index(_stack_of(site), activation.device)
        if activation.dim() < 2 or activation.shape[1] != len(slots):
            raise ShapeMismatchError(
                f"{site}: activation of shape {tuple(activation.shape)} has no position dim of length "
                f"{len(slots)} (layout {self.layout.name!r}); hook a site shaped [batch, pos, ...]"
            )
        x = activation.detach().to(torch.float64)
        if site not in self.sum:
            shape = (self.num_slots, *x.shape[2:])
            self.sum[site] = x.new_zeros(shape)
            self.sum_sq[site] = x.new_zeros(shape)
            self.count[site] = torch.zeros(self.num_slots, dtype=torch.int64, device=x.device)
        elif tuple(x.shape[2:]) != tuple(self.sum[site].shape[1:]):
            raise ShapeMismatchError(
                f"{site}: activation shape {tuple(x.shape[2:])} differs from the "
                f"{tuple(self.sum[site].shape[1:])} accumulated so far"
            )
        # slots are unique: index_put_ with accumulate (index_add_ is far slower on CPU)
        self.sum[site].index_put_((slots,), x.sum(0), accumulate=True)
        self.sum_sq[site].index_put_((slots,), x.square().sum(0), accumulate=True)
        self.count[site].index_put_((slots,), torch.full_like(slots, x.shape[0]), accumulate=True)

    # --- reading --------------------------------------------------------------------------

    def _site(self, site: str) -> str:
        if site not in self.sum:
            close = [s for s in self.sum if s.endswith(site)]
            hint = f"did you mean {close[:3]}?" if close else f"collected sites: {self.sites[:4]}…"
            raise KeyError(f"no statistics for site {site!r}; {hint}")
        return site

    def mean(self, site: str) -> Tensor:
        """Mean activation ``[num_slots, *act]`` (float64); NaN at slots never seen."""
        site = self._site(site)
        n = self.count[site].to(torch.float64).view(-1, *([1] * (self.sum[site].dim() - 1)))
        return self.sum[site] / n  # 0/0 = NaN where the slot was never seen

    def var(self, site: str) -> Tensor:
        """Population variance ``[num_slots, *act]``; NaN at slots never seen."""
        site = self._site(site)
        n = self.count[site].to(torch.float64).view(-1, *([1] * (self.sum[site].dim() - 1)))
        mean = self.sum[site] / n
        return (self.sum_sq[site] / n - mean.square()).clamp_min(0)

    def means(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """``{site: mean [num_slots, *act]}`` for every site (what patching takes)."""
        return {s: self.mean(s).to(dtype=dtype or torch.float64, device=device) for s in self.sites}

    # --- combining ------------------------------------------------------------------------

    def check_compatible(self, other: ActivationStats, same_task: bool = True) -> None:
        """Raise a :class:`StatsError` unless two statistics can be merged or compared."""
        if not isinstance(other, ActivationStats):
            raise TypeError(f"cannot combine ActivationStats with {type(other).__name__}")
        if self.fingerprint != other.fingerprint:
            raise ModelMismatchError(
                f"statistics of different models (config fingerprints {self.fingerprint} and "
                f"{other.fingerprint}); collect both with the same model"
            )
        if not _same_slots(self.layout, other.layout):
            raise LayoutMismatchError(
                f"statistics of layouts {self.layout.name!r} and {other.layout.name!r} hold different slots; "
                "collect both under one layout"
            )
        if same_task and self.task != other.task:
            raise StatsError(
                f"statistics of tasks {self.task!r} and {other.task!r}: shards of one task add up; to compare "
                "tasks use interp.taskvectors.taskness"
            )
        if set(self.sites) != set(other.sites):
            diff = sorted(set(self.sites) ^ set(other.sites))
            raise ShapeMismatchError(f"statistics cover different sites (e.g. {diff[:3]}); collect the same sites")
        for site in self.sites:
            if self.sum[site].shape != other.sum[site].shape:
                raise ShapeMismatchError(
                    f"{site}: shapes {tuple(self.sum[site].shape)} and {tuple(other.sum[site].shape)} differ"
                )

    def merge(self, other: ActivationStats) -> ActivationStats:
        """Statistics of the union of two shards of one task (exact: the sums add)."""
        self.check_compatible(other)
        merged = replace(
            self,
            dataset=_combine(self.dataset, other.dataset),
            seed=_combine(self.seed, other.seed),
            n_prompts=self.n_prompts + other.n_prompts,
            extra={**other.extra, **self.extra},
            sum={}, sum_sq={}, count={}, _slot_index={},
        )
        for site in self.sites:
            device = self.sum[site].device
            merged.sum[site] = self.sum[site] + other.sum[site].to(device)
            merged.sum_sq[site] = self.sum_sq[site] + other.sum_sq[site].to(device)
            merged.count[site] = self.count[site] + other.count[site].to(device)
        return merged

    def __add__(self, other: ActivationStats) -> ActivationStats:
        return self.merge(other)

    def __radd__(self, other: Any) -> ActivationStats:
        if isinstance(other, int) and other == 0:  # sum(shards)
            return self
        return NotImplemented

    def to(self, device: torch.device | str) -> ActivationStats:
        """A copy with every tensor on ``device``."""
        return replace(
            self,
            extra=dict(self.extra),
            sum={k: v.to(device) for k, v in self.sum.items()},
            sum_sq={k: v.to(device) for k, v in self.sum_sq.items()},
            count={k: v.to(device) for k, v in self.count.items()},
            _slot_index={},
        )

    def __repr__(self) -> str:
        return (
            f"ActivationStats(task={self.task!r}, layout={self.layout.name!r}, {len(self.sum)} sites, "
            f"{self.n_prompts} prompts, model={self.fingerprint})"
        )

    # --- persistence ----------------------------------------------------------------------

    def sidecar(self) -> dict[str, Any]:
        """The JSON description saved beside the tensors (checksum added by :meth:`save`)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_fingerprint": self.fingerprint,
            "layout": self.layout.to_dict(),
            "task": self.task,
            "n_prompts": self.n_prompts,
            "dataset": self.dataset,
            "seed": self.seed,
            "interp_version": _version(),
            "sites": {site: list(self.sum[site].shape) for site in self.sites},
            "extra": self.extra,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<name>.safetensors`` + ``<name>.json``; returns the tensor file's path.

        ``path`` is a ``.safetensors`` file, or a directory (created) in which the file is
        named after the task. Both files are written atomically (temporary file + rename).
        """
        path = Path(path)
        if path.suffix != ".safetensors":
            path.mkdir(parents=True, exist_ok=True)
            path = path / f"{_slug(self.task or 'activations')}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for site in self.sites:
            for name in _FIELDS:
                tensors[f"{site}.{name}"] = getattr(self, name)[site].detach().cpu().contiguous()
        meta = self.sidecar()
        meta["tensors"] = path.name
        meta["tensors_sha256"] = _tensor_digest(tensors)
        # one unit: the description travels inside the tensor file's header, so a kill before the
        # readable JSON copy below is written never blocks a resume
        with atomic_write(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "sidecar": sidecar_path(path).name,
                                                   "description": json.dumps(meta, default=_json_default)})
            meta["sha256"] = _sha256(tmp)
        write_text(sidecar_path(path), json.dumps(meta, indent=1, default=_json_default))
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: Any = None,
        layout: PromptLayout | str | None = None,
        task: str | None = None,
        verify: bool = True,
        device: torch.device | str = "cpu",
    ) -> ActivationStats:
        """Read statistics written by :meth:`save`, checking them against what you expect.

        ``path``: the ``.safetensors`` file, its ``.json`` sidecar, or a directory holding one
        such pair. ``model`` / ``layout`` / ``task`` (optional) must match what was collected;
        ``verify`` checks the tensor file against the sidecar's SHA-256.
        """
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
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptStatsError(
                f"{where} is not a valid activation-statistics description ({e}); restore it or collect again"
            ) from None
        if verify and not embedded and meta.get("sha256") != _sha256(path):
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
        if model is not None and meta.get("model_fingerprint") != model.config.fingerprint():
            raise ModelMismatchError(
                f"{path.name} was collected with model config {meta.get('model_fingerprint')}, this model is "
                f"{model.config.fingerprint()}: collect again with this model, or load the model the "
                "statistics were collected with"
            )
        if layout is not None:
            wanted = get_layout(layout, stats_layout.grid) if isinstance(layout, str) else layout
            if not _same_slots(wanted, stats_layout):
                raise LayoutMismatchError(
                    f"{path.name} was collected under layout {stats_layout.name!r}, not {wanted.name!r}; collect "
                    f"under {wanted.name!r}, or load without layout= (patching looks statistics up by slot, and "
                    "one-shot statistics cover every slot a zero-shot forward needs)"
                )
        if task is not None and meta.get("task") != task:
            raise StatsError(f"{path.name} holds task {meta.get('task')!r}, not {task!r}; load the file of that task")

        stats = cls(
            stats_layout, meta.get("model_fingerprint"), meta.get("task"), meta.get("dataset"), meta.get("seed"),
            int(meta.get("n_prompts", 0)), dict(meta.get("extra") or {}),
        )
        expected_keys = {f"{s}.{f}" for s in sites for f in _FIELDS}
        if set(tensors) != expected_keys:
            diff = sorted(set(tensors) ^ expected_keys)
            raise ShapeMismatchError(
                f"{path.name} holds tensors {diff[:4]} that its sidecar does not describe (or lacks them); "
                "restore the matching pair of files"
            )
        num_slots = stats_layout.grid.num_slots
        for site, shape in sites.items():
            s, sq, c = (tensors[f"{site}.{f}"] for f in _FIELDS)
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
            stats.sum[site], stats.sum_sq[site], stats.count[site] = s, sq, c
        return stats


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


def _expected_shape(model: Any, site: str) -> tuple[int, ...] | None:
    """``(num_slots, heads, d_head)`` of an ``attn.hook_z`` site of the model; None for other sites."""
    if not site.endswith(DEFAULT_HOOK):
        return None
    cfg = model.config.mae
    if site.startswith("encoder."):
        return (model.grid.num_slots, cfg.num_heads, cfg.embed_dim // cfg.num_heads)
    return (model.grid.num_slots, cfg.decoder_num_heads, cfg.decoder_embed_dim // cfg.decoder_num_heads)


def _sha256(path: Path) -> str:
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


def _resolve_sites(model: Any, sites: None | str | Sequence[str] | Callable[[str], bool]) -> list[str]:
    if sites is None:
        names = [n for n in model.hook_dict if n.endswith(DEFAULT_HOOK)]
    elif isinstance(sites, str):
        names = [n for n in model.hook_dict if n == sites or n.endswith("." + sites)]
    elif callable(sites):
        names = [n for n in model.hook_dict if sites(n)]
    else:
        unknown = [s for s in sites if s not in model.hook_dict]
        if unknown:
            raise KeyError(f"no hook points named {unknown[:3]}; see model.hook_dict")
        names = list(sites)
    if not names:
        raise ValueError(f"sites={sites!r} matches no hook point; e.g. 'attn.hook_z' or a full hook name")
    for name in names:
        _stack_of(name)
    return names


def collect(
    model: Any,
    batches: Iterable[Tensor],
    layout: PromptLayout | str = "one_shot",
    sites: None | str | Sequence[str] | Callable[[str], bool] = None,
    task: str | None = None,
    dataset: Any = None,
    seed: Any = None,
    progress: bool = True,
    **extra: Any,
) -> ActivationStats:
    """Accumulate per-slot statistics of ``sites`` over canvas batches ``[B, 3, H, W]``.

    One forward per batch under ``torch.no_grad``; the hooks add each batch to float64 sums
    on the model's device; the result is moved to the CPU once at the end. ``sites``: None
    (every ``attn.hook_z``), a hook suffix (``"hook_resid_post"``), a list of names or a
    filter. ``task``, ``dataset``, ``seed`` and ``extra`` go to the sidecar.
    """
    layout = get_layout(layout, model.grid)
    names = _resolve_sites(model, sites)
    stats = ActivationStats.empty(layout, model, task=task, dataset=dataset, seed=seed, **extra)
    device = next(model.parameters()).device

    def accumulate(activation: Tensor, hook: Any) -> None:
        stats.update(hook.name, activation)

    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    iterator: Iterable = batches
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, total=total, desc=f"collect {task or ''}".strip(), unit="batch")
    with torch.no_grad(), model.hooks([(name, accumulate) for name in names]):
        for batch in iterator:
            if not isinstance(batch, Tensor):
                raise TypeError(
                    f"collect takes batches of canvas tensors [B, 3, H, W], got {type(batch).__name__}; "
                    "pass e.g. (b['canvas'] for b in loader)"
                )
            if batch.dim() == 3:
                batch = batch[None]
            model(batch.to(device), layout)
            stats.n_prompts += batch.shape[0]
    if stats.n_prompts == 0:
        raise ValueError("collect got no batches; pass a non-empty iterable of canvas tensors")
    return stats.to("cpu")
