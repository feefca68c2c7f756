"""``reinforce``: the official REINFORCE search for task vectors ("Finding Visual Task Vectors",
``evaluate/reinforce_train.py``).

One Bernoulli variable per unit with logit initialised at -1; each step draws ``samples`` unit
sets from the policy; sample ``i`` is scored on training prompt ``i mod n`` (in multi-task mode
on task ``i mod T``, with that task's means); the loss (-IoU or MSE) is z-scored within each
task, then over the batch, and the policy moves by Adam (lr 0.1) along
``mean_i(advantage_i * mean_u log p(x_iu))`` plus an optional sparsity penalty
``lambda * mean_u p_u``. Every ``eval_every`` steps one unit set sampled from the policy
(``select="sample"``, official) or the thresholded policy (``"threshold"``: the task vector
finally used) is scored on the held-out prompts; the best policy is kept. The task vector is
the best policy's units with ``p > 0.5``.

What differs from the official loop is speed, not arithmetic: the samples of a step go through
the model as batched forwards of the problem's one scoring engine (each row patching its own
units, distinct rows once, the clean prefix reused); the reward kind (``pixel``, the official;
``token``, no VQGAN decode) is the :class:`SearchProblem`'s, like every method's.

Runs are resumable: the step's samples come from a generator seeded by (seed, step), and the
policy, Adam state, best policy and seconds spent are saved in the search's
:class:`~interp.taskvectors.search.base.Checkpoint`, so a killed run resumes to the same result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp import distributed
from interp.data.source import derive_seed
from interp.taskvectors.search.base import Budget, Checkpoint, SearchProblem, SearchResult, config_dict

EPS = 1e-6
SELECTS = ("sample", "threshold")


@dataclass
class ReinforceConfig:
    """Official defaults (``reinforce_train.py``) unless noted."""

    steps: int = field(default=500, metadata={"help": "policy updates", "min": 1})
    samples: int = field(default=320, metadata={"help": "unit sets drawn (and scored) per step (the advantage is "
                                                          "z-scored over them: at least 2)", "min": 2})
    lr: float = field(default=0.1, metadata={"help": "Adam learning rate of the logits", "above": 0, "max": 1000})
    init: float = field(default=-1.0, metadata={"help": "initial logit of every unit (-1: p = 0.27)"})
    sparsity: float = field(default=0.0, metadata={"help": "penalty on the mean keep probability (official "
                                                           "regularization_strength)", "min": 0})
    eval_every: int = field(default=50, metadata={"help": "steps between held-out evaluations (the best is kept)", "min": 1})
    seed: int = field(default=0, metadata={"help": "seed of the samples"})
    # which unit set the held-out evaluation scores: "sample" (official: one draw of the policy)
    # or "threshold" (the units with p > 0.5, i.e. the task vector that is finally used)
    select: str = field(default="sample", metadata={"help": "what each evaluation scores: one sampled set "
                                                            "(official) or the thresholded policy", "choices": SELECTS})

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError(f"samples must be at least 2 (the advantage is z-scored over a step's samples), got {self.samples}")
        if self.select not in SELECTS:
            raise ValueError(f"select must be 'sample' or 'threshold', got {self.select!r}")


Config = ReinforceConfig


@dataclass
class PolicyState:
    """Everything a resumed run needs."""

    step: int
    logits: Tensor
    optimizer: dict
    best_logits: Tensor
    best_score: float
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def reinforce_loop(
    n_units: int,
    losses: Callable[[Tensor], Tensor],
    evaluate: Callable[[Tensor], float] | None,
    cfg: ReinforceConfig,
    groups: int = 1,
    checkpoint: Checkpoint | str | Path | None = None,
    progress: bool = True,
    init_logits: Tensor | None = None,
) -> PolicyState:
    """The optimiser, independent of any model.

    The policy starts at ``cfg.init`` for every unit (official), or at ``init_logits [U]``
    (a warm start, e.g. from an earlier policy).

    ``losses(samples [S, U] bool) -> [S]`` (lower is better; sample ``i`` belongs to group
    ``i mod groups``, z-scored within its group first); ``evaluate(mask [U]) -> score`` (higher
    is better) runs every ``eval_every`` steps on one sampled unit set (``cfg.select="sample"``)
    or on the thresholded policy (``"threshold"``). A ``checkpoint`` saved by another config,
    warm start or (for a :class:`Checkpoint` made by a stage) model, data or prompts is refused.
    """
    if init_logits is None:
        logits = torch.full((n_units,), cfg.init, dtype=torch.float64, requires_grad=True)
    else:
        logits = init_logits.detach().to(torch.float64).clone().requires_grad_(True)
        if logits.shape != (n_units,):
            raise ValueError(f"init_logits has shape {tuple(logits.shape)}; expected ({n_units},), one logit per unit")
    optimizer = torch.optim.Adam([logits], lr=cfg.lr)
    state = PolicyState(0, logits, optimizer.state_dict(), logits.detach().clone(), float("-inf"))
    config = {**config_dict(cfg), **({} if init_logits is None else {"init_logits": init_logits.tolist()})}
    store = Checkpoint.of(checkpoint, "reinforce", config)
    saved = store.load(("step", "logits", "optimizer", "best_logits", "best_score", "log"))
    if saved is not None and (tuple(saved["logits"].shape) != (n_units,) or tuple(saved["best_logits"].shape) != (n_units,)):
        from interp.errors import CheckpointError

        raise CheckpointError(f"{store.path} holds logits of shape {tuple(saved['logits'].shape)}, this search has {n_units} "
                              "units (damaged, or from another unit space)", fix=f"delete {store.path} to start over (or rerun with --force)")
    if saved is not None:
        with torch.no_grad():
            logits.copy_(saved["logits"])
        optimizer.load_state_dict(saved["optimizer"])
        state = PolicyState(saved["step"], logits, {}, saved["best_logits"], saved["best_score"], saved["log"],
                            float(saved.get("seconds", 0.0)))
    started = time.perf_counter() - state.seconds

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
        state.seconds = time.perf_counter() - started
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", units=f"{row['expected_units']:.0f}")
        if distributed.is_main() and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
            store.save({"step": state.step, "logits": logits.detach(), "optimizer": optimizer.state_dict(),
                        "best_logits": state.best_logits, "best_score": state.best_score, "log": state.log,
                        "seconds": state.seconds})  # rank 0 writes; every rank holds the same state
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


def run(problem: SearchProblem, cfg: ReinforceConfig = ReinforceConfig(), checkpoint: Checkpoint | str | Path | None = None,
        progress: bool = True, init_logits: Tensor | None = None) -> SearchResult:
    """REINFORCE on one task's problem (see the module docstring)."""
    return run_multitask({"task": problem}, cfg, checkpoint, progress, init_logits)


