"""``gradient``: a continuous relaxation of the unit mask, optimised by backpropagation.

One gate per unit, ``z' = z + g (mean - z)``, through the differentiable token reward, with a
sparsity term ``lambda * sum_u P(g_u > 0)``. Gates are hard-concrete (Louizos et al. 2018:
stretched, clipped binary-concrete samples, which reach exactly 0 and 1) or straight-through
(forward the thresholded gate, backward through the sigmoid). Every ``eval_every`` steps the
thresholded gates (``logit > 0``) are scored on the held-out prompts; the best set is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.data.source import derive_seed
from interp.taskvectors.search.base import Checkpoint, SearchProblem, SearchResult, config_dict

GAMMA, ZETA = -0.1, 1.1  # hard-concrete stretch interval


@dataclass
class GradientConfig:
    steps: int = field(default=60, metadata={"help": "gradient steps on the gate logits", "min": 1})
    lr: float = field(default=0.1, metadata={"help": "Adam learning rate of the gate logits", "above": 0, "max": 1000})
    init: float = field(default=0.0, metadata={"help": "initial gate logit (hard-concrete: log alpha)"})
    sparsity: float = field(default=0.002, metadata={"help": "penalty per expected open gate, in reward units", "min": 0})
    samples: int = field(default=2, metadata={"help": "gate samples per training prompt and step", "min": 1})
    temperature: float = field(default=2 / 3, metadata={"help": "hard-concrete temperature (beta)", "above": 0})
    estimator: str = field(default="hard_concrete", metadata={"help": "gate estimator", "choices": ("hard_concrete", "straight_through")})
    eval_every: int = field(default=5, metadata={"help": "steps between held-out scores of the thresholded gates", "min": 1})
    seed: int = field(default=0, metadata={"help": "seed of the gate samples"})

    def __post_init__(self) -> None:
        if self.estimator not in ("hard_concrete", "straight_through"):
            raise ValueError(f"estimator must be 'hard_concrete' or 'straight_through', got {self.estimator!r}")


Config = GradientConfig


def sample_gates(logits: Tensor, cfg: GradientConfig, rows: int, generator: torch.Generator) -> Tensor:
    """``[rows, U]`` gates in [0, 1], differentiable in ``logits``."""
    if cfg.estimator == "straight_through":
        p = torch.sigmoid(logits).expand(rows, -1)
        return (p > 0.5).to(p.dtype) + p - p.detach()
    u = torch.rand(rows, len(logits), generator=generator, dtype=logits.dtype).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((u.log() - (-u).log1p() + logits) / cfg.temperature)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


def open_probability(logits: Tensor, cfg: GradientConfig) -> Tensor:
    """``P(g > 0)`` per unit (hard-concrete), or the sigmoid (straight-through)."""
    if cfg.estimator == "straight_through":
        return torch.sigmoid(logits)
    return torch.sigmoid(logits - cfg.temperature * math.log(-GAMMA / ZETA))


def run(problem: SearchProblem, cfg: GradientConfig = GradientConfig(), checkpoint: str | Path | None = None,
        progress: bool = True) -> SearchResult:
    store = Checkpoint.of(checkpoint, "gradient", config_dict(cfg))
    logits = torch.full((len(problem.space),), cfg.init, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=cfg.lr)
    step, best_mask, best_score, log = 0, torch.zeros(len(logits), dtype=torch.bool), float("-inf"), []
    seen: dict[bytes, float] = {}  # held-out score of every thresholded set already scored
    saved = store.load()
    if saved is not None:
        with torch.no_grad():
            logits.copy_(saved["logits"])
        optimizer.load_state_dict(saved["optimizer"])
        step, best_mask, best_score, log = saved["step"], saved["best_mask"], saved["best_score"], saved["log"]
        problem.budget.add(saved["budget"])
        seen = dict(zip(saved["seen_masks"], saved["seen_scores"]))
    n = len(problem.train)
    which = torch.arange(n).repeat(cfg.samples)
    bar = tqdm(range(step, cfg.steps), desc="gradient", initial=step, total=cfg.steps, disable=not progress)
    for step in bar:
        with problem.budget.timing():
            generator = torch.Generator().manual_seed(derive_seed("gradient", cfg.seed, step))
            gates = sample_gates(logits, cfg, len(which), generator)
            reward = problem.gated_rewards(gates.float(), which=which).double().mean()
            loss = -reward + cfg.sparsity * open_probability(logits, cfg).sum()
            optimizer.zero_grad()
            loss.backward()
            problem.count_backward(len(which))
            optimizer.step()
            row = {"step": step, "train_reward": float(reward.detach()), "expected_units": float(open_probability(logits.detach(), cfg).sum())}
            if step % cfg.eval_every == 0 or step == cfg.steps - 1:
                mask = logits.detach() > 0
                key = mask.numpy().tobytes()
                if key not in seen:
                    seen[key] = float(problem.held_out_score(mask[None])[0])
                row.update(eval_score=seen[key], eval_units=int(mask.sum()))
                if seen[key] > best_score:
                    best_score, best_mask = seen[key], mask.clone()
            log.append(row)
        bar.set_postfix(reward=f"{row['train_reward']:.4f}", units=f"{row['expected_units']:.0f}")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            store.save({"step": step + 1, "logits": logits.detach(), "optimizer": optimizer.state_dict(),
                        "best_mask": best_mask, "best_score": best_score, "log": log,
                        "seen_masks": list(seen), "seen_scores": list(seen.values())}, problem.budget)
    return SearchResult("gradient", best_mask, logits.detach().clone(), best_score, problem.budget, config_dict(cfg), log)
