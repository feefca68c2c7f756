"""REINFORCE search for task vectors: which units, patched with task means, do the task?

The official algorithm of "Finding Visual Task Vectors" (``evaluate/reinforce_train.py``):
one Bernoulli variable per unit with logit initialised at -1; each step draws 320 unit sets
from the policy; sample ``i`` is scored on training prompt ``i mod n`` (in multi-task mode
on task ``i mod T``, with that task's means); the loss (-IoU or MSE) is z-scored within each
task, then over the batch, and the policy moves by Adam (lr 0.1) along
``mean_i(advantage_i * mean_u log p(x_iu))`` plus an optional sparsity penalty
``lambda * mean_u p_u``. Every 50 steps one unit set sampled from the policy is scored on
held-out prompts; the best policy is kept.

What differs is speed, not arithmetic: the official loop runs one forward per sample; here
all samples of a task go through the model in batched forwards, each row patching its own
units (:class:`~interp.taskvectors.patching.MeanPatcher`). Two rewards are offered:
``pixel`` (the official: decode the predicted codes with the VQGAN, IoU or -MSE on the target
cell) and ``token`` (minus the cross-entropy of the target cell's VQGAN codes: no VQGAN
decoding, which dominates the pixel reward's cost).

Runs are resumable: the step's samples come from a generator seeded by (seed, step), and the
policy, Adam state and best policy are checkpointed atomically, so a killed run resumes to
the same result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp import distributed
from interp.canvas import PromptLayout, get_layout
from interp.data.source import derive_seed
from interp.data.tasks import PromptBatch
from interp.io import atomic_write, write_csv
from interp.provenance import check_resume, normalized
from interp.models.checkpoint import read_resume_state
from interp.models.decode_cache import DecodeCache
from interp.models.mae_vqgan import MAEVQGAN
from interp.models.pixels import check_decode
from interp.scoring import Scorer, check_kind
from interp.taskvectors.patched_rows import PatchedRows
from interp.taskvectors.patching import Means, MeanPatcher
from interp.taskvectors.units import UnitSpace

EPS = 1e-6


@dataclass
class ReinforceConfig:
    """Official defaults (``reinforce_train.py``) unless noted."""

    steps: int = 500
    samples: int = 320  # unit sets per step
    lr: float = 0.1
    init: float = -1.0
    sparsity: float = 0.0  # the official regularization_strength
    eval_every: int = 50
    reward: str = "pixel"  # "pixel" (official) or "token"
    decode: str = "official"  # pixel reward: "official" full-grid decode or the faster "band"
    chunk: int = 320  # rows per forward (memory)
    seed: int = 0
    # which unit set the held-out evaluation scores: "sample" (official: one draw of the policy)
    # or "threshold" (the units with p > 0.5, i.e. the task vector that is finally used)
    select: str = "sample"

    def __post_init__(self) -> None:
        check_kind(self.reward)
        check_decode(self.decode)
        if self.select not in ("sample", "threshold"):
            raise ValueError(f"select must be 'sample' or 'threshold', got {self.select!r}")


@dataclass
class TaskSearch:
    """What one task contributes to a search: its means, training and held-out prompts."""

    means: Means
    train: PromptBatch
    held_out: PromptBatch


@dataclass
class PolicyState:
    """Everything a resumed run needs."""

    step: int
    logits: Tensor
    optimizer: dict
    best_logits: Tensor
    best_score: float
    log: list[dict] = field(default_factory=list)


def reinforce_loop(
    n_units: int,
    losses: Callable[[Tensor], Tensor],
    evaluate: Callable[[Tensor], float] | None,
    cfg: ReinforceConfig,
    groups: int = 1,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    provenance: Mapping | None = None,
    init_logits: Tensor | None = None,
) -> PolicyState:
    """The optimiser, independent of any model.

    The policy starts at ``cfg.init`` for every unit (official), or at ``init_logits [U]``
    (a warm start, e.g. from an earlier policy).

    ``provenance`` (what makes this search: model, data, config) is saved in the checkpoint; a
    checkpoint made with another one is refused (:class:`~interp.errors.ResumeConflict`), and so
    is one made with another ``cfg``.

    ``losses(samples [S, U] bool) -> [S]`` (lower is better; sample ``i`` belongs to group
    ``i mod groups``, z-scored within its group first); ``evaluate(mask [U]) -> score`` (higher
    is better) runs every ``eval_every`` steps on one sampled unit set (``cfg.select="sample"``)
    or on the thresholded policy (``"threshold"``).
    """
    if init_logits is None:
        logits = torch.full((n_units,), cfg.init, dtype=torch.float64, requires_grad=True)
    else:
        logits = init_logits.detach().to(torch.float64).clone().requires_grad_(True)
        if logits.shape != (n_units,):
            raise ValueError(f"init_logits has shape {tuple(logits.shape)}; expected ({n_units},), one logit per unit")
    optimizer = torch.optim.Adam([logits], lr=cfg.lr)
    state = PolicyState(0, logits, optimizer.state_dict(), logits.detach().clone(), float("-inf"))
    path = Path(checkpoint) if checkpoint else None
    made_by = normalized({"reinforce": asdict(cfg), **dict(provenance or {}),
                          **({} if init_logits is None else {"init_logits": init_logits.tolist()})})
    if path is not None and path.exists():
        saved = read_resume_state(path, ("step", "logits", "optimizer", "best_logits", "best_score", "log"))
        check_resume(saved.get("provenance"), made_by, path, path.parent)
        with torch.no_grad():
            logits.copy_(saved["logits"])
        optimizer.load_state_dict(saved["optimizer"])
        state = PolicyState(saved["step"], logits, {}, saved["best_logits"], saved["best_score"], saved["log"])

    bar = tqdm(range(state.step, cfg.steps), desc="REINFORCE", initial=state.step, total=cfg.steps, disable=not progress)
    for step in bar:
        generator = torch.Generator().manual_seed(derive_seed("reinforce", cfg.seed, step))
        probs = torch.sigmoid(logits).clamp(EPS, 1 - EPS)
        samples = torch.bernoulli(probs.detach().expand(cfg.samples, n_units), generator=generator).bool()
        loss = losses(samples).double()
        row: dict = {"step": step, "train_loss": float(loss.mean()), "expected_units": float(probs.detach().sum())}
        advantage = _zscore_groups(loss, groups)
        # this rank's samples (all of them on one process); gradients summed over ranks
        rows = distributed.shard_indices(cfg.samples)
        mine = samples[rows]
        log_prob = torch.where(mine, probs.log(), (1 - probs).log()).mean(dim=1)
        objective = (log_prob * advantage[rows]).sum() / cfg.samples
        if distributed.is_main():
            objective = objective + cfg.sparsity * probs.mean()
        optimizer.zero_grad()
        objective.backward()
        distributed.all_reduce_gradients([logits])
        optimizer.step()
        if evaluate is not None and step % cfg.eval_every == 0:  # as the official: after the update
            with torch.no_grad():
                probs = torch.sigmoid(logits).clamp(EPS, 1 - EPS)
                eval_mask = probs > 0.5 if cfg.select == "threshold" else torch.bernoulli(probs, generator=generator).bool()
            score = evaluate(eval_mask)
            row.update(eval_score=score, eval_units=int(eval_mask.sum()))
            if score > state.best_score:
                state.best_score, state.best_logits = score, logits.detach().clone()
        state.log.append(row)
        state.step = step + 1
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", units=f"{row['expected_units']:.0f}")
        if path is not None and distributed.is_main() and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
            _save(path, state, logits, optimizer, made_by)  # rank 0 writes; every rank holds the same state
    state.logits = logits.detach()
    state.optimizer = optimizer.state_dict()
    return state


def _zscore_groups(loss: Tensor, groups: int) -> Tensor:
    """Official advantage: z-score within each task group, then over the whole batch."""
    loss = loss.clone()
    if groups > 1:
        for g in range(groups):
            part = loss[g::groups]
            loss[g::groups] = (part - part.mean()) / (part.std() + EPS)
    return (loss - loss.mean()) / (loss.std() + EPS)


def _save(path: Path, state: PolicyState, logits: Tensor, optimizer: torch.optim.Optimizer, provenance: dict) -> None:
    with atomic_write(path) as tmp:
        torch.save(
            {"step": state.step, "logits": logits.detach(), "optimizer": optimizer.state_dict(),
             "best_logits": state.best_logits, "best_score": state.best_score, "log": state.log, "provenance": provenance},
            tmp,
        )


# --------------------------------------------------------------------------------------------
# the model-based objective


class PatchedScorer:
    """Scores unit sets on prompts of one task with one :class:`~interp.scoring.Scorer`.

    The forwards go through :class:`~interp.taskvectors.patched_rows.PatchedRows` (each
    distinct (prompt, unit set) once, the unpatched prefix reused) and the pixel reward's
    decodes through a :class:`~interp.models.decode_cache.DecodeCache` (each distinct code
    grid once, across steps): less work, bit-identical rewards. ``savings=False`` runs every
    row as a full patched forward with a plain decode (the reference the tests compare with).
    """

    def __init__(self, model: MAEVQGAN, space: UnitSpace, means: Means, layout: PromptLayout | str, reward: str, chunk: int,
                 decode: str = "official", savings: bool = True, decode_cache_bytes: int = 256 << 20) -> None:
        self.model = model
        self.layout = get_layout(layout, model.grid)
        self.patcher = MeanPatcher(model, means, self.layout, space)
        self.rows = PatchedRows(self.patcher, chunk, dedupe=savings, reuse_prefix=savings)
        self.decoder = DecodeCache(model.vqgan.decode_codes, decode_cache_bytes) \
            if savings and reward == "pixel" and model.vqgan is not None else None
        self.reward = reward
        self.chunk = chunk
        self.device = next(model.parameters()).device
        self._code_cache: dict[int, Tensor] = {}
        self._task: str | None = None
        self._scorer: Scorer | None = None
        self.decode = decode

    def scorer(self, task: str) -> Scorer:
        if self._task != task:
            self._task = task
            self._scorer = Scorer(self.model, task, self.layout, self.reward, self.decode, decoder=self.decoder)
        return self._scorer

    @torch.no_grad()
    def rewards(self, prompts: PromptBatch, which: Tensor, masks: Tensor) -> Tensor:
        """Reward (higher is better) of patching ``masks[i]`` into prompt ``which[i]``: ``[S]``.

        Under :func:`interp.distributed.init` the rows are split over ranks and gathered back.
        """
        if distributed.active():
            n, rows = len(which), distributed.shard_indices(len(which))
            with distributed.local():
                local = self.rewards(prompts, which[rows], masks[rows]) if len(rows) else torch.empty(0)
            return distributed.gather_rows(local, n)
        codes = self._codes(prompts)
        scorer = self.scorer(prompts.task)

        def reward(logits: Tensor, canvases: Tensor, rows: Tensor) -> Tensor:
            return scorer.rewards(canvases, logits, None if codes is None else codes[rows])

        return self.rows(prompts, which, masks, reward)

    def _codes(self, prompts: PromptBatch) -> Tensor | None:
        """The prompts' VQGAN codes, encoded once per prompt batch (token reward only)."""
        if self.reward != "token":
            return None
        key = id(prompts)
        if key not in self._code_cache:
            self._code_cache[key] = self.model.vqgan.encode_to_codes(prompts.canvases.to(self.device))
        return self._code_cache[key]


