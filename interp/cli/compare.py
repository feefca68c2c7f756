"""``interp compare-search``: every search method and control over several seeds, one table and figure."""

from __future__ import annotations

import argparse

from interp.cli.bounds import MAX_PROMPTS, MAX_SEEDS
from interp.cli.options import Command, choice, integer, names
from interp.cli.stages import SEARCH_REWARDS, open_stage, stage_options


def _options(parser: argparse.ArgumentParser) -> None:
    from interp.taskvectors.search import METHODS

    stage_options(parser, "compare-search")
    parser.add_argument("--methods", type=names(tuple(METHODS)), default=tuple(METHODS),
                        help=f"comma-separated search methods (default: {','.join(METHODS)})")
    parser.add_argument("--seeds", type=integer(1, MAX_SEEDS), default=3,
                        help=f"seeds per method and task, an integer in [1, {MAX_SEEDS}] (default: 3)")
    parser.add_argument("--compare-eval", type=integer(1, MAX_PROMPTS), default=50,
                        help=f"val prompts scored per condition, an integer in [1, {MAX_PROMPTS}] (default: 50)")
    parser.add_argument("--compare-search-eval", type=integer(1, MAX_PROMPTS), default=16,
                        help=f"held-out search prompts per seed, an integer in [1, {MAX_PROMPTS}] (default: 16)")
    parser.add_argument("--budget", type=budgets, default=(),
                        help="matched budgets: comma-separated forward counts; every method runs again sized to each "
                             "(a backward counted at its measured cost), plus REINFORCE at the search stage's own "
                             "settings (reinforce@pipeline: slow on a CPU); rows '<method>@<F>' (default: none)")
    parser.add_argument("--compare-reward", type=choice(SEARCH_REWARDS), default="auto",
                        help="the searches' training reward (auto: chosen per task from measured agreement) (default: auto)")


def budgets(text: str) -> tuple[int, ...]:
    """Comma-separated forward budgets, each an integer >= 10."""
    parse = integer(10)
    values = tuple(parse(x) for x in text.split(",") if x.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"needs at least one budget, got {text!r}")
    return values


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from interp import pipeline as p
    from interp.compare_search import CompareConfig, best_method, compare_search
    from interp.viz.export import save_figure
    from interp.viz.search_comparison import search_comparison_figure
    from interp.viz.size_curves import size_curves_figure

    cfg, run, source, model = open_stage(args)
    stats = p.load_stats(run, cfg.tasks, model)
    p.check_reused(run, model, source, stats, cfg)  # statistics of this model, data, fold and sizes
    ccfg = CompareConfig(methods=tuple(args.methods), seeds=tuple(range(args.seeds)), n_train=cfg.n_train,
                         n_search_eval=args.compare_search_eval, n_eval=args.compare_eval, budgets=tuple(args.budget),
                         reward=args.compare_reward)
    table = compare_search(run, model, source, stats, cfg, ccfg, taskness_stats=p.load_stats(run, run.collected_tasks(), model))
    columns = ["task", "condition", "reward", "reward_pearson", "mean", "spread", "diff_zero_shot", "ci_low_zero_shot",
               "ci_high_zero_shot", "diff_strongest_control", "units", "forwards", "effective_forwards", "seconds"]
    print(table[columns].to_markdown(index=False, floatfmt=".4f"))
    for task in cfg.tasks:
        print(f"{task}: best method on the held-out search prompts: {best_method(table, task)}")
    save_figure(search_comparison_figure(table), run.file("figures/search_comparison"))
    curves = pd.read_csv(run.path / "size_curves.csv")
    if not curves.empty:
        save_figure(size_curves_figure(curves), run.file("figures/size_curves"))
    print(f"written to {run.path / 'search_comparison.csv'} and {run.path / 'figures'}")
    return 0


EXAMPLE = """  interp compare-search --run runs/tv                          # every method x 3 seeds: ~20 min on the tiny model
  interp compare-search --run runs/tv --seeds 1 --methods reinforce,attribution,random --compare-eval 8   # quick: minutes"""

COMMANDS = [Command("compare-search", "compare every search method and control over seeds (search_comparison.csv + figure)", _options, _run,
                    EXAMPLE)]
