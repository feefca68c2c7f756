"""``interp demo``: the whole pipeline on the bundled tiny model and synthetic data."""

from __future__ import annotations

import argparse
import sys

from interp.cli.options import Command, data_spec, integer, recorded, run_dir


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=run_dir, default="runs/demo", help="run directory to write (default: runs/demo)")
    parser.add_argument("--seed", type=integer(0), default=0, help="seed of prompt sampling and the search, an integer >= 0 (default: 0)")
    parser.add_argument("--full", action="store_true", help="also compare every search method and control over three "
                        "seeds, each task on its agreeing reward (search_comparison.csv; adds about half an hour on 2 CPU cores)")
    parser.add_argument("--data", type=data_spec, default=None,
                        help="the data to run on: synthetic[:seed] | pascal:<VOC2012 dir>[,<splits dir>] "
                             "(default: the held-out synthetic seed, synthetic:1234)")


def _run(args: argparse.Namespace) -> int:
    from interp.demo import run_demo
    from interp.run import RunDir

    run = RunDir.create(args.out, command=sys.argv, config=recorded(args))
    data = {} if args.data is None else {"data": args.data}
    return run_demo(run, seed=args.seed, full=args.full, **data)


EXAMPLE = """  interp demo --out runs/demo          # the whole pipeline: minutes on 2 CPU cores (README: measured time)
  interp demo --out runs/demo --full   # and the search comparison over three seeds
  interp demo --out runs/demo-4321 --full --data synthetic:4321   # the same on a second data seed"""

COMMANDS = [Command("demo", "run the whole pipeline on the bundled tiny model and synthetic data", _options, _run, EXAMPLE)]
