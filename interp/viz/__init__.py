"""Figures (plotly) and the patch explorer (ipywidgets).

Imported lazily: ``from interp.viz import layer_head_heatmap`` loads only that module.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "prompt_grid": "interp.viz.prompts",
    "layer_head_heatmap": "interp.viz.heatmaps",
    "policy_frame": "interp.viz.heatmaps",
    "reinforce_curves": "interp.viz.curves",
    "results_bars": "interp.viz.curves",
    "PatchExplorer": "interp.viz.explorer",
    "save_figure": "interp.viz.export",
    "write_run_figures": "interp.viz.figures",
    "apply_style": "interp.viz.style",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp.viz' has no attribute {name!r}")
