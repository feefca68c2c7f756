"""``interp demo``: the whole pipeline on the bundled tiny model and synthetic data."""

from __future__ import annotations

import argparse
import sys

from interp.cli.options import Command, integer, recorded, run_dir


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=run_dir, default="runs/demo", help="run directory to write (default: runs/demo)")
    parser.add_argument("--seed", type=integer(0), default=0, help="seed of prompt sampling and the search, an integer >= 0 (default: 0)")
    parser.add_argument("--full", action="store_true", help="also compare every search method and control over three "
                        "seeds (search_comparison.csv; adds tens of minutes on a CPU)")


def _run(args: argparse.Namespace) -> int:
    from interp.demo import run_demo
    from interp.run import RunDir

    run = RunDir.create(args.out, command=sys.argv, config=recorded(args))
    return run_demo(run, seed=args.seed, full=args.full)


EXAMPLE = """  interp demo --out runs/demo          # the whole pipeline: minutes on 2 CPU cores (README: measured time)
  interp demo --out runs/demo --full   # and the search comparison over three seeds"""

COMMANDS = [Command("demo", "run the whole pipeline on the bundled tiny model and synthetic data", _options, _run, EXAMPLE)]
