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


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run directory to write (default: runs/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per task to show")


def _demo(args: argparse.Namespace) -> int:
    from interp.demo import run_demo

    return run_demo(RunDir.create(args.out, command=sys.argv, config=vars(args)), seed=args.seed, prompts=args.prompts)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from dataclasses import fields

    from interp.train import TrainConfig

    parser.add_argument("--out", default="runs/train-tiny", help="run directory (resumes if it holds checkpoints)")
    for field in fields(TrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)


def _train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from interp.train import TrainConfig, train_tiny

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    train_tiny(args.out, cfg, command=" ".join(sys.argv))
    print(f"weights written to {args.out}/tiny.safetensors")
    return 0


COMMANDS: dict[str, Command] = {
    "train-tiny": ("train the bundled tiny MAE-VQGAN on synthetic prompts (resumable)", _train_arguments, _train),
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
