"""``interp compare-weights``: weight-space vs activation-space task vectors on one model.

    interp compare-weights --out runs/weights [--activation-run runs/demo] [--quick]

Fine-tunes the MAE once per task in the zero-shot layout (the task vectors, saved under
``<out>/task_vectors/`` and skipped when already there: rerunning resumes), then scores task
arithmetic, multi-task addition, aTLAS, task-vector bases (M = T // 2, AE and PCA) and the
activation-space task vectors of a demo / pipeline run on the demo's held-out prompts
(zero-shot; one-shot as the reference), with what each costs. Writes ``comparison.csv`` /
``comparison.md``, ``comparison_summary.md`` and ``manifest.json`` into ``<out>``.

``--quick`` shrinks everything to a smoke test of a few seconds, and uses a small random model
when the bundled tiny one is absent: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace

from interp.cli.options import Command, device, integer, model_spec, names, real, recorded, run_dir
from interp.data.registry import TASKS

HELP = "weight-space vs activation-space task vectors (fine-tunes resume)"


def quick_config():
    """Smoke-test sizes (``--quick``)."""
    from interp.comparison.weights import CompareConfig
    from interp.weights.mae import FinetuneConfig

    return CompareConfig(
        finetune=FinetuneConfig(steps=3, batch_size=4, warmup=1),
        n_val=4, n_pool=16, coefs=(0.0, 0.5, 1.0), atlas_prompts=4, atlas_steps=2, basis_steps=50, batch_size=16,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The subcommand's options (imports nothing heavy: ``interp --help`` stays fast)."""
    p.add_argument("--out", type=run_dir, required=True, help="run directory (created; rerunning resumes the fine-tunes)")
    p.add_argument("--model", type=model_spec, default="tiny",
                   help="the model fine-tuned and patched: tiny | file.safetensors | official:<mae.pth>,<vqgan.ckpt> (default: tiny)")
    p.add_argument("--activation-run", default="runs/demo",
                   help="a pipeline or demo run whose stats/ and policies give the activation-space rows and whose "
                        "held-out prompts are reused (missing: those rows without numbers; default: runs/demo)")
    p.add_argument("--tasks", type=names(TASKS), default=None,
                   help="comma-separated tasks to fine-tune and compare (default: segmentation,lowlight,inpainting,colorization,identity)")
    p.add_argument("--steps", type=integer(1), default=None, help="fine-tuning steps per task, an integer >= 1 (default: 300)")
    p.add_argument("--batch-size", type=integer(1), default=None, help="fine-tuning prompts per step, an integer >= 1 (default: 32)")
    p.add_argument("--lr", type=real(0, above=True), default=None, help="fine-tuning learning rate, a number > 0 (default: 1e-4)")
    p.add_argument("--atlas-steps", type=integer(1), default=None,
                   help="optimisation steps of the aTLAS per-block coefficients, an integer >= 1 (default: 100)")
    p.add_argument("--n-eval", type=integer(1), default=None, help="held-out prompts per task (default: the activation run's)")
    p.add_argument("--seed", type=integer(0), default=0, help="seed of the fine-tuning and of the coefficient search (default: 0)")
    p.add_argument("--device", type=device, default="cpu", help="cpu | cuda | cuda:N | mps (default: cpu)")
    p.add_argument("--threads", type=integer(1), default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (seconds; numbers mean nothing); random model if the tiny one is absent")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")


def configs(args: argparse.Namespace):
    """``(CompareConfig, PipelineConfig, data spec)`` from the options and the activation run
    (whose held-out prompts — fold, seed, n_eval, data — the comparison reuses)."""
    from interp.comparison.activation import pipeline_from_run
    from interp.comparison.weights import CompareConfig
    from interp.data.synthetic import HELD_OUT_SEED
    from interp.demo import DEMO_PIPELINE

    cfg = quick_config() if args.quick else CompareConfig()
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
    cfg = replace(cfg, finetune=replace(cfg.finetune, **overrides, seed=args.seed), seed=args.seed,
                  tasks=tuple(args.tasks) if args.tasks else cfg.tasks, atlas_steps=args.atlas_steps or cfg.atlas_steps)
    pipeline, data = pipeline_from_run(args.activation_run, replace(DEMO_PIPELINE, seed=0))
    if args.quick:
        pipeline = replace(pipeline, n_eval=4)
    if args.n_eval:
        pipeline = replace(pipeline, n_eval=args.n_eval)
    return cfg, pipeline, data or f"synthetic:{HELD_OUT_SEED}"


def run(args: argparse.Namespace) -> int:
    """Run the comparison and print its one-screen summary."""
    import torch

    from interp.comparison.table import render_markdown
    from interp.errors import InputError
    from interp.comparison.weights import compare
    from interp.models.presets import random_smoke_model
    from interp.pipeline import load_model_spec, load_source
    from interp.run import RunDir

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg, pipeline, data = configs(args)
    model_name = args.model
    try:
        model = load_model_spec(args.model, args.device)
    except FileNotFoundError as error:
        if not args.quick:
            raise InputError(str(error), fix="the comparison needs the trained model; --quick runs a smoke test on a random one") from error
        print(f"[smoke] {args.model} not available ({error.__class__.__name__}); using a small RANDOM model")
        model, model_name = random_smoke_model(args.seed).to(args.device), "random-small (smoke)"
    source = load_source(data)
    out = RunDir.create(args.out, command=sys.argv,
                        config={"compare": asdict(cfg), "pipeline": asdict(pipeline), "model": model_name, "data": data,
                                "options": recorded(args)})
    start = time.perf_counter()
    table = compare(model, source, pipeline, cfg, run=out, activation_run=args.activation_run, progress=not args.no_progress)
    out.update_manifest(wall_seconds=round(time.perf_counter() - start, 1))
    label = "SMOKE TEST (--quick): not results" if args.quick else f"model {model_name}"
    print(f"\n## {label}\n")
    print(render_markdown(table))
    print(f"\nfull table with notes: {out.path}/comparison.csv / .md; this summary: comparison_summary.md")
    return 0


EXAMPLE = """  interp compare-weights --out runs/weights --activation-run runs/demo   # fine-tunes 5 tasks x 300 steps: long on a CPU
  interp compare-weights --out runs/weights-quick --quick                 # smoke test: seconds, numbers mean nothing"""

COMMANDS = [Command("compare-weights", HELP, add_arguments, run, EXAMPLE)]
