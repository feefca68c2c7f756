"""Collecting task activations: the library's batched ``collect`` vs. the official per-prompt loop.

Both variants run the one-shot forward of the same ``N`` prompts and keep per-slot sums and
sums of squares of every attention head's output in every block:

* ``interp`` — ``interp.taskvectors.stats.collect``: batches of ``--batch`` prompts, the
  head outputs ``z`` (``[pos, head, d_head]``) summed in float64 on the model's device,
  moved to the CPU once.
* ``official_work`` — what the official ``collect_attention_heads.py`` does per prompt
  (``_generate_result_for_canvas(collect_activations=True)`` then ``write_latent``, read in
  alhojel/visual_task_vectors): one forward with the official explicit attention
  (``softmax(q k^T) v``; ``--sdpa`` for torch's fused kernel), each block's per-head projected
  outputs (``[pos, head, d_model]``, 16x ``z`` at full size) recorded one head at a time
  (:class:`bench.common.OfficialRecord`) and moved to the CPU; ``generate_image``'s prediction
  (the canvas's target codes by a VQGAN encode, the loss, the whole grid VQGAN-decoded, resized,
  pasted: :func:`bench.official.official_prediction`); then the recorded outputs stacked and
  folded into float32 running means that are pickled out and back
  (:func:`bench.official.official_write_latent`; the official code rewrites a pickle file per
  prompt, here it goes through memory, so disk time is left out). ``--record-only`` times the
  recorded forward alone (what this benchmark timed before: 2.2-4.2x where the real official
  code measured 7.85x on ``small``).

FLOPs of each variant are counted once (untimed) and reported with the achieved FLOP/s as a
fraction of the matmul probe (:mod:`bench.official`).

Checked, not timed: the official running mean of the projected outputs equals the library's
mean ``z`` projected through W_O plus the bias (``max_abs_mean_diff``).

    python -m bench.collect --model tiny --prompts 100
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from einops import einsum, rearrange

from bench import common
from bench.official import count_flops, flop_report, official_prediction, official_write_latent


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=None, help="prompts collected (official: the 100 best pairs)")
    p.add_argument("--batch", type=int, default=None, help="prompts per batched forward")
    p.add_argument("--task", default="segmentation")
    p.add_argument("--sdpa", action="store_true",
                   help="per-prompt loop on torch's fused attention (default: softmax(qk)v, as the official code)")
    p.add_argument("--record-only", action="store_true",
                   help="per-prompt loop: the recorded forward only (no prediction, no running-mean pickle)")
    args = p.parse_args(argv)
    common.setup(args)

    from interp.taskvectors.collect import collect

    n = common.pick(args.prompts, args, 100, large_cpu=16, quick=3)
    batch = common.pick(args.batch, args, 32, large_cpu=8, quick=2)
    repeats = common.pick(args.repeats, args, 3, large_cpu=1, quick=1)

    model, source = common.get_model(args.model, args.device, args.seed)
    layout = "one_shot"
    prompts = common.make_prompts(model, args.task, n, seed=args.seed)
    canvases = common.to_device(prompts.canvases, args.device)
    from interp.canvas import get_layout

    lay = get_layout(layout, model.grid)
    slots = {s: torch.tensor(lay.slots(s), dtype=torch.long) for s in ("encoder", "decoder")}

    last: dict[str, Any] = {}  # the latest full run of each variant

    def batched(k: int = n):
        stats = collect(model, canvases[:k].split(batch), layout, progress=False)
        if k == n:
            last["batched"] = stats
        return stats

    encoder_blocks = len(model.encoder.blocks)

    @torch.no_grad()
    def per_prompt(k: int = n) -> dict[str, Any]:
        state: dict[str, Any] = {}
        common.explicit_attention(model, not args.sdpa)
        try:
            for i in range(k):
                latents: list[torch.Tensor] = []  # per block, in forward order: [1, pos, head, d_model]
                canvas = canvases[i : i + 1]
                with model.hooks(common.official_record_hooks(model, lambda site, x: latents.append(x.detach().cpu()))):
                    logits = model(canvas, layout)
                if not args.record_only:
                    official_prediction(model, canvas, logits, lay)
                    official_write_latent(state, latents, encoder_blocks)
                else:
                    state["latents"] = latents
        finally:
            common.explicit_attention(model, False)
        if k == n:
            last["per_prompt"] = state
        return state

    _, flops_interp = count_flops(lambda: batched(min(n, batch)))
    _, flops_few = count_flops(lambda: per_prompt(min(n, 2)))
    timings = {
        "interp": common.measure(batched, args.device, repeats, args.warmup, warmup_fn=lambda: batched(min(n, batch))),
        "official_work": common.measure(per_prompt, args.device, repeats, args.warmup,
                                        warmup_fn=lambda: per_prompt(min(n, 2))),
    }
    flops = {"interp": flops_interp * n // min(n, batch), "official_work": flops_few * n // min(n, 2)}

    # same statistics? the official running mean of block 0's recorded outputs (every prompt
    # has the same one-shot sequence, so position p is always slot slots[p]) = mean z @ W_O(head) + bias
    stats, state = last["batched"], last["per_prompt"]
    diff = None
    if "means" in state:
        site = "encoder.blocks.0.attn.hook_z"
        attn = model.get_submodule(site.rsplit(".", 1)[0])
        w_o = rearrange(attn.proj.weight.double().cpu(), "m (h d) -> h d m", h=attn.n_heads)
        projected = einsum(stats.mean(site), w_o, "s h d, h d m -> s h m") + attn.proj.bias.double().cpu()
        official = state["means"][1][0, 0].double()  # encoder block 0, batch row 0: [pos, head, d_model]
        diff = float((projected[slots["encoder"]] - official).abs().max())

    sites = len(model.encoder.blocks) + len(model.decoder.blocks)
    result = common.report(
        "collect", args, source,
        sizes={"prompts": n, "batch": batch, "layout": layout, "sites": sites, "task": args.task,
               "explicit_attention": not args.sdpa, "official_side": "record only" if args.record_only else
               "record + prediction + running-mean pickle"},
        timings=timings, fast="interp", slow="official_work", per="run",
        extra={"seconds_per_prompt": {k: v["median"] / n for k, v in timings.items()},
               "max_abs_mean_diff": diff,
               **flop_report(flops, {k: v["median"] for k, v in timings.items()}, common.probe(args.device))},
    )
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
