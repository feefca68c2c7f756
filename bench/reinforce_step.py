"""One REINFORCE step's scoring: interp's batched path vs. the official algorithm's work.

Both variants score the same ``S`` sampled unit sets (official initial policy, logit -1) on
``P`` training prompts (sample ``i`` on prompt ``i mod P``), zero-shot:

* ``interp`` — the library: ``SearchProblem.rewards`` (each row of a batched forward patches
  its own units; ``--chunk`` rows per forward) with ``--reward pixel`` or ``token``. Its decode
  cache is emptied before every timed call (one step's decodes only); the prompts' clean
  prefix and target codes, computed once per run, are kept after the warm-up. At the initial
  policy rows rarely repeat: what a converging run saves is ``bench.reinforce_run``'s.
* ``official_work`` — what ``reinforce_train.py`` does per sample (:mod:`bench.official`): one
  forward with that sample's patch and the official explicit attention (``softmax(q k^T) v``;
  ``--sdpa`` for torch's fused kernel), the canvas's target codes (a VQGAN encode) and
  cross-entropy, the 98 codes hstack-ed to a full grid, the **whole grid** VQGAN-decoded,
  truncated to integers, the official IoU / MSE, ``.item()``. Always the pixel reward: the
  official code has no other. Its blocks run with ``record=False`` (``generate_image``'s default),
  so no per-head recording (``--record`` adds it: what collection pays).

``ratio`` = official_work / interp seconds (both run all ``S`` samples). Each variant's FLOPs
are counted once (``torch.utils.flop_counter``, untimed; interp's on a warm call, so the work
the timed calls skip is not counted) and reported with the achieved FLOP/s as a fraction of a
float32 matmul probe timed in the same run. ``code_agreement``: the share
of predicted codes on which the two variants agree (same patched forwards); with the pixel
reward, ``max_abs_reward_diff_vs_official`` shows how far interp's reward is from the official.

    python -m bench.reinforce_step --model tiny --reward pixel
    python -m bench.reinforce_step --model large --samples 16 --reward token
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from bench import common
from bench.official import count_flops, flop_report, official_step


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=None, help="unit sets scored (official: 320; large on CPU: 16)")
    p.add_argument("--prompts", type=int, default=None, help="training prompts (official: 10)")
    p.add_argument("--reward", choices=("pixel", "token"), default="pixel")
    p.add_argument("--granularity", choices=("layer", "head", "group", "token"), default="group",
                   help="unit space (official default: group, i.e. granularity 1)")
    p.add_argument("--task", default="segmentation")
    p.add_argument("--chunk", type=int, default=None, help="rows per batched forward (default: all samples)")
    p.add_argument("--record", action="store_true",
                   help="per-sample loop with the per-head recording (reinforce_train.py runs without it)")
    p.add_argument("--sdpa", action="store_true",
                   help="per-sample loop on torch's fused attention (default: softmax(qk)v, as the official code)")
    args = p.parse_args(argv)
    common.setup(args)

    from interp.taskvectors.patching import MeanPatcher
    from interp.scoring import Scorer
    from interp.taskvectors.search import SearchProblem
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

    scorer = SearchProblem(model, space, means, prompts, prompts, layout, reward=args.reward, chunk=chunk)
    patcher = MeanPatcher(model, means, layout, space)
    record = common.official_record_hooks(model) if args.record else []
    canvases = common.to_device(prompts.canvases, args.device)

    last: dict[str, torch.Tensor] = {}  # rewards / codes of the latest full run of each variant

    def batched() -> torch.Tensor:
        if scorer.decodes is not None:  # a step's decodes, not the previous repeat's
            scorer.decodes.clear()
        last["interp"] = scorer.rewards(prompts, which, masks, args.reward)
        return last["interp"]

    def per_sample(n: int = samples) -> torch.Tensor:
        common.explicit_attention(model, not args.sdpa)
        try:
            out, codes = official_step(model, patcher.hooks, record, prompts.task, canvases, which[:n], masks[:n],
                                       scorer.layout)
        finally:
            common.explicit_attention(model, False)
        if n == samples:
            last["official_work"], last["official_codes"] = out, codes
        return out

    few = min(2, samples)
    batched()  # warm-up: the prompts' clean prefix and target codes, kept for every later call
    _, flops_interp = count_flops(batched)  # the work of a warm call, as timed (the reused prefix not counted)
    _, flops_few = count_flops(lambda: per_sample(few))
    timings = {
        "interp": common.measure(batched, args.device, repeats, args.warmup - 1),
        "official_work": common.measure(per_sample, args.device, repeats, args.warmup,
                                        warmup_fn=lambda: per_sample(few)),
    }
    # how much of the batched path is the reward (VQGAN decode for pixel; the cross-entropy
    # against target codes encoded once per prompt batch for token), on the same logits
    with torch.no_grad():
        logits = [patcher.forward(canvases[which[a : a + chunk].to(args.device)], masks[a : a + chunk])
                  for a in range(0, samples, chunk)]
    target = scorer.codes(prompts) if args.reward == "token" else None
    plain_scorer = Scorer(model, prompts.task, scorer.layout, args.reward)  # no decode cache: every row decoded

    @torch.no_grad()
    def reward_only() -> None:
        for a, chunk_logits in zip(range(0, samples, chunk), logits):
            rows = which[a : a + chunk].to(args.device)
            plain_scorer.rewards(canvases[rows], chunk_logits, None if target is None else target[rows])

    reward_t = common.measure(reward_only, args.device, 1, 0)["median"]
    agreement = float((torch.cat(logits).argmax(-1).cpu() == last["official_codes"].cpu()).double().mean())
    extra = {}
    if args.reward == "pixel":
        extra["max_abs_reward_diff_vs_official"] = float(
            (last["interp"].double() - last["official_work"].double()).abs().nan_to_num(0).max())
    seconds = {k: v["median"] for k, v in timings.items()}
    flops = {"interp": flops_interp, "official_work": flops_few * samples // few}
    result = common.report(
        "reinforce_step", args, source,
        sizes={"samples": samples, "prompts": n_prompts, "units": len(space), "granularity": args.granularity,
               "reward": args.reward, "task": args.task, "chunk": chunk, "layout": layout,
               "record_heads": args.record, "explicit_attention": not args.sdpa},
        timings=timings, fast="interp", slow="official_work", per="sample",
        extra={"seconds_per_sample": {k: v / samples for k, v in seconds.items()},
               "interp_reward_share": reward_t / seconds["interp"],
               "code_agreement": agreement,
               "mean_units_patched": float(masks.float().sum(1).mean()),
               **extra, **flop_report(flops, seconds, common.probe(args.device))},
    )
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
