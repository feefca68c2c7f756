"""Cost of idle hook points: the hooked model's forward vs. a plain forward of the same weights.

Three numbers for one forward of ``--batch`` canvases (one-shot layout by default):

* ``plain`` — :class:`bench.plain_forward.PlainForward`: the same modules' weights, no hook
  points (first checked to match the hooked logits to 1e-5);
* ``hooked_idle`` — ``model(canvas, layout)``: every hook point is called, none is watched;
* ``hooked_cache_z`` — ``model.run_with_cache(..., names_filter=<every attn.hook_z>)``.

``ratio`` = hooked_idle / plain (1.0 = free); ``ratio_cache_z`` = hooked_cache_z / plain.
The variants are timed in turn within each repeat (see ``common.measure_interleaved``).

    python -m bench.hooks_overhead --model tiny --batch 1
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from bench import common
from bench.plain_forward import PlainForward, check_matches


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=None, help="canvases per forward (default 1)")
    p.add_argument("--layout", choices=("one_shot", "zero_shot"), default="one_shot")
    p.add_argument("--task", default="segmentation")
    args = p.parse_args(argv)
    common.setup(args)

    batch = common.pick(args.batch, args, 1)
    repeats = common.pick(args.repeats, args, 30, large_cpu=5, quick=3)
    if args.model == "small" and args.repeats is None and not args.quick:
        repeats = 15

    model, source = common.get_model(args.model, args.device, args.seed)
    prompts = common.make_prompts(model, args.task, batch, seed=args.seed)
    canvas = prompts.canvases.to(args.device)
    diff = check_matches(model, canvas, args.layout)
    plain = PlainForward(model, args.layout)
    z_sites = [n for n in model.hook_dict if n.endswith("attn.hook_z")]

    @torch.no_grad()
    def hooked() -> None:
        model(canvas, args.layout)

    @torch.no_grad()
    def cached() -> None:
        model.run_with_cache(canvas, args.layout, names_filter=z_sites)

    timings = common.measure_interleaved(
        {"plain": lambda: plain(canvas), "hooked_idle": hooked, "hooked_cache_z": cached},
        args.device, repeats, args.warmup,
    )
    sec = {k: v["median"] for k, v in timings.items()}
    result = common.report(
        "hooks_overhead", args, source,
        sizes={"batch": batch, "layout": args.layout, "hook_points": len(model.hook_dict), "cached_sites": len(z_sites)},
        timings=timings, fast="plain", slow="hooked_idle", per="forward",
        extra={"ratio_cache_z": sec["hooked_cache_z"] / sec["plain"], "max_abs_logit_diff": diff},
    )
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
