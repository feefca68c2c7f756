"""What every task-vector search shares: the problem, the budget counter, the result, checkpoints.

A :class:`SearchProblem` is one task's search: a model, a :class:`UnitSpace`, the task's mean
activations (patched by :class:`~interp.taskvectors.patching.MeanPatcher`), training prompts
(scored with the *train* reward, ``token`` by default: no VQGAN decoding) and held-out search
prompts (scored with the *select* reward, ``pixel``: the official metric), plus a
:class:`Budget` that counts every prompt-forward, every prompt-backward and the seconds spent.
Every method (``reinforce``, ``gradient``, ``attribution``, ``greedy``, ``random``,
``taskness``) reads the problem and returns a :class:`SearchResult`: the kept unit mask, a
per-unit ranking score, the held-out score of the kept mask, the budget and the config.

Rewards are higher-is-better; a reward may also be a callable ``(logits, canvases, rows) -> [B]``
(the planted-task tests use one), so the methods never depend on how a task is scored.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Union

import torch
from torch import Tensor

from interp.canvas import PromptLayout, get_layout
from interp.data.tasks import PromptBatch
from interp.metrics import code_cross_entropy
from interp.models.checkpoint import read_resume_state
from interp.errors import ConfigError, ResumeConflict
from interp.io import atomic_write
from interp.taskvectors.patching import Means, MeanPatcher
from interp.models.decode_cache import DecodeCache
from interp.scoring import Scorer
from interp.taskvectors.patched_rows import PatchedRows
from interp.taskvectors.units import UnitSpace

#: ``(logits [B, P, V], canvases [B, 3, H, W], rows [B] prompt indices) -> reward [B]``
RewardFn = Callable[[Tensor, Tensor, Tensor], Tensor]
Reward = Union[str, RewardFn]


class SearchResumeError(ResumeConflict):
    """A checkpoint was written by a search with another configuration."""


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
    earlier), the mask's held-out score, what it cost, and the config that made it."""

    method: str
    mask: Tensor
    scores: Tensor
    held_out_score: float
    budget: Budget
    config: dict
    log: list[dict] = field(default_factory=list)

    @property
    def units(self) -> int:
        return int(self.mask.sum())

    def save(self, path: str | Path) -> None:
        """``path`` (.safetensors): mask and scores; metadata holds method, score, budget, config."""
        from safetensors.torch import save_file

        meta = {"method": self.method, "held_out_score": repr(self.held_out_score),
                "budget": json.dumps(asdict(self.budget)), "config": json.dumps(self.config, default=str),
                "log": json.dumps(self.log, default=float)}
        tensors = {"mask": self.mask.to(torch.uint8).contiguous(), "scores": self.scores.double().contiguous()}
        with atomic_write(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    def to_policy(self, space: UnitSpace, task: str | None = None) -> Any:
        """The kept set as a :class:`~interp.taskvectors.policy.Policy` (logit +-6 on / off units:
        ``mask()`` gives it back), with method, score, budget and config as metadata."""
        from interp.taskvectors.policy import Policy

        logits = torch.where(self.mask, 6.0, -6.0)
        meta = {"task": task, "method": self.method, "best_score": self.held_out_score,
                "budget": asdict(self.budget), "config": self.config}
        return Policy(space, logits, logits.clone(), meta)

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            mask, scores = f.get_tensor("mask").bool(), f.get_tensor("scores")
        return cls(meta["method"], mask, scores, float(meta["held_out_score"]), Budget(**json.loads(meta["budget"])),
                   json.loads(meta["config"]), json.loads(meta.get("log", "[]")))


class SearchProblem:
    """One task's search over ``space``: patched forwards that count what they cost.

    ``reward`` scores training prompts (``token``: minus the target cell's code cross-entropy,
    differentiable; ``pixel``: the official IoU / -MSE), ``select_reward`` scores the held-out
    prompts that pick among candidates (``pixel`` by default). ``taskness [U]`` is optional
    (only the ``taskness`` method reads it).
    """

    def __init__(self, model: Any, space: UnitSpace, means: Means, train: PromptBatch, held_out: PromptBatch,
                 layout: PromptLayout | str = "zero_shot", reward: Reward = "token", select_reward: Reward = "pixel",
                 chunk: int = 256, taskness: Tensor | None = None) -> None:
        self.model, self.space, self.means = model, space, means
        self.taskness = taskness  # [U] per-unit taskness (the taskness method ranks by it)
        self.train, self.held_out = train, held_out
        self.layout = get_layout(layout, model.grid)
        self.patcher = MeanPatcher(model, means, self.layout, space)
        self.reward, self.select_reward, self.chunk = reward, select_reward, chunk
        self.device = next(model.parameters()).device
        self.budget = Budget()
        self.single_unit: Tensor | None = None  # [U] training reward of each unit alone, once measured
        self._codes: dict[int, Tensor] = {}
        # less work, same rewards: distinct rows once, unpatched prefixes reused, decodes cached
        self.rows = PatchedRows(self.patcher, chunk)
        self._decodes = DecodeCache(model.decode_codes) if model.has_pixels else None
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
            scorer = self._pixel_scorer(prompts.task)
            return lambda logits, canvases, rows: scorer.rewards(canvases, logits)
        if kind == "soft":  # differentiable: the soft decode scored by a smooth task metric
            soft = Scorer(self.model, prompts.task, self.layout, "soft")
            return lambda logits, canvases, rows: soft.soft_rewards(canvases, logits)
        raise ConfigError(f"reward must be 'token', 'pixel', 'soft' or a callable, got {kind!r}",
                          fix="pass reward='token', 'pixel' or 'soft'")

    def _pixel_scorer(self, task: str) -> Scorer:
        """The official pixel reward of ``task``, its decodes through one :class:`DecodeCache`."""
        if task not in self._scorers:
            self._scorers[task] = Scorer(self.model, task, self.layout, "pixel", decoder=self._decodes)
        return self._scorers[task]

    def codes(self, prompts: PromptBatch) -> Tensor:
        """The prompts' VQGAN codes ``[N, patches]``, encoded once per batch."""
        key = id(prompts)
        if key not in self._codes:
            with torch.no_grad():
                self._codes[key] = self.model.target_codes(prompts.canvases.to(self.device))
        return self._codes[key]

    @torch.no_grad()
    def rewards(self, prompts: PromptBatch, which: Tensor, masks: Tensor, kind: Reward) -> Tensor:
        """Reward of patching ``masks[i]`` into prompt ``which[i]``, ``[S]`` float64 (counted)."""
        self.budget.forwards += len(which)  # rows asked for (repeats and reused prefixes still count)
        if len(which) == 0:
            return torch.empty(0, dtype=torch.float64)
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
    """Hook ``z + g (mean - z)`` with one gate per cell: ``g [B or 1, pos, head]``."""

    def __init__(self, cell_gates: Tensor, values: Tensor) -> None:
        self.cell_gates, self.values = cell_gates[..., None], values

    def __call__(self, z: Tensor, hook: Any) -> Tensor:
        values = self.values.to(device=z.device, dtype=z.dtype)
        return z + self.cell_gates.to(z.dtype) * (values - z)


def gated_hooks(patcher: MeanPatcher, gates: Tensor) -> list[tuple[str, _GateZ]]:
    """Forward hooks of the relaxed patch: every site, each cell gated by its unit's gate."""
    gates = gates[None] if gates.dim() == 1 else gates
    if gates.shape[-1] != len(patcher.space):
        raise ValueError(f"gates cover {gates.shape[-1]} units, the space has {len(patcher.space)}")
    padded = torch.cat([gates, gates.new_zeros(gates.shape[0], 1)], dim=1).to(patcher.device)  # column U = no unit
    return [(site, _GateZ(padded[:, index], patcher.values(site))) for site, index in patcher.index.items()]


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
    """An atomic, config-checked checkpoint of one search (``torch.save`` of tensors and lists,
    read back with ``weights_only=True``)."""

    def __init__(self, path: str | Path | None, method: str, config: dict) -> None:
        self.path = Path(path) if path else None
        self.method, self.config = method, json.loads(json.dumps(config, default=str))

    def load(self) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        saved = read_resume_state(self.path)
        if saved.get("method") != self.method or saved.get("config") != self.config:
            raise SearchResumeError(
                f"{self.path} was written by {saved.get('method')} with config {saved.get('config')}, this search is "
                f"{self.method} with {self.config}", fix="use another checkpoint path, or delete it to start over")
        return saved

    def save(self, state: dict, budget: Budget) -> None:
        if self.path is None:
            return
        with atomic_write(self.path) as tmp:
            torch.save({**state, "method": self.method, "config": self.config, "budget": asdict(budget)}, tmp)


def config_dict(cfg: Any) -> dict:
    return asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else dict(cfg)
