"""``interp lens``, ``interp paths``, ``interp interventions``: look inside a run's task vectors.

``interp lens --run R --task T`` writes ``lens/<task>.csv`` (the task metric of every readout
of the code lens, for one-shot, zero-shot and zero-shot + task vector), ``lens/<task>.safetensors``
(one prompt's predictions per readout) and the figures ``lens_<task>_layers`` and
``lens_<task>_strip``. ``interp paths --run R --task T`` writes ``paths/<task>.csv`` and the
heatmap ``paths_<task>`` (the task vector's encoder heads through each decoder head, with the
direct and total effects). Both take the stage options (model, data, config) and
``--intervention replace|add|scaled --alpha A`` (:class:`~interp.taskvectors.patching.Intervention`;
``add`` collects zero-shot statistics into ``stats_zero_shot/`` first). ``interp interventions --run R``
scores every task's vector under several intervention kinds and writes ``interventions.csv``
with the best kind per task marked. The computations are
:mod:`interp.taskvectors.lens` and :mod:`interp.taskvectors.paths`; the figures
:mod:`interp.viz.lens` (``interp figures R --only lens`` redraws them, ``--width`` for paper mode).
"""

from __future__ import annotations

import argparse

from interp.cli.intervention import intervention_from, intervention_options
from interp.cli.options import Command, integer, real
from interp.cli.stages import open_stage, stage_options
from interp.data.registry import TASKS


def _common(parser: argparse.ArgumentParser) -> None:
    stage_options(parser)
    parser.add_argument("--task", required=True, choices=TASKS, help="the task whose vector to look inside")
    parser.add_argument("--method", default="reinforce", help="the search whose policy to read (default: reinforce)")
    parser.add_argument("--threshold", type=real(0, 1), default=None,
                        help="units kept: policy probability above it (default: the policy's kept set, as interp evaluate "
                             "scores it; 0.5 for a policy without one)")
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


def parse_kinds(text: str):
    """``replace,scaled:0.5,add:1`` -> interventions (an alpha after the colon; 1 when none)."""
    import argparse as _argparse

    from interp.errors import InputError
    from interp.taskvectors.patching import Intervention

    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        kind, _, alpha = item.partition(":")
        try:
            out.append(Intervention(kind, float(alpha) if alpha else 1.0))
        except (InputError, ValueError) as error:
            raise _argparse.ArgumentTypeError(f"{item!r}: {getattr(error, 'problem', error)}") from None
    if not out:
        raise _argparse.ArgumentTypeError("needs at least one kind, e.g. replace,scaled:0.5,add:1")
    return tuple(out)


def _interventions_options(parser: argparse.ArgumentParser) -> None:
    stage_options(parser)
    parser.add_argument("--kinds", type=parse_kinds, default=None,
                        help="interventions compared, kind[:alpha] comma-separated "
                             "(default: replace,scaled:0.5,scaled:2,add:0.5,add:1,add:2)")
    parser.add_argument("--method", default="reinforce", help="the search whose policies to read (default: reinforce)")
    parser.add_argument("--threshold", type=real(0, 1), default=None,
                        help="units kept: policy probability above it (default: the policy's kept set, as interp evaluate "
                             "scores it; 0.5 for a policy without one)")


def _interventions(args: argparse.Namespace) -> int:
    from interp.inspection import DEFAULT_KINDS, stage_interventions

    cfg, run, source, model = open_stage(args)
    table = stage_interventions(run, model, source, cfg, args.kinds or DEFAULT_KINDS, args.method, args.threshold,
                                force=args.force)
    print(table[["task", "condition", "metric", "mean", "sem", "n", "zero_shot", "one_shot", "best"]].to_markdown(
        index=False, floatfmt=".4f"))
    for task, part in table[table["best"]].groupby("task", sort=False):
        print(f"{task}: best {', '.join(part['condition'].str.split(':').str[1])}")
    print(f"written to {run.path / 'interventions.csv'}")
    return 0


#: --help examples (after `interp collect` and `interp search` into the run)
EXAMPLES = {
    "lens": "  interp lens --run runs/tv --task segmentation --n-prompts 16       # lens/segmentation.csv, figures/lens_*",
    "paths": "  interp paths --run runs/tv --task segmentation --n-prompts 8       # paths/segmentation.csv, figures/paths_*",
    "interventions": "  interp interventions --run runs/tv                                  # interventions.csv",
}

COMMANDS = [
    Command("lens", "code lens: the task metric of every layer's readout (one-shot, zero-shot, + task vector)",
            _lens_options, _lens, EXAMPLES["lens"]),
    Command("paths", "path patching: the task vector's encoder heads through each decoder head", _paths_options, _paths,
            EXAMPLES["paths"]),
    Command("interventions", "the task vectors patched by each intervention kind (replace, add, scaled): which works best",
            _interventions_options, _interventions, EXAMPLES["interventions"]),
]
