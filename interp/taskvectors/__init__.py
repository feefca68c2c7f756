"""Visual task vectors: activation statistics, unit spaces, batched mean patching, taskness.

The pipeline, one module a step::

    stats = collect(model, one_shot_batches, task="segmentation")    # stats.py: mean z by slot
    space = UnitSpace.for_model(model, "group")                      # units.py: official order
    logits = patched_forward(model, canvas, "zero_shot", stats, space, mask)   # patching.py
    table = taskness({"seg": seg_stats, "lowlight": ll_stats})        # taskness.py
"""

from interp.taskvectors.patching import Intervention, MeanPatcher, as_mask, patch_hooks, patched, patched_forward
from interp.taskvectors.policy import Policy, PolicyError, random_like, stratified_like
from interp.taskvectors.stats import (
    ActivationStats,
    CorruptStatsError,
    LayoutMismatchError,
    MissingSidecarError,
    ModelMismatchError,
    ShapeMismatchError,
    StatsError,
    collect,
)
from interp.taskvectors.taskness import sums_of_squares, taskness, top_units
from interp.taskvectors.units import GRANULARITIES, Unit, UnitSpace, site_name

__all__ = [
    "ActivationStats", "collect", "StatsError", "CorruptStatsError", "MissingSidecarError",
    "ModelMismatchError", "LayoutMismatchError", "ShapeMismatchError",
    "Policy", "PolicyError", "random_like", "stratified_like",
    "Unit", "UnitSpace", "GRANULARITIES", "site_name",
    "Intervention", "MeanPatcher", "as_mask", "patch_hooks", "patched", "patched_forward",
    "taskness", "sums_of_squares", "top_units",
]
