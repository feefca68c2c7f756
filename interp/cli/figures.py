"""``interp figures``: regenerate every figure of a run directory.

The output options (formats, folder, which figures, width) are declared in :func:`_options`.
Like every writing command it takes the run's writer lock (:func:`interp.run.lock_run`), so it
never runs beside a stage or another ``figures`` on the same run, and it writes nothing through
a symbolic link that leads out of the run.
"""

from __future__ import annotations

import argparse

from interp.cli.options import Command, existing_run


def _options(parser: argparse.ArgumentParser) -> None:
    from interp.viz.export import FORMATS
    from interp.viz.figures import BUILDERS

    parser.add_argument("run_dir", type=existing_run, help="a run directory written by interp demo or the pipeline stages")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, any of {','.join(FORMATS)}")
    parser.add_argument("--out", default=None, help="folder for the figures (default RUN_DIR/figures)")
    parser.add_argument("--only", action="append", choices=[b.replace(" ", "-") for b in BUILDERS], default=None,
                        help="draw only this figure group (repeat for several)")
    parser.add_argument("--width", choices=("column", "page"), default=None,
                        help="paper mode: 3.3 in (one column) or 6.9 in (full text width), fonts >= 7 pt, "
                             "vector heatmaps, no titles (default: screen size, with titles)")
    parser.add_argument("--titles", action="store_true", help="keep the figure titles in paper mode")


def _run(args: argparse.Namespace) -> int:
    from interp.io import add_boundary
    from interp.run import is_interp_manifest, lock_run
    from interp.viz.figures import write_run_figures

    if is_interp_manifest(args.run_dir / "manifest.json"):
        lock_run(args.run_dir)  # one writer per run: never beside a stage or another `figures`
    else:  # a folder of tables interp did not make: drawn from, never locked (its files stay as they are)
        add_boundary(args.run_dir)

    for path in write_run_figures(args.run_dir, formats=args.formats, out_dir=args.out, only=args.only,
                                  width=args.width, titles=args.titles or None):
        print(path)
    return 0


EXAMPLE = """  interp figures runs/demo                           # every figure as HTML, PNG, PDF, SVG (~1 min per format on a CPU)
  interp figures runs/demo --formats html            # HTML only: seconds, no Chromium needed
  interp figures runs/demo --width column --only results --formats pdf   # one paper figure, 3.3 in wide"""

COMMANDS = [Command("figures", "regenerate every figure of a run directory", _options, _run, EXAMPLE)]
