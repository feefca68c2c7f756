"""What a search found, as one artifact: its unit space, what it keeps, and what made it.

Every search method ends in a :class:`Policy` over a :class:`~interp.taskvectors.units.UnitSpace`.
Two kinds exist, and neither invents numbers the search did not produce:

* a **stochastic** policy (REINFORCE): per-unit Bernoulli logits of the last step and of the
  policy kept by held-out score; its task vector is the units with probability above 0.5;
* a **set** (every method that returns a unit set: gradient, attribution, greedy, random,
  taskness, prune, a selection made in the explorer): :meth:`Policy.from_mask` — the kept
  units, optionally each unit's ranking score; its probabilities are 0 or 1.

A stochastic policy may carry a kept set too (a method that chose its size on held-out prompts):
:meth:`Policy.mask` then returns that set unless a threshold is asked for. ``policy.safetensors``::

    logits       [units]  float32   the last policy of the search (stochastic)
    best_logits  [units]  float32   the policy kept by held-out score (stochastic, optional)
    kept         [units]  uint8     the kept unit set (sets; optional for stochastic policies)
    scores       [units]  float64   each unit's ranking score, higher first (optional)
    header: format, space (UnitSpace.to_dict JSON), metadata (JSON); task / config / best_score
            also as their own keys, for readers that look at the header only

so a reader never guesses which units a vector covers: the space comes from the file.
The controls of an evaluation live here too: :func:`random_like` (as many units, uniform) and
:func:`stratified_like` (as many units per stack and token group).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
from torch import Tensor

from interp.errors import InputError
from interp.io import atomic_write, read_safetensors_metadata
from interp.taskvectors.units import UnitSpace

FORMAT = "interp.policy"
FORMAT_VERSION = 1
Which = Literal["best", "last"]


class PolicyError(InputError):
    """A policy file or tensor that cannot be used as it is (the message names it)."""


def policy_mask(probabilities: Tensor, threshold: float = 0.5) -> Tensor:
    """Units a learned policy keeps: probability above ``threshold`` (a number in [0, 1]), ``[units]`` bool."""
    import math
    import numbers

    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= float(threshold) <= 1.0 \
            or math.isnan(float(threshold)):
        raise PolicyError(f"threshold={threshold!r} is not a probability", fix="Pass a threshold in [0, 1] (0.5 keeps the likely units)")
    return probabilities > float(threshold)


def random_like(mask: Tensor, seed: int, k: int | None = None) -> Tensor:
    """``k`` units (default: as many as ``mask`` holds, at most all of them) drawn uniformly at random (the control)."""
    import operator

    if k is not None:
        try:
            if isinstance(k, bool):
                raise TypeError
            k = operator.index(k)
        except TypeError:
            raise PolicyError(f"random_like(k={k!r}): k must be an integer", fix=f"Pass k in [0, {mask.numel()}]") from None
        if not 0 <= k <= mask.numel():
            raise PolicyError(f"random_like(k={k}): the unit space has {mask.numel()} units", fix=f"Pass k in [0, {mask.numel()}]")
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros_like(mask, dtype=torch.bool)
    out[torch.randperm(mask.numel(), generator=g)[: int(mask.sum()) if k is None else k]] = True
    return out


def stratified_like(space: UnitSpace, mask: Tensor, seed: int) -> Tensor:
    """A random unit set with the composition of ``mask``: as many units in each (stack, token
    group) stratum (per stack at ``head`` / ``layer`` granularity), drawn uniformly within it."""
    if mask.shape != (len(space),):
        raise PolicyError(f"mask has shape {tuple(mask.shape)}, the unit space {len(space)} units",
                          fix="pass a [units] bool mask of this space")
    g = torch.Generator().manual_seed(seed)
    strata: dict[tuple, list[int]] = {}
    for unit in space.units:
        strata.setdefault((unit.stack, unit.group), []).append(unit.index)
    out = torch.zeros(len(space), dtype=torch.bool)
    for members in strata.values():
        index = torch.tensor(members)
        k = int(mask[index].sum())
        out[index[torch.randperm(len(members), generator=g)[:k]]] = True
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-able")


@dataclass
class Policy:
    """Per-unit Bernoulli logits (or a unit set) over a unit space, and what made it."""

    space: UnitSpace
    logits: Tensor | None = None  # [units] the last policy (None for a set)
    best_logits: Tensor | None = None  # [units] the policy kept by held-out score
    metadata: dict[str, Any] = field(default_factory=dict)  # task, method, config, best_score, ...
    kept: Tensor | None = None  # [units] bool: the kept set (a set policy, or a size chosen by a method)
    scores: Tensor | None = None  # [units] per-unit ranking score, higher first

    def __post_init__(self) -> None:
        if self.logits is None and self.kept is None:
            raise PolicyError("a policy needs logits (a stochastic policy) or a kept unit set",
                              fix="pass logits, or build a set with Policy.from_mask(space, mask, metadata)")
        if self.logits is not None:
            self.logits = self._check("logits", self.logits)
        if self.best_logits is not None:
            self.best_logits = self._check("best_logits", self.best_logits)
        if self.kept is not None:
            self.kept = self._check_set(self.kept)
        if self.scores is not None:
            self.scores = self._check("scores", self.scores, torch.float64)
        self.metadata = dict(self.metadata)

    @classmethod
    def from_mask(cls, space: UnitSpace, mask: Any, metadata: Mapping[str, Any] | None = None,
                  scores: Tensor | None = None) -> Policy:
        """A policy that is a unit set (``mask [units]`` bool), e.g. what gradient or greedy keep;
        ``scores`` optionally ranks every unit (higher first)."""
        return cls(space, metadata=dict(metadata or {}), kept=mask, scores=scores)

    @property
    def is_set(self) -> bool:
        """True for a unit set (no logits): its probabilities are 0 or 1."""
        return self.logits is None

    def _check_set(self, mask: Any) -> Tensor:
        t = torch.as_tensor(mask).detach().cpu().flatten()
        if t.dtype != torch.bool:
            if t.is_floating_point() and t.isnan().any() or not ((t == 0) | (t == 1)).all():
                raise PolicyError(f"a kept unit set must be bool or 0/1, got values {t.unique()[:5].tolist()}",
                                  fix="pass a bool mask of the units kept")
            t = t.bool()
        if t.numel() != len(self.space):
            raise PolicyError(f"the kept set has {t.numel()} values, its unit space {len(self.space)} units ({self.space!r})",
                              fix="build the policy over the space it was searched in")
        return t

    def _check(self, name: str, logits: Any, dtype: torch.dtype = torch.float32) -> Tensor:
        t = torch.as_tensor(logits).detach().cpu()
        if not t.is_floating_point():
            raise PolicyError(f"policy {name} have dtype {t.dtype}", fix="pass float logits (torch.logit(p) for probabilities)")
        t = t.to(dtype).flatten()
        if t.numel() != len(self.space):
            raise PolicyError(f"policy {name} have {t.numel()} values, its unit space {len(self.space)} units "
                              f"({self.space!r})", fix="build the policy over the space it was searched in")
        if t.isnan().any():
            raise PolicyError(f"policy {name} hold NaN", fix="search again (the search diverged)")
        return t

    # --- what it keeps ----------------------------------------------------------------------

    @property
    def task(self) -> str | None:
        return self.metadata.get("task")

    def which(self, which: Which = "best") -> Which:
        """``which`` as it will be read: ``best`` falls back to ``last`` when none was kept."""
        if which not in ("best", "last"):
            raise PolicyError(f"which={which!r}", fix="use which='best' (kept by held-out score) or 'last'")
        return "last" if which == "best" and self.best_logits is None else which

    def probabilities(self, which: Which = "best", dtype: torch.dtype = torch.float32) -> Tensor:
        """Per-unit keep probabilities ``[units]`` of the best (default) or the last policy
        (a set's are 0 or 1)."""
        if self.logits is None:
            return self.kept.to(dtype)
        logits = self.best_logits if self.which(which) == "best" else self.logits
        return torch.sigmoid(logits.to(dtype))

    def mask(self, threshold: float | None = None, which: Which = "best") -> Tensor:
        """Bool ``[units]``: the kept set; with ``threshold``, the units whose probability is above it
        (a stochastic policy without a kept set: above 0.5 by default)."""
        if threshold is None:
            if self.kept is not None:
                return self.kept.clone()
            threshold = 0.5
        return policy_mask(self.probabilities(which), threshold)

    def random_like(self, seed: int, threshold: float | None = None) -> Tensor:
        """As many units as :meth:`mask` keeps, drawn uniformly (the control)."""
        return random_like(self.mask(threshold), seed)

    def stratified_like(self, seed: int, threshold: float | None = None) -> Tensor:
        """As many units per (stack, token group) as :meth:`mask` keeps, drawn at random."""
        return stratified_like(self.space, self.mask(threshold), seed)

    # --- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``policy.safetensors`` atomically (tensors + space + metadata in one file)."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {name: getattr(self, name).contiguous() for name in ("logits", "best_logits", "scores")
                   if getattr(self, name) is not None}
        if self.kept is not None:
            tensors["kept"] = self.kept.to(torch.uint8).contiguous()
        header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "space": json.dumps(self.space.to_dict()),
                  "metadata": json.dumps(self.metadata, default=_json_default)}
        for key in ("task", "method", "best_score", "config"):  # flat copies for header-only readers
            if key in self.metadata:
                value = self.metadata[key]
                header[key] = value if isinstance(value, str) else json.dumps(value, default=_json_default)
        with atomic_write(path) as tmp:
            save_file(tensors, str(tmp), metadata=header)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a policy written by :meth:`save` (or by the pipeline before it), checking it."""
        from safetensors.torch import load_file

        path = Path(path)
        try:
            header = read_safetensors_metadata(path)
        except InputError as error:  # missing, or not a safetensors file
            raise PolicyError(error.problem, fix=error.fix) from None
        if "space" not in header:
            raise PolicyError(f"{path} has no 'space' in its header, so which units its logits cover is unknown",
                              fix="save policies with Policy.save (it records the UnitSpace)")
        version = header.get("format_version", "1")
        if header.get("format", FORMAT) != FORMAT or not version.isdigit() or int(version) > FORMAT_VERSION:
            raise PolicyError(f"{path} is a {header.get('format')!r} file version {header.get('format_version')}, "
                              f"not a {FORMAT!r} this interp reads", fix="upgrade interp or write it again")
        try:
            space = UnitSpace.from_dict(json.loads(header["space"]))
            metadata = json.loads(header["metadata"]) if "metadata" in header else _legacy_metadata(header)
            if not isinstance(metadata, dict):
                raise ValueError(f"metadata is a {type(metadata).__name__}, not an object")
            if metadata.get("task") is not None and not isinstance(metadata["task"], str):
                raise ValueError(f"task is {metadata['task']!r}, not a name")
            if metadata.get("provenance") is not None and not isinstance(metadata["provenance"], dict):
                raise ValueError(f"provenance is {metadata['provenance']!r}, not an object")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise PolicyError(f"{path} has a malformed header ({error})", fix="write the policy again") from None
        try:
            tensors = load_file(str(path))
        except Exception as error:  # safetensors raises its own error types
            raise PolicyError(f"{path} is not a readable safetensors file ({error})", fix="write it again") from None
        if "logits" not in tensors and "kept" not in tensors:
            raise PolicyError(f"{path} holds neither 'logits' nor a 'kept' set (it has {sorted(tensors)})", fix="write it again")
        try:
            return cls(space, tensors.get("logits"), tensors.get("best_logits"), metadata, kept=tensors.get("kept"),
                       scores=tensors.get("scores"))
        except PolicyError as error:
            raise PolicyError(f"{path}: {error.problem}", fix=error.fix) from None

    def __repr__(self) -> str:
        kept = int(self.mask().sum())
        return f"Policy(task={self.task!r}, method={self.metadata.get('method')!r}, {kept}/{len(self.space)} units kept, {self.space!r})"


def _legacy_metadata(header: Mapping[str, str]) -> dict[str, Any]:
    """Metadata of a policy file from before :class:`Policy` (flat header keys)."""
    out: dict[str, Any] = {"method": "reinforce"}
    for key, value in header.items():
        if key in ("space", "format", "format_version"):
            continue
        if key == "config":
            out[key] = json.loads(value)
        elif key == "best_score":
            out[key] = float(value)
        else:
            out[key] = value
    return out


__all__ = ["Policy", "PolicyError", "policy_mask", "random_like", "stratified_like"]
