"""``interp agreement``: how well each training reward agrees with the official task metric.

For every task of the run, random unit masks of every density are scored on the held-out
search prompts with each ``--reward`` and with the official pixel reward
(:func:`interp.taskvectors.agreement.reward_agreement`); the Pearson and Spearman correlations
and the sign agreement of REINFORCE advantages go to ``agreement.csv`` in the run, and a reward
below the threshold is warned about.
"""

from __future__ import annotations

import argparse

from interp.cli.options import Command, integer, names
from interp.cli.stages import open_stage, stage_options


def _options(parser: argparse.ArgumentParser) -> None:
    from interp.scoring import KINDS

    stage_options(parser)
    parser.add_argument("--reward", type=names(KINDS), default=("token", "soft"),
                        help=f"comma-separated rewards compared with the official pixel reward (default: token,soft; from {', '.join(KINDS)})")
    parser.add_argument("--agreement-masks", type=integer(3), default=48, help="random unit masks, densities 0..1 (default: 48)")
    parser.add_argument("--agreement-batch", type=integer(2), default=8,
                        help="masks of neighbouring density z-scored together for the advantage signs (default: 8)")


def _run(args: argparse.Namespace) -> int:
    from interp import pipeline as p
    from interp.taskvectors.agreement import MIN_PEARSON, record, reward_agreement
    from interp.taskvectors.search import SearchProblem
    from interp.taskvectors.units import UnitSpace

    cfg, run, source, model = open_stage(args)
    stats = p.load_stats(run, cfg.tasks, model)
    p.check_reused(run, model, source, stats, cfg)  # statistics of this model, data, fold and sizes
    model.eval()
    space = UnitSpace.for_model(model, cfg.granularity)
    rewards = tuple(dict.fromkeys([*args.reward, "pixel"]))  # the official reward's own row: agreement 1
    rows = []
    for task in cfg.tasks:
        train, held_out = p.search_prompts(model, source, task, cfg)
        problem = SearchProblem(model, space, stats[task], train, held_out)
        rows += reward_agreement(problem, rewards, "pixel", args.agreement_masks, args.agreement_batch)
    table = record(run, rows)
    columns = ["task", "reward", "pearson", "spearman", "sign_agreement", "masks", "prompts", "forwards", "low"]
    print(table[columns].to_markdown(index=False, floatfmt=".3f"))
    for row in rows:
        if row.warning():
            print("warning: " + row.warning())
    print(f"(threshold: Pearson {MIN_PEARSON}) written to {run.path / 'agreement.csv'}")
    return 0


EXAMPLE = """  interp collect --run runs/tv --tasks segmentation,lowlight
  interp agreement --run runs/tv --tasks segmentation,lowlight --reward token,soft   # agreement.csv"""

COMMANDS = [Command("agreement", "how well each training reward agrees with the official task metric (agreement.csv)", _options, _run,
                    EXAMPLE)]
