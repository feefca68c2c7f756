"""Policies and per-unit values as the explorer reads them, mapped onto its unit space.

A policy is the one :class:`interp.taskvectors.policy.Policy` (what every search writes; the
explorer reads it only through :meth:`~interp.taskvectors.policy.Policy.probabilities`). Any
granularity is read as per-(layer, head, group) probabilities
(:func:`~interp.viz.heatmaps.policy_frame`; token units take the max over their group, head and
layer units cover every group), so a zero-shot policy also drives a one-shot forward by group
name. :func:`run_policies` opens a run's search results of every method (or one) through
:class:`~interp.run.RunDir`; :func:`unit_values` maps any per-unit table (a sweep's ``delta``)
onto a unit space the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from interp.taskvectors.policy import Policy
from interp.taskvectors.units import UnitSpace
from interp.viz.heatmaps import policy_frame

#: the policy dropdown's "no policy" value (a string: ipywidgets shows None as no selection)
NO_POLICY = "(none)"


def resolve_policy(model: Any, policy: Any, name: str = "policy") -> Policy:
    """A :class:`~interp.taskvectors.policy.Policy`, the path of its file, or ``(space, probabilities)``
    (0/1 values: the unit set, :meth:`~interp.taskvectors.policy.Policy.from_mask`; else the policy of
    those probabilities, logits ``logit(p)``). A bare vector is refused: which units it covers cannot
    be told from its length."""
    if isinstance(policy, (str, Path)):
        policy = Policy.load(policy)
    if isinstance(policy, tuple) and len(policy) == 2 and isinstance(policy[0], UnitSpace):
        space, probabilities = policy
        probabilities = torch.as_tensor(probabilities).detach().double().cpu().flatten()
        if probabilities.numel() != len(space):
            raise ValueError(f"policy {name!r}: {probabilities.numel()} probabilities for a space of {len(space)} units")
        if probabilities.isnan().any() or probabilities.min() < 0 or probabilities.max() > 1:
            raise ValueError(f"policy {name!r} must hold probabilities in [0, 1]; for logits pass torch.sigmoid(logits)")
        meta = {"method": "given", "name": name}
        if ((probabilities == 0) | (probabilities == 1)).all():  # a unit set, e.g. a top-k
            policy = Policy.from_mask(space, probabilities.bool(), meta)
        else:
            policy = Policy(space, torch.logit(probabilities), metadata=meta)
    if not isinstance(policy, Policy):
        raise ValueError(
            f"policy {name!r} is a {type(policy).__name__} (a bare vector of {torch.as_tensor(policy).numel()} values?): "
            "which units it covers is unknown. Pass (UnitSpace, probabilities), a Policy "
            "(Policy.load('.../policy.safetensors')) or its path"
        )
    policy.space.check_model(model)
    return policy


def unit_values(frame: pd.DataFrame, space: UnitSpace, column: str, missing: float = 0.0) -> np.ndarray:
    """``frame[column]`` of each unit of ``space``, matched by (stack, layer, head, group), or by
    (stack, layer, head) when ``frame`` has no token groups (``missing`` where it has no row)."""
    by_group = "group" in frame.columns and frame["group"].notna().any()
    cols = ["stack", "layer", "head", "group"] if by_group else ["stack", "layer", "head"]
    lookup = {tuple(row[:-1]): row[-1] for row in frame[cols + [column]].itertuples(index=False, name=None)}
    return np.array([lookup.get((u.stack, u.layer, u.head, u.group) if by_group else (u.stack, u.layer, u.head), missing)
                     for u in space.units], dtype=float)


def values_on(policy: Policy, space: UnitSpace) -> np.ndarray:
    """The policy's probability of each unit of ``space`` (0 for units it does not cover)."""
    return unit_values(policy_frame(policy.space, policy.probabilities(dtype=torch.float64), agg="max"), space, "probability")


def run_policies(run_dir: Any, method: str | None = None) -> dict[str, Policy]:
    """A run's saved search results, ``{"<task> (<method>[, seed k])": Policy}``, of every method (or ``method``).

    Read through :class:`~interp.run.RunDir` (``run.policy_path(task, method, seed)`` for each method of
    :data:`interp.taskvectors.search.METHODS` and each (task, seed) it searched); the explorer offers each
    task's policies when that task is chosen. Pass the result as ``policies=`` to the explorer.
    """
    from interp.errors import InputError
    from interp.run import MissingArtifactError, RunDir
    from interp.taskvectors.search import METHODS

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise MissingArtifactError(f"run directory {run.path} not found", fix="give the folder `interp demo --out` (or --run) wrote")
    if method is not None and method not in METHODS:
        raise InputError(f"unknown search method {method!r}", fix=f"choose one of {', '.join(METHODS)}")
    found = {}
    for m in [method] if method else list(METHODS):
        for task, seed in run.searches(m):
            found[policy_name(task, m, seed)] = Policy.load(run.policy_path(task, m, seed))
    if not found:
        which = f"--method {method}" if method else "--method M"
        raise MissingArtifactError(f"no search results ({method or 'any method'}) in {run.path}",
                         fix=f"run `interp search --run {run.path} {which}` first")
    return found


def policy_name(task: str, method: str, seed: int = 0) -> str:
    """How the explorer names a run's policy: ``"lowlight (reinforce)"``, ``"lowlight (greedy, seed 2)"``
    (seed 0, the pipeline's own search prompts, is not named)."""
    return f"{task} ({method})" if seed == 0 else f"{task} ({method}, seed {seed})"


def policy_task(name: str, policy: Policy) -> str | None:
    """The task a policy was searched for (its metadata, else a name like ``"lowlight (...)"``), or None."""
    return policy.task or (name.split(" (")[0] if " (" in name else None)


__all__ = ["NO_POLICY", "policy_name", "policy_task", "resolve_policy", "run_policies", "unit_values", "values_on"]
