"""Less work, same answer: a REINFORCE run with the official pixel reward, with and without the decode cache.

One REINFORCE run (official algorithm: logit init -1, Adam lr 0.1, z-scored advantage) on
``--prompts`` training prompts, zero-shot, the official pixel reward (hstack full-grid decode,
integer pixels, official IoU / MSE: :mod:`bench.official`). Every step's patched forwards run
once (batched); their codes are then decoded two ways, each timed:

* ``plain`` — every row's full code grid VQGAN-decoded (batched, as interp's pixel path);
* ``cached`` — :class:`interp.models.decode_cache.DecodeCache`: each distinct grid decoded once
  per step, and grids seen in earlier steps not at all (bounded LRU).

The rewards of the two must be bitwise equal at every step (checked; the run follows them).
As the policy converges, more samples predict the same grid, so the saving grows: the
per-step curve (``steps``: distinct grids, cache hits, seconds) is in the JSON. The official
per-sample work for the same step is timed once at the start (``official_step_seconds``), so
``ratio_first`` / ``ratio_last`` compare a whole interp step (forward + cached decode + metric)
with it.

    python -m bench.pixel_savings --model tiny --steps 60 --samples 64
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from bench import common
from bench.official import official_codes, official_reward


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="REINFORCE steps (official: 500)")
    p.add_argument("--samples", type=int, default=None, help="unit sets per step (official: 320)")
    p.add_argument("--prompts", type=int, default=None, help="training prompts (official: 10)")
    p.add_argument("--granularity", choices=("layer", "head", "group"), default="group")
    p.add_argument("--task", default="segmentation")
    p.add_argument("--chunk", type=int, default=None, help="rows per forward")
    p.add_argument("--lr", type=float, default=0.1)
    args = p.parse_args(argv)
    common.setup(args)

    from interp.metrics import mse, segmentation_iou, task_metric
    from interp.canvas import normalize
    from interp.models.decode_cache import DecodeCache
    from interp.taskvectors.patching import MeanPatcher
    from interp.taskvectors.reinforce import ReinforceConfig, reinforce_loop
    from interp.taskvectors.units import UnitSpace

    steps = common.pick(args.steps, args, 60, large_cpu=4, quick=3)
    samples = common.pick(args.samples, args, 64, large_cpu=8, quick=4)
    n_prompts = common.pick(args.prompts, args, 10, large_cpu=4, quick=2)
    chunk = args.chunk or samples
    model, source = common.get_model(args.model, args.device, args.seed)
    layout_name = "zero_shot"
    space = UnitSpace.for_model(model, args.granularity, layout=layout_name)
    from interp.canvas import get_layout

    layout = get_layout(layout_name, model.grid)
    means = common.random_means(model, args.seed)
    prompts = common.make_prompts(model, args.task, n_prompts, seed=args.seed)
    canvases = common.to_device(prompts.canvases, args.device)
    patcher = MeanPatcher(model, means, layout, space)
    side = model.grid.patches_per_side
    cache = DecodeCache(model.vqgan.decode_codes)
    iou = task_metric(args.task).name == "iou"

    def score(decoded: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        predicted, target = normalize(decoded.double()), canvases[rows].double()
        if iou:
            return segmentation_iou(predicted, target, model.grid, quantize=True, empty=1.0).double()
        return -mse(predicted, target, model.grid, quantize=True).double()

    curve: list[dict[str, Any]] = []
    which = torch.arange(samples) % n_prompts

    # the official per-sample work of one step, timed once (same sampled sets as step 0 would use)
    first = common.sample_masks(len(space), samples, seed=args.seed)
    record = common.official_record_hooks(model)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(samples):
            canvas = canvases[int(which[i]) : int(which[i]) + 1]
            with model.hooks(patcher.hooks(first[i]) + record):
                logits = model(canvas, layout)
            official_reward(model, prompts.task, canvas, logits, layout).item()
    official_seconds = time.perf_counter() - start

    @torch.no_grad()
    def losses(masks: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        codes = torch.cat([official_codes(patcher.forward(canvases[which[a : a + chunk]], masks[a : a + chunk]), layout)
                           for a in range(0, samples, chunk)])
        common.sync(args.device)
        t1 = time.perf_counter()
        plain = score(model.vqgan.decode_codes(codes, grid=(side, side)), which)
        common.sync(args.device)
        t2 = time.perf_counter()
        hits = cache.hits
        cached = score(cache(codes, grid=(side, side)), which)
        common.sync(args.device)
        t3 = time.perf_counter()
        if not torch.equal(plain.nan_to_num(-9), cached.nan_to_num(-9)):
            raise AssertionError(f"step {len(curve)}: cached rewards differ from the plain decode")
        distinct = len({row.numpy().tobytes() for row in codes.cpu()})
        curve.append({"step": len(curve), "distinct_grids": distinct, "cache_hits": cache.hits - hits,
                      "forward_s": t1 - t0, "plain_reward_s": t2 - t1, "cached_reward_s": t3 - t2,
                      "mean_reward": float(plain.nanmean())})
        return -plain

    cfg = ReinforceConfig(steps=steps, samples=samples, lr=args.lr, eval_every=10**9, seed=args.seed)
    reinforce_loop(len(space), losses, None, cfg, progress=not args.quick)

    def step_seconds(row: dict[str, Any], which_reward: str) -> float:
        return row["forward_s"] + row[which_reward]

    head, tail = curve[: max(1, len(curve) // 10)], curve[-max(1, len(curve) // 10):]
    mean = lambda rows, key: sum(r[key] if isinstance(key, str) else key(r) for r in rows) / len(rows)  # noqa: E731
    result = {
        "bench": "pixel_savings", "model": args.model, "model_source": source, "device": str(args.device),
        "quick": bool(args.quick), **common.environment(args.device),
        "sizes": {"steps": steps, "samples": samples, "prompts": n_prompts, "units": len(space),
                  "granularity": args.granularity, "task": args.task, "layout": layout_name},
        "official_step_seconds": official_seconds,
        "fast": "interp_cached", "slow": "official_work",
        "seconds": {"official_work": official_seconds,
                    "interp_cached": mean(tail, lambda r: step_seconds(r, "cached_reward_s")),
                    "interp_plain": mean(tail, lambda r: step_seconds(r, "plain_reward_s"))},
        "ratio_first": official_seconds / mean(head, lambda r: step_seconds(r, "cached_reward_s")),
        "ratio_last": official_seconds / mean(tail, lambda r: step_seconds(r, "cached_reward_s")),
        "decode_saving_first": mean(head, "plain_reward_s") / mean(head, "cached_reward_s"),
        "decode_saving_last": mean(tail, "plain_reward_s") / mean(tail, "cached_reward_s"),
        "distinct_share_last": mean(tail, "distinct_grids") / samples,
        "cache_entries": len(cache), "cache_bytes": cache.nbytes,
        "steps": curve,
    }
    result["ratio"] = result["ratio_last"]
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
