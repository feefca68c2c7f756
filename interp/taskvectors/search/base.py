"""What every task-vector search shares: the problem, the budget counter, the result, checkpoints.

A :class:`SearchProblem` is one task's search: a model, a :class:`UnitSpace`, the task's mean
activations (patched by :class:`~interp.taskvectors.patching.MeanPatcher`), training prompts
(scored with the *train* reward) and held-out search prompts (scored with the *select* reward,
``pixel``: the official metric), plus a :class:`Budget` that counts every prompt-forward, every
prompt-backward and the seconds spent. Every patched forward of a search goes through one
scoring engine, :class:`~interp.taskvectors.patched_rows.PatchedRows` (distinct rows once, the
clean prefix reused; split over ranks under ``torch.distributed``), scored by one
:class:`~interp.scoring.Scorer` per reward kind.

Every method (``reinforce``, ``gradient``, ``attribution``, ``greedy``, ``random``,
``taskness``) is ``run(problem, cfg, checkpoint, progress) -> SearchResult``: the kept unit
mask, a per-unit ranking score, the held-out score of the kept mask, the budget, the config and
a log; :meth:`SearchResult.to_policy` turns it into the one artifact, a
:class:`~interp.taskvectors.policy.Policy`. A long method saves its state in a
:class:`Checkpoint`, which refuses (through :func:`interp.provenance.check_resume`, the one
resume check) a state made by another method, config, model, data or prompts.

Rewards are higher-is-better; a reward may also be a callable ``(logits, canvases, rows) -> [B]``
(the planted-task tests use one), so the methods never depend on how a task is scored.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Union

import torch
from torch import Tensor

from interp import distributed
from interp.canvas import PromptLayout
from interp.data.tasks import PromptBatch
from interp.errors import ConfigError
from interp.io import atomic_write
from interp.metrics import code_cross_entropy
from interp.models.checkpoint import read_resume_state
from interp.models.decode_cache import DecodeCache
from interp.models.pixels import check_decode
from interp.models.protocol import PromptModel
from interp.provenance import check_resume, normalized
from interp.scoring import Scorer, check_kind
from interp.taskvectors.patched_rows import PatchedRows
from interp.taskvectors.patching import Intervention, Means, MeanPatcher
from interp.taskvectors.policy import Policy
from interp.taskvectors.units import UnitSpace

#: ``(logits [B, P, V], canvases [B, 3, H, W], rows [B] prompt indices) -> reward [B]``
RewardFn = Callable[[Tensor, Tensor, Tensor], Tensor]
Reward = Union[str, RewardFn]


@dataclass
class Budget:
    """What a search spent: prompt-forwards (rows through the model), prompt-backwards, seconds.

    ``select_forwards`` counts the forwards that scored held-out prompts (what a best-of-k
    random control is matched to).
    """

    forwards: int = 0
    backwards: int = 0
    select_forwards: int = 0
    seconds: float = 0.0

    def add(self, other: Mapping[str, float]) -> None:
        for key, value in other.items():
            setattr(self, key, type(getattr(self, key))(getattr(self, key) + value))

    @contextmanager
    def timing(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


@dataclass
class SearchResult:
    """A finished search: ``mask [U]`` bool (the task vector), ``scores [U]`` (higher = ranked
    earlier), the mask's held-out score, what it cost, the config that made it and its log.
    A stochastic method (REINFORCE) also gives its ``logits`` (last step) and ``best_logits``."""

    method: str
    mask: Tensor
    scores: Tensor
    held_out_score: float
    budget: Budget
    config: dict
    log: list[dict] = field(default_factory=list)
    logits: Tensor | None = None
    best_logits: Tensor | None = None

    @property
    def units(self) -> int:
        return int(self.mask.sum())

    def to_policy(self, space: UnitSpace, task: str | None = None, **metadata: Any) -> Policy:
        """The one artifact: a stochastic :class:`Policy` (logits, kept set) for REINFORCE, a unit
        set (:meth:`Policy.from_mask`) for every other method; method, held-out score, units,
        budget and config (plus ``metadata``) recorded. No logits are invented."""
        meta = {"task": task, "method": self.method, "best_score": self.held_out_score, "units": self.units,
                "budget": asdict(self.budget), "config": self.config, **metadata}
        if self.logits is None:
            return Policy.from_mask(space, self.mask, meta, scores=self.scores)
        return Policy(space, self.logits, self.best_logits, meta, kept=self.mask, scores=self.scores.double())


class SearchProblem:
    """One task's search over ``space``: patched forwards that count what they cost.

    ``reward`` scores training prompts (``token``: minus the target cell's code cross-entropy,
    differentiable; ``pixel``: the official IoU / -MSE), ``select_reward`` scores the held-out
    prompts that pick among candidates (``pixel`` by default). ``decode`` is the pixel reward's
    decode (``official`` or the faster ``band``), ``chunk`` the rows per forward (memory).
    ``taskness [U]`` is optional (only the ``taskness`` method reads it). ``savings=False`` runs
    every row as a whole patched forward with a plain decode (the reference the tests compare with).
    """

    def __init__(self, model: PromptModel, space: UnitSpace, means: Means, train: PromptBatch, held_out: PromptBatch,
                 layout: PromptLayout | str = "zero_shot", reward: Reward = "token", select_reward: Reward = "pixel",
                 chunk: int = 256, taskness: Tensor | None = None, decode: str = "official", savings: bool = True,
                 intervention: Intervention | None = None, base_means: Means | None = None) -> None:
        for kind in (reward, select_reward):
            if not callable(kind) and kind != "auto":  # "auto": chosen from measured agreement (agreement.choose_reward)
                check_kind(kind)
        check_decode(decode)
        self.model, self.space, self.means = model, space, means
        self.taskness = taskness  # [U] per-unit taskness (the taskness method ranks by it)
        self.train, self.held_out = train, held_out
        self.layout = model.layout(layout)
        self.patcher = MeanPatcher(model, means, self.layout, space, intervention, base_means)  # any intervention kind
        self.reward, self.select_reward, self.chunk, self.decode = reward, select_reward, chunk, decode
        self.device = model.device
        self.budget = Budget()
        self.single_unit: Tensor | None = None  # [U] training reward of each unit alone, once measured
        self._codes: dict[int, Tensor] = {}
        # less work, same rewards: distinct rows once, unpatched prefixes reused, decodes cached
        self.rows = PatchedRows(self.patcher, chunk, dedupe=savings, reuse_prefix=savings)
        self.decodes = DecodeCache(model.decode_codes) if savings and model.has_pixels else None
        self._scorers: dict[str, Scorer] = {}

    def __len__(self) -> int:
        return len(self.space)

    # ---- rewards ------------------------------------------------------------------------
    def _reward_fn(self, kind: Reward, prompts: PromptBatch) -> RewardFn:
        if callable(kind):
            return kind
        if kind == "token":
            codes = self.codes(prompts)
            return lambda logits, canvases, rows: -code_cross_entropy(logits, codes[rows], self.layout)
        if kind == "pixel":
            scorer = self.scorer(prompts.task, kind)
            return lambda logits, canvases, rows: scorer.rewards(canvases, logits)
        if kind == "soft":  # differentiable: the soft decode scored by a smooth task metric
            soft = Scorer(self.model, prompts.task, self.layout, "soft")
            return lambda logits, canvases, rows: soft.soft_rewards(canvases, logits)
        raise ConfigError(f"reward must be 'token', 'pixel', 'soft' or a callable, got {kind!r}",
                          fix="pass reward='token', 'pixel' or 'soft'")

    def scorer(self, task: str, kind: str = "pixel") -> Scorer:
        """The :class:`Scorer` of ``task`` and ``kind``; pixel decodes go through one :class:`DecodeCache`."""
        if (task, kind) not in self._scorers:
            self._scorers[task, kind] = Scorer(self.model, task, self.layout, kind, self.decode, decoder=self.decodes)
        return self._scorers[task, kind]

    def codes(self, prompts: PromptBatch) -> Tensor:
        """The prompts' VQGAN codes ``[N, patches]``, encoded once per batch."""
        key = id(prompts)
        if key not in self._codes:
            with torch.no_grad():
                self._codes[key] = self.model.target_codes(prompts.canvases.to(self.device))
        return self._codes[key]

    @torch.no_grad()
    def rewards(self, prompts: PromptBatch, which: Tensor, masks: Tensor, kind: Reward) -> Tensor:
        """Reward of patching ``masks[i]`` into prompt ``which[i]``, ``[S]`` float64 (counted).

        Under :func:`interp.distributed.init` the rows are split over ranks and gathered back.
        """
        self.budget.forwards += len(which)  # rows asked for (repeats and reused prefixes still count)
        if len(which) == 0:
            return torch.empty(0, dtype=torch.float64)
        if distributed.active():
            n, rows = len(which), distributed.shard_indices(len(which))
            with distributed.local():
                local = self.rows(prompts, which[rows], masks[rows], self._reward_fn(kind, prompts)) if len(rows) \
                    else torch.empty(0, dtype=torch.float64)
            return distributed.gather_rows(local, n)
        return self.rows(prompts, which, masks, self._reward_fn(kind, prompts))

    def mean_rewards(self, masks: Tensor, prompts: PromptBatch, kind: Reward) -> Tensor:
        """Each mask's mean reward over all ``prompts``, ``[S]`` (``S * N`` forwards)."""
        masks = masks.bool()
        n = len(prompts)
        which = torch.arange(n).repeat(len(masks))
        rows = self.rewards(prompts, which, masks.repeat_interleave(n, dim=0), kind)
        return rows.view(len(masks), n).nanmean(dim=1)

    def train_score(self, masks: Tensor) -> Tensor:
        """Mean training reward of each mask ``[S, U]`` -> ``[S]``."""
        return self.mean_rewards(masks, self.train, self.reward)

    def held_out_score(self, masks: Tensor) -> Tensor:
        """Mean held-out (selection) reward of each mask ``[S, U]`` -> ``[S]``."""
        before = self.budget.forwards
        out = self.mean_rewards(masks, self.held_out, self.select_reward)
        self.budget.select_forwards += self.budget.forwards - before
        return out

    # ---- the relaxed (gated) patch --------------------------------------------------------
    def gated_rewards(self, gates: Tensor, prompts: PromptBatch | None = None, which: Tensor | None = None) -> Tensor:
        """Differentiable reward of the gated patch ``z' = z + g (mean - z)``, ``[B]``.

        ``gates [U]`` or ``[B, U]`` in [0, 1]; row ``b`` runs prompt ``which[b]`` (all prompts by
        default). Counts the forwards; call :meth:`count_backward` after ``backward()``.
        """
        prompts = self.train if prompts is None else prompts
        which = torch.arange(len(prompts)) if which is None else which
        fn = self._reward_fn(self.reward, prompts)
        canvases = prompts.canvases[which].to(self.device)
        with self.model.hooks(gated_hooks(self.patcher, gates)):
            logits = self.model(canvases, self.layout)
        self.budget.forwards += len(which)
        return fn(logits, canvases, which.to(self.device))

    def count_backward(self, rows: int) -> None:
        self.budget.backwards += rows