def run_multitask(problems: Mapping[str, SearchProblem], cfg: ReinforceConfig = ReinforceConfig(),
                  checkpoint: Checkpoint | str | Path | None = None, progress: bool = True,
                  init_logits: Tensor | None = None) -> SearchResult:
    """One policy for several tasks (the official multi-task mode; one task: :func:`run`).

    Sample ``i`` goes to task ``i mod T`` and to that task's training prompt ``(i // T) mod n``;
    held-out scores are the mean select reward of the evaluated unit set, averaged over tasks.
    The problems must share one unit space.
    """
    names = list(problems)
    first = problems[names[0]]
    for problem in problems.values():
        problem.model.eval()
        if problem.space.to_dict() != first.space.to_dict():
            raise ValueError("multi-task REINFORCE needs every task's problem over one unit space")

    def losses(samples: Tensor) -> Tensor:
        loss = torch.empty(len(samples), dtype=torch.float64)
        for k, task in enumerate(names):
            problem = problems[task]
            rows = torch.arange(k, len(samples), len(names))
            which = (rows // len(names)) % len(problem.train)
            loss[rows] = -problem.rewards(problem.train, which, samples[rows], problem.reward).double()
        return loss

    def evaluate(mask: Tensor) -> float:
        return sum(float(p.held_out_score(mask[None])[0]) for p in problems.values()) / len(names)

    state = reinforce_loop(len(first.space), losses, evaluate, cfg, groups=len(names), checkpoint=checkpoint,
                           progress=progress, init_logits=init_logits)
    # what the run spent, also over resumes (every log row is one step; eval rows scored the held-out sets)
    evals = sum("eval_score" in row for row in state.log)
    n_held = sum(len(p.held_out) for p in problems.values())
    budget = Budget(forwards=len(state.log) * cfg.samples + evals * n_held, select_forwards=evals * n_held)
    mask = state.best_logits > 0
    score = state.best_score
    if cfg.select != "threshold" or not torch.isfinite(torch.tensor(score)):  # score the kept set itself
        score = evaluate(mask)
        budget.forwards += n_held
        budget.select_forwards += n_held
    budget.seconds = state.seconds
    return SearchResult("reinforce", mask, torch.sigmoid(state.best_logits), score, budget, config_dict(cfg), state.log,
                        logits=state.logits.float(), best_logits=state.best_logits.float())
