"""Policies as the explorer reads them: any saved policy mapped onto the explorer's unit space.

A policy of any granularity is read as per-(layer, head, group) probabilities
(:func:`~interp.viz.heatmaps.policy_frame`; token units take the max over their group, head and
layer units cover every group), so a zero-shot policy also drives a one-shot forward by group
name. :func:`run_policies` opens every search result under a run directory in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.taskvectors.units import UnitSpace
from interp.viz.heatmaps import policy_frame

#: the policy dropdown's "no policy" value (a string: ipywidgets shows None as no selection)
NO_POLICY = "(none)"


@dataclass(frozen=True)
class Policy:
    """A policy as the explorer uses it: its own unit space and per-unit probabilities."""

    space: UnitSpace
    probabilities: Tensor


def resolve_policy(model: Any, policy: Any, name: str = "policy") -> Policy:
    """A saved policy (:class:`interp.taskvectors.policy.Policy`, or the path of its file: the
    unit space comes with it) or ``(space, probabilities)``. A bare vector is refused: which
    units it covers cannot be told from its length."""
    from interp.taskvectors.policy import Policy as SavedPolicy

    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, Path)):
        policy = SavedPolicy.load(policy)
    if isinstance(policy, SavedPolicy):
        space, probabilities = policy.space, policy.probabilities(dtype=torch.float64)
    elif isinstance(policy, tuple) and len(policy) == 2 and isinstance(policy[0], UnitSpace):
        space, probabilities = policy
    else:
        raise ValueError(
            f"policy {name!r} is a bare vector of {torch.as_tensor(policy).numel()} values: which units it covers "
            "is unknown. Pass (UnitSpace, probabilities), a Policy (Policy.load('.../policy.safetensors')) or its path"
        )
    space.check_model(model)
    probabilities = torch.as_tensor(probabilities).detach().double().cpu().flatten()
    if probabilities.numel() != len(space):
        raise ValueError(f"policy {name!r}: {probabilities.numel()} probabilities for a space of {len(space)} units")
    if probabilities.min() < 0 or probabilities.max() > 1:
        raise ValueError(f"policy {name!r} must hold probabilities in [0, 1]; for logits pass torch.sigmoid(logits)")
    return Policy(space, probabilities)


def values_on(policy: Policy, space: UnitSpace) -> np.ndarray:
    """The policy's probability of each unit of ``space`` (0 for units it does not cover)."""
    frame = policy_frame(policy.space, policy.probabilities, agg="max")
    by_group = "group" in frame.columns
    cols = ["stack", "layer", "head", "group"] if by_group else ["stack", "layer", "head"]
    lookup = {tuple(row[:-1]): row[-1] for row in frame[cols + ["probability"]].itertuples(index=False, name=None)}
    return np.array([
        lookup.get((u.stack, u.layer, u.head, u.group) if by_group else (u.stack, u.layer, u.head), 0.0)
        for u in space.units
    ])


def run_policies(run_dir: str | Path) -> dict[str, Any]:
    """Every saved search result of a run, ``{"<task>" or "<task> (<method>)": Policy}``.

    Reads ``RUN/<method>/<task>/policy.safetensors`` (REINFORCE's are named by task alone, so
    the explorer's policy follows the task); pass the result as ``policies=`` to the explorer.
    """
    from interp.taskvectors.policy import Policy as SavedPolicy

    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run directory {root} not found; give the folder `interp demo --out` wrote")
    found = {}
    for path in sorted(root.glob("*/*/policy.safetensors")):
        method, task = path.parent.parent.name, path.parent.name
        found[task if method == "reinforce" else f"{task} ({method})"] = SavedPolicy.load(path)
    if not found:
        raise FileNotFoundError(f"no <method>/<task>/policy.safetensors under {root}; run `interp search --run {root}` first")
    return found


__all__ = ["NO_POLICY", "Policy", "resolve_policy", "values_on", "run_policies"]
