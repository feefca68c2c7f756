"""Does the training reward measure what the task is scored on? Reward agreement, measured.

A search optimises a *training* reward (``token``: minus the code cross-entropy, no decode;
``soft``: the differentiable soft decode) and is judged on the official pixel metric (IoU or
-MSE, ``pixel``). Where the two disagree, every reward-driven method optimises something else
than what it is scored on. :func:`reward_agreement` measures it for one task:

* ``masks`` random unit masks, mask ``m`` of density ``m / (masks - 1)`` (every density from 0,
  nothing patched, to 1, every unit patched), each scored on every prompt of a batch with the
  reward and with the reference (official) reward, batched through the scoring engine
  (:meth:`SearchProblem.rewards <interp.taskvectors.search.base.SearchProblem.rewards>`:
  :class:`~interp.taskvectors.patched_rows.PatchedRows`, no forward loop of its own);
* **Pearson** and **Spearman** correlation of the two rewards' per-mask means (over prompts);
* **sign agreement of REINFORCE advantages**: masks are grouped ``batch`` at a time by density
  (like the samples of one policy), every (mask, prompt) row of a group is z-scored within its
  group under each reward (REINFORCE's advantage, :func:`~interp.taskvectors.search.reinforce.reinforce_loop`),
  and the share of rows whose advantage has the same sign under both rewards is reported
  (0.5: a coin; 1: every update pushes the same way).

**Threshold.** :data:`MIN_PEARSON` = 0.5: below it the training reward explains under a quarter
(``r^2 < 0.25``) of the variation of the metric across unit sets, and a search on it is warned
about. On the demo's data (tiny model, synthetic:1234, fold 0, group units, 48 masks x 16
held-out search prompts; ``interp collect`` then ``interp agreement --n-collect 64
--n-candidates 160 --n-search-eval 16``) the token reward agrees at +0.88 (segmentation,
low-light), where token-reward searches find task vectors, and at -0.02 (in-painting) and
+0.08 (colorization), where they find none although pixel-reward searches do (issue 22); the
soft reward agrees at +0.98, +0.98, +0.73, +0.76 at softmax temperature 1 and at +0.995,
+0.999, +0.975, +0.963 at the default 0.25 (:data:`interp.scoring.SOFT_TEMPERATURE`). 0.5
separates the two groups with room on either side. NaN (a reward that does not vary over the masks) also warns.

The advantage sign agreement stays above 0.5 even for an uncorrelated reward: within a
batch, rewards vary with the prompt as much as with the unit set, and both rewards rank
prompts alike (0.60-0.62 for the token reward on in-painting and colorization, 0.71-0.72 on
the other two; 0.89-0.93 for the soft reward).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence, Union

import torch
from torch import Tensor

from interp import distributed
from interp.data.source import derive_seed

#: below this Pearson correlation with the official metric a training reward is warned about
MIN_PEARSON = 0.5

Reward = Union[str, Callable[..., Tensor]]


class RewardDisagreement(UserWarning):
    """A search is about to optimise a reward that agrees poorly with the task's metric."""


@dataclass
class Agreement:
    """How one reward agrees with the reference (official) reward on one task's unit sets."""

    task: str
    reward: str
    reference: str
    pearson: float
    spearman: float
    sign_agreement: float
    masks: int
    prompts: int
    forwards: int  # prompt-forwards spent measuring it (both rewards)

    @property
    def low(self) -> bool:
        """Below :data:`MIN_PEARSON` (or not measurable)."""
        return not self.pearson >= MIN_PEARSON

    def warning(self) -> str | None:
        """A one-paragraph warning when :attr:`low`, else None."""
        if not self.low:
            return None
        return (f"{self.task}: the {self.reward} reward agrees poorly with the task metric ({self.reference}): "
                f"Pearson {self.pearson:+.2f}, Spearman {self.spearman:+.2f} over {self.masks} random unit sets, "
                f"REINFORCE advantages of the same sign {self.sign_agreement:.0%} of the time (threshold: Pearson "
                f"{MIN_PEARSON}). A search on it optimises something other than what it is scored on: use "
                f"--reward pixel (or a reward that agrees, see `interp agreement`).")

    def as_row(self) -> dict[str, Any]:
        return asdict(self) | {"low": self.low, "threshold": MIN_PEARSON}


