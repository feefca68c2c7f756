"""The task-vector pipeline as stages over one run directory (used by the CLI and the demo).

    collect  -> stats/<task>.safetensors         mean activations per task (official prompt selection)
    taskness -> taskness.csv                     between- over within-task variance per head and group
    search   -> reinforce/<task>/policy.safetensors, log.csv   REINFORCE per task
    sweep    -> sweep.csv                        every unit patched alone
    evaluate -> results.csv                      one-shot / zero-shot / + task vector / + random units

Each stage reads what earlier stages wrote, so stages can be rerun or resumed one at a time.
Models are named by a :class:`~interp.models.spec.ModelSpec`: ``tiny`` (bundled), a
``.safetensors`` file from ``save_model``, or ``official:<checkpoint-1000.pth>[,<last.ckpt>]``.
Data sources by a :class:`~interp.data.spec.DataSpec`: ``synthetic[:seed]`` or
``pascal:<VOC2012 dir>[,<splits dir>]``. The CLI parses both once; the loaders take either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from interp import distributed
from interp.data.source import Pair, PromptSource, select_pairs
from interp.data.spec import DataSpec
from interp.data.registry import DEFAULT_COMPOSITE, composite_of, get_task, selection
from interp.data.tasks import PromptBatch, build_prompts, build_task_prompts
from interp.errors import ConfigError, UnsafeFileError
from interp.io import remove, write_csv
from interp.models.mae_vqgan import MAEVQGAN
from interp.models.spec import ModelSpec
from interp.provenance import check_resume, model_fingerprint, normalized, source_spec
from interp.run import RunDir
from interp.taskvectors.evaluate import evaluate_composition, evaluate_task_vectors, score_prompts
from interp.taskvectors.patching import Intervention
from interp.taskvectors.policy import Policy, PolicyError
from interp.taskvectors.search.base import Checkpoint, SearchProblem
from interp.taskvectors.sharded import collect_sharded
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.sweep import sweep
from interp.taskvectors.taskness import taskness
from interp.taskvectors.units import UnitSpace


def load_model_spec(spec: ModelSpec | str, device: str = "cpu") -> MAEVQGAN:
    """The model of a :class:`~interp.models.spec.ModelSpec` (or its text: ``tiny`` |
    ``path.safetensors`` | ``official:<mae.pth>[,<vqgan.ckpt>]``)."""
    return ModelSpec.parse(spec).load(device)


def load_source(spec: DataSpec | str) -> PromptSource:
    """The source of a :class:`~interp.data.spec.DataSpec` (or its text: ``synthetic[:seed]`` |
    ``pascal:<VOC2012 dir>[,<splits dir>]``)."""
    return DataSpec.parse(spec).load()


@dataclass
class PipelineConfig:
    """What every stage needs to agree on."""

    tasks: tuple[str, ...] = selection("pipeline")
    fold: int = 0
    seed: int = 0
    n_collect: int = 100  # prompts whose activations are averaged (the official top-N)
    n_candidates: int = 300  # one-shot scored pairs to select them from
    granularity: str = "group"
    n_train: int = 10  # REINFORCE training prompts
    n_search_eval: int = 32  # REINFORCE held-out prompts (train split)
    n_eval: int = 100  # final evaluation prompts (val split)
    composition: tuple[str, ...] | None = get_task(DEFAULT_COMPOSITE).parts  # vectors composed for that composite

    def __post_init__(self) -> None:
        """Counts are integers >= 1 (a bool is not a count), the fold in 0..3, the seed >= 0."""
        for name in ("fold", "seed", "n_collect", "n_candidates", "n_train", "n_search_eval", "n_eval"):
            value, low = getattr(self, name), 0 if name in ("fold", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (name == "fold" and value > 3):
                raise ConfigError(f"PipelineConfig.{name}={value!r}",
                                  fix=f"Pass {'a fold in 0..3' if name == 'fold' else f'an integer >= {low}'} (not a bool)")


# --------------------------------------------------------------------------------------------
# collect


def select_prompts(model: MAEVQGAN, source: PromptSource, task: str, cfg: PipelineConfig) -> PromptBatch:
    """The official prompt selection: score candidate pairs one-shot, keep the best pair per
    support, then per query, then the top ``n_collect``."""
    candidates = build_prompts(source, task, cfg.fold, cfg.n_candidates, model.grid, seed=cfg.seed, split="trn")
    scores = score_prompts(model, candidates, "one_shot").tolist()
    records = [(p.query, p.support, s) for p, s in zip(candidates.pairs, scores)]
    best = select_pairs(records, cfg.n_collect)
    pairs = [Pair(query, support) for query, support, _ in best]
    return build_prompts(source, task, cfg.fold, len(pairs), model.grid, seed=cfg.seed, split="trn", pairs=pairs)


def collect_provenance(model: MAEVQGAN, source: PromptSource, task: str, cfg: PipelineConfig) -> dict:
    """What makes a task's statistics: the model (weights hash included), data spec, options."""
    return {"stage": "collect", "task": task, "model": model_fingerprint(model), "data": source_spec(source),
            "fold": cfg.fold, "seed": cfg.seed, "n_collect": cfg.n_collect, "n_candidates": cfg.n_candidates}


