"""The ``interp`` command: one subcommand per pipeline stage, each writing a run directory.

Subcommands are registered in :data:`COMMANDS` as ``name -> (help, add_arguments, run)`` so
each stage's module owns its options; ``main`` only parses and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from interp.run import RunDir

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _dataclass_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--option`` per field of a config dataclass (tuples as comma-separated lists)."""
    from dataclasses import MISSING, fields

    for field in fields(cls):
        if field.name in skip:
            continue
        default = field.default if field.default is not MISSING else None
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(default, tuple) or default is None:
            parser.add_argument(flag, type=lambda v: tuple(x for x in v.split(",") if x) or None, default=default,
                                help=f"comma-separated (default: {','.join(default) if default else 'none'})")
        elif isinstance(default, bool):
            parser.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"(default: {default})")


def _from_args(cls: type, args: argparse.Namespace):
    from dataclasses import fields

    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run directory to write (default: runs/demo)")
    parser.add_argument("--seed", type=int, default=0)


def _demo(args: argparse.Namespace) -> int:
    from interp.demo import run_demo

    return run_demo(RunDir.create(args.out, command=sys.argv, config=vars(args)), seed=args.seed)


def _stage_arguments(stage: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        from interp.pipeline import PipelineConfig
        from interp.taskvectors.reinforce import ReinforceConfig

        parser.add_argument("--run", default="runs/pipeline", help="run directory shared by the stages")
        parser.add_argument("--model", default="tiny", help="tiny | weights.safetensors | official:<mae.pth>[,<vqgan.ckpt>]")
        parser.add_argument("--data", default="synthetic:1234", help="synthetic[:seed] | pascal:<VOC2012 dir>[,<splits dir>]")
        parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
        _dataclass_arguments(parser, PipelineConfig)
        if stage == "search":
            _dataclass_arguments(parser, ReinforceConfig, skip=("seed",))
        if stage == "sweep":
            parser.add_argument("--sweep-granularity", default="head", choices=("layer", "head", "group"))
            parser.add_argument("--sweep-prompts", type=int, default=16)
            parser.add_argument("--reward", default="pixel", choices=("pixel", "token"))
    return add


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _stage(stage: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from interp import pipeline as p
        from interp.taskvectors.reinforce import ReinforceConfig

        run_dir = RunDir.create(args.run, command=sys.argv, config=vars(args))
        cfg = _from_args(p.PipelineConfig, args)
        if stage == "taskness":
            model = None
        else:
            model = p.load_model_spec(args.model, args.device)
        source = p.load_source(args.data)
        if stage == "collect":
            p.stage_collect(run_dir, model, source, cfg)
            return 0
        stats = p.load_stats(run_dir, cfg.tasks, model)
        if stage == "taskness":
            print(p.stage_taskness(run_dir, stats).sort_values("taskness", ascending=False).head(20).to_markdown(index=False))
        elif stage == "search":
            p.stage_search(run_dir, model, source, stats, cfg, _from_args(ReinforceConfig, args))
        elif stage == "sweep":
            table = p.stage_sweep(run_dir, model, source, stats, cfg, args.sweep_granularity, args.sweep_prompts, args.reward)
            print(table.sort_values("delta", ascending=False).head(20).to_markdown(index=False))
        elif stage == "evaluate":
            table = p.stage_evaluate(run_dir, model, source, stats, p.load_policies(run_dir, cfg.tasks), cfg)
            print(table.to_markdown(index=False, floatfmt=".4f"))
        print(f"written to {run_dir.path}")
        return 0
    return run


def _figures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run directory written by interp demo or the pipeline stages")


def _figures(args: argparse.Namespace) -> int:
    from interp.viz.figures import write_run_figures

    for path in write_run_figures(args.run_dir):
        print(path)
    return 0


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from interp.train import TrainConfig

    parser.add_argument("--out", default="runs/train-tiny", help="run directory (resumes if it holds checkpoints)")
    _dataclass_arguments(parser, TrainConfig)


def _train(args: argparse.Namespace) -> int:
    from interp.train import TrainConfig, train_tiny

    cfg = _from_args(TrainConfig, args)
    train_tiny(args.out, cfg, command=" ".join(sys.argv))
    print(f"weights written to {args.out}/tiny.safetensors")
    return 0


COMMANDS: dict[str, Command] = {
    "train-tiny": ("train the bundled tiny MAE-VQGAN on synthetic prompts (resumable)", _train_arguments, _train),
    "collect": ("collect per-task mean activations (official prompt selection)", _stage_arguments("collect"), _stage("collect")),
    "taskness": ("rank heads by between- over within-task variance", _stage_arguments("taskness"), _stage("taskness")),
    "search": ("REINFORCE search for task vectors, per task", _stage_arguments("search"), _stage("search")),
    "sweep": ("patch every unit alone and measure the change", _stage_arguments("sweep"), _stage("sweep")),
    "evaluate": ("one-shot / zero-shot / + task vector / + random units", _stage_arguments("evaluate"), _stage("evaluate")),
    "figures": ("regenerate every figure of a run directory", _figures_arguments, _figures),
    "demo": ("run the whole pipeline on the bundled tiny model and synthetic data", _demo_arguments, _demo),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    raise SystemExit(main())