def random_masks(n_units: int, n_masks: int, seed: int = 0) -> Tensor:
    """``[n_masks, U]`` bool: mask ``m`` keeps each unit with probability ``m / (n_masks - 1)``."""
    generator = torch.Generator().manual_seed(derive_seed("agreement", seed))
    density = torch.linspace(0.0, 1.0, n_masks, dtype=torch.float64)[:, None] if n_masks > 1 else torch.full((1, 1), 0.5)
    return torch.rand(n_masks, n_units, generator=generator, dtype=torch.float64) < density


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two vectors (pairs with a NaN dropped); NaN if either is constant."""
    keep = ~(x.isnan() | y.isnan())
    x, y = x[keep].double(), y[keep].double()
    if len(x) < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denominator = (x.square().sum() * y.square().sum()).sqrt()
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def ranks(x: Tensor) -> Tensor:
    """Ranks 0..n-1 of a vector, ties given their mean rank."""
    order = torch.sort(x.double(), stable=True)
    out = torch.empty(len(x), dtype=torch.float64)
    values, start = order.values, 0
    while start < len(x):
        stop = start
        while stop + 1 < len(x) and values[stop + 1] == values[start]:
            stop += 1
        out[order.indices[start : stop + 1]] = (start + stop) / 2
        start = stop + 1
    return out


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman rank correlation (Pearson of the tie-averaged ranks; NaN pairs dropped)."""
    keep = ~(x.isnan() | y.isnan())
    return pearson(ranks(x[keep]), ranks(y[keep])) if int(keep.sum()) > 1 else float("nan")


def sign_agreement(rewards: Tensor, reference: Tensor, groups: Tensor) -> float:
    """Share of rows whose REINFORCE advantage (reward z-scored within its group) has the same
    sign under ``rewards`` and ``reference`` (rows with a NaN, or a zero reference advantage, skipped)."""
    agree, total = 0, 0
    for g in groups.unique().tolist():
        rows = (groups == g) & ~(rewards.isnan() | reference.isnan())
        if int(rows.sum()) < 2:
            continue
        a, b = rewards[rows].double(), reference[rows].double()
        tol = 1e-9 * max(float(b.abs().max()), 1e-300)  # rounding-level differences are no advantage
        a, b = a - a.mean(), b - b.mean()  # the sign of a z-score is the sign of the centred value
        counted = b.abs() > tol
        agree += int(((a > 0) == (b > 0))[counted].sum())
        total += int(counted.sum())
    return agree / total if total else float("nan")


def reward_agreement(problem: Any, rewards: Sequence[Reward] = ("token",), reference: Reward = "pixel",
                     n_masks: int = 48, batch: int = 8, prompts: Any = None, seed: int = 0,
                     names: Sequence[str] | None = None) -> list[Agreement]:
    """The agreement of each of ``rewards`` with ``reference`` on ``problem``'s task, one row each.

    ``problem``: a :class:`~interp.taskvectors.search.base.SearchProblem` (its unit space, means
    and scoring engine); ``prompts``: the batch the masks are scored on (default: the problem's
    held-out search prompts). A reward equal to the reference is scored once and compared with
    itself. The problem's budget is left as it was: what the measurement spent is in ``forwards``.
    """
    prompts = problem.held_out if prompts is None else prompts
    n = len(prompts)
    masks = random_masks(len(problem.space), n_masks, seed)
    which = torch.arange(n).repeat(n_masks)
    rows = masks.repeat_interleave(n, dim=0)
    groups = torch.arange(n_masks).repeat_interleave(n) // max(1, batch)  # masks of neighbouring density
    before = problem.budget.forwards, problem.budget.select_forwards
    scored: dict[int, Tensor] = {}

    def score(kind: Reward) -> Tensor:
        key = id(kind) if callable(kind) else hash(kind)
        if key not in scored:
            scored[key] = problem.rewards(prompts, which, rows, kind)
        return scored[key]

    try:
        ref = score(reference)
        ref_means = ref.view(n_masks, n).nanmean(dim=1)
        out = []
        names = list(names) if names is not None else [_name(r) for r in rewards]
        for kind, name in zip(rewards, names):
            values = score(kind)
            means = values.view(n_masks, n).nanmean(dim=1)
            out.append(Agreement(prompts.task, name, _name(reference), pearson(means, ref_means), spearman(means, ref_means),
                                 sign_agreement(values, ref, groups), n_masks, n, 0))
        spent = problem.budget.forwards - before[0]
    finally:
        problem.budget.forwards, problem.budget.select_forwards = before
    for row in out:
        row.forwards = spent
    return out


def _name(reward: Reward) -> str:
    return reward if isinstance(reward, str) else getattr(reward, "__name__", "custom")


def warn_if_low(agreement: Agreement, stacklevel: int = 2) -> None:
    """Issue a :class:`RewardDisagreement` warning (also printed by the CLI) when the agreement is low."""
    message = agreement.warning()
    if message:
        warnings.warn(message, RewardDisagreement, stacklevel=stacklevel + 1)


def record(run: Any, rows: Sequence[Agreement], name: str = "agreement") -> Any:
    """Merge ``rows`` into the run's ``<name>.csv`` (a row per (task, reward); newer rows replace
    older ones of the same task and reward); returns the table."""
    import pandas as pd

    path = run.path / f"{name}.csv"
    new = pd.DataFrame([r.as_row() for r in rows])
    if path.exists():
        old = pd.read_csv(path)
        keys = set(zip(new["task"], new["reward"]))
        old = old[[(t, r) not in keys for t, r in zip(old["task"], old["reward"])]]
        new = pd.concat([old, new], ignore_index=True)
    run.write_table(name, new)
    return new


