"""``interp lens`` and ``interp paths``: look inside one task's vector in a run.

``interp lens --run R --task T`` writes ``lens/<task>.csv`` (the task metric of every readout
of the code lens, for one-shot, zero-shot and zero-shot + task vector), ``lens/<task>.safetensors``
(one prompt's predictions per readout) and the figures ``lens_<task>_layers`` and
``lens_<task>_strip``. ``interp paths --run R --task T`` writes ``paths/<task>.csv`` and the
heatmap ``paths_<task>`` (the task vector's encoder heads through each decoder head, with the
direct and total effects). Both take the stage options (model, data, config) and
``--intervention replace|add|scaled --alpha A`` (:class:`~interp.taskvectors.patching.Intervention`;
``add`` collects zero-shot statistics into ``stats_zero_shot/`` first). The computations are
:mod:`interp.taskvectors.lens` and :mod:`interp.taskvectors.paths`; the figures
:mod:`interp.viz.lens` (``interp figures R --only lens`` redraws them, ``--width`` for paper mode).
"""

from __future__ import annotations

import argparse

from interp.cli.options import Command, integer, real
from interp.cli.stages import open_stage, stage_options
from interp.data.tasks import TASKS


def intervention_options(parser: argparse.ArgumentParser) -> None:
    """``--intervention`` and ``--alpha``: what a patch does to the units it selects."""
    from interp.taskvectors.patching import INTERVENTION_KINDS

    parser.add_argument("--intervention", choices=INTERVENTION_KINDS, default="replace",
                        help="replace: the task mean (official); add: z + alpha (mean - zero-shot mean); "
                             "scaled: z + alpha (mean - z) (default: replace)")
    parser.add_argument("--alpha", type=real(), default=1.0, help="alpha of add / scaled, a number (default: 1)")


def intervention_from(args: argparse.Namespace):
    from interp.taskvectors.patching import Intervention

    return Intervention(args.intervention, args.alpha)


def _common(parser: argparse.ArgumentParser) -> None:
    stage_options(parser)
    parser.add_argument("--task", required=True, choices=TASKS, help="the task whose vector to look inside")
    parser.add_argument("--method", default="reinforce", help="the search whose policy to read (default: reinforce)")
    parser.add_argument("--threshold", type=real(0, 1), default=0.5, help="units kept: policy probability above it (default: 0.5)")
    parser.add_argument("--n-prompts", type=integer(1), default=None, help="held-out prompts scored (default: 16 lens, 8 paths)")
    intervention_options(parser)
    parser.add_argument("--width", choices=("column", "page"), default=None, help="paper mode for the figures (see interp figures)")
    parser.add_argument("--formats", default="html,png", help="figure formats, comma-separated (default: html,png)")


def _lens_options(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--prompt", type=integer(0), default=0, help="the prompt shown in the strip (default: 0)")
    parser.add_argument("--no-encoder", action="store_true", help="read out decoder layers only (skip the encoder early exits)")


def _paths_options(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--max-senders", type=integer(1), default=16,
                        help="encoder heads of the vector shown, those with the most units (default: 16)")


def _figures(args: argparse.Namespace, run) -> None:
    from interp.viz.figures import write_run_figures

    write_run_figures(run.path, formats=args.formats.split(","), only=["lens"], width=args.width)


def _lens(args: argparse.Namespace) -> int:
    from interp.inspection import stage_lens

    cfg, run, source, model = open_stage(args)
    table = stage_lens(run, model, source, cfg, args.task, args.method, args.threshold, intervention_from(args),
                       n_prompts=args.n_prompts or 16, prompt=args.prompt, encoder=not args.no_encoder, force=args.force)
    print(table[["condition", "readout", "metric", "mean", "sem", "n"]].to_markdown(index=False, floatfmt=".4f"))
    for condition, where in table.drop_duplicates("condition").set_index("condition")["solved_at"].items():
        print(f"{condition}: 90% of the way to the final metric at {where}")
    _figures(args, run)
    return 0


def _paths(args: argparse.Namespace) -> int:
    from interp.inspection import stage_paths

    cfg, run, source, model = open_stage(args)
    table = stage_paths(run, model, source, cfg, args.task, args.method, args.threshold, intervention_from(args),
                        n_prompts=args.n_prompts or 8, max_senders=args.max_senders, force=args.force)
    through = table[~table["receiver"].isin(("direct", "total"))]
    top = through.reindex(through["effect"].abs().sort_values(ascending=False).index).head(10)
    print(top[["sender", "receiver", "effect", "sem", "n"]].to_markdown(index=False, floatfmt=".4f"))
    _figures(args, run)
    return 0


COMMANDS = [
    Command("lens", "code lens: the task metric of every layer's readout (one-shot, zero-shot, + task vector)",
            _lens_options, _lens),
    Command("paths", "path patching: the task vector's encoder heads through each decoder head", _paths_options, _paths),
]
