"""One scoring seam: a model's logits -> a higher-is-better reward per row, plus the task metric.

A :class:`Scorer` is made for one (model, task, layout, reward kind, decode) and scores a batch
of logits once; everything that scores predictions uses it: REINFORCE's reward, the
single-unit sweep, evaluation, the explorer and the other search methods.

* ``kind="pixel"`` (the official REINFORCE reward): the predicted codes become the official
  pasted integer image (:func:`interp.models.pixels.predict_pixels`: official code layout,
  full-grid VQGAN decode, truncation to 0..255, paste), scored by the official ``loss_iou`` /
  ``loss_mse`` on the target cell (:func:`interp.metrics.pixel_iou`, :func:`~interp.metrics.pixel_mse`).
  Reward: IoU (an empty prediction and truth scores ``empty_iou``, 1 by default, where the
  metric is NaN) or -MSE.
* ``kind="token"``: minus the cross-entropy of the target cell's VQGAN codes (no VQGAN
  decode, which dominates the pixel reward's cost). Metric: that cross-entropy.
* ``kind="soft"``: a differentiable stand-in for the pixel reward. The code probabilities
  (``softmax(logits / soft_temperature)``, :data:`SOFT_TEMPERATURE`) weight the codebook embeddings, the VQGAN decodes
  that latent in the official code layout (:func:`interp.models.pixels.soft_prediction`: the
  hard decode exactly when the probabilities are one-hot), and the target cell is scored by a
  smooth form of the task metric: :func:`interp.metrics.soft_iou` or minus the float MSE
  (no truncation to integers). As costly as the pixel reward (a decode per row, nothing to
  cache), but it has a gradient, so ``gradient`` and ``attribution`` can follow the metric.
  How well each reward agrees with the official one is measured by
  :mod:`interp.taskvectors.agreement`.

``decode="band"`` is a faster, non-official pixel path: only the rows of patches the decoder
covers are decoded (zero-shot: the bottom half, without the official copy in the top half).
The README gives its measured distance from the official reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from interp.canvas import PromptLayout
from interp.metrics import code_cross_entropy, pixel_iou, pixel_mse, soft_iou, soft_mse, task_metric
from interp.models.mae_vqgan import MAEVQGAN
from interp.models.pixels import DECODES, Decode, Decoder, canvas_pixels, check_decode

KINDS = ("pixel", "token", "soft")

#: the soft reward's softmax temperature. Its Pearson agreement with the official reward over 48
#: random unit sets (demo data, 16 held-out search prompts; issue 22) by temperature,
#: segmentation / low-light / in-painting / colorization: 1: 0.98 / 0.98 / 0.73 / 0.76;
#: 0.5: - / - / 0.93 / 0.91; 0.25: 0.995 / 0.999 / 0.975 / 0.963; 0.1: 0.997 / 1.000 / 0.991 / 0.985.
#: Sharper probabilities bring the soft decode to the hard one but shrink the gradient
#: (``p (1 - p) / T`` of a near one-hot softmax); 0.25 agrees well on every task and keeps it
SOFT_TEMPERATURE = 0.25


@dataclass
class Score:
    """What scoring one batch gives, one entry per row.

    ``reward`` [B] float64, higher is better; ``metric`` [B] the task metric in its natural
    sign (IoU, MSE, or the code cross-entropy for the token kind; NaN for an empty IoU);
    ``image`` [B, 3, H, W] int32 0..255 the official pasted prediction (pixel kind only).
    """

    reward: Tensor
    metric: Tensor
    image: Tensor | None = None


def reward_name(task: str, kind: str) -> str:
    """What a reward measures: ``iou``, ``-mse`` (pixel), ``-code_ce`` (token), ``soft_iou`` or ``-soft_mse`` (soft)."""
    check_kind(kind)
    if kind == "token":
        return "-code_ce"
    name = "iou" if task_metric(task).name == "iou" else "-mse"
    return ("soft_" + name if name == "iou" else "-soft_mse") if kind == "soft" else name


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"reward kind must be one of {KINDS} ('pixel': official IoU / -MSE, 'token': "
                         f"-code cross-entropy, no decode, 'soft': differentiable soft decode); got {kind!r}")


class Scorer:
    """Scores logits of one (model, task, layout, reward kind, decode).

    ``decoder`` replaces the VQGAN decode (``decoder(codes [B, h*w], grid=(h, w))`` -> pixels in
    [0, 1]), e.g. with a cache keyed by the code grid; by default ``model.decode_codes``.
    """

    def __init__(
        self, model: MAEVQGAN, task: str, layout: PromptLayout | str = "zero_shot", kind: str = "pixel",
        decode: Decode = "official", empty_iou: float = 1.0, decoder: Decoder | None = None,
        soft_temperature: float = SOFT_TEMPERATURE,
    ) -> None:
        check_kind(kind)
        check_decode(decode)
        if not model.has_pixels:
            raise RuntimeError("scoring needs the model's VQGAN (to decode or to encode the target codes); "
                               "load a model with one")
        if kind == "soft" and not hasattr(model, "predict_soft"):
            raise ValueError(f"the soft reward needs a model with predict_soft (a soft decode); {type(model).__name__} "
                             "has none: use reward 'pixel' or 'token'")
        self.model, self.task, self.kind, self.decode = model, task, kind, decode
        self.layout = model.layout(layout)
        self.metric = task_metric(task)
        self.empty_iou = empty_iou
        self.decoder = decoder
        self.soft_temperature = float(soft_temperature)

    @property
    def name(self) -> str:
        return reward_name(self.task, self.kind)

    @torch.no_grad()
    def target_codes(self, canvases: Tensor) -> Tensor:
        """The canvases' VQGAN codes ``[B, num_patches]`` (token kind; encode once, pass them back in)."""
        return self.model.target_codes(canvases)

    @torch.no_grad()
    def __call__(self, canvases: Tensor, logits: Tensor, target_codes: Tensor | None = None,
                 truth: Tensor | None = None) -> Score:
        """Score ``logits [B, len(layout.decoder_patches), vocab]`` of ``canvases [B, 3, H, W]``.

        ``target_codes`` (token) and ``truth`` (pixel: :func:`canvas_pixels` of the canvases)
        can be passed to skip recomputing them.
        """
        if self.kind == "token":
            codes = self.target_codes(canvases) if target_codes is None else target_codes
            ce = code_cross_entropy(logits, codes.to(logits.device), self.layout)
            return Score(-ce.double(), ce)
        if self.kind == "soft":
            reward = self.soft_rewards(canvases, logits, truth)
            return Score(reward.double(), reward if self.metric.name == "iou" else -reward)
        image = self.image(canvases, logits)
        truth = canvas_pixels(canvases).to(image.device) if truth is None else truth
        if self.metric.name == "iou":
            metric = pixel_iou(image, truth, self.model.grid)
            reward = torch.nan_to_num(metric, nan=self.empty_iou).double()
        else:
            metric = pixel_mse(image, truth, self.model.grid)
            reward = -metric.double()
        return Score(reward, metric, image)

    @torch.no_grad()
    def image(self, canvases: Tensor, logits: Tensor) -> Tensor:
        """The official pasted integer prediction ``[B, 3, H, W]`` (int32 0..255) of the logits."""
        codes = logits.argmax(dim=-1)
        return self.model.predict_pixels(canvases, codes, self.layout, self.decode, self.decoder)

    def soft_rewards(self, canvases: Tensor, logits: Tensor, truth: Tensor | None = None) -> Tensor:
        """The soft reward ``[B]`` (soft IoU or -MSE of the soft decode), differentiable in ``logits``."""
        probs = torch.softmax(logits.float() / self.soft_temperature, dim=-1)
        image = self.model.predict_soft(probs, self.layout)
        truth = canvas_pixels(canvases).to(image.device) if truth is None else truth
        grid = self.model.grid
        if self.metric.name == "iou":
            return soft_iou(image, truth, grid)
        return -soft_mse(image, truth, grid)

    def rewards(self, canvases: Tensor, logits: Tensor, target_codes: Tensor | None = None) -> Tensor:
        """Just the reward, ``[B]`` float64."""
        return self(canvases, logits, target_codes).reward


def reward_from_logits(
    model: MAEVQGAN, task: str, canvases: Tensor, logits: Tensor, layout: PromptLayout | str, kind: str,
    target_codes: Tensor | None = None, decode: Decode = "official",
) -> Tensor:
    """One-off form of :class:`Scorer`: the higher-is-better reward of each row, ``[B]``."""
    return Scorer(model, task, layout, kind, decode)(canvases, logits, target_codes).reward


__all__ = ["DECODES", "KINDS", "Score", "Scorer", "check_kind", "reward_from_logits", "reward_name"]
