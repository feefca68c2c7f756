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

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.data.tasks import PromptBatch
from interp.errors import InputError
from interp.io import read_safetensors_metadata, read_tensors
from interp.metrics import task_metric
from interp.io import write_json
from interp.pipeline import PipelineConfig, SearchOptions, eval_prompts, search_prompts, stage_search
from interp.provenance import check_resume, model_fingerprint, normalized, source_spec
from interp.run import RunDir
from interp.taskvectors.controls import control_masks
from interp.taskvectors.evaluate import paired_bootstrap, score_masks, score_prompts
from interp.taskvectors.policy import Policy
from interp.taskvectors.agreement import check_search_reward
from interp.taskvectors.search import METHODS, SearchProblem, method_config
from interp.taskvectors.search.budgets import FIXED_COST, backward_cost, budget_config
from interp.taskvectors.search.sizes import size_curve
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.taskness import taskness as taskness_table
from interp.taskvectors.taskness import unit_taskness
from interp.taskvectors.units import UnitSpace

#: per-method settings sized for the tiny model on a CPU (each overridable)
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "reinforce": {"steps": 40, "samples": 48, "eval_every": 5, "select": "threshold"},
    "gradient": {"steps": 30, "eval_every": 5},
    "attribution": {},
    "greedy": {"pool": 12, "max_units": 8},
    "random": {"draws": 8},
    "taskness": {},
    "prune": {"drop": 0.5},
    "sweep": {},
}


@dataclass
class CompareConfig:
    """What the comparison runs: methods, seeds, the search and val prompt counts, the training reward."""

    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 10
    n_search_eval: int = 16
    n_eval: int = 50
    reference: str = "reinforce"  # whose task vector the controls are sized and matched to
    bootstrap: int = 2000
    reward: str = "auto"  # each task on the cheapest reward that agrees with its metric
    settings: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in METHOD_SETTINGS.items()})
    # matched budgets: every method again at each of these forward budgets ("<method>@<F>" rows; a
    # backward counted at its measured cost in forwards), plus REINFORCE at the pipeline's own settings
    budgets: tuple[int, ...] = ()
    pipeline_row: bool = True  # with budgets: the "reinforce@pipeline" row (the search stage's defaults)


def _searches(run: RunDir, model: Any, source: Any, stats: dict[str, ActivationStats], cfg: PipelineConfig,
              ccfg: CompareConfig, contrast: Mapping[str, ActivationStats], seed: int) -> dict[str, dict[str, Policy]]:
    """``{method: {task: Policy}}`` of one seed: every method through :func:`~interp.pipeline.stage_search`
    into the comparison's own run directory (resumed, and checked, like any search)."""
    search_cfg = replace(cfg, n_train=ccfg.n_train, n_search_eval=ccfg.n_search_eval)
    options = SearchOptions(reward=ccfg.reward)
    return {method: stage_search(run, model, source, stats, search_cfg, method_config(method, **{**ccfg.settings.get(method, {}), "seed": seed}),
                                 seed=seed, options=options, progress=False, contrast=contrast)
            for method in ccfg.methods}


def _cached(run: RunDir, name: str, made_by: dict, compute) -> dict[str, Tensor]:
    """Tensors ``name`` of the comparison, reused only if made by ``made_by`` (the one resume check)."""
    path = run.path / f"{name}.safetensors"
    if path.exists():  # a damaged cache is a named error, never a raw one
        fix = f"delete {path} (a cache: it is computed again)"
        try:
            header = read_safetensors_metadata(path)
        except InputError as error:
            raise InputError(f"{error.problem} (a comparison cache)", fix=fix[:1].upper() + fix[1:]) from None
        try:
            recorded = json.loads(header.get("provenance", "null"))
        except ValueError as error:
            raise InputError(f"{path} records an unreadable provenance ({error})", fix=fix[:1].upper() + fix[1:]) from None
        check_resume(recorded, made_by, path, run.path.parent)
        return read_tensors(path, fix=fix)
    tensors = compute()
    run.write_tensors(name, tensors, {"provenance": json.dumps(normalized(made_by))})
    return tensors


