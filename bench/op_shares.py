"""Where a forward's time goes: the share of matmuls, attention and the rest, and the attention kernels.

Issue 23 asks for token-reward steps and collection at >= 70% of the matmul probe. A forward
can reach the probe's rate only in its matmuls; this benchmark says how much of the forward
they are. For one forward of ``--batch`` one-shot canvases (``torch.no_grad``, float32):

* ``shares`` — self CPU time per category from ``torch.profiler`` (``matmul``: addmm / mm / bmm;
  ``attention``: the scaled-dot-product kernel; ``elementwise``: GELU, layer norm, adds, copies;
  ``conv``: the patch embedding; ``other``: the rest, framework overhead included);
* ``fraction_of_matmul_probe`` — the whole forward's FLOPs (``torch.utils.flop_counter``) over
  its median time, divided by a 1024x1024 matmul's FLOP/s timed in the same process, and
  ``matmul_fraction_of_probe`` — the same for the matmuls alone (their FLOPs over their
  profiled time);
* ``attention_kernels`` — at the model's attention shapes (encoder and decoder), the fused
  ``scaled_dot_product_attention`` the model uses, the explicit ``softmax(q k^T) v`` of the
  official code and torch's math backend, timed in turn (median), with their largest
  difference to the fused kernel's output.

    python -m bench.op_shares --model small --batch 8
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from bench import common

CATEGORIES = {
    "matmul": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention",
                  "aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_cudnn_attention"),
    "elementwise": ("aten::gelu", "aten::native_layer_norm", "aten::add", "aten::add_", "aten::copy_", "aten::mul",
                    "aten::softmax", "aten::_softmax", "aten::clone"),
    "conv": ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution", "aten::cudnn_convolution"),
}


def _category(name: str) -> str:
    return next((c for c, names in CATEGORIES.items() if name in names), "other")


def attention_kernels(batch: int, tokens: int, heads: int, d_head: int, device: str, repeats: int) -> dict[str, Any]:
    """Fused, explicit and math attention at one shape: median seconds and max |diff| to fused."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, heads, tokens, d_head, generator=g).to(device) for _ in range(3))
    scale = d_head ** -0.5

    def fused():
        return F.scaled_dot_product_attention(q, k, v)

    def explicit():
        return torch.softmax((q * scale) @ k.transpose(-1, -2), dim=-1) @ v

    def math():
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v)

    variants = {"fused": fused, "explicit": explicit, "math": math}
    timings = common.measure_interleaved(variants, device, repeats)
    reference = fused()
    return {"shape": [batch, heads, tokens, d_head], "seconds": {k: t["median"] for k, t in timings.items()},
            "max_abs_diff_to_fused": {k: float((f() - reference).abs().max()) for k, f in variants.items() if k != "fused"}}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=None, help="canvases per forward (default 32; large on CPU 4)")
    args = p.parse_args(argv)
    common.setup(args)
    from torch.profiler import ProfilerActivity, profile

    batch = common.pick(args.batch, args, 32, large_cpu=4, quick=2)
    repeats = common.pick(args.repeats, args, 5, large_cpu=2, quick=1)
    model, source = common.get_model(args.model, args.device, args.seed)
    canvases = common.to_device(common.make_prompts(model, "segmentation", batch, seed=args.seed).canvases, args.device)

    @torch.no_grad()
    def forward() -> None:
        model(canvases, "one_shot")

    flops, matmul_flops = count_flops_and_matmuls(forward)
    timings = {"forward": common.measure(forward, args.device, repeats, args.warmup)}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if str(args.device).startswith("cuda") else [])
    with profile(activities=activities) as prof:
        forward()
    self_us: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        self_us[_category(event.key)] += event.self_device_time_total if str(args.device).startswith("cuda") else event.self_cpu_time_total
    total = sum(self_us.values())
    probe = common.probe(args.device)
    mae = model.config.mae
    tokens = (mae.img_size // mae.patch_size) ** 2
    kernels = {stack: attention_kernels(batch, tokens, heads, width // heads, args.device, max(3, repeats))
               for stack, width, heads in (("encoder", mae.embed_dim, mae.num_heads),
                                           ("decoder", mae.decoder_embed_dim, mae.decoder_num_heads))}
    result = common.report(
        "op_shares", args, source, sizes={"batch": batch, "tokens": tokens}, timings=timings,
        fast="forward", slow="forward",  # one variant: the ratio is 1; the shares and fractions are the result
        extra={"shares": {c: self_us[c] / total for c in [*CATEGORIES, "other"]},
               "flops": flops, "matmul_probe_flop_s": probe,
               "fraction_of_matmul_probe": flops / timings["forward"]["median"] / probe,
               "matmul_fraction_of_probe": matmul_flops / (self_us["matmul"] * 1e-6) / probe if self_us["matmul"] else None,
               "attention_kernels": kernels})
    return common.emit(result, args.out)


def count_flops_and_matmuls(fn) -> tuple[int, int]:
    """``(all FLOPs, the matmuls' FLOPs)`` of one call of ``fn`` (``torch.utils.flop_counter``;
    matmuls: addmm / mm / bmm / baddbmm)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    ops = counter.get_flop_counts().get("Global", {})
    matmuls = sum(n for op, n in ops.items() if str(op).split(".")[-1] in ("addmm", "mm", "bmm", "baddbmm"))
    return int(counter.get_total_flops()), int(matmuls)


if __name__ == "__main__":
    common.script_main(run)
