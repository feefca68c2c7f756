"""The patch explorer: try task-vector patches by hand in JupyterLab and see the result live.

One module per job: :mod:`.policies` (reading policies onto the explorer's unit space, opening a
run's search results), :mod:`.predict` (patched forwards, scores, caches), :mod:`.render` (images
and the exported figure), :mod:`.controls` (the ipywidgets and the clickable unit grid),
:mod:`.widget` (:class:`PatchExplorer`, which ties them together).
"""

from interp.viz.explorer.policies import NO_POLICY, Policy, resolve_policy, run_policies
from interp.viz.explorer.widget import SAME_TASK, PatchExplorer

__all__ = ["PatchExplorer", "Policy", "resolve_policy", "run_policies", "NO_POLICY", "SAME_TASK"]
