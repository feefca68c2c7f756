"""``interp demo``: the whole pipeline on the bundled tiny model and synthetic data, in minutes.

collect one-shot mean activations per task -> taskness -> one search per task -> single-head
sweep -> evaluation on held-out prompts (one-shot, zero-shot, zero-shot + task vector, and the
controls: as many random units, every unit; paired intervals against zero-shot and the strongest
control; a composition of two tasks' vectors) -> figures. Every stage resumes from what the run
directory already holds.

**Each task is searched on a reward that agrees with its metric.** The training reward of a task
is its registry entry's ``reward`` (:mod:`interp.data.registry`): the cheapest reward measured to
agree with the official pixel metric (``interp agreement``; Pearson over random unit sets, README
"Which reward a search trains on"). The method follows from that reward, chosen by measurement
on the demo's data (``interp agreement``, ``interp compare-search``): where the token reward agrees
(segmentation, low-light) one forward and backward of ``attribution`` ranks the units and the
held-out search prompts pick the size, up to every unit; where only the soft (differentiable
pixel) reward agrees (in-painting, colorization) ``gradient`` optimises gates on it, since
attribution on the soft reward found nothing on in-painting.

``full=True`` (``interp demo --full``) adds what takes long: the comparison of every search method
and control over three seeds (``search_comparison.csv``), each task on its agreeing reward
(``reward="auto"``: the token reward where it agrees, else the pixel reward for forward-only
methods and the soft one for gradient methods). ``data`` (``interp demo --data synthetic:K``)
repeats the demo on another data seed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

import torch

from interp.data.registry import get_task
from interp.data.spec import DataSpec
from interp.data.synthetic import HELD_OUT_SEED
from interp.pipeline import (
    PipelineConfig, SearchOptions, load_source, stage_collect, stage_evaluate, stage_search, stage_sweep, stage_taskness,
)
from interp.run import RunDir
from interp.taskvectors.search.attribution import AttributionConfig
from interp.taskvectors.search.gradient import GradientConfig

DEMO_PIPELINE = PipelineConfig(n_collect=64, n_candidates=160, n_train=10, n_search_eval=24, n_eval=64)
#: the search of a task, by the training reward its registry entry names (see the module docstring)
DEMO_METHODS: dict[str, Any] = {
    "token": AttributionConfig(),
    "soft": GradientConfig(steps=20, eval_every=5),
}
#: prompts per task of the single-unit sweep (head units)
DEMO_SWEEP_PROMPTS = 8
#: seeds of the search comparison of ``--full``
FULL_SEEDS = 3


def demo_search(task: str, seed: int = 0) -> tuple[Any, SearchOptions]:
    """The method config and search options the demo uses for ``task``."""
    reward = get_task(task).reward
    if reward not in DEMO_METHODS:
        from interp.errors import ConfigError

        raise ConfigError(f"the demo has no search for tasks trained on the {reward!r} reward ({task})",
                          fix=f"add one to interp.demo.DEMO_METHODS (it has {', '.join(DEMO_METHODS)})")
    return replace(DEMO_METHODS[reward], seed=seed), SearchOptions(reward=reward)


def run_demo(run: RunDir, seed: int = 0, cfg: PipelineConfig = DEMO_PIPELINE, full: bool = False,
             data: str | DataSpec = f"synthetic:{HELD_OUT_SEED}") -> int:
    """The pipeline (see the module docstring) on ``data`` (default the held-out synthetic seed);
    ``full``: also the search comparison over :data:`FULL_SEEDS` seeds, every task searched on its
    agreeing reward (``reward="auto"``)."""
    import interp

    torch.manual_seed(seed)
    cfg = PipelineConfig(**{**asdict(cfg), "seed": seed})
    searches = {task: demo_search(task, seed) for task in cfg.tasks}
    run.update_manifest(pipeline=asdict(cfg), model="tiny", data=str(data), full=full,
                        searches={t: {"method": type(c).__name__, "config": asdict(c), "reward": o.reward}
                                  for t, (c, o) in searches.items()})
    model = interp.load_model("tiny")
    source = load_source(data)
    timings: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        start = time.perf_counter()
        print(f"[{name}]", flush=True)
        out = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 1)
        return out

    def search_all() -> dict:
        policies = {}
        for task, (method_cfg, options) in searches.items():
            one = replace(cfg, tasks=(task,))
            policies.update(stage_search(run, model, source, stats, one, method_cfg, options=options))
        return policies

    stats = timed("collect", stage_collect, run, model, source, cfg)
    timed("taskness", stage_taskness, run, stats)
    policies = timed("search", search_all)
    timed("sweep", stage_sweep, run, model, source, stats, cfg, n_prompts=DEMO_SWEEP_PROMPTS)
    table = timed("evaluate", stage_evaluate, run, model, source, stats, policies, cfg)
    comparison = None
    if full:
        from interp.compare_search import CompareConfig, compare_search

        ccfg = CompareConfig(seeds=tuple(range(seed, seed + FULL_SEEDS)), n_train=cfg.n_train, reward="auto")
        comparison = timed("compare-search", compare_search, run, model, source, stats, cfg, ccfg)
    from interp.viz.figures import FigureError, write_run_figures

    try:
        timed("figures", write_run_figures, run.path)
    except FigureError as error:  # the results stand; say which figures failed
        print(f"some figures could not be drawn: {error}")
    run.update_manifest(timings_s=timings)
    shown = table[table["condition"].isin(["one_shot", "zero_shot", "zero_shot+tv", "zero_shot+control:all"])]
    print(shown[["task", "condition", "method", "metric", "mean", "sem", "diff_zero_shot", "ci_low_zero_shot",
                 "ci_high_zero_shot", "units"]].to_markdown(index=False, floatfmt=".4f"))
    if comparison is not None:
        from interp.compare_search import seed_summary

        print("\nsearch methods over seeds (search_comparison.csv):\n" + seed_summary(comparison))
    print(f"\nresults, figures and statistics written to {run.path}  (stage timings: {timings})")
    return 0
