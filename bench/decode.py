"""Official full-grid VQGAN decode vs the band decode: cost, and how far the band reward is.

    python -m bench.decode                       # tiny model, cost ratio + agreement
    python -m bench.decode --reference           # the ../shared reference mae_small + vqgan_small

Both variants score the same patched zero-shot logits (random unit sets of the official initial
policy, patched with means collected one-shot) through :class:`interp.scoring.Scorer`:
``decode="official"`` (the paper's path: bottom-half codes repeated into the top half, the full
grid decoded) and ``decode="band"`` (only the bottom band decoded). Timed interleaved in one run;
the agreement is the Pearson correlation of the two rewards and how often the sign of the
REINFORCE advantage (the batch z-score) agrees, per task; ``before`` is the same for the reward
interp computed before the official path (band decode, float canvas, unquantised MSE).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from bench import common

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def reference_model() -> tuple[Any, str]:
    """The official-architecture reference fixtures: mae_small with vqgan_small."""
    from interp.models import MAEConfig, ModelConfig, VQGANConfig, load_official

    mae = MAEConfig.from_dict(json.loads((REFERENCE / "mae_small.config.json").read_text()))
    vqgan = VQGANConfig.from_taming(json.loads((REFERENCE / "vqgan_small.config.json").read_text()))
    model = load_official(REFERENCE / "mae_small.safetensors", REFERENCE / "vqgan_small.safetensors",
                          config=ModelConfig(mae, vqgan))
    return model.eval(), "reference mae_small + vqgan_small (../shared/reference)"


def agreement(official: torch.Tensor, band: torch.Tensor) -> dict[str, float]:
    """Pearson r of two reward vectors, and the share of rows whose batch z-score has the same sign."""
    a, b = official.double(), band.double()
    r = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    za, zb = (a - a.mean()) / (a.std() + 1e-6), (b - b.mean()) / (b.std() + 1e-6)
    return {"reward_pearson": r, "advantage_sign_agreement": float(((za > 0) == (zb > 0)).double().mean()),
            "max_abs_reward_diff": float((a - b).abs().max())}


def before_reward(model: Any, task: str, canvases: torch.Tensor, logits: torch.Tensor, layout: Any) -> torch.Tensor:
    """The reward as interp computed it before the official path (band decode, float canvas,
    unquantised MSE): the "before" of the agreement numbers."""
    from interp.canvas import denormalize, normalize
    from bench.float_metrics import task_reward
    from interp.metrics import task_metric
    from interp.models.pixels import decode_prediction, masked_pixels

    pixels = decode_prediction(model.vqgan, logits.argmax(-1), layout, "band")
    keep = masked_pixels(layout, canvases.device).to(pixels.dtype)
    predicted = denormalize(canvases).clamp(0, 1) * (1 - keep) + pixels * keep
    extra = {"empty": 1.0} if task_metric(task).name == "iou" else {}
    return task_reward(task, normalize(predicted), canvases, model.grid, **extra)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--reference", action="store_true", help="use ../shared/reference mae_small + vqgan_small")
    p.add_argument("--samples", type=int, default=None, help="patched forwards scored per task")
    p.add_argument("--prompts", type=int, default=None)
    p.add_argument("--tasks", nargs="+", default=["lowlight", "segmentation"])
    p.add_argument("--chunk", type=int, default=32)
    args = p.parse_args(argv)
    common.setup(args)

    from interp.scoring import Scorer
    from interp.taskvectors.patching import MeanPatcher
    from interp.taskvectors.collect import collect
    from interp.taskvectors.units import UnitSpace

    samples = common.pick(args.samples, args, 256, large_cpu=16, quick=8)
    n_prompts = common.pick(args.prompts, args, 16, quick=2)
    repeats = common.pick(args.repeats, args, 3, large_cpu=1, quick=1)
    model, source = reference_model() if args.reference else common.get_model(args.model, args.device, args.seed)
    model = model.to(args.device)
    layout = "zero_shot"
    space = UnitSpace.for_model(model, "group", layout=layout)
    by_task: dict[str, Any] = {}
    timing_logits = None
    for task in args.tasks:
        prompts = common.make_prompts(model, task, n_prompts, seed=args.seed)
        canvases = prompts.canvases.to(args.device)
        means = collect(model, [canvases], layout="one_shot", task=task, progress=False)
        patcher = MeanPatcher(model, means, layout, space)
        masks = common.sample_masks(len(space), samples, seed=args.seed)
        which = torch.arange(samples) % n_prompts
        scorers = {d: Scorer(model, task, layout, "pixel", d) for d in ("official", "band")}
        rewards: dict[str, list[torch.Tensor]] = {d: [] for d in (*scorers, "before")}
        with torch.no_grad():
            for a in range(0, samples, args.chunk):
                rows = canvases[which[a : a + args.chunk].to(args.device)]
                logits = patcher.forward(rows, masks[a : a + args.chunk])
                timing_logits = timing_logits or (rows, logits)
                for d, scorer in scorers.items():
                    rewards[d].append(scorer(rows, logits).reward.cpu())
                rewards["before"].append(before_reward(model, task, rows, logits, scorers["band"].layout).cpu())
        official = torch.cat(rewards["official"])
        by_task[task] = {"samples": samples, **agreement(official, torch.cat(rewards["band"])),
                         "before": agreement(official, torch.cat(rewards["before"]))}

    rows, logits = timing_logits
    scorers = {d: Scorer(model, args.tasks[0], layout, "pixel", d) for d in ("official", "band")}
    timings = common.measure_interleaved({d: (lambda s=s: s(rows, logits)) for d, s in scorers.items()},
                                         args.device, repeats, args.warmup)
    name = "reference" if args.reference else args.model
    args.model = name
    result = common.report(
        "decode", args, source, sizes={"rows": int(rows.shape[0]), "samples": samples, "prompts": n_prompts,
                                       "layout": layout, "tasks": list(args.tasks)},
        timings=timings, fast="band", slow="official", per=None, extra={"agreement": by_task},
    )
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