def compare_search(run: RunDir, model: Any, source: Any, stats: dict[str, ActivationStats], cfg: PipelineConfig,
                   ccfg: CompareConfig = CompareConfig(), progress: bool = True,
                   taskness_stats: dict[str, ActivationStats] | None = None) -> pd.DataFrame:
    """Run (or resume) the comparison and write ``search_comparison.csv``; returns the table.

    Every method's search is :func:`~interp.pipeline.stage_search` into ``run.comparison()`` (its
    policies at the comparison's sizes never mix with the pipeline's). ``taskness_stats`` (default
    ``stats``): the tasks taskness contrasts (two or more)."""
    model.eval()
    sub = run.comparison()
    space = UnitSpace.for_model(model, cfg.granularity)
    contrast = stats if taskness_stats is None else taskness_stats
    taskness = unit_taskness(taskness_table(list(contrast.values()), by="group"), space) if len(contrast) > 1 else None
    val = eval_prompts(model, source, list(cfg.tasks), PipelineConfig(**{**asdict(cfg), "n_eval": ccfg.n_eval}))
    per_task: dict[str, dict] = {}
    curves: list[dict] = []
    bar = tqdm(ccfg.seeds, desc="compare-search", disable=not progress)
    cost = _backward_cost(sub, model, space, stats, source, cfg, ccfg) if ccfg.budgets else 0.0
    for seed in bar:
        policies = _searches(sub, model, source, stats, cfg, ccfg, contrast, seed)
        if ccfg.budgets:
            policies |= _budget_searches(sub, model, source, stats, cfg, ccfg, contrast, seed, space, cost)
        for task in cfg.tasks:
            bar.set_postfix(task=task, seed=seed)
            train, held_out = search_prompts(model, source, task, cfg, seed, ccfg.n_train, ccfg.n_search_eval)
            problem = SearchProblem(model, space, stats[task], train, held_out, reward=ccfg.reward, taskness=taskness)
            check_search_reward(problem, sub)  # the controls' sweep ranks by the reward the searches used ("auto" resolved)
            made_by = {"model": model_fingerprint(model), "data": source_spec(source), "task": task, "seed": seed,
                       "fold": cfg.fold, "pipeline_seed": cfg.seed, "n_train": ccfg.n_train, "n_search_eval": ccfg.n_search_eval,
                       "granularity": cfg.granularity, "reward": ccfg.reward, "statistics": stats[task].extra.get("provenance")}
            found = {m: by_task[task] for m, by_task in policies.items()}
            reference = found.get(ccfg.reference) or next(iter(found.values()))
            budget = reference.metadata.get("budget", {})
            sweep = _cached(sub, f"sweep/{task}/seed{seed}", made_by,
                            lambda: {"reward": problem.train_score(torch.eye(len(space), dtype=torch.bool))})["reward"]
            controls = control_masks(problem, reference.mask(), budget.get("select_forwards", 0), seed, taskness, sweep)
            masks = {m: p.mask()[None] for m, p in found.items()} | {f"control:{c}": s for c, s in controls.items()}
            scores = _val_scores(sub, model, space, stats[task], val[task], task, seed, masks, {**made_by, "n_eval": ccfg.n_eval})
            costs = {m: _costs(p, cost) for m, p in found.items()}
            curves += [{"task": task, "method": m, "seed": seed, **r} for m in found
                       for r in size_curve(_log(sub, m, task, seed)).to_dict("records")]
            costs["control:best_of_random"] = {"forwards": budget.get("select_forwards", 0),
                                               "select_forwards": budget.get("select_forwards", 0),
                                               "units": int(controls["best_of_random"].sum())}
            per_task.setdefault(task, {})[seed] = (scores, costs, {c: int(s[0].sum()) for c, s in controls.items()})
    rows = []
    for task, by_seed in per_task.items():
        rows += _summarize(task, by_seed, model, val[task], ccfg)
    table = pd.DataFrame(rows)
    run.write_table("search_comparison", table)
    run.write_table("size_curves", pd.DataFrame(curves, columns=["task", "method", "seed", "units", "held_out_score"]))
    return table


def _costs(policy: Policy, cost: float) -> dict[str, Any]:
    """What a search spent and trained on, from its policy's metadata (forwards + ``cost`` x backwards
    as ``effective_forwards``)."""
    meta = policy.metadata
    budget = meta.get("budget", {})
    agreement = meta.get("reward_agreement") or {}
    return {**budget, "units": int(policy.mask().sum()), "held_out_score": meta.get("best_score"),
            "effective_forwards": budget.get("forwards", 0) + cost * budget.get("backwards", 0),
            "reward": meta.get("reward"), "reward_pearson": agreement.get("pearson", float("nan")),
            **({"budget": meta["matched_budget"]} if "matched_budget" in meta else {})}


def _log(run: RunDir, condition: str, task: str, seed: int) -> list[dict]:
    """A search's log rows (``log.csv`` beside its policy; a budget row's in its own sub-run)."""
    method, _, tag = condition.partition("@")
    where = _budget_run(run, tag) if tag else run
    path = where.log_path(task, method, seed)
    return pd.read_csv(path).to_dict("records") if path.exists() else []


def _budget_run(run: RunDir, tag: str) -> RunDir:
    """The sub-run of one matched budget (``budget<F>/``) or of the pipeline-settings row."""
    return RunDir(run.path / (f"budget{tag}" if tag != "pipeline" else "pipeline-settings"))


