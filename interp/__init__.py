"""interp: a workbench for finding and studying task vectors in visual-prompting models."""

from __future__ import annotations

from interp import runtime

runtime.configure_environment()  # before torch loads: exact batched scoring, passive OpenMP waits

__version__ = "0.1.0"


def load_model(name_or_path: str = "tiny", device: str = "cpu"):
    """The bundled tiny MAE-VQGAN (``"tiny"``) or a model saved with ``interp.models.save_model``."""
    from interp.models.checkpoint import load_model as _load

    return _load(name_or_path, device)
