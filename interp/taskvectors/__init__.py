"""Visual task vectors: activation statistics, unit spaces, batched mean patching, taskness.

The pipeline, one module a step::

    stats = collect(model, one_shot_batches, task="segmentation")    # collect.py -> stats.py: mean z by slot
    space = UnitSpace.for_model(model, "group")                      # units.py: official order
    logits = patched_forward(model, canvas, "zero_shot", stats, space, mask)   # patching.py
    table = taskness({"seg": seg_stats, "lowlight": ll_stats})        # taskness.py
"""

from interp.taskvectors.patching import Intervention, MeanPatcher, as_mask, patch_hooks, patched, patched_forward
from interp.taskvectors.policy import Policy, PolicyError, random_like, stratified_like
from interp.taskvectors.collect import collect
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.stats_file import (
    CorruptStatsError,
    LayoutMismatchError,
    MissingSidecarError,
    ModelMismatchError,
    ShapeMismatchError,
    StatsError,
)
from interp.taskvectors.taskness import sums_of_squares, taskness, top_units
from interp.taskvectors.unit import GRANULARITIES, Unit, site_name
from interp.taskvectors.units import UnitSpace

__all__ = [
    "ActivationStats", "collect", "StatsError", "CorruptStatsError", "MissingSidecarError",
    "ModelMismatchError", "LayoutMismatchError", "ShapeMismatchError",
    "Policy", "PolicyError", "random_like", "stratified_like",
    "Unit", "UnitSpace", "GRANULARITIES", "site_name",
    "Intervention", "MeanPatcher", "as_mask", "patch_hooks", "patched", "patched_forward",
    "taskness", "sums_of_squares", "top_units",
]
