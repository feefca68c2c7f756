"""The patch explorer: try task-vector patches by hand in JupyterLab and see the result live.

One module per job: :mod:`.policies` (reading policies onto the explorer's unit space, opening a
run's search results of every method), :mod:`.effects` (each unit's effect alone: a run's sweep
or one computed on demand), :mod:`.predict` (patched forwards, scores, paired intervals, caches),
:mod:`.render` (images, differences to the target, the exported figure), :mod:`.grid` (the
clickable unit grid and its legend), :mod:`.controls` (the ipywidgets), :mod:`.compare` (set A vs
B), :mod:`.attention` (a head's pattern), :mod:`.widget` (:class:`PatchExplorer`, which ties them together).
"""

from interp.viz.explorer.effects import UnitEffects
from interp.viz.explorer.policies import NO_POLICY, resolve_policy, run_policies
from interp.viz.explorer.controls import SAME_TASK
from interp.viz.explorer.widget import PatchExplorer

__all__ = ["PatchExplorer", "UnitEffects", "resolve_policy", "run_policies", "NO_POLICY", "SAME_TASK"]
