"""The activation-space side of the comparison, read from a pipeline / demo run: its held-out
prompt settings and, per task, the mean-activation task vector its REINFORCE policy selects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import Tensor

from interp.data.tasks import PromptBatch
from interp.models.mae_vqgan import MAEVQGAN
from interp.pipeline import PipelineConfig
from interp.run import RunDir
from interp.taskvectors.evaluate import score_masks

#: ``(task, scores or None, storage floats, seconds, notes)``
ActivationRow = tuple[str, Tensor | None, int, float, str]


def _recorded_pipeline(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pipeline config a run recorded (top level, as the demo writes it, or under ``config``)."""
    return manifest.get("pipeline") or (manifest.get("config") or {}).get("pipeline")


def pipeline_from_run(activation_run: str | Path | None, default: PipelineConfig) -> tuple[PipelineConfig, str | None]:
    """The pipeline config (held-out prompts: fold, seed, n_eval) and data spec an activation
    run recorded in its manifest, else ``default`` and None."""
    if not activation_run or not (Path(activation_run) / "manifest.json").exists():
        return default, None
    manifest = RunDir(Path(activation_run)).manifest()
    recorded = _recorded_pipeline(manifest)
    if not recorded:
        return default, manifest.get("data")
    known = {f for f in asdict(default)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items() if k in known}
    return PipelineConfig(**{**asdict(default), **values}), manifest.get("data")


def activation_rows(
    model: MAEVQGAN,
    activation_run: str | Path | None,
    held_out: Mapping[str, PromptBatch],
    tasks: Sequence[str],
    threshold: float,
    batch_size: int,
) -> list[ActivationRow]:
    """The activation task vectors' rows (:data:`ActivationRow`).

    Reads each task's statistics and :class:`~interp.taskvectors.policy.Policy` (its unit space
    from the file) through :class:`~interp.run.RunDir`; patches the units whose policy probability exceeds ``threshold`` into zero-shot
    forwards of the held-out prompts. Anything missing becomes a row without a number.
    """
    if activation_run is None or not Path(activation_run).is_dir():
        why = (f"activation run {activation_run} not found: run `interp demo --out {activation_run or 'runs/demo'}` "
               "first, then rerun this command (fine-tunes resume)")
        return [(t, None, 0, float("nan"), why) for t in tasks]
    run = RunDir(Path(activation_run))
    manifest = run.manifest()
    pipeline_cfg = _recorded_pipeline(manifest) or {}
    act_tasks = list(pipeline_cfg.get("tasks") or tasks)
    timings = manifest.get("timings_s") or {}
    per_task_s = (timings.get("collect", float("nan")) + timings.get("search", float("nan"))) / max(len(act_tasks), 1)
    n_collect = pipeline_cfg.get("n_candidates", "?"), pipeline_cfg.get("n_collect", "?")
    out: list[ActivationRow] = []
    for task in tasks:
        try:
            policy = run.load_policies([task])[task]  # its unit space comes from the file
            stats = run.load_stats([task], model=model)[task]
            space = policy.space
            space.check_model(model)
            kept = policy.mask(threshold)
            scores = score_masks(model, space, stats, held_out[task], kept[None], batch_size)[0].metric
        except Exception as error:  # missing task, other model, other granularity: say so, no number
            out.append((task, None, 0, float("nan"), f"no activation task vector from {activation_run}: {error}"))
            continue
        storage = 0
        for i in kept.nonzero().flatten().tolist():
            site, heads, positions = space.unit_cells(i)
            storage += len(heads) * len(positions) * int(stats.mean(site).shape[-1])
        rcfg = policy.metadata.get("config") or {}
        forwards = int(rcfg.get("steps", 0)) * int(rcfg.get("samples", 0))
        out.append((task, scores, storage, per_task_s,
                    f"{int(kept.sum())}/{len(space)} {space.granularity} units (p > {threshold}), mean z at their "
                    f"tokens; collect {n_collect[0]} scored + {n_collect[1]} averaged one-shot prompts, REINFORCE "
                    f"{rcfg.get('steps', '?')} steps x {rcfg.get('samples', '?')} = {forwards} patched forwards; "
                    f"seconds = demo collect+search / {len(act_tasks)} tasks"))
    return out
