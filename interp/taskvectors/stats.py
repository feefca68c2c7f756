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

:func:`~interp.taskvectors.collect.collect` fills them with one batched forward per batch under ``torch.no_grad``; the
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

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.canvas import PromptLayout
from interp.models.protocol import PromptModel
from interp.taskvectors.stats_file import (
    FORMAT, FORMAT_VERSION, LayoutMismatchError, ModelMismatchError, ShapeMismatchError, StatsError, interp_version,
    same_slots,
)
from interp.taskvectors.unit import stack_of


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
        model: PromptModel | None = None,
        task: str | None = None,
        dataset: Any = None,
        seed: Any = None,
        **extra: Any,
    ) -> ActivationStats:
        """No data yet; ``model`` (optional) records its config fingerprint."""
        fingerprint = model.config_hash() if model is not None else None
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
        slots = self.slot_index(stack_of(site), activation.device)
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
        if not same_slots(self.layout, other.layout):
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
            "interp_version": interp_version(),
            "sites": {site: list(self.sum[site].shape) for site in self.sites},
            "extra": self.extra,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<name>.safetensors`` + ``<name>.json``; returns the tensor file's path.

        ``path`` is a ``.safetensors`` file, or a directory (created) in which the file is
        named after the task. Both files are written atomically (temporary file + rename).
        """
        from interp.taskvectors.stats_file import save_stats

        return save_stats(self, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: PromptModel | None = None,
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
        from interp.taskvectors.stats_file import load_stats_file

        return load_stats_file(cls, path, model=model, layout=layout, task=task, verify=verify, device=device)