def stage_collect(run: RunDir, model: MAEVQGAN, source: PromptSource, cfg: PipelineConfig, batch_size: int = 64,
                  force: bool = False) -> dict[str, ActivationStats]:
    """Per task, the mean activations of the officially selected one-shot prompts -> ``stats/<task>``.

    A finished task is reused only if it was made with this config (else :class:`ResumeConflict`);
    ``force=True`` collects again.
    """
    out = {}
    for task in cfg.tasks:
        path = run.stats_path(task)
        made_by = collect_provenance(model, source, task, cfg)
        if path.exists() and not force:  # resume: a finished task is not collected again
            stats = ActivationStats.load(path, model=model, layout="one_shot", task=task)
            check_resume(stats.extra.get("provenance"), made_by, path, run.path)
            out[task] = stats
            continue
        prompts = select_prompts(model, source, task, cfg)
        batches = [prompts.canvases[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
        stats = collect_sharded(model, batches, layout="one_shot", task=task, dataset=source.name, seed=cfg.seed, progress=False)
        stats.extra["provenance"] = normalized(made_by)
        if distributed.is_main():  # rank 0 writes, the others wait (every rank holds the same stats)
            stats.save(path)
        distributed.barrier()
        out[task] = stats
    return out


def load_stats(run: RunDir, tasks: Sequence[str], model: MAEVQGAN | None = None) -> dict[str, ActivationStats]:
    """Statistics written by :func:`stage_collect` (one-shot layout, each file of its own task);
    a missing task is a named error."""
    return run.load_stats(tasks, model, layout="one_shot")


def check_reused(run: RunDir, model: MAEVQGAN, source: PromptSource, stats: Mapping[str, ActivationStats],
                 cfg: PipelineConfig, policies: Mapping[str, Policy | torch.Tensor] | None = None,
                 same_seed: bool = True) -> None:
    """What a stage reuses was made with this model (weights hash), data, fold and sizes.

    Each task's statistics must record :func:`collect_provenance` of the current inputs and each
    policy the :func:`search_provenance` part of its own (its seed and REINFORCE options are the
    search's own business); :class:`~interp.errors.ResumeConflict` otherwise, through the one check
    (:func:`~interp.provenance.check_resume`). A policy imported from the official code records
    none and is checked by task and unit space only. ``same_seed=False`` (a search, whose
    ``--seed`` draws its own prompts): the statistics may come from another ``--seed``.
    """
    for task in cfg.tasks:
        if task in stats:
            recorded = stats[task].extra.get("provenance")
            current = collect_provenance(model, source, task, cfg)
            if not same_seed and isinstance(recorded, Mapping):
                current["seed"] = recorded.get("seed", current["seed"])
            check_resume(recorded, current, run.stats_path(task), run.path)
        policy = (policies or {}).get(task)
        recorded = policy.metadata.get("provenance") if isinstance(policy, Policy) else None
        if recorded is not None and task in stats:
            # what the policy was searched on (its seeds, method options and reward are the search's own business)
            made_by = {k: v for k, v in search_provenance(model, source, stats[task], task, cfg).items() if k in REUSED}
            path = run.policy_path(task, policy.metadata.get("method") or "reinforce", int(recorded.get("search_seed", 0)))
            check_resume({k: recorded.get(k, "(absent)") for k in made_by}, made_by, path, run.path)


#: what a reused policy must share with the run: the model, the data, the fold, the prompt counts, the units, the statistics
REUSED = ("stage", "task", "model", "data", "fold", "n_train", "n_search_eval", "granularity", "statistics")


# --------------------------------------------------------------------------------------------
# taskness


def stage_taskness(run: RunDir, stats: dict[str, ActivationStats]) -> pd.DataFrame:
    table = taskness(list(stats.values()), by="group")
    run.write_table("taskness", table)
    return table


# --------------------------------------------------------------------------------------------
# search


@dataclass
class SearchOptions:
    """What every search method's problem shares: the training reward kind (``pixel``, the
    official IoU / -MSE; ``token``, minus the target codes' cross-entropy, no VQGAN decode), the
    pixel reward's decode (``official`` or ``band``), the rows per forward (memory only) and what a
    patch does (``intervention``, default the official replace; ``add`` needs zero-shot statistics)."""

    reward: str = "pixel"
    decode: str = "official"
    chunk: int = 320
    intervention: Intervention = field(default_factory=Intervention)

    def __post_init__(self) -> None:
        from interp.models.pixels import check_decode
        from interp.scoring import check_kind

        if self.reward != "auto":  # chosen per task from the measured agreement at the search's start
            check_kind(self.reward)
        check_decode(self.decode)


def search_prompts(model: MAEVQGAN, source: PromptSource, task: str, cfg: PipelineConfig, seed: int = 0,
                   n_train: int | None = None, n_held_out: int | None = None) -> tuple[PromptBatch, PromptBatch]:
    """Training and held-out search prompts of search seed ``seed`` (0: the pipeline's own; each
    seed draws its own pairs from the train split)."""
    n_train = cfg.n_train if n_train is None else n_train
    n_held_out = cfg.n_search_eval if n_held_out is None else n_held_out
    prompts = build_prompts(source, task, cfg.fold, n_train + n_held_out, model.grid, seed=cfg.seed + 1 + 1000 * seed, split="trn")
    return prompts.select(range(n_train)), prompts.select(range(n_train, len(prompts)))


def search_provenance(model: MAEVQGAN, source: PromptSource, stats: ActivationStats, task: str, cfg: PipelineConfig,
                      seed: int = 0, options: SearchOptions = SearchOptions()) -> dict:
    """What makes a task's search besides the method's options: model, data, prompts, statistics, reward."""
    return {"stage": "search", "task": task, "model": model_fingerprint(model), "data": source_spec(source),
            "fold": cfg.fold, "seed": cfg.seed, "search_seed": seed, "n_train": cfg.n_train,
            "n_search_eval": cfg.n_search_eval, "granularity": cfg.granularity, "statistics": stats.extra.get("provenance"),
            "reward": options.reward, "decode": options.decode,
            **({"intervention": options.intervention.label} if options.intervention.kind != "replace" else {})}


def stage_search(
    run: RunDir, model: MAEVQGAN, source: PromptSource, stats: dict[str, ActivationStats], cfg: PipelineConfig,
    method_cfg: Any = None, *, method: str | None = None, seed: int = 0, options: SearchOptions = SearchOptions(),
    force: bool = False, progress: bool = True, contrast: Mapping[str, ActivationStats] | None = None,
    base_stats: Mapping[str, ActivationStats] | None = None,
) -> dict[str, Policy]:
    """One search method per task (REINFORCE by default); returns each task's :class:`Policy`,
    also written to the run (``run.policy_path(task, method, seed)``, its log beside it).

    ``method_cfg`` is the method's config (``ReinforceConfig()``, ``GradientConfig(...)``; the
    method follows from it, or from ``method`` with its default config); ``seed`` picks the search
    prompts (0: the pipeline's). A finished policy or a checkpoint is reused only if made with this
    config (else :class:`ResumeConflict`); ``force=True`` searches again from scratch. ``contrast``:
    the tasks whose statistics taskness contrasts (default ``stats``; the ``taskness`` method only).
    ``base_stats``: each task's zero-shot statistics, for ``options.intervention`` ``add``.
    """
    from interp.taskvectors.agreement import check_search_reward
    from interp.taskvectors.search import method_config, method_name, run_search
    from interp.taskvectors.search.sizes import SCANNED, scan_sizes

    method = method_name(method_cfg) if method is None else method
    method_cfg = method_config(method) if method_cfg is None else method_cfg
    check_reused(run, model, source, stats, cfg, same_seed=False)  # a first search too: this model, data, fold, sizes
    space = UnitSpace.for_model(model, cfg.granularity)
    taskness_scores = None
    if method == "taskness":
        from interp.taskvectors.taskness import unit_taskness

        taskness_scores = unit_taskness(taskness(list((stats if contrast is None else contrast).values()), by="group"), space)
    policies = {}
    for task in tqdm(cfg.tasks, desc=f"search ({method})", disable=len(cfg.tasks) < 2 or not progress):
        made_by = {**search_provenance(model, source, stats[task], task, cfg, seed, options),
                   "method": method, "config": normalized(asdict(method_cfg))} | ({"size_scan": "all"} if method in SCANNED else {})
        paths = (run.policy_path(task, method, seed), run.checkpoint_path(task, method, seed), run.log_path(task, method, seed))
        if force:
            for path in paths:
                remove(path)  # never through a link that leaves the run
        if paths[0].exists():
            policy = Policy.load(paths[0])
            check_resume(policy.metadata.get("provenance"), made_by, paths[0], run.path)
            policies[task] = policy
            continue
        train, held_out = search_prompts(model, source, task, cfg, seed)
        problem = SearchProblem(model, space, stats[task], train, held_out, reward=options.reward, decode=options.decode,
                                chunk=options.chunk, taskness=taskness_scores, intervention=options.intervention,
                                base_means=(base_stats or {}).get(task))
        agreement = check_search_reward(problem, run, method)  # "auto" resolved; a disagreeing reward warned about
        result = run_search(method, problem, method_cfg, checkpoint=Checkpoint(paths[1], made_by), progress=progress)
        if method in SCANNED:  # the kept set's size chosen on the held-out prompts, up to every unit
            result = scan_sizes(problem, result)
        policies[task] = result.to_policy(space, task, provenance=normalized(made_by), reward=problem.reward,
                                          reward_agreement=None if agreement is None else agreement.as_row())
        if distributed.is_main():  # rank 0 writes; every rank holds the same policy
            policies[task].save(paths[0])
            if result.log:
                write_csv(result.log, paths[2])
        distributed.barrier()
    return policies


def load_policies(run: RunDir, tasks: Sequence[str], method: str = "reinforce", seed: int = 0) -> dict[str, Policy]:
    """Policies written by :func:`stage_search`; a missing task is a named error."""
    return run.load_policies(tasks, method, seed)


def _policy_space(model: MAEVQGAN, policies: Mapping[str, Policy | torch.Tensor], cfg: PipelineConfig) -> UnitSpace:
    """The unit space of the policies (from the policies themselves; bare probability vectors are
    over ``cfg.granularity``)."""
    spaces = {t: p.space for t, p in policies.items() if isinstance(p, Policy)}
    if len({json.dumps(s.to_dict(), sort_keys=True) for s in spaces.values()}) > 1:
        raise PolicyError(f"the policies are over different unit spaces ({ {t: repr(s) for t, s in spaces.items()} })",
                          fix="Evaluate policies of one granularity and model together (search the others again)")
    space = next(iter(spaces.values())) if spaces else UnitSpace.for_model(model, cfg.granularity)
    space.check_model(model)
    return space


def import_official_policy(path: str | Path, allow_pickle: bool = False) -> torch.Tensor:
    """Logits of an official ``bernoullis_*.pkl`` (a pickled list of numpy scalars).

    Reading it runs pickle, which can execute code from the file: pass ``allow_pickle=True``
    only for files you trust.
    """
    if not allow_pickle:
        raise UnsafeFileError(
            f"{path} is a pickle: loading it can execute code",
            fix="If you trust it, call again with allow_pickle=True (CLI: --allow-pickle)",
        )
    import pickle

    with open(path, "rb") as f:
        values = pickle.load(f)  # noqa: S301 - runs only with the allow_pickle=True opt-in
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# sweep and evaluation


def eval_prompts(model: MAEVQGAN, source: PromptSource, tasks: Sequence[str], cfg: PipelineConfig) -> dict[str, PromptBatch]:
    """Held-out prompts: the val split, every task over the same pairs."""
    return build_task_prompts(source, cfg.fold, cfg.n_eval, model.grid, seed=cfg.seed + 2, split="val", tasks=tuple(tasks))


def stage_sweep(run: RunDir, model: MAEVQGAN, source: PromptSource, stats: dict[str, ActivationStats], cfg: PipelineConfig,
                granularity: str = "head", n_prompts: int = 16, reward: str = "pixel", intervention: Intervention | None = None,
                base_stats: Mapping[str, ActivationStats] | None = None) -> pd.DataFrame:
    """Every unit patched alone -> ``sweep.csv`` (the statistics checked with :func:`check_reused`);
    each patch by ``intervention`` (default replace; ``add`` subtracts ``base_stats``)."""
    check_reused(run, model, source, stats, cfg)
    space = UnitSpace.for_model(model, granularity)
    prompts = build_task_prompts(source, cfg.fold, n_prompts, model.grid, seed=cfg.seed + 3, split="trn", tasks=cfg.tasks)
    table = pd.concat([sweep(model, space, stats[t], prompts[t], reward=reward, intervention=intervention,
                             base_means=(base_stats or {}).get(t)) for t in cfg.tasks], ignore_index=True)
    if distributed.is_main():
        run.write_table("sweep", table)
    distributed.barrier()
    return table


def stage_evaluate(run: RunDir, model: MAEVQGAN, source: PromptSource, stats: dict[str, ActivationStats],
                   policies: Mapping[str, Any], cfg: PipelineConfig, intervention: Intervention | None = None,
                   base_stats: Mapping[str, ActivationStats] | None = None) -> pd.DataFrame:
    """One-shot / zero-shot / + task vector / + random units on held-out prompts -> ``results.csv``.
    Every patch by ``intervention`` (default replace; ``add`` subtracts ``base_stats``, zero-shot
    statistics, e.g. :func:`interp.inspection.zero_shot_stats`).

    ``policies`` is ``{task: Policy}`` (one method's) or ``{method: {task: Policy}}`` (several: the
    one-shot and zero-shot rows are scored once, each method's rows follow; column ``method``).
    Statistics and policies are checked with :func:`check_reused`.
    """
    by_method = policies if policies and all(isinstance(p, Mapping) for p in policies.values()) else {None: policies}
    for chosen in by_method.values():
        check_reused(run, model, source, stats, cfg, chosen)
    tasks = list(cfg.tasks)
    composite = composite_of(cfg.composition) if cfg.composition else None
    prompts = eval_prompts(model, source, tasks + ([composite] if composite else []), cfg)
    examples: dict[str, dict[str, torch.Tensor]] = {}
    tables = []
    for i, (method, chosen) in enumerate(by_method.items()):
        space = _policy_space(model, chosen, cfg)
        every_unit = {t: {"all": torch.ones(1, len(space), dtype=torch.bool)} for t in tasks}  # the control that is often strongest
        table = evaluate_task_vectors(model, space, stats, chosen, {t: prompts[t] for t in tasks}, seed=cfg.seed,
                                      examples=examples if i == 0 else None, baselines=i == 0, extra_controls=every_unit,
                                      intervention=intervention, base_means=base_stats)
        if composite and all(t in chosen for t in cfg.composition):
            parts = {t: (stats[t], chosen[t]) for t in cfg.composition}
            table = pd.concat([table, evaluate_composition(model, space, prompts[composite], parts, baselines=i == 0)],
                              ignore_index=True)
        found_by = {t: (p.metadata.get("method") if isinstance(p, Policy) else None) or method or "" for t, p in chosen.items()}
        found_by[composite] = "+".join(dict.fromkeys(found_by.get(t, "") for t in cfg.composition or ()))
        table.insert(2, "method", [found_by.get(t, "") if "+" in c and "control" not in c and "random" not in c else ""
                                   for t, c in zip(table["task"], table["condition"])])
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    if distributed.is_main():
        run.write_table("results", table)
        save_examples(run, {t: prompts[t] for t in tasks}, examples)
    distributed.barrier()
    return table


def save_examples(run: RunDir, prompts: dict[str, PromptBatch], examples: dict[str, dict[str, torch.Tensor]]) -> None:
    """``prompts/<task>.safetensors``: the first canvases and each condition's predicted canvas in
    [0, 1] (the official pasted integer image / 255), as :func:`evaluate_task_vectors` scored them."""
    for task, images in examples.items():
        k = min(len(image) for image in images.values())
        tensors = {"canvases": prompts[task].canvases[:k]}
        for condition, image in images.items():
            tensors[f"prediction.{condition}"] = image[:k].float() / 255.0
        run.write_tensors(f"prompts/{task}", tensors, {"task": task})
