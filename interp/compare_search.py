"""``interp compare-search``: every search method and every control, over several seeds, on one run.

For each task and seed (a seed draws its own training and held-out search prompts and seeds the
method), every method of :mod:`interp.taskvectors.search` runs on the same unit space, means and
prompts; the controls of :mod:`interp.taskvectors.controls` are built for the reference task
vector (REINFORCE's); every unit set is scored on the same val prompts. Per task and
condition, ``search_comparison.csv`` holds the mean over seeds and its spread, a paired
bootstrap 95% interval of the difference to zero-shot and to the strongest control (positive =
better, on the task metric), units kept, forwards, backwards and seconds spent. Everything is
resumable: finished searches and scored conditions are read back from the run directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.data.tasks import PromptBatch, build_prompts
from interp.errors import ResumeConflict
from interp.metrics import task_metric
from interp.pipeline import PipelineConfig, eval_prompts
from interp.run import RunDir
from interp.taskvectors.controls import control_masks
from interp.taskvectors.evaluate import patch_hooks_for, score_prompts
from interp.taskvectors.search import METHODS, Budget, SearchProblem, SearchResult, method_config, run_search
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.taskness import taskness as taskness_table
from interp.taskvectors.taskness import unit_taskness
from interp.taskvectors.units import UnitSpace

#: per-method settings sized for the tiny model on a CPU (each overridable)
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "reinforce": {"steps": 40, "samples": 48, "eval_every": 5, "reward": "token", "select": "threshold"},
    "gradient": {"steps": 30, "eval_every": 5},
    "attribution": {"max_units": 48},
    "greedy": {"pool": 12, "max_units": 8},
    "random": {"draws": 8, "max_units": 48},
    "taskness": {"max_units": 48},
}


@dataclass
class CompareConfig:
    """What the comparison runs: methods, seeds, the search and val prompt counts."""

    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 10
    n_search_eval: int = 16
    n_eval: int = 50
    reference: str = "reinforce"  # whose task vector the controls are sized and matched to
    bootstrap: int = 2000
    settings: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in METHOD_SETTINGS.items()})


def search_prompts(source: Any, model: Any, task: str, cfg: PipelineConfig, ccfg: CompareConfig, seed: int) -> tuple[PromptBatch, PromptBatch]:
    """Training and held-out search prompts of one seed (seed 0: the pipeline's own)."""
    prompts = build_prompts(source, task, cfg.fold, ccfg.n_train + ccfg.n_search_eval, model.grid,
                            seed=cfg.seed + 1 + 1000 * seed, split="trn")
    return prompts.select(range(ccfg.n_train)), prompts.select(range(ccfg.n_train, len(prompts)))


def _result(run: RunDir, problem: SearchProblem, method: str, task: str, seed: int, ccfg: CompareConfig,
            cfg: PipelineConfig) -> SearchResult:
    """One method's search, or what the run already holds for it (same config and prompts only)."""
    method_cfg = method_config(method, **{**ccfg.settings.get(method, {}), "seed": seed})
    prompts = {"n_train": ccfg.n_train, "n_search_eval": ccfg.n_search_eval, "fold": cfg.fold, "seed": cfg.seed,
               "granularity": cfg.granularity}
    recorded = json.loads(json.dumps(asdict(method_cfg) | {"prompts": prompts}, default=str))
    stem = f"search/{method}/{task}/seed{seed}"
    path = run.path / f"{stem}.safetensors"
    if path.exists():
        result = SearchResult.load(path)
        if result.config != recorded:
            raise ResumeConflict(f"{path} was searched with {result.config}, this comparison asks for {recorded}",
                                 fix="use another --run, or delete the search folder to recompute")
        return result
    tag = hashlib.sha1(json.dumps(prompts, sort_keys=True).encode()).hexdigest()[:8]  # a checkpoint is for these prompts only
    result = run_search(method, problem, method_cfg, checkpoint=run.file(f"{stem}.{tag}.ckpt"), progress=False)
    result.config = recorded
    result.save(path)
    return result


def search_tasks(run: RunDir, model: Any, source: Any, stats: dict[str, ActivationStats], cfg: PipelineConfig,
                 method: str, seed: int = 0) -> dict[str, SearchResult]:
    """``interp search --method M``: one method per task, results in ``search/<method>/<task>/seed<k>``."""
    ccfg = CompareConfig(n_train=cfg.n_train, n_search_eval=cfg.n_search_eval)
    space = UnitSpace.for_model(model, cfg.granularity)
    taskness = unit_taskness(taskness_table(list(stats.values()), by="group"), space) if method == "taskness" else None
    out = {}
    for task in cfg.tasks:
        train, held_out = search_prompts(source, model, task, cfg, ccfg, seed)
        out[task] = _result(run, SearchProblem(model, space, stats[task], train, held_out, taskness=taskness), method, task, seed, ccfg, cfg)
        out[task].to_policy(space, task).save(run.policy_path(task, method))  # `interp evaluate` reads it like REINFORCE's
    return out


def _val_scores(run: RunDir, model: Any, space: UnitSpace, means: ActivationStats, batch: PromptBatch, task: str, seed: int,
                masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Per-prompt val metric of every condition (mean over a condition's sets), cached in the run."""
    from safetensors.torch import load_file

    path = run.path / f"search/val/{task}/seed{seed}.safetensors"
    cached = load_file(path) if path.exists() else {}
    out = {}
    for name, sets in masks.items():
        key = name.replace(":", "__")
        if key in cached and f"{key}.masks" in cached and torch.equal(cached[f"{key}.masks"].bool(), sets):
            out[name] = cached[key]
            continue
        scores = [score_prompts(model, batch, "zero_shot", patch_hooks_for(model, space, [(means, m)], "zero_shot")) for m in sets]
        out[name] = torch.stack(scores).nanmean(0)
        cached.update({key: out[name], f"{key}.masks": sets.to(torch.uint8)})
        run.write_tensors(f"search/val/{task}/seed{seed}", cached, {"task": task})
    return out


def paired_bootstrap(diff: Tensor, n: int, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-prompt differences, resampling prompts."""
    d = diff[~diff.isnan()].double().numpy()
    if len(d) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def compare_search(run: RunDir, model: Any, source: Any, stats: dict[str, ActivationStats], cfg: PipelineConfig,
                   ccfg: CompareConfig = CompareConfig(), progress: bool = True,
                   taskness_stats: dict[str, ActivationStats] | None = None) -> pd.DataFrame:
    """Run (or resume) the comparison and write ``search_comparison.csv``; returns the table.

    ``taskness_stats`` (default ``stats``): the tasks taskness contrasts (two or more)."""
    model.eval()
    space = UnitSpace.for_model(model, cfg.granularity)
    contrast = stats if taskness_stats is None else taskness_stats
    taskness = unit_taskness(taskness_table(list(contrast.values()), by="group"), space) if len(contrast) > 1 else None
    val = eval_prompts(model, source, list(cfg.tasks), PipelineConfig(**{**asdict(cfg), "n_eval": ccfg.n_eval}))
    rows = []
    jobs = [(t, s) for t in cfg.tasks for s in ccfg.seeds]
    bar = tqdm(jobs, desc="compare-search", disable=not progress)
    per_task: dict[str, dict] = {}
    for task, seed in bar:
        bar.set_postfix(task=task, seed=seed)
        train, held_out = search_prompts(source, model, task, cfg, ccfg, seed)
        results = {}
        problem = SearchProblem(model, space, stats[task], train, held_out, taskness=taskness)
        for method in ccfg.methods:
            problem.budget = Budget()  # each method counts its own cost
            results[method] = _result(run, problem, method, task, seed, ccfg, cfg)
        reference = results.get(ccfg.reference) or next(iter(results.values()))
        problem.budget = Budget()
        sweep = _sweep_scores(run, problem, task, seed)
        controls = control_masks(problem, reference.mask, reference.budget.select_forwards, seed, taskness, sweep)
        masks = {m: r.mask[None] for m, r in results.items()} | {f"control:{c}": s for c, s in controls.items()}
        scores = _val_scores(run, model, space, stats[task], val[task], task, seed, masks)
        costs = {m: asdict(r.budget) | {"units": r.units, "held_out_score": r.held_out_score} for m, r in results.items()}
        costs["control:best_of_random"] = {"forwards": reference.budget.select_forwards, "select_forwards": reference.budget.select_forwards,
                                           "units": int(controls["best_of_random"].sum())}
        per_task.setdefault(task, {})[seed] = (scores, costs, {c: int(s[0].sum()) for c, s in controls.items()})
    for task, by_seed in per_task.items():
        rows += _summarize(task, by_seed, model, val[task], ccfg)
    table = pd.DataFrame(rows)
    run.write_table("search_comparison", table)
    return table


def _sweep_scores(run: RunDir, problem: SearchProblem, task: str, seed: int) -> Tensor:
    """Each unit's training reward alone (the single-unit sweep of this seed's prompts), cached."""
    from safetensors.torch import load_file

    path = run.path / f"search/sweep/{task}/seed{seed}.safetensors"
    if path.exists():
        return load_file(path)["reward"]
    reward = problem.single_unit if problem.single_unit is not None else problem.train_score(torch.eye(len(problem.space), dtype=torch.bool))
    run.write_tensors(f"search/sweep/{task}/seed{seed}", {"reward": reward}, {"task": task})
    return reward


def _summarize(task: str, by_seed: dict, model: Any, batch: PromptBatch, ccfg: CompareConfig) -> list[dict]:
    metric = task_metric(task)
    sign = 1.0 if metric.higher_is_better else -1.0
    one_shot = score_prompts(model, batch, "one_shot")
    zero = next(iter(by_seed.values()))[0]["control:none"]
    conditions = list(next(iter(by_seed.values()))[0])
    # per prompt: the mean over seeds (val prompts are shared by every seed)
    seed_mean = {c: torch.stack([by_seed[s][0][c] for s in by_seed]).nanmean(0) for c in conditions}
    controls = [c for c in conditions if c.startswith("control:") and c != "control:none"]
    strongest = max(controls, key=lambda c: sign * float(seed_mean[c].nanmean()))
    rows = []
    for c in ["one_shot", *conditions]:
        per_prompt = one_shot if c == "one_shot" else seed_mean[c]
        per_seed = [float(per_prompt.nanmean())] if c == "one_shot" else [float(by_seed[s][0][c].nanmean()) for s in by_seed]
        row = {"task": task, "condition": c, "kind": "method" if c in METHODS else ("control" if c.startswith("control:") else "reference"),
               "metric": metric.name, "higher_is_better": metric.higher_is_better, "mean": float(np.mean(per_seed)),
               "spread": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0, "seeds": len(per_seed)}
        for name, base in (("zero_shot", zero), ("strongest_control", seed_mean[strongest])):
            diff = sign * (per_prompt - base)
            low, high = paired_bootstrap(diff, ccfg.bootstrap)
            row.update({f"diff_{name}": float(diff.nanmean()), f"ci_low_{name}": low, f"ci_high_{name}": high})
        row["strongest_control"] = strongest
        costs = [by_seed[s][1].get(c, {}) for s in by_seed]
        units = [by_seed[s][2].get(c.split(":", 1)[-1]) for s in by_seed] if c.startswith("control:") else []
        for key in ("units", "forwards", "backwards", "seconds", "held_out_score"):
            values = [x[key] for x in costs if key in x] or ([u for u in units if u is not None] if key == "units" else [])
            row[key] = float(np.mean(values)) if values else float("nan")
        rows.append(row)
    return rows


def best_method(table: pd.DataFrame, task: str) -> str:
    """The method whose kept unit sets scored best on the held-out search prompts (mean over seeds)."""
    methods = table[(table.task == task) & (table.kind == "method")]
    return str(methods.sort_values("held_out_score", ascending=False).iloc[0]["condition"])


def seed_summary(table: pd.DataFrame) -> str:
    """Per task: the method picked by held-out score, and every method's val mean +- spread over seeds."""
    lines = []
    for task in dict.fromkeys(table["task"]):
        part = table[(table.task == task) & (table.kind == "method")]
        metric = part.iloc[0]["metric"]
        cells = ", ".join(f"{r.condition} {r.mean:.4f} ± {r.spread:.4f}" for r in part.itertuples())
        pick = best_method(table, task)
        chosen = part.set_index("condition").loc[pick]
        lines.append(f"{task} ({metric}, val, mean ± sd over {int(chosen.seeds)} seeds): {cells}; "
                     f"picked by held-out score: {pick} ({chosen['diff_zero_shot']:+.4f} vs zero-shot, "
                     f"95% CI [{chosen['ci_low_zero_shot']:+.4f}, {chosen['ci_high_zero_shot']:+.4f}])")
    return "\n".join(lines)


def markdown_table(table: pd.DataFrame) -> str:
    """The README's comparison table: per task and condition, val mean ± spread over seeds, the
    difference to zero-shot and to the strongest control with 95% intervals, units and cost."""
    def ci(r, name: str) -> str:
        return f"{r[f'diff_{name}']:+.3f} [{r[f'ci_low_{name}']:+.3f}, {r[f'ci_high_{name}']:+.3f}]"

    lines = ["| task | condition | val metric (mean ± sd over seeds) | Δ zero-shot [95% CI] | Δ strongest control [95% CI] | units | forwards | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        if r["condition"] == "control:none":
            continue
        cost = lambda key: "" if pd.isna(r[key]) else f"{r[key]:.0f}" if key != "seconds" else f"{r[key]:.1f}"  # noqa: E731
        metric = "mIoU" if r["metric"] == "iou" else "MSE"
        lines.append(f"| {r['task']} | {r['condition']} | {metric} {r['mean']:.3f} ± {r['spread']:.3f} | {ci(r, 'zero_shot')} | "
                     f"{ci(r, 'strongest_control')} | {cost('units')} | {cost('forwards')} | {cost('seconds')} |")
    return "\n".join(lines)
