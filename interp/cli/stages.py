"""``interp collect | taskness | search | sweep | evaluate | import-policy``: the pipeline stages.

Every stage takes the same run, model, data and :class:`~interp.pipeline.PipelineConfig`
options (so one command line works for each stage in turn); a stage adds its own below it.
The stage functions themselves live in :mod:`interp.pipeline`.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from typing import Any, Callable

from interp.cli.bounds import MAX_PROMPTS, MAX_SAMPLES, MAX_SEEDS, check_data, check_memory
from interp.cli.intervention import intervention_from, intervention_options
from interp.cli.options import (
    Command, Kind, choice, config_from, config_options, data_spec, default_device, device, existing_file, integer,
    model_spec, names, recorded, run_dir,
)
from interp.data.registry import TASKS, composite_of, composites, selection
from interp.errors import ConfigError, InputError
from interp.taskvectors.unit import GRANULARITIES

REWARDS = ("pixel", "token")
SEARCH_REWARDS = (*REWARDS, "soft", "auto")  # a search's training reward (auto: chosen from measured agreement)
DECODES = ("official", "band")

#: checks of the :class:`~interp.pipeline.PipelineConfig` fields
PIPELINE_KINDS: dict[str, Kind] = {
    "tasks": names(TASKS),
    "fold": integer(0, 3),
    "seed": integer(0),
    "n_collect": integer(1, MAX_PROMPTS),
    "n_candidates": integer(1, MAX_PROMPTS),
    "granularity": choice(GRANULARITIES),
    "n_train": integer(1, MAX_PROMPTS),
    "n_search_eval": integer(1, MAX_PROMPTS),
    "n_eval": integer(1, MAX_PROMPTS),
    "composition": names(selection("pipeline"), size=2, allow_none=True),
}


#: what each :class:`~interp.pipeline.PipelineConfig` field means (its --help line)
PIPELINE_HELP: dict[str, str] = {
    "tasks": "the tasks to run",
    "fold": "Pascal-5i fold whose classes the prompts are drawn from",
    "seed": "seed of the prompt draws (and of the search)",
    "n_collect": "prompts whose one-shot activations are averaged per task (the official top-N)",
    "n_candidates": "one-shot scored pairs the collected prompts are selected from (at most the distinct pairs of the "
                    "fold's train split)",
    "granularity": "search units: layer, head, group (head x token group, the official) or token",
    "n_train": "training prompts of the search, per task",
    "n_search_eval": "held-out search prompts (train split) that pick the kept policy (with --n-train at most the "
                     "split's images, so that no held-out prompt repeats a training query)",
    "n_eval": "evaluation prompts per task (val split; at most its distinct pairs)",
    "composition": "two tasks whose vectors are composed on their composite task (none: no composition)",
}
#: the config fields each stage reads (the others are accepted, unlisted, so that one option line serves every stage);
#: sweep, evaluate and compare-search read collect's (and search's) to check the statistics and policies they reuse
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "collect": ("tasks", "fold", "seed", "n_collect", "n_candidates"),
    "taskness": ("tasks",),
    "search": ("tasks", "fold", "seed", "granularity", "n_train", "n_search_eval"),
    "sweep": ("tasks", "fold", "seed", "granularity", "n_collect", "n_candidates", "n_train", "n_search_eval"),
    "evaluate": tuple(PIPELINE_HELP),
    "compare-search": ("tasks", "fold", "seed", "granularity", "n_collect", "n_candidates", "n_train"),
}


def stage_options(parser: argparse.ArgumentParser, stage: str | None = None) -> None:
    """The options every stage shares: where the run lives, the model, the data, the config.

    ``stage``: list only the config options it reads (:data:`STAGE_FIELDS`); the rest are still
    accepted (one command line serves every stage in turn) and named under the options."""
    from dataclasses import fields

    from interp.pipeline import PipelineConfig

    parser.add_argument("--run", type=run_dir, default="runs/pipeline", help="run directory shared by the stages (default: runs/pipeline)")
    parser.add_argument("--model", type=model_spec, default="tiny", help="tiny | weights.safetensors | official:<mae.pth>[,<vqgan.ckpt>] (default: tiny)")
    parser.add_argument("--data", type=data_spec, default="synthetic:1234", help="synthetic[:seed] | pascal:<VOC2012 dir>[,<splits dir>] (default: synthetic:1234)")
    parser.add_argument("--device", type=device, default=default_device(), help="cpu | cuda | cuda:N | mps (default: cuda if available)")
    parser.add_argument("--force", action="store_true", help="recompute what the run directory holds for this stage instead of resuming "
                        "(collect, search; taskness, sweep and evaluate always recompute)")
    parser.add_argument("--distributed", action="store_true",
                        help="shard the stage over torchrun's ranks: torchrun --nproc_per_node=N -m interp.cli -- <stage> --distributed ...")
    used = STAGE_FIELDS.get(stage or "", tuple(PIPELINE_HELP))
    config_options(parser, PipelineConfig, PIPELINE_KINDS, helps=PIPELINE_HELP, only=used)
    others = [f.name for f in fields(PipelineConfig) if f.name not in used]
    if others:
        config_options(parser, PipelineConfig, PIPELINE_KINDS, only=others, hidden=True)
        note = textwrap.fill(f"also accepted, unused here (one option line serves every stage): "
                             f"{', '.join('--' + n.replace('_', '-') for n in others)}", 79)
        parser.epilog = f"{parser.epilog}\n\n{note}" if parser.epilog else note


def _stage(name: str) -> Callable[[argparse.ArgumentParser], None]:
    """The options of a stage that adds none of its own."""
    return lambda parser: stage_options(parser, name)


def pipeline_config(args: argparse.Namespace):
    """The :class:`~interp.pipeline.PipelineConfig` of the parsed options, cross-checked."""
    from interp.pipeline import PipelineConfig

    cfg = config_from(PipelineConfig, args)
    if cfg.composition is not None and composite_of(cfg.composition) is None:
        raise ConfigError(f"--composition {','.join(cfg.composition)} names no composite task",
                          fix=f"Use one of {', '.join(','.join(parts) for parts in composites().values())} or none")
    if cfg.n_collect > cfg.n_candidates:
        raise ConfigError(f"--n-collect {cfg.n_collect} is more than --n-candidates {cfg.n_candidates}",
                          fix="The best n-collect of n-candidates scored pairs are kept: raise --n-candidates")
    return cfg


def open_stage(args: argparse.Namespace, needs_model: bool = True):
    """Config, run directory, data source and model of a stage, in that order (cheap first)."""
    from interp import pipeline as p
    from interp.run import RunDir

    cfg = pipeline_config(args)
    if getattr(args, "distributed", False):  # one rank of a torchrun group: rank 0 writes, the others read
        from interp.distributed import start

        args.device = start(args.device)
    run = RunDir.create(args.run, command=sys.argv, config=recorded(args)) if _writes() else RunDir(args.run)
    source = p.load_source(args.data)
    check_data(args, source, STAGE_FIELDS.get(args.command, tuple(PIPELINE_HELP)))  # counts the data can give
    model = p.load_model_spec(args.model, args.device) if needs_model else None
    check_memory(args, model)  # the prompts the stage builds fit in memory, before any work
    return cfg, run, source, model


def _writes() -> bool:
    from interp.distributed import is_main

    return is_main()


def with_force(stage: Callable[..., Any], args: argparse.Namespace) -> dict[str, bool]:
    """``force=`` for a stage function that resumes; one that always recomputes takes none."""
    return {"force": args.force} if "force" in inspect.signature(stage).parameters else {}


def _print(table, sort: str | None = None) -> None:
    if sort:
        table = table.sort_values(sort, ascending=False).head(20)
    print(table.to_markdown(index=False, floatfmt=".4f"))


# --------------------------------------------------------------------------------------------


def _collect(args: argparse.Namespace) -> int:
    from interp import pipeline as p

    cfg, run, source, model = open_stage(args)
    p.stage_collect(run, model, source, cfg, **with_force(p.stage_collect, args))
    print(f"written to {run.path}")
    return 0


def _taskness(args: argparse.Namespace) -> int:
    from interp import pipeline as p

    cfg, run, _, _ = open_stage(args, needs_model=False)
    stats = p.load_stats(run, cfg.tasks)
    _print(p.stage_taskness(run, stats, **with_force(p.stage_taskness, args)), sort="taskness")
    print(f"written to {run.path}")
    return 0


def _search_options(parser: argparse.ArgumentParser) -> None:
    from interp.cli.methods import add_method_options

    stage_options(parser, "search")
    group = parser.add_argument_group("what every method's search shares")
    group.add_argument("--reward", type=choice(SEARCH_REWARDS), choices=SEARCH_REWARDS, default="pixel",
                       help="training reward: pixel (official IoU / -MSE of the decoded target cell), token "
                            "(minus the target codes' cross-entropy, no VQGAN decode), soft (differentiable soft decode, "
                            "smooth metric) or auto (the cheapest whose measured agreement with the metric is enough, "
                            "`interp agreement`); every search measures its reward's agreement first and warns when "
                            "low (default: pixel)")
    group.add_argument("--decode", type=choice(DECODES), choices=DECODES, default="official",
                       help="pixel reward's decode: official (full grid) or band (faster, not official) (default: official)")
    group.add_argument("--chunk", type=integer(1, MAX_SAMPLES), default=320, help="rows per forward, memory only; results "
                       f"do not change; an integer in [1, {MAX_SAMPLES}] (default: 320)")
    group.add_argument("--search-seed", type=integer(0, MAX_SEEDS), default=0,
                       help="which search prompts (0: the pipeline's; k draws its own pairs) (default: 0)")
    intervention_options(group)
    add_method_options(parser)


def search_options(args: argparse.Namespace):
    """The :class:`~interp.pipeline.SearchOptions` of the parsed options."""
    from interp.pipeline import SearchOptions

    return SearchOptions(reward=args.reward, decode=args.decode, chunk=args.chunk, intervention=intervention_from(args))


def _search(args: argparse.Namespace) -> int:
    from interp import pipeline as p
    from interp.cli.methods import method_config_from

    method_cfg = method_config_from(args, seed=args.seed)
    options = search_options(args)
    cfg, run, source, model = open_stage(args)
    stats = p.load_stats(run, cfg.tasks, model)
    base = None
    if options.intervention.needs_base:  # add: the zero-shot statistics it subtracts, collected once
        from interp.inspection import zero_shot_stats

        base = {t: zero_shot_stats(run, model, source, cfg, t) for t in cfg.tasks}
    policies = p.stage_search(run, model, source, stats, cfg, method_cfg, seed=args.search_seed, options=options,
                              force=args.force, base_stats=base)
    for task, policy in policies.items():
        meta = policy.metadata
        print(f"{task}: {args.method} kept {int(policy.mask().sum())} of {len(policy.space)} units, held-out score "
              f"{meta.get('best_score', float('nan')):.4f}, {meta.get('budget', {}).get('forwards', 0)} forwards")
    print(f"written to {run.search_dir(cfg.tasks[0], args.method, args.search_seed).parent.parent}")
    return 0


def _sweep_options(parser: argparse.ArgumentParser) -> None:
    stage_options(parser, "sweep")
    parser.add_argument("--sweep-granularity", default="head", choices=GRANULARITIES, help="units patched one at a time (default: head)")
    parser.add_argument("--sweep-prompts", type=integer(1, MAX_PROMPTS), default=16,
                        help=f"prompts per task, an integer in [1, {MAX_PROMPTS}] (default: 16)")
    parser.add_argument("--reward", default="pixel", choices=REWARDS, help="how a patched forward is scored (default: pixel)")
    intervention_options(parser)


def _sweep(args: argparse.Namespace) -> int:
    from interp import pipeline as p

    intervention = intervention_from(args)
    cfg, run, source, model = open_stage(args)
    stats = p.load_stats(run, cfg.tasks, model)
    base = None
    if intervention.needs_base:
        from interp.inspection import zero_shot_stats

        base = {t: zero_shot_stats(run, model, source, cfg, t) for t in cfg.tasks}
    table = p.stage_sweep(run, model, source, stats, cfg, args.sweep_granularity, args.sweep_prompts, args.reward,
                          intervention=intervention, base_stats=base, **with_force(p.stage_sweep, args))
    _print(table, sort="delta")
    print(f"written to {run.path}")
    return 0


def _evaluate_options(parser: argparse.ArgumentParser) -> None:
    from interp.taskvectors.search import METHODS

    stage_options(parser, "evaluate")
    parser.add_argument("--method", type=choice((*METHODS, "all")), choices=(*METHODS, "all"), default="reinforce",
                        help="whose task vectors: a search method, or all that the run holds (default: reinforce)")
    parser.add_argument("--search-seed", type=integer(0, MAX_SEEDS), default=0, help="which search's policies (default: 0)")
    intervention_options(parser)


def _evaluate(args: argparse.Namespace) -> int:
    from interp import pipeline as p
    from interp.inspection import zero_shot_stats

    intervention = intervention_from(args)
    cfg, run, source, model = open_stage(args)
    methods = run.searched_methods() if args.method == "all" else [args.method]
    if not methods:
        raise InputError(f"{run.path} holds no search method's policies", fix=f"run `interp search --run {run.path}` first")
    stats = p.load_stats(run, cfg.tasks, model)
    policies = {m: p.load_policies(run, cfg.tasks, m, args.search_seed) for m in methods}
    base = {t: zero_shot_stats(run, model, source, cfg, t) for t in cfg.tasks} if intervention.needs_base else None
    table = p.stage_evaluate(run, model, source, stats, policies, cfg, intervention, base)
    _print(table)
    print(f"written to {run.path}")
    return 0


def _import_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=existing_file, help="an official bernoullis_*.pkl policy (pickled logits)")
    parser.add_argument("--task", required=True, choices=TASKS, help="the task the policy is for")
    parser.add_argument("--run", type=run_dir, default="runs/pipeline", help="run directory to write it into (default: runs/pipeline)")
    parser.add_argument("--model", type=model_spec, default="tiny", help="the model it was searched on (for its unit space)")
    parser.add_argument("--granularity", choices=GRANULARITIES, default="group", help="its unit granularity (default: group)")
    parser.add_argument("--allow-pickle", action="store_true", help="read the pickle (it can run code from the file: only for files you trust)")
    parser.add_argument("--force", action="store_true", help="replace a policy the run already holds for this task")


def _import_policy(args: argparse.Namespace) -> int:
    from interp import pipeline as p
    from interp.run import RunDir
    from interp.taskvectors.policy import Policy
    from interp.taskvectors.units import UnitSpace

    logits = p.import_official_policy(args.file, allow_pickle=args.allow_pickle)
    space = UnitSpace.for_model(p.load_model_spec(args.model), args.granularity)
    if logits.numel() != len(space):
        raise InputError(f"{args.file} holds {logits.numel()} logits; the {args.granularity} units of {args.model} number {len(space)}",
                         fix="Pass the --model and --granularity the policy was searched with")
    run = RunDir.create(args.run, command=sys.argv, config=recorded(args))
    target = run.policy_path(args.task)
    if target.exists() and not args.force:
        raise InputError(f"{target} exists", fix="Pass --force to replace it, or use another --run")
    meta = {"task": args.task, "method": "reinforce", "source": str(args.file), "best_score": float("nan"), "config": {}}
    print(Policy(space, logits, logits.clone(), meta).save(target))
    return 0


#: --help examples, with the time each takes on the tiny model (2-core CPU, other jobs running)
EXAMPLES: dict[str, str] = {
    "collect": "  interp collect --run runs/tv --tasks segmentation,lowlight   # ~1 min per task\n"
               "  interp collect --run runs/tv --n-collect 16 --n-candidates 32  # quick",
    "taskness": "  interp taskness --run runs/tv                               # seconds: taskness.csv",
    "search": "  interp search --run runs/tv --steps 40 --samples 48 --reward token   # REINFORCE, quick: ~1 min per task\n"
              "  interp search --run runs/tv --method attribution                      # another method",
    "sweep": "  interp sweep --run runs/tv                                  # 16 prompts: ~2.5 min per task\n"
             "  interp sweep --run runs/tv --sweep-prompts 4                # quick",
    "evaluate": "  interp evaluate --run runs/tv                               # 100 prompts: ~2 min per task\n"
                "  interp evaluate --run runs/tv --method all --n-eval 16      # every method's vectors, quick",
    "import-policy": "  interp import-policy bernoullis_lowlight.pkl --task lowlight --run runs/tv --allow-pickle",
}

COMMANDS = [
    Command("collect", "collect per-task mean activations (official prompt selection)", _stage("collect"), _collect,
            EXAMPLES["collect"]),
    Command("taskness", "rank heads by between- over within-task variance", _stage("taskness"), _taskness, EXAMPLES["taskness"]),
    Command("search", "search for task vectors, per task, with one method (reinforce, gradient, attribution, ...)",
            _search_options, _search, EXAMPLES["search"]),
    Command("sweep", "patch every unit alone and measure the change", _sweep_options, _sweep, EXAMPLES["sweep"]),
    Command("evaluate", "one-shot / zero-shot / + task vector / + random units, for any method's vectors",
            _evaluate_options, _evaluate, EXAMPLES["evaluate"]),
    Command("import-policy", "write an official bernoullis_*.pkl policy into a run (needs --allow-pickle)", _import_options,
            _import_policy, EXAMPLES["import-policy"]),
]