def _backward_cost(run: RunDir, model: Any, space: UnitSpace, stats: dict[str, ActivationStats], source: Any,
                   cfg: PipelineConfig, ccfg: CompareConfig) -> float:
    """A backward's cost in forwards, measured once per comparison (first task, seed 0) and kept in
    ``budgets.json``, so resumed budget searches get the same configs."""
    path = run.path / "budgets.json"
    if path.exists():
        return float(json.loads(path.read_text())["backward_cost"])
    task = cfg.tasks[0]
    train, held_out = search_prompts(model, source, task, cfg, 0, ccfg.n_train, ccfg.n_search_eval)
    reward = "token" if ccfg.reward == "auto" else ccfg.reward
    cost = backward_cost(SearchProblem(model, space, stats[task], train, held_out, reward=reward), repeats=3)
    run.path.mkdir(parents=True, exist_ok=True)
    write_json(path, {"backward_cost": cost, "measured_on": task, "reward": reward})
    return cost


def _budget_searches(run: RunDir, model: Any, source: Any, stats: dict[str, ActivationStats], cfg: PipelineConfig,
                     ccfg: CompareConfig, contrast: Mapping[str, ActivationStats], seed: int, space: UnitSpace,
                     cost: float) -> dict[str, dict[str, Policy]]:
    """``{"<method>@<F>": {task: Policy}}``: every method sized to each budget
    (:func:`~interp.taskvectors.search.budgets.budget_config`), and ``reinforce@pipeline``."""
    search_cfg = replace(cfg, n_train=ccfg.n_train, n_search_eval=ccfg.n_search_eval)
    options = SearchOptions(reward=ccfg.reward)
    train, held_out = search_prompts(model, source, cfg.tasks[0], cfg, seed, ccfg.n_train, ccfg.n_search_eval)
    sizes = SearchProblem(model, space, stats[cfg.tasks[0]], train, held_out)  # the prompt and unit counts only
    out: dict[str, dict[str, Policy]] = {}
    jobs = [(f"{m}@{f}", m, budget_config(m, method_config(m, **{**ccfg.settings.get(m, {}), "seed": seed}), sizes, f, cost), f)
            for f in ccfg.budgets for m in ccfg.methods if m not in FIXED_COST]
    if ccfg.pipeline_row:
        jobs.append(("reinforce@pipeline", "reinforce", method_config("reinforce", seed=seed), None))
    for condition, method, method_cfg, forwards in jobs:
        found = stage_search(_budget_run(run, condition.partition("@")[2]), model, source, stats, search_cfg, method_cfg,
                             seed=seed, options=options, progress=False, contrast=contrast)
        for policy in found.values():
            policy.metadata["matched_budget"] = forwards if forwards is not None else float("nan")
        out[condition] = found
    return out


def _val_scores(run: RunDir, model: Any, space: UnitSpace, means: ActivationStats, batch: PromptBatch, task: str, seed: int,
                masks: Mapping[str, Tensor], made_by: dict) -> dict[str, Tensor]:
    """Per-prompt val metric of every condition (mean over a condition's sets), cached in the run
    per condition (reused only for the same unit sets, model, data and prompts)."""
    out = {}
    for name, sets in masks.items():
        def compute(sets: Tensor = sets) -> dict[str, Tensor]:
            return {"metric": torch.stack([s.metric for s in score_masks(model, space, means, batch, sets)]).nanmean(0)}

        recorded = {**made_by, "condition": name, "sets": sets.to(torch.uint8).tolist()}
        out[name] = _cached(run, f"val/{task}/seed{seed}/{name.replace(':', '__')}", recorded, compute)["metric"]
    return out


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
        kind = "method" if c.partition("@")[0] in METHODS else ("control" if c.startswith("control:") else "reference")
        row = {"task": task, "condition": c, "kind": kind,
               "metric": metric.name, "higher_is_better": metric.higher_is_better, "mean": float(np.mean(per_seed)),
               "spread": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0, "seeds": len(per_seed)}
        for name, base in (("zero_shot", zero), ("strongest_control", seed_mean[strongest])):
            diff = sign * (per_prompt - base)
            low, high = paired_bootstrap(diff, ccfg.bootstrap)
            row.update({f"diff_{name}": float(diff.nanmean()), f"ci_low_{name}": low, f"ci_high_{name}": high})
        row["strongest_control"] = strongest
        costs = [by_seed[s][1].get(c, {}) for s in by_seed]
        units = [by_seed[s][2].get(c.split(":", 1)[-1]) for s in by_seed] if c.startswith("control:") else []
        for key in ("units", "forwards", "backwards", "seconds", "held_out_score", "effective_forwards", "budget", "reward_pearson"):
            values = [x[key] for x in costs if key in x and x[key] is not None] or \
                ([u for u in units if u is not None] if key == "units" else [])
            row[key] = float(np.nanmean(values)) if values and not all(v != v for v in values) else float("nan")
        row["reward"] = next((x["reward"] for x in costs if x.get("reward")), "")
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
