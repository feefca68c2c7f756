"""Predicted codes -> the official integer image: code layout, VQGAN decode, quantisation, paste.

The official evaluation (alhojel/visual_task_vectors ``evaluate/mae_utils.py``
``decode_raw_predicion`` and ``reinforce_train._generate_result_for_canvas``) turns a
prediction into pixels like this, and :func:`predict_pixels` does the same for any layout:

1. **Code layout** (:func:`full_grid_codes`): the zero-shot decoder predicts only the bottom
   half; ``torch.hstack([y, y])`` copies those codes into the top half and the full grid is
   decoded. Generally: a patch the decoder does not cover takes the code of the patch half a
   canvas below (or above) it.
2. **Decode**: the VQGAN decodes the full grid, clamps to [-1, 1] and maps by ``(x + 1) / 2``.
   The decoder's convolutions and mid-block attention see the whole grid, so the copied half
   changes the target pixels. ``decode="band"`` decodes only the rows of patches the decoder
   covers instead: faster, but not the official image (see the README for how far it is).
3. **Quantisation** (:func:`quantize_image`): ``clip(y * 255, 0, 255)`` truncated to int.
   The ground truth is ``clip(denormalize(canvas) * 255, 0, 255)`` truncated, in float64
   (:func:`canvas_pixels`).
4. **Paste** (:func:`paste`): the truth on visible patches, the prediction on the masked ones.
   (The official ``.image`` is the unpasted decode; metrics read only the target cell, where
   both agree.)

Every VQGAN decode goes through one ``decoder(codes [B, h*w], grid=(h, w)) -> [B, 3, H, W]``
callable (default ``vqgan.decode_codes``), so a cache of decodes keyed by the code grid can be
slotted in without touching the rest.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from interp.canvas import PromptLayout, denormalize

Decode = Literal["official", "band"]
DECODES = ("official", "band")
Decoder = Callable[..., Tensor]  # decoder(codes [B, h*w], grid=(h, w)) -> [B, 3, h*p, w*p] in [0, 1]


def check_decode(decode: str) -> None:
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES} ('official': the paper's full-grid decode, "
                         f"'band': faster, decodes only the rows the decoder covers); got {decode!r}")


def full_grid_codes(codes: Tensor, layout: PromptLayout) -> Tensor:
    """``[B, len(decoder_patches)]`` codes -> ``[B, num_patches]`` in the official code layout.

    A covered patch keeps its code; an uncovered patch ``p`` takes the code of patch
    ``(p + N/2) mod N`` (zero-shot: the official ``hstack([y, y])``).
    """
    if codes.shape[-1] != len(layout.decoder_patches):
        raise ValueError(f"codes have {codes.shape[-1]} rows; layout {layout.name!r} predicts "
                         f"{len(layout.decoder_patches)}")
    return codes.index_select(-1, torch.tensor(full_grid_source(layout), device=codes.device))


def full_grid_source(layout: PromptLayout) -> list[int]:
    """For each canvas patch, the decoder row whose code it takes in the official code layout."""
    n = layout.grid.num_patches
    row = {p: i for i, p in enumerate(layout.decoder_patches)}
    source = []
    for p in range(n):
        mirror = (p + n // 2) % n
        if p not in row and mirror not in row:
            raise ValueError(f"layout {layout.name!r} covers neither patch {p} nor its mirror {mirror}: "
                             "no official code layout; use decode='band' or a decoder covering them")
        source.append(row[p] if p in row else row[mirror])
    return source


def soft_prediction(vqgan: torch.nn.Module, probs: Tensor, layout: PromptLayout) -> Tensor:
    """The soft decode of code probabilities ``[B, len(decoder_patches), n_embed]``: pixels in
    [0, 1] of the whole canvas, ``[B, 3, H, W]``, differentiable in ``probs``.

    The official code layout (:func:`full_grid_codes`) applied to probability rows, then
    :meth:`~interp.models.vqgan.VQGAN.decode_soft`; with one-hot ``probs`` this is
    :func:`decode_prediction` of their argmax (``decode="official"``). Not quantised, not pasted.
    """
    if probs.dim() != 3 or probs.shape[1] != len(layout.decoder_patches):
        raise ValueError(f"probs must be [B, {len(layout.decoder_patches)}, n_embed] for layout {layout.name!r}; "
                         f"got {tuple(probs.shape)}")
    n = layout.grid.patches_per_side
    source = torch.tensor(full_grid_source(layout), device=probs.device)
    return vqgan.decode_soft(probs.index_select(1, source), grid=(n, n))


def decode_prediction(
    vqgan: torch.nn.Module, codes: Tensor, layout: PromptLayout, decode: Decode = "official",
    decoder: Decoder | None = None,
) -> Tensor:
    """Predicted codes -> VQGAN pixels in [0, 1] of the whole canvas, ``[B, 3, H, W]`` (not pasted).

    ``band``: only the rows of patches the decoder covers are decoded (the rest stays white);
    they must be whole rows.
    """
    check_decode(decode)
    decoder = vqgan.decode_codes if decoder is None else decoder
    grid = layout.grid
    n, p = grid.patches_per_side, grid.patch_size
    if decode == "official":
        return decoder(full_grid_codes(codes, layout), grid=(n, n))
    patches = layout.decoder_patches
    first, last = patches[0] // n, patches[-1] // n
    if len(patches) != (last - first + 1) * n:
        raise ValueError("decode='band' needs whole rows of patches; got a partial band (use decode='official')")
    band = decoder(codes, grid=(last - first + 1, n))
    out = band.new_ones(codes.shape[0], 3, grid.canvas_size, grid.canvas_size)
    out[:, :, first * p : (last + 1) * p] = band
    return out


def quantize_image(image: Tensor) -> Tensor:
    """Official integer pixels of a decode in [0, 1]: ``clip(y * 255, 0, 255)`` truncated, int32."""
    return (image.float() * 255.0).clamp(0.0, 255.0).to(torch.int32)


def canvas_pixels(canvas: Tensor) -> Tensor:
    """Integer ground truth of an ImageNet-normalised canvas (official: float64, truncated), int32."""
    return (denormalize(canvas.detach().double()) * 255.0).clamp(0.0, 255.0).to(torch.int32)


def masked_pixels(layout: PromptLayout, device: torch.device | str = "cpu") -> Tensor:
    """``[1, 1, H, W]`` bool, True on the pixels of the layout's masked patches."""
    grid = layout.grid
    hidden = torch.zeros(grid.num_patches, dtype=torch.bool, device=device)
    hidden[list(layout.masked_patches)] = True
    n, p = grid.patches_per_side, grid.patch_size
    return hidden.view(n, n).repeat_interleave(p, 0).repeat_interleave(p, 1)[None, None]


def paste(predicted: Tensor, truth: Tensor, layout: PromptLayout) -> Tensor:
    """The official pasted image: ``truth`` on visible patches, ``predicted`` on masked ones."""
    return torch.where(masked_pixels(layout, predicted.device), predicted, truth)


def predict_pixels(
    vqgan: torch.nn.Module, canvases: Tensor, codes: Tensor, layout: PromptLayout, decode: Decode = "official",
    decoder: Decoder | None = None,
) -> Tensor:
    """The official pasted integer image of a prediction, ``[B, 3, H, W]`` int32 in 0..255."""
    predicted = quantize_image(decode_prediction(vqgan, codes, layout, decode, decoder))
    return paste(predicted, canvas_pixels(canvases).to(predicted.device), layout)
