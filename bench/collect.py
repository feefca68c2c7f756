"""Collecting task activations: the library's batched ``collect`` vs. the official per-prompt loop.

Both variants run the one-shot forward of the same ``N`` prompts and keep per-slot sums and
sums of squares of every attention head's output in every block:

* ``interp`` — ``interp.taskvectors.stats.collect``: batches of ``--batch`` prompts, the
  head outputs ``z`` (``[pos, head, d_head]``) summed in float64 on the model's device,
  moved to the CPU once.
* ``official_work`` — what the official ``collect_attention_heads.py`` does: one forward
  per prompt, each block's per-head projected outputs (``[pos, head, d_model]``, 16x ``z`` at
  full size) recorded one head at a time (:class:`bench.common.OfficialRecord`), moved to the
  CPU and accumulated in Python per slot.

FLOPs of each variant are counted once (untimed) and reported with the achieved FLOP/s as a
fraction of the matmul probe (:mod:`bench.official`). Not done here: the official HDF5 writes.

Checked, not timed: the mean projected output of the loop equals the library's mean ``z``
projected through W_O plus the bias (``max_abs_mean_diff``).

    python -m bench.collect --model tiny --prompts 100
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from einops import einsum, rearrange

from bench import common
from bench.official import count_flops, flop_report


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=None, help="prompts collected (official: the 100 best pairs)")
    p.add_argument("--batch", type=int, default=None, help="prompts per batched forward")
    p.add_argument("--task", default="segmentation")
    p.add_argument("--explicit-attention", action="store_true",
                   help="per-prompt loop with softmax(qk)v attention as the official code (default: SDPA)")
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

    @torch.no_grad()
    def per_prompt(k: int = n) -> dict[str, dict[str, torch.Tensor]]:
        acc: dict[str, dict[str, torch.Tensor]] = {}

        def sink(site: str, recorded: torch.Tensor) -> None:
            x = recorded[0].detach().cpu().double()  # [pos, head, d_model]
            idx = slots[site.split(".", 1)[0]]
            if site not in acc:
                shape = (model.grid.num_slots, *x.shape[1:])
                acc[site] = {"sum": torch.zeros(shape, dtype=torch.float64),
                             "sum_sq": torch.zeros(shape, dtype=torch.float64),
                             "count": torch.zeros(model.grid.num_slots, dtype=torch.int64)}
            acc[site]["sum"][idx] += x
            acc[site]["sum_sq"][idx] += x * x
            acc[site]["count"][idx] += 1

        common.explicit_attention(model, args.explicit_attention)
        try:
            with model.hooks(common.official_record_hooks(model, sink)):
                for i in range(k):
                    model(canvases[i : i + 1], layout)
        finally:
            common.explicit_attention(model, False)
        if k == n:
            last["per_prompt"] = acc
        return acc

    _, flops_interp = count_flops(lambda: batched(min(n, batch)))
    _, flops_few = count_flops(lambda: per_prompt(min(n, 2)))
    timings = {
        "interp": common.measure(batched, args.device, repeats, args.warmup, warmup_fn=lambda: batched(min(n, batch))),
        "official_work": common.measure(per_prompt, args.device, repeats, args.warmup,
                                        warmup_fn=lambda: per_prompt(min(n, 2))),
    }
    flops = {"interp": flops_interp * n // min(n, batch), "official_work": flops_few * n // min(n, 2)}

    # same statistics? mean result = mean z @ W_O(head) + bias
    stats, acc = last["batched"], last["per_prompt"]
    diff = 0.0
    for site in (s for s in acc if s.endswith(("blocks.0.attn.hook_z",))):
        attn = model.get_submodule(site.rsplit(".", 1)[0])
        w_o = rearrange(attn.proj.weight.double().cpu(), "m (h d) -> h d m", h=attn.n_heads)
        projected = einsum(stats.mean(site), w_o, "s h d, h d m -> s h m") + attn.proj.bias.double().cpu()
        official = acc[site]["sum"] / acc[site]["count"].double().view(-1, 1, 1)
        seen = acc[site]["count"] > 0
        diff = max(diff, float((projected[seen] - official[seen]).abs().max()))

    sites = len(acc)
    result = common.report(
        "collect", args, source,
        sizes={"prompts": n, "batch": batch, "layout": layout, "sites": sites, "task": args.task,
               "explicit_attention": args.explicit_attention},
        timings=timings, fast="interp", slow="official_work", per="run",
        extra={"seconds_per_prompt": {k: v["median"] / n for k, v in timings.items()},
               "max_abs_mean_diff": diff,
               **flop_report(flops, {k: v["median"] for k, v in timings.items()}, common.probe(args.device))},
    )
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