class _GateZ:
    """Hook of the relaxed patch with one gate per cell ``g [B or 1, pos, head]``: the gate scales
    the intervention's change, ``z + g (mean - z)`` (replace; scaled: ``z + g alpha (mean - z)``)
    or ``z + g alpha (mean - zero-shot mean)`` (add); at ``g = 1`` the hard patch."""

    def __init__(self, cell_gates: Tensor, values: Tensor, intervention: Intervention) -> None:
        self.cell_gates, self.values = cell_gates[..., None], values
        self.add = intervention.kind == "add"
        self.scale = intervention.alpha if intervention.kind == "scaled" else 1.0

    def __call__(self, z: Tensor, hook: Any) -> Tensor:
        values = self.values.to(device=z.device, dtype=z.dtype)
        gates = self.cell_gates.to(z.dtype)
        return z + gates * values if self.add else z + (gates * self.scale) * (values - z)


def gated_hooks(patcher: MeanPatcher, gates: Tensor) -> list[tuple[str, _GateZ]]:
    """Forward hooks of the relaxed patch: every site, each cell gated by its unit's gate."""
    gates = gates[None] if gates.dim() == 1 else gates
    if gates.shape[-1] != len(patcher.space):
        raise ValueError(f"gates cover {gates.shape[-1]} units, the space has {len(patcher.space)}")
    padded = torch.cat([gates, gates.new_zeros(gates.shape[0], 1)], dim=1).to(patcher.device)  # column U = no unit
    return [(site, _GateZ(padded[:, index], patcher.patch_values(site), patcher.intervention))
            for site, index in patcher.index.items()]


