#!/usr/bin/env python
"""Weight-space vs activation-space task vectors on the tiny MAE-VQGAN.

    python scripts/compare_task_vectors.py --out runs/weights [--activation-run runs/demo] [--quick]

Fine-tunes the MAE once per task in the zero-shot layout (the task vectors, saved under
``<out>/task_vectors/`` and skipped when already there: rerunning resumes), then scores task
arithmetic, multi-task addition, aTLAS, task-vector bases (M = T // 2, AE and PCA) and the
activation-space task vectors of a demo / pipeline run on the demo's held-out prompts
(zero-shot; one-shot as the reference), with what each costs. Writes ``comparison.csv`` /
``comparison.md`` and ``manifest.json`` into ``<out>``. See ``interp.weights.mae``.

``--quick`` shrinks everything to a smoke test of a few seconds, and uses a small random model
when the bundled tiny one is absent: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a clone without installing
    sys.path.insert(0, str(ROOT))

from interp.demo import DEMO_PIPELINE, HELD_OUT_SEED  # noqa: E402
from interp.pipeline import load_model_spec, load_source  # noqa: E402
from interp.models.presets import random_smoke_model  # noqa: E402
from interp.run import RunDir  # noqa: E402
from interp.weights.mae import (  # noqa: E402
    CompareConfig, FinetuneConfig, compare, pipeline_from_run, summary_table,
)

QUICK = CompareConfig(
    finetune=FinetuneConfig(steps=3, batch_size=4, warmup=1),
    n_val=4, n_pool=16, coefs=(0.0, 0.5, 1.0), atlas_prompts=4, atlas_steps=2, basis_steps=50, batch_size=16,
)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory (created; rerunning resumes the fine-tunes)")
    p.add_argument("--model", default="tiny", help="model spec: tiny | file.safetensors | official:<mae.pth>,<vqgan.ckpt>")
    p.add_argument("--activation-run", default="runs/demo", help="pipeline/demo run dir with stats/ and reinforce/")
    p.add_argument("--tasks", nargs="+", default=None, help=f"tasks (default {' '.join(CompareConfig().tasks)})")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps per task")
    p.add_argument("--batch-size", type=int, default=None, help="fine-tuning prompts per step")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate")
    p.add_argument("--atlas-steps", type=int, default=None)
    p.add_argument("--n-eval", type=int, default=None, help="held-out prompts per task (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes; random model if the tiny one is absent")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = QUICK if args.quick else CompareConfig()
    ft = cfg.finetune
    ft = replace(ft, **{k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}, seed=args.seed)
    cfg = replace(cfg, finetune=ft, seed=args.seed, tasks=tuple(args.tasks) if args.tasks else cfg.tasks,
                  atlas_steps=args.atlas_steps or cfg.atlas_steps)
    # the held-out prompts of the activation run (fold, seed, n_eval from its manifest), else the demo's
    pipeline, data = pipeline_from_run(args.activation_run, replace(DEMO_PIPELINE, seed=0))
    data = data or f"synthetic:{HELD_OUT_SEED}"
    if args.quick:
        pipeline = replace(pipeline, n_eval=4)
    if args.n_eval:
        pipeline = replace(pipeline, n_eval=args.n_eval)

    model_name = args.model
    try:
        model = load_model_spec(args.model, args.device)
    except FileNotFoundError as error:
        if not args.quick:
            raise SystemExit(f"{error}\n(the real comparison needs the trained model; --quick runs a smoke test on a random one)")
        print(f"[smoke] {args.model} not available ({error.__class__.__name__}); using a small RANDOM model")
        model, model_name = random_smoke_model(args.seed).to(args.device), "random-small (smoke)"
    source = load_source(data)
    run = RunDir.create(args.out, command=[Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
                        config={"compare": asdict(cfg), "pipeline": asdict(pipeline), "model": model_name,
                                "data": data, "activation_run": args.activation_run,
                                "quick": args.quick, "device": args.device, "threads": args.threads})
    start = time.perf_counter()
    table = compare(model, source, pipeline, cfg, run=run, activation_run=args.activation_run, progress=not args.no_progress)
    run.update_manifest(wall_seconds=round(time.perf_counter() - start, 1))
    label = "SMOKE TEST (--quick): not results" if args.quick else f"model {model_name}"
    print(f"\n## {label}\n")
    print(summary_table(table).to_markdown(index=False))
    print(f"\nfull table with notes: {run.path}/comparison.csv / .md; this summary: comparison_summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
