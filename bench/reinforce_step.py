"""One REINFORCE step's scoring: batched library path vs. the official per-sample loop.

Both variants score the same ``S`` sampled unit sets (official initial policy, logit -1) on
``P`` training prompts (sample ``i`` on prompt ``i mod P``), zero-shot, with the same reward:

* ``batched`` — the library: ``PatchedScorer.rewards`` (each row of a batched forward
  patches its own units; ``--chunk`` rows per forward).
* ``per_sample_loop`` — shaped like the official ``JointModel.forward``: a Python loop, one
  forward per sample with that sample's patch (``MeanPatcher.hooks(mask_row)``), every
  block's per-head projected outputs recorded one head at a time (the official
  ``record=True``, see :class:`bench.common.OfficialRecord`), the sample scored alone and
  read back with ``.item()``.

The ratio compares seconds per sample (both variants run all ``S`` samples, so it is also
the ratio of totals). Nothing is extrapolated: for ``large`` on CPU use fewer samples.
Both variants' rewards are compared (``max_abs_reward_diff``) to show they do the same work.
``batched_reward_share`` is the fraction of the batched time spent in the reward alone
(timed once from precomputed logits): the VQGAN decoder for ``pixel``, its encoder for
``token`` (the target codes are recomputed for every row).

    python -m bench.reinforce_step --model tiny --reward pixel
    python -m bench.reinforce_step --model large --samples 16 --reward token
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from bench import common


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=None, help="unit sets scored (official: 320; large on CPU: 16)")
    p.add_argument("--prompts", type=int, default=None, help="training prompts (official: 10)")
    p.add_argument("--reward", choices=("pixel", "token"), default="pixel")
    p.add_argument("--granularity", choices=("layer", "head", "group", "token"), default="group",
                   help="unit space (official default: group, i.e. granularity 1)")
    p.add_argument("--task", default="segmentation")
    p.add_argument("--chunk", type=int, default=None, help="rows per batched forward (default: all samples)")
    p.add_argument("--no-record", action="store_true", help="per-sample loop without the per-head recording")
    p.add_argument("--explicit-attention", action="store_true",
                   help="per-sample loop with softmax(qk)v attention as the official code (default: SDPA)")
    args = p.parse_args(argv)
    common.setup(args)

    from interp.taskvectors.patching import MeanPatcher
    from interp.taskvectors.reinforce import PatchedScorer, reward_from_logits
    from interp.taskvectors.units import UnitSpace

    samples = common.pick(args.samples, args, 320, large_cpu=16, quick=4)
    n_prompts = common.pick(args.prompts, args, 10, quick=2)
    chunk = args.chunk or common.pick(None, args, samples, large_cpu=min(samples, 16))
    repeats = common.pick(args.repeats, args, 3, large_cpu=1, quick=1)

    model, source = common.get_model(args.model, args.device, args.seed)
    layout = "zero_shot"
    space = UnitSpace.for_model(model, args.granularity, layout=layout)
    means = common.random_means(model, args.seed)
    prompts = common.make_prompts(model, args.task, n_prompts, seed=args.seed)
    masks = common.sample_masks(len(space), samples, seed=args.seed)
    which = torch.arange(samples) % n_prompts

    scorer = PatchedScorer(model, space, means, layout, args.reward, chunk)
    patcher = MeanPatcher(model, means, layout, space)
    record = [] if args.no_record else common.official_record_hooks(model)
    canvases = prompts.canvases.to(args.device)

    last: dict[str, torch.Tensor] = {}  # rewards of the latest full run of each variant

    def batched() -> torch.Tensor:
        last["batched"] = scorer.rewards(prompts, which, masks)
        return last["batched"]

    @torch.no_grad()
    def per_sample(n: int = samples) -> torch.Tensor:
        out = []
        common.explicit_attention(model, args.explicit_attention)
        try:
            for i in range(n):
                k = int(which[i])
                canvas = canvases[k : k + 1]
                with model.hooks(patcher.hooks(masks[i]) + record):
                    logits = model(canvas, layout)
                reward = reward_from_logits(model, prompts.task, canvas, logits, scorer.layout, args.reward)
                out.append(reward.item())
        finally:
            common.explicit_attention(model, False)
        if n == samples:
            last["per_sample"] = torch.tensor(out)
        return torch.tensor(out)

    timings = {
        "batched": common.measure(batched, args.device, repeats, args.warmup),
        "per_sample_loop": common.measure(per_sample, args.device, repeats, args.warmup,
                                          warmup_fn=lambda: per_sample(min(2, samples))),
    }
    # how much of the batched path is the reward (VQGAN encode for token, decode for pixel)
    with torch.no_grad():
        logits = [patcher.forward(canvases[which[a : a + chunk].to(args.device)], masks[a : a + chunk])
                  for a in range(0, samples, chunk)]

    @torch.no_grad()
    def reward_only() -> None:
        for a, chunk_logits in zip(range(0, samples, chunk), logits):
            rows = canvases[which[a : a + chunk].to(args.device)]
            reward_from_logits(model, prompts.task, rows, chunk_logits, scorer.layout, args.reward)

    reward_t = common.measure(reward_only, args.device, 1, 0)["median"]
    agree = (last["batched"].double() - last["per_sample"].double()).abs()
    per_sample_seconds = {k: v["median"] / samples for k, v in timings.items()}
    result = common.report(
        "reinforce_step", args, source,
        sizes={"samples": samples, "prompts": n_prompts, "units": len(space), "granularity": args.granularity,
               "reward": args.reward, "task": args.task, "chunk": chunk, "layout": layout,
               "record_heads": not args.no_record, "explicit_attention": args.explicit_attention},
        timings=timings, fast="batched", slow="per_sample_loop", per="sample",
        extra={"seconds_per_sample": per_sample_seconds,
               "batched_reward_share": reward_t / timings["batched"]["median"],
               "max_abs_reward_diff": float(agree.nan_to_num(0).max()),
               "mean_units_patched": float(masks.float().sum(1).mean())},
    )
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