# --------------------------------------------------------------------------------------------
# shared helpers


def best_of(problem: SearchProblem, candidates: Tensor, chunk: int = 64) -> tuple[int, Tensor]:
    """Score candidate masks ``[K, U]`` on the held-out prompts; ``(index of best, scores [K])``."""
    scores = torch.cat([problem.held_out_score(candidates[i : i + chunk]) for i in range(0, len(candidates), chunk)])
    return int(torch.nan_to_num(scores, nan=float("-inf")).argmax()), scores


def top_k_masks(scores: Tensor, ks: list[int]) -> Tensor:
    """``[len(ks), U]``: the ``k`` highest-scoring units for each ``k`` (ties by index)."""
    order = torch.sort(-scores.double(), stable=True).indices
    masks = torch.zeros(len(ks), len(scores), dtype=torch.bool)
    for i, k in enumerate(ks):
        masks[i, order[:k]] = True
    return masks


def size_grid(n_units: int, max_units: int | None = None) -> list[int]:
    """Top-k sizes to try: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... up to ``max_units`` (default all)."""
    top = n_units if max_units is None else min(max_units, n_units)
    sizes = {1, 2, 3} | {2**i for i in range(2, 20)} | {3 * 2**i for i in range(1, 20)}
    return sorted({k for k in sizes if k <= top} | {top})



