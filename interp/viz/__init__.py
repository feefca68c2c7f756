"""Figures (plotly). Import the figure modules directly, e.g. ``from interp.viz.prompts import prompt_grid``."""

from __future__ import annotations

__all__ = ["prompt_grid"]


def __getattr__(name: str):  # lazy: importing interp.viz costs nothing until a figure is asked for
    if name == "prompt_grid":
        from interp.viz.prompts import prompt_grid

        return prompt_grid
    raise AttributeError(f"module 'interp.viz' has no attribute {name!r}")
