"""The official algorithm's work, for the slow side of the benchmarks, and the FLOP/s probe.

What the official code (alhojel/visual_task_vectors, ``evaluate/reinforce_train.py`` and
``collect_attention_heads.py``) does per sample, rebuilt on this library's modules (same
weights, same arithmetic) — see ``bench/README.md`` and ``../shared/reference/PIXELS.md``:

* one forward per sample, every block recording each head's output projected through W_O one
  head at a time (``record=True``: :class:`bench.common.OfficialRecord`);
* the pixel reward of ``decode_raw_predicion``: argmax codes, in the zero-shot layout the 98
  predicted codes ``hstack``-ed into a full 14x14 grid (the top half a copy of the bottom),
  the **whole grid** VQGAN-decoded, clamped, ``(x+1)/2``, truncated to integers 0..255;
* the official metric on the target cell ``[113:, 113:]``: ``loss_iou`` after ``round_image``
  or ``loss_mse`` on the integer images normalised again.

:func:`official_reward` is checked against the official pixel goldens
(``tests/test_bench.py::test_official_reward_matches_the_official_goldens``).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import Tensor

from interp.canvas import PromptLayout, normalize
from bench.float_metrics import mse, segmentation_iou
from interp.metrics import task_metric


def official_codes(logits: Tensor, layout: PromptLayout) -> Tensor:
    """Argmax codes in the official decode layout ``[B, num_patches]``: zero-shot's 98 codes
    (patches 98..195) ``hstack``-ed, one-shot's 196 codes as they are."""
    codes = logits.argmax(dim=-1)
    n = layout.grid.num_patches
    if codes.shape[1] == n:
        return codes
    if codes.shape[1] * 2 == n and tuple(layout.decoder_patches) == tuple(range(n // 2, n)):
        return torch.cat([codes, codes], dim=1)  # torch.hstack([y, y])
    raise ValueError(f"layout {layout.name!r}: no official full-grid code layout for {codes.shape[1]} codes")


@torch.no_grad()
def official_image(model: Any, logits: Tensor, layout: PromptLayout) -> Tensor:
    """The official (unpasted) prediction in [0, 1]: the full code grid VQGAN-decoded, ``[B, 3, H, W]``."""
    side = layout.grid.patches_per_side
    vqgan = model.vqgan
    # the official vae.decode_code: the batch as it comes (one sample), torch's default kernels;
    # not decode_codes, which pads CPU batches to 16 rows so interp's pixels are batch-invariant
    x = vqgan.decode(vqgan.quantize.lookup(official_codes(logits, layout).long(), (side, side)))
    return (x.clamp(-1.0, 1.0) + 1.0) / 2.0


@torch.no_grad()
def official_reward(model: Any, task: str, canvases: Tensor, logits: Tensor, layout: PromptLayout) -> Tensor:
    """Higher-is-better official reward ``[B]``: IoU (an empty union scores 1) or -MSE, integer pixels."""
    predicted = normalize(official_image(model, logits, layout).double())  # float64: no 255 -> 254 round trip
    target = canvases.double()
    if task_metric(task).name == "iou":
        return segmentation_iou(predicted, target, model.grid, quantize=True, empty=1.0).double()
    return -mse(predicted, target, model.grid, quantize=True).double()


# --------------------------------------------------------------------------------------------
# FLOPs and the matmul probe


def count_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``(fn(), FLOPs it ran)`` counted by ``torch.utils.flop_counter`` (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, int(counter.get_total_flops())


def matmul_probe(device: str, size: int = 1024, repeats: int = 5) -> float:
    """Achieved float32 FLOP/s of a ``size x size`` matmul on ``device`` (best of ``repeats``):
    the yardstick every benchmark's achieved FLOP/s is divided by."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device)
    b = torch.randn(size, size, generator=g).to(device)
    best = float("inf")
    for _ in range(repeats + 1):
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        (a @ b).sum().item()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def flop_report(flops: dict[str, int], seconds: dict[str, float], probe: float) -> dict[str, Any]:
    """Per variant: FLOPs, achieved FLOP/s and its fraction of the probe's."""
    achieved = {k: flops[k] / seconds[k] for k in flops if seconds.get(k)}
    return {
        "flops": flops,
        "achieved_flop_s": achieved,
        "fraction_of_matmul_probe": {k: v / probe for k, v in achieved.items()},
        "matmul_probe_flop_s": probe,
    }


@torch.no_grad()
def official_target_loss(model: Any, canvas: Tensor, logits: Tensor, layout: PromptLayout) -> tuple[Tensor, Tensor]:
    """What ``decode_raw_predicion`` computes besides the pixels, for every sample it decodes:
    the canvas's VQGAN codes (``vae.get_codebook_indices``, one encoder pass) and the
    cross-entropy / NLL of the predicted logits at them over the masked patches."""
    target = model.vqgan.encode_to_codes(canvas)  # [1, 196]
    x = logits if logits.shape[1] == layout.grid.num_patches else torch.cat([logits, logits], dim=1)
    mask = torch.zeros(target.shape, device=logits.device)
    mask[:, list(layout.masked_patches)] = 1.0
    loss = torch.nn.functional.cross_entropy(x.permute(0, 2, 1), target, reduction="none")
    nll = -(torch.log_softmax(x, dim=-1).gather(-1, target[..., None])[..., 0] * mask).sum() / mask.sum()
    return (loss * mask).sum() / mask.sum(), nll


@torch.no_grad()
def official_prediction(model: Any, canvas: Tensor, logits: Tensor, layout: PromptLayout) -> Tensor:
    """``generate_image``'s output for one sample: the target loss (:func:`official_target_loss`),
    the whole code grid decoded, bilinearly resized to the canvas, ``clip(y * 255).int()``, pasted
    into the canvas's integer pixels where the layout predicts (``[1, H, W, 3]`` int32)."""
    official_target_loss(model, canvas, logits, layout)
    size = canvas.shape[-2:]
    y = torch.nn.functional.interpolate(official_image(model, logits, layout), size=size, mode="bilinear")
    y = torch.clip(y.permute(0, 2, 3, 1) * 255, 0, 255).int()
    patch = layout.grid.patch_size
    mask = torch.zeros(1, layout.grid.num_patches, device=canvas.device)
    mask[:, list(layout.masked_patches)] = 1.0
    side = layout.grid.patches_per_side
    mask = mask.view(1, side, side).repeat_interleave(patch, 1).repeat_interleave(patch, 2)[..., None]
    from interp.canvas import denormalize

    orig = torch.clip(denormalize(canvas).permute(0, 2, 3, 1) * 255, 0, 255).int()
    return (orig * (1 - mask) + y * mask).int()


def official_write_latent(state: dict[str, Any], latents: list[Tensor], encoder_blocks: int) -> None:
    """``collect_attention_heads.write_latent`` for one prompt: the per-block recorded head
    outputs stacked (encoder, decoder), folded into float32 running means
    ``(mean * count + x) / (count + 1)``, and the ``[count, encoder, decoder]`` list pickled out
    and back (the official code re-reads and rewrites a pickle file per prompt; here it goes
    through memory, so the disk's time is left out)."""
    import pickle

    encoder, decoder = torch.stack(latents[:encoder_blocks]), torch.stack(latents[encoder_blocks:])
    if state.get("blob") is None:
        content = [1, encoder, decoder]
    else:
        count, mean_encoder, mean_decoder = pickle.loads(state["blob"])
        content = [count + 1, (mean_encoder * count + encoder) / (count + 1), (mean_decoder * count + decoder) / (count + 1)]
    state["blob"] = pickle.dumps(content)
    state["means"] = content


@torch.no_grad()
def official_step(model: Any, patch_hooks: Callable[[Tensor], list], record: list, task: str, canvases: Tensor,
                  which: Tensor, masks: Tensor, layout: PromptLayout) -> tuple[Tensor, Tensor]:
    """One REINFORCE step's scoring as ``reinforce_train.py`` does it: per sample, one forward
    with its patch (``patch_hooks(mask)``; its ``generate_image`` runs the blocks with
    ``record=False``, so ``record`` is empty unless a benchmark asks for the recording), the
    target codes and loss of ``decode_raw_predicion`` (:func:`official_target_loss`), then the
    official pixel reward and ``.item()``. Returns ``(rewards [S], codes [S, P])``."""
    out, codes = [], []
    for i in range(len(masks)):
        k = int(which[i])
        canvas = canvases[k : k + 1]
        with model.hooks(patch_hooks(masks[i]) + record):
            logits = model(canvas, layout)
        official_target_loss(model, canvas, logits, layout)
        out.append(official_reward(model, task, canvas, logits, layout).item())
        codes.append(logits.argmax(-1))
    return torch.tensor(out, dtype=torch.float64), torch.cat(codes)