def best_top_k(problem: SearchProblem, method: str, scores: Tensor, max_units: int | None, config: dict) -> SearchResult:
    """Rank units by ``scores``, keep the top-k (k on :func:`size_grid`) best on the held-out prompts."""
    with problem.budget.timing():
        ks = size_grid(len(scores), max_units)
        candidates = top_k_masks(scores, ks)
        best, held = best_of(problem, candidates)
    log = [{"units": k, "held_out_score": float(s)} for k, s in zip(ks, held)]
    return SearchResult(method, candidates[best], scores, float(held[best]), problem.budget, config, log)

class Checkpoint:
    """The resumable state of one search, in one file (``torch.save`` of tensors, numbers and
    lists, read back with ``weights_only=True``, written atomically).

    ``made_by`` describes what makes the search (method, config and whatever the caller adds:
    model fingerprint, data, prompts); a saved state made by anything else is refused by
    :func:`interp.provenance.check_resume` (a :class:`~interp.errors.ResumeConflict` naming each
    difference). ``path=None`` keeps nothing.
    """

    def __init__(self, path: str | Path | None, made_by: Mapping[str, Any]) -> None:
        self.path = Path(path) if path else None
        self.made_by = normalized(dict(made_by))

    @classmethod
    def of(cls, checkpoint: Checkpoint | str | Path | None, method: str, config: dict) -> Checkpoint:
        """``checkpoint`` as a :class:`Checkpoint` of ``method`` with ``config`` (a path gets both
        recorded; a :class:`Checkpoint` made by a stage gets them added to its provenance)."""
        if isinstance(checkpoint, Checkpoint):
            return cls(checkpoint.path, {**checkpoint.made_by, "method": method, "config": config})
        return cls(checkpoint, {"method": method, "config": config})

    def load(self, required: tuple[str, ...] = ()) -> dict | None:
        """The saved state, or None when there is none; refused when made by another search."""
        if self.path is None or not self.path.exists():
            return None
        saved = read_resume_state(self.path, required)
        check_resume(saved.get("provenance"), self.made_by, self.path, self.path.parent)
        return saved

    def save(self, state: dict, budget: Budget | None = None) -> None:
        if self.path is None:
            return
        extra = {} if budget is None else {"budget": asdict(budget)}
        with atomic_write(self.path) as tmp:
            torch.save({**state, **extra, "provenance": self.made_by}, tmp)


def ranking(problem: SearchProblem, method: str, cfg: Any, checkpoint: Checkpoint | str | Path | None,
            compute: Callable[[], Tensor]) -> Tensor:
    """A ranking method's per-unit scores ``[U]``: ``compute()`` once (timed into the budget), kept in
    the search's checkpoint and read back on a resume."""
    store = Checkpoint.of(checkpoint, method, config_dict(cfg))
    saved = store.load()
    if saved is not None:
        problem.budget.add(saved["budget"])
        return saved["scores"]
    with problem.budget.timing():
        scores = compute()
    store.save({"scores": scores}, problem.budget)
    return scores


def config_dict(cfg: Any) -> dict:
    return normalized(asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else dict(cfg))
