"""A whole REINFORCE run, step by step: interp's savings vs. the official algorithm's work.

The library's REINFORCE (:func:`interp.taskvectors.search.reinforce.reinforce_loop`, official
algorithm: logit init -1, Adam lr 0.1, z-scored advantage) on ``--prompts`` training prompts,
zero-shot, with task means collected from ``--collect`` one-shot prompts of the task (or
random stand-ins: ``--means random``). Every step's samples are scored by
:class:`~interp.taskvectors.search.SearchProblem` with its exact savings (each distinct
(prompt, unit set) once, the clean prefix reused, decodes cached across steps), timed:

* ``interp`` — that step's scoring, savings on;
* ``interp_plain`` — every ``--check-every`` steps (and the first and last), the same samples
  scored with the savings off (every row a whole patched forward, every grid decoded). The
  two must be bitwise equal on the CPU (checked; the run fails otherwise); on CUDA, where kernels
  may change with the batch size, the largest difference is recorded (``plain_max_abs_diff``);
* ``official_work`` — what ``reinforce_train.py`` does per sample (:func:`bench.official.official_step`),
  timed on ``--official-samples`` of the step's samples every ``--official-every`` steps and at
  the last, scaled to the step (the official loop is per sample, so its cost is linear in the
  samples); timing it through the run spreads changes in machine load over both sides.

As the policy converges its samples repeat, so the interp step gets cheaper while the
official one does not: the JSON has the per-step curve (``steps``: seconds, distinct rows,
blocks run, decode-cache hits) and three ratios of official to interp time: ``ratio_first``
(first tenth of the steps), ``ratio_last`` (last tenth) and ``ratio_run`` (the whole run).
The held-out evaluation every 50 steps is left out on both sides.

``--start-profile FILE`` starts the policy from the final probability profile of an earlier
run's JSON (its sorted probabilities, spread over this model's units in a seeded random
order): how a late step costs on a model too large to run 500 steps here.

    python -m bench.reinforce_run --model tiny --reward pixel            # official sizes: 500 x 320, 10 prompts
    python -m bench.reinforce_run --model large --steps 2 --start-profile bench/results.tiny_run.json
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from bench import common
from bench.official import official_step


def _profile(result: dict[str, Any], n_units: int, seed: int) -> torch.Tensor:
    """Logits ``[n_units]`` with the sorted final probabilities of an earlier run, shuffled."""
    sorted_p = torch.tensor(result["final_probabilities_sorted"], dtype=torch.float64)
    at = torch.linspace(0, len(sorted_p) - 1, n_units, dtype=torch.float64)
    lo = at.floor().long()
    hi = (lo + 1).clamp(max=len(sorted_p) - 1)
    p = sorted_p[lo] + (sorted_p[hi] - sorted_p[lo]) * (at - lo)
    p = p[torch.randperm(n_units, generator=torch.Generator().manual_seed(seed))].clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="REINFORCE steps (official: 500)")
    p.add_argument("--samples", type=int, default=None, help="unit sets per step (official: 320)")
    p.add_argument("--prompts", type=int, default=None, help="training prompts (official: 10)")
    p.add_argument("--reward", choices=("pixel", "token"), default="pixel")
    p.add_argument("--granularity", choices=("layer", "head", "group"), default="group")
    p.add_argument("--task", default="segmentation")
    p.add_argument("--means", choices=("collect", "random"), default="collect")
    p.add_argument("--collect", type=int, default=32, help="one-shot prompts the task means come from")
    p.add_argument("--chunk", type=int, default=None, help="rows per forward")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--check-every", type=int, default=25, help="steps between plain-path checks (bitwise)")
    p.add_argument("--official-samples", type=int, default=None, help="samples the official work is timed on (default 32)")
    p.add_argument("--official-every", type=int, default=100, help="steps between timings of the official work")
    p.add_argument("--start-profile", default=None, help="an earlier run's JSON: start from its final policy profile")
    args = p.parse_args(argv)
    common.setup(args)

    import json

    from interp.canvas import get_layout
    from interp.taskvectors.search import SearchProblem
    from interp.taskvectors.search.reinforce import ReinforceConfig, reinforce_loop
    from interp.taskvectors.collect import collect
    from interp.taskvectors.units import UnitSpace

    steps = common.pick(args.steps, args, 500, large_cpu=2, quick=3)
    samples = common.pick(args.samples, args, 320, quick=8)
    n_prompts = common.pick(args.prompts, args, 10, quick=2)
    n_official = min(samples, common.pick(args.official_samples, args, 32, large_cpu=8, quick=2))
    chunk = args.chunk or common.pick(None, args, samples, large_cpu=16)
    model, source = common.get_model(args.model, args.device, args.seed)
    layout = get_layout("zero_shot", model.grid)
    space = UnitSpace.for_model(model, args.granularity, layout="zero_shot")
    prompts = common.make_prompts(model, args.task, n_prompts, seed=args.seed)
    if args.means == "collect":
        shots = common.make_prompts(model, args.task, common.pick(None, args, args.collect, quick=2), seed=args.seed + 1,
                                    split="trn")
        means = collect(model, [common.to_device(shots.canvases, args.device)], "one_shot", task=args.task, progress=False)
    else:
        means = common.random_means(model, args.seed)
    fast = SearchProblem(model, space, means, prompts, prompts, layout, reward=args.reward, chunk=chunk)
    plain = SearchProblem(model, space, means, prompts, prompts, layout, reward=args.reward, chunk=chunk, savings=False)
    record: list = []  # reinforce_train.py's generate_image runs the blocks with record=False
    canvases = common.to_device(prompts.canvases, args.device)
    which = torch.arange(samples) % n_prompts
    official: list[dict[str, Any]] = []

    def time_official(step: int, masks: torch.Tensor) -> None:
        common.explicit_attention(model, True)  # the official softmax(q k^T) v
        start = time.perf_counter()
        try:
            official_step(model, fast.patcher.hooks, record, prompts.task, canvases, which[:n_official], masks[:n_official],
                          layout)
        finally:
            common.explicit_attention(model, False)
        official.append({"step": step, "seconds": (time.perf_counter() - start) * samples / n_official})

    curve: list[dict[str, Any]] = []
    work, decodes = fast.rows.work, fast.decodes

    def losses(masks: torch.Tensor) -> torch.Tensor:
        step = len(curve)
        before = (work.distinct, work.blocks, decodes.hits if decodes else 0, decodes.misses if decodes else 0)
        common.sync(args.device)
        t0 = time.perf_counter()
        reward = fast.rewards(prompts, which, masks, args.reward)
        common.sync(args.device)
        row = {"step": step, "seconds": time.perf_counter() - t0, "distinct_rows": work.distinct - before[0],
               "blocks_share": (work.blocks - before[1]) / (samples * len(fast.rows.blocks)),
               "mean_reward": float(reward.nanmean()), "units_patched": float(masks.float().sum(1).mean())}
        if decodes is not None:
            row.update(decode_hits=decodes.hits - before[2], decoded=decodes.misses - before[3])
        if step % args.check_every == 0 or step == steps - 1:
            t1 = time.perf_counter()
            expected = plain.rewards(prompts, which, masks, args.reward)
            common.sync(args.device)
            row["plain_seconds"] = time.perf_counter() - t1
            row["plain_max_abs_diff"] = float((reward - expected).abs().nan_to_num(0).max())
            if not torch.equal(reward.nan_to_num(-9), expected.nan_to_num(-9)) and not str(args.device).startswith("cuda"):
                raise AssertionError(f"step {step}: the rewards with savings differ from the plain path")
        if step % args.official_every == 0 or step == steps - 1:
            time_official(step, masks)
        curve.append(row)
        return -reward

    cfg = ReinforceConfig(steps=steps, samples=samples, lr=args.lr, eval_every=10**9, seed=args.seed)
    started = time.perf_counter()
    start = _profile(json.loads(open(args.start_profile).read()), len(space), args.seed) if args.start_profile else None
    state = reinforce_loop(len(space), losses, None, cfg, progress=not args.quick, init_logits=start)
    wall = time.perf_counter() - started

    tenth = max(1, steps // 10)
    interp_s = lambda rows: sum(r["seconds"] for r in rows) / len(rows)  # noqa: E731
    official_step_s = sum(o["seconds"] for o in official) / len(official)
    final_p = torch.sigmoid(state.logits).sort().values
    keep = torch.linspace(0, len(final_p) - 1, min(len(final_p), 201)).round().long()
    checked = [r for r in curve if "plain_seconds" in r]
    result = {
        "bench": "reinforce_run", "model": args.model, "model_source": source, "device": str(args.device),
        "quick": bool(args.quick), **common.environment(args.device),
        "sizes": {"steps": steps, "samples": samples, "prompts": n_prompts, "units": len(space), "reward": args.reward,
                  "granularity": args.granularity, "task": args.task, "means": args.means, "chunk": chunk,
                  "official_samples_timed": n_official, "start_profile": args.start_profile},
        "fast": "interp", "slow": "official_work",
        "seconds": {"official_work": official_step_s, "interp": interp_s(curve),
                    "interp_plain": sum(r["plain_seconds"] for r in checked) / len(checked)},
        "official_steps": official,
        "ratio_first": official_step_s / interp_s(curve[:tenth]),
        "ratio_last": official_step_s / interp_s(curve[-tenth:]),
        "ratio_run": official_step_s * steps / sum(r["seconds"] for r in curve),
        "saving_vs_plain": sum(r["plain_seconds"] for r in checked) / sum(r["seconds"] for r in checked),
        "plain_max_abs_diff": max(r["plain_max_abs_diff"] for r in checked),
        "distinct_share_last": sum(r["distinct_rows"] for r in curve[-tenth:]) / (tenth * samples),
        "final_units_on": int((final_p > 0.5).sum()),
        "final_probabilities_sorted": final_p[keep].tolist(),
        "wall_seconds": wall, **common.memory(args.device),
        "steps": curve,
    }
    result["ratio"] = result["ratio_run"]
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
