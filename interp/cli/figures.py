"""``interp figures``: regenerate every figure of a run directory.

The output options (formats, folder, which figures, width) are declared in :func:`_options`.
"""

from __future__ import annotations

import argparse

from interp.cli.options import Command, existing_run


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=existing_run, help="a run directory written by interp demo or the pipeline stages")


def _run(args: argparse.Namespace) -> int:
    from interp.viz.figures import write_run_figures

    for path in write_run_figures(args.run_dir):
        print(path)
    return 0


COMMANDS = [Command("figures", "regenerate every figure of a run directory", _options, _run)]
