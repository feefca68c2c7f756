"""Train the bundled tiny MAE-VQGAN on synthetic visual prompts (``interp train-tiny``).

* :mod:`interp.train.config`: :class:`TrainConfig`.
* :mod:`interp.train.stream`: :class:`CanvasStream` and :class:`StepCanvases` (the data).
* :mod:`interp.train.loops`: the two stages, checkpoints, the loss log, :func:`train_tiny`.
* :mod:`interp.train.card`: measured in-context learning and the model card (from a template).

Two stages, each the project's own model class with a small config (:func:`interp.models.presets.tiny`):

1. **VQGAN tokenizer** on canvases of every task: L1 + MSE reconstruction plus the VQ-VAE
   codebook and commitment terms; codes unused for a while are restarted at random encoder
   outputs so the whole codebook stays in use.
2. **MAE** with the tokenizer frozen: cross-entropy on the VQGAN codes of hidden patches, as
   the official ``forward_loss``. Each step mixes the *visual-prompt* mask (target cell
   hidden, the one-shot layout) on prompts of all seven tasks with MAE *random masking* on
   prompts and plain images, so the model learns images and in-context tasks together.

Data is a pure function of (seed, step), so a run killed at any point resumes from its last
checkpoint (written atomically) to the same result. Progress bars and a CSV loss log go to the
run directory.
"""

from interp.train.card import evaluate_in_context, render_model_card, write_model_card, write_results_csv
from interp.train.config import TrainConfig
from interp.train.loops import LossLog, train_mae, train_tiny, train_vqgan
from interp.train.stream import CanvasStream, StepCanvases

__all__ = [
    "CanvasStream", "LossLog", "StepCanvases", "TrainConfig", "evaluate_in_context", "render_model_card",
    "train_mae", "train_tiny", "train_vqgan", "write_model_card", "write_results_csv",
]