def search(
    model: MAEVQGAN,
    space: UnitSpace,
    tasks: Mapping[str, TaskSearch],
    cfg: ReinforceConfig = ReinforceConfig(),
    layout: PromptLayout | str = "zero_shot",
    checkpoint: str | Path | None = None,
    log_csv: str | Path | None = None,
    progress: bool = True,
    provenance: Mapping | None = None,
) -> PolicyState:
    """REINFORCE over ``space`` for one task or several (multi-task: one policy for all).

    Sample ``i`` goes to task ``i mod T`` and to that task's training prompt
    ``(i // T) mod n``; held-out scores are the mean task reward (IoU or -MSE, pixel space)
    of the evaluated unit set, averaged over tasks.
    """
    names = list(tasks)
    scorers = {t: PatchedScorer(model, space, tasks[t].means, layout, cfg.reward, cfg.chunk, cfg.decode) for t in names}
    held_out_scorers = {t: PatchedScorer(model, space, tasks[t].means, layout, "pixel", cfg.chunk, cfg.decode) for t in names}

    def losses(samples: Tensor) -> Tensor:
        loss = torch.empty(len(samples), dtype=torch.float64)
        for k, task in enumerate(names):
            rows = torch.arange(k, len(samples), len(names))
            which = (rows // len(names)) % len(tasks[task].train)
            loss[rows] = -scorers[task].rewards(tasks[task].train, which, samples[rows]).double()
        return loss

    def evaluate(mask: Tensor) -> float:
        scores = []
        for task in names:
            prompts = tasks[task].held_out
            reward = held_out_scorers[task].rewards(prompts, torch.arange(len(prompts)), mask[None].expand(len(prompts), -1))
            scores.append(float(reward.nanmean()))
        return sum(scores) / len(scores)

    model.eval()
    state = reinforce_loop(len(space), losses, evaluate, cfg, groups=len(names), checkpoint=checkpoint, progress=progress,
                           provenance=provenance)
    if log_csv is not None and distributed.is_main():
        write_log(log_csv, state.log)
    return state


def write_log(path: str | Path, rows: Sequence[dict]) -> None:
    write_csv(rows, path)

