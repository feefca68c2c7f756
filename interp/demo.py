"""``interp demo``: the whole pipeline on the bundled tiny model and synthetic data.

collect one-shot mean activations per task -> taskness -> REINFORCE per task -> single-head
sweep -> evaluation on held-out prompts (one-shot, zero-shot, zero-shot + task vector,
zero-shot + random units, and a composition of two tasks' vectors) -> figures. Sized to run in
a few minutes on 2 CPU cores; every stage resumes from what the run directory already holds.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch

from interp.data.synthetic import HELD_OUT_SEED
from interp.pipeline import (
    PipelineConfig, SearchOptions, load_source, stage_collect, stage_evaluate, stage_search, stage_sweep, stage_taskness,
)
from interp.run import RunDir
from interp.taskvectors.search.reinforce import ReinforceConfig

DEMO_PIPELINE = PipelineConfig(n_collect=64, n_candidates=160, n_train=10, n_search_eval=24, n_eval=100)
# the token reward (no VQGAN decoding) is ~10x cheaper than the paper's pixel reward on CPU;
# selection and the final evaluation are in pixel space: every eval_every steps the thresholded
# policy (the task vector that is finally used) is scored on held-out prompts and the best kept
DEMO_REINFORCE = ReinforceConfig(steps=400, samples=128, eval_every=10, select="threshold")
DEMO_SEARCH = SearchOptions(reward="token")


def run_demo(run: RunDir, seed: int = 0, cfg: PipelineConfig = DEMO_PIPELINE, rcfg: ReinforceConfig = DEMO_REINFORCE,
             compare_seeds: int = 3, options: SearchOptions = DEMO_SEARCH) -> int:
    """The pipeline, then (``compare_seeds > 0``) every search method over that many seeds:
    the demo says which method the held-out search prompts pick, and each one's mean and spread."""
    import interp

    torch.manual_seed(seed)
    cfg = PipelineConfig(**{**asdict(cfg), "seed": seed})
    run.update_manifest(pipeline=asdict(cfg), reinforce=asdict(rcfg), search=asdict(options), model="tiny",
                        data=f"synthetic:{HELD_OUT_SEED}")
    model = interp.load_model("tiny")
    source = load_source(f"synthetic:{HELD_OUT_SEED}")
    timings = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        print(f"[{name}]", flush=True)
        out = fn(*args)
        timings[name] = round(time.perf_counter() - start, 1)
        return out

    stats = timed("collect", stage_collect, run, model, source, cfg)
    timed("taskness", stage_taskness, run, stats)
    probabilities = timed("search", lambda: stage_search(run, model, source, stats, cfg, rcfg, options=options))
    timed("sweep", stage_sweep, run, model, source, stats, cfg)
    table = timed("evaluate", stage_evaluate, run, model, source, stats, probabilities, cfg)
    from interp.viz.figures import FigureError, write_run_figures

    try:
        timed("figures", write_run_figures, run.path)
    except FigureError as error:  # the results stand; say which figures failed
        print(f"some figures could not be drawn: {error}")
    comparison = None
    if compare_seeds > 0:
        from interp.compare_search import CompareConfig, compare_search

        ccfg = CompareConfig(seeds=tuple(range(seed, seed + compare_seeds)), n_train=cfg.n_train)
        comparison = timed("compare-search", compare_search, run, model, source, stats, cfg, ccfg)
    run.update_manifest(timings_s=timings)
    print(table[["task", "condition", "metric", "mean", "sem", "n"]].to_markdown(index=False, floatfmt=".4f"))
    if comparison is not None:
        from interp.compare_search import seed_summary

        print("\nsearch methods over seeds (search_comparison.csv):\n" + seed_summary(comparison))
    print(f"\nresults, figures and statistics written to {run.path}  (stage timings: {timings})")
    return 0