#: rewards from cheapest to dearest per forward: the token reward needs no decode; the soft
#: reward decodes every row (nothing to cache) but is differentiable; the pixel reward is the
#: official metric itself (decodes cached by code grid)
FORWARD_ORDER = ("token", "pixel")
DIFFERENTIABLE_ORDER = ("token", "soft")


def pick_reward(agreements: Sequence[Agreement], differentiable: bool = False) -> str:
    """The reward a search should train on, from measured agreements of one task.

    The cheapest reward of :data:`FORWARD_ORDER` (``differentiable``: :data:`DIFFERENTIABLE_ORDER`,
    for ``gradient`` and ``attribution``) whose Pearson agreement with the official reward is at
    least :data:`MIN_PEARSON`; otherwise the official ``pixel`` reward (``differentiable``: the
    best-agreeing differentiable reward, as none is exact). A reward not measured is not picked,
    except ``pixel``, which agrees with itself by definition.
    """
    by = {a.reward: a for a in agreements}
    order = DIFFERENTIABLE_ORDER if differentiable else FORWARD_ORDER
    for name in order:
        if name == "pixel" or (name in by and not by[name].low):
            return name
    if not differentiable:
        return "pixel"
    measured = [by[n] for n in order if n in by and by[n].pearson == by[n].pearson]
    return max(measured, key=lambda a: a.pearson).reward if measured else order[-1]


#: masks measured at the start of a search (fewer than ``interp agreement``'s 48: it runs every search)
SEARCH_MASKS = 24


def search_agreement(problem: Any, run: Any = None, n_masks: int = SEARCH_MASKS, batch: int = 8,
                     warn: bool = True) -> Agreement | None:
    """At the start of a search: the agreement of ``problem.reward`` with the official pixel reward.

    Read back from the run's ``agreement.csv`` when it holds the task and reward (measured with
    at least ``n_masks`` masks), else measured on the problem's held-out prompts and recorded
    there. Warned about (:class:`RewardDisagreement`) when low. None for a callable reward or a
    model without pixels (nothing to compare with). The official ``pixel`` reward is the metric
    itself: its row says so (agreement 1 by definition, ``masks=0``: nothing measured, nothing spent).
    """
    import pandas as pd

    reward = problem.reward
    if callable(reward) or not getattr(problem.model, "has_pixels", False):
        return None
    task = problem.held_out.task
    if reward == "pixel":
        return Agreement(task, "pixel", "pixel", 1.0, 1.0, 1.0, 0, len(problem.held_out), 0)
    path = None if run is None else run.path / "agreement.csv"
    if path is not None and path.exists():
        table = pd.read_csv(path)
        match = table[(table.task == task) & (table.reward == reward) & (table.masks >= n_masks)]
        if not match.empty:
            row = match.iloc[-1]
            found = Agreement(task, reward, str(row["reference"]), float(row["pearson"]), float(row["spearman"]),
                              float(row["sign_agreement"]), int(row["masks"]), int(row["prompts"]), int(row["forwards"]))
            if warn:
                warn_if_low(found, stacklevel=2)
            return found
    (found,) = reward_agreement(problem, [reward], "pixel", n_masks, batch)
    if run is not None and distributed.is_main():  # every rank measured (sharded rows); rank 0 writes
        record(run, [found])
    if warn:
        warn_if_low(found, stacklevel=2)
    return found


#: the reward kind that asks the search to choose from measured agreement
AUTO = "auto"


def choose_reward(problem: Any, run: Any = None, differentiable: bool = False) -> Agreement | None:
    """``reward="auto"``: set ``problem.reward`` to the cheapest reward that agrees with the metric.

    The token reward's agreement is measured (or read from the run); where it is below the
    threshold, a forward-only method trains on the official pixel reward and a differentiable one
    (``gradient``, ``attribution``) on the soft reward, whose agreement is then measured too
    (:func:`pick_reward`). Returns the chosen reward's agreement (warned about if low).
    """
    problem.reward = "token"
    measured = [search_agreement(problem, run, warn=False)]
    if measured[0] is None:  # nothing to compare with (no pixels): keep the token reward
        return None
    if measured[0].low and differentiable:
        problem.reward = "soft"
        measured.append(search_agreement(problem, run, warn=False))
    problem.reward = pick_reward(measured, differentiable)
    chosen = next((a for a in measured if a.reward == problem.reward), None) or search_agreement(problem, run, warn=False)
    warn_if_low(chosen, stacklevel=2)
    return chosen


#: methods that follow the reward's gradient (``auto`` picks a differentiable reward for them)
DIFFERENTIABLE_METHODS = ("gradient", "attribution")


def check_search_reward(problem: Any, run: Any = None, method: str = "") -> Agreement | None:
    """The one call at the start of every search: ``reward="auto"`` is resolved
    (:func:`choose_reward`), any other reward's agreement is measured or read back
    (:func:`search_agreement`) and warned about when low. Returns the agreement of the reward
    the search will train on (None where nothing can be compared)."""
    if problem.reward == AUTO:
        return choose_reward(problem, run, differentiable=method in DIFFERENTIABLE_METHODS)
    return search_agreement(problem, run)
