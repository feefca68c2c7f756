"""interp: a workbench for finding and studying task vectors in visual-prompting models."""

__version__ = "0.1.0"
