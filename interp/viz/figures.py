"""``interp figures RUN_DIR``: regenerate every paper figure of a run into ``RUN_DIR/figures``.

A run directory (``interp demo`` or the pipeline stages, :mod:`interp.pipeline`) holds tables
and tensors, never figures only: this module rebuilds the figures from them, so a style
change or a new figure needs no rerun. What it reads, and what it writes (each as HTML and,
where kaleido finds a Chrome, PNG, PDF and SVG):

=====================================  =====================================================
input                                  figure(s)
=====================================  =====================================================
``results.csv``                        ``results`` (conditions per task, ±sem) and
                                       ``results_composition`` (composed task vectors)
``taskness.csv``                       ``taskness`` (layers x heads, per token group)
``<method>/<task>/seed0/policy.safetensors``  ``<method>_<task>`` (kept policy's probabilities, any method)
``reinforce/<task>/seed0/log.csv``       ``reinforce_curves`` (all tasks overlaid)
``sweep.csv``                          ``sweep_<task>`` (delta of patching each unit alone)
``prompts/<task>.safetensors``         ``prompts`` (optional: the prompt and predictions)
``lens/<task>.*``, ``paths/<task>.csv``  ``lens_<task>_layers``, ``lens_<task>_strip``, ``paths_<task>``
``search_comparison.csv``              ``search_comparison`` (every search method and control)
=====================================  =====================================================

Whatever is missing is skipped with a printed note; a file that is there but unreadable is
reported and the other figures are still written, then :class:`FigureError` names every
failure. A run that holds nothing to draw is a :class:`FigureError` too. Without Chrome only HTML is written and a note says how to get the static files.

A policy's ``space`` metadata (``UnitSpace.to_dict``, written by the pipeline) says which
units its logits are over.
"""

from __future__ import annotations

import inspect
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from interp.canvas import QUADRANTS, CanvasGrid, denormalize
from interp.errors import ConfigError, InterpError
from interp.io import read_tensors
from interp.run import RunDir
from interp.taskvectors.policy import policy_mask
from interp.taskvectors.units import UnitSpace
from interp.viz.curves import reinforce_curves, results_bars
from interp.viz.export import FORMATS, STATIC_HELP, chrome_available, check_formats, export_session, save_figure
from interp.viz.heatmaps import layer_head_heatmap, policy_frame
from interp.viz.paper import paper_figure, paper_width_px
from interp.viz.style import condition_label, metric_label

FIGURES_DIR = "figures"
#: a policy keeps the units whose probability is above this (:meth:`interp.taskvectors.policy.Policy.mask`)
KEEP_THRESHOLD = 0.5


class FigureError(InterpError, RuntimeError):
    """Some inputs of a run were present but could not be drawn (the others were written)."""


class _Skip(Exception):
    """An optional input is absent: print a note, write nothing."""


# --------------------------------------------------------------------------------------------
# policy spaces


def policy_space(meta: Mapping[str, Any], n_units: int) -> UnitSpace:
    """The :class:`UnitSpace` of a saved policy (its ``space`` metadata) with ``n_units`` logits."""
    space = UnitSpace.from_dict(meta)
    if len(space) != n_units:
        raise ValueError(f"the policy has {n_units} logits, its unit space {len(space)} units")
    return space


def read_policy_file(path: str | Path, which: str = "best_logits") -> tuple[UnitSpace, torch.Tensor, dict]:
    """``(space, probabilities, metadata)`` of a ``policy.safetensors`` (the kept best policy by default).

    The space comes from the file (:meth:`interp.taskvectors.policy.Policy.load`).
    """
    from interp.taskvectors.policy import Policy

    policy = Policy.load(path)
    kept = policy.which("best" if which == "best_logits" else "last")
    meta = {**{k: v if isinstance(v, str) else json.dumps(v) for k, v in policy.metadata.items()},
            "space": json.dumps(policy.space.to_dict()), "which": "best_logits" if kept == "best" else "logits"}
    return policy.space, policy.probabilities(kept, dtype=torch.float64), meta


# --------------------------------------------------------------------------------------------
# figures of a run


def _read_csv(run_dir: Path, name: str) -> pd.DataFrame:
    path = run_dir / name
    if not path.is_file():
        raise _Skip(f"no {name}")
    table = pd.read_csv(path)
    if table.empty:
        raise _Skip(f"{name} is empty")
    return table


def results_figures(run_dir: Path, width: str | None = None) -> list[tuple[str, go.Figure]]:
    """Conditions per task (a panel each; two per row at column width); composed task vectors
    (conditions ``...[a+b]``) in their own figure, each bar named under it."""
    table = _read_csv(run_dir, "results.csv")
    composed = table["condition"].astype(str).str.contains(r"\[", regex=True)
    composite_tasks = set(table.loc[composed, "task"])
    main = table[~table["task"].isin(composite_tasks)]
    out = []
    if not main.empty:
        out.append(("results", results_bars(main, title="Task performance on held-out prompts",
                                            columns=2 if width == "column" else None)))
    if composite_tasks:
        out.append(("results_composition", results_bars(
            table[table["task"].isin(composite_tasks)], title="Composing task vectors", width="column", bar_names="axis")))
    return out


def taskness_figures(run_dir: Path) -> list[tuple[str, go.Figure]]:
    table = _read_csv(run_dir, "taskness.csv")
    if "slot" in table.columns:
        raise _Skip("taskness.csv is per slot; the figure draws per-group taskness (taskness(..., by='group'))")
    values = table["taskness"].replace([np.inf, -np.inf], np.nan).dropna()
    positive = values[values > 0]
    # most units near 0, a few far above: a square-root scale gives the low end room; log only over many decades
    log = bool(len(positive) and positive.max() / positive.min() > 1000 and (values > 0).all())
    fig = layer_head_heatmap(table, "taskness", title="Taskness: between- over within-task variance", log=log, sqrt=not log)
    return [("taskness", fig)]


def reinforce_figures(run_dir: Path) -> list[tuple[str, go.Figure]]:
    """Every search method's kept policy per task (REINFORCE: probabilities; a set: 0 / 1)."""
    run = RunDir(run_dir)
    found = [(method, task) for method in run.searched_methods() for task in _task_order(run.searched_tasks(method))]
    if not found:
        raise _Skip("no <method>/<task>/seed0/policy.safetensors")
    out = []
    for method, task in found:
        space, probabilities, meta = read_policy_file(run.policy_path(task, method))
        which = "best policy" if meta["which"] == "best_logits" else "final policy"
        frame = policy_frame(space, probabilities)
        frame["kept"] = frame["probability"] > KEEP_THRESHOLD  # token units: any token of the group kept
        n_kept = int(policy_mask(probabilities, KEEP_THRESHOLD).sum())
        title = (f"REINFORCE probabilities: {task} ({which}, {space.granularity} units, {n_kept} of {len(space)} kept)"
                 if method == "reinforce" else f"{method}: units kept for {task} ({space.granularity} units, {n_kept} of {len(space)})")
        out.append((f"{method}_{_slug(task)}", layer_head_heatmap(
            frame, "probability", title=title, zmin=0.0, zmax=1.0, mark="kept",
            mark_label=f"kept: probability > {KEEP_THRESHOLD:g} ({n_kept} of {len(space)} units)")))
    return out


def curve_figures(run_dir: Path, width: str | None = None) -> list[tuple[str, go.Figure]]:
    """REINFORCE curves, one column per task (two columns, in blocks, at ``width="column"``)."""
    run = RunDir(run_dir)
    tasks = _task_order(run.searched_tasks(artifact="log.csv"))
    if not tasks:
        raise _Skip("no reinforce/<task>/seed0/log.csv")
    frames = {task: pd.read_csv(run.log_path(task)) for task in tasks}
    frames = {task: frame for task, frame in frames.items() if not frame.empty}
    if not frames:
        raise _Skip("the REINFORCE logs are empty")
    title = "REINFORCE training" + (f": {next(iter(frames))}" if len(frames) == 1 else "")
    return [("reinforce_curves", reinforce_curves(frames if len(frames) > 1 else next(iter(frames.values())), title=title,
                                                  wrap=2 if width == "column" else None))]


def sweep_figures(run_dir: Path) -> list[tuple[str, go.Figure]]:
    table = _read_csv(run_dir, "sweep.csv")
    if "task" not in table.columns:
        table = table.assign(task="")
    out = []
    for task, part in table.groupby("task", sort=False):
        metric = str(part["metric"].iloc[0]) if "metric" in part.columns else "reward"
        # rewards are higher-is-better (-MSE): the figure reads the metric itself (Δ MSE), blue = helps either way
        lower_better = metric.startswith("-")
        name = metric_label(metric.lstrip("-"), arrow=False)
        part = part.assign(delta=-part["delta"] if lower_better else part["delta"])
        n = int(part["n_prompts"].max()) if "n_prompts" in part.columns else None
        noise = "sem" in part.columns and part["sem"].notna().any()
        if noise:
            part = part.assign(beyond=part["delta"].abs() > 2 * part["sem"])
        label = (f"Δ {name} ({'lower' if lower_better else 'higher'} better)<br>blue = helps"
                 + (f", n = {n} prompts" if n else ""))
        title = f"Patching one unit at a time: {task}" if task else "Patching one unit at a time"
        fig = layer_head_heatmap(part, "delta", title=title, colorbar_title=label,
                                 colorscale="RdBu_r" if lower_better else None,
                                 mark="beyond" if noise else None, mark_label="|Δ| > 2 sem (paired, over the prompts)")
        out.append((f"sweep_{_slug(str(task))}" if task else "sweep", fig))
    return out


def search_comparison_figures(run_dir: Path, width: str | None = None) -> list[tuple[str, go.Figure]]:
    """Quality vs forward passes of every search method and control (``interp compare-search``)."""
    from interp.viz.search_comparison import search_comparison_figure

    table = _read_csv(RunDir(run_dir).path, "search_comparison.csv")
    return [("search_comparison", search_comparison_figure(table, columns=2 if width == "column" else None))]


def prompt_figures(run_dir: Path) -> list[tuple[str, go.Figure]]:
    """``prompts/<task>.safetensors`` with ``canvases`` (normalised) and optional
    ``prediction.<condition>`` canvases in [0, 1]: the first prompt of each task."""
    files = _task_sorted((run_dir / "prompts").glob("*.safetensors"), by_stem=True) if (run_dir / "prompts").is_dir() else []
    if not files:
        raise _Skip("no prompts/<task>.safetensors")
    rows = []
    for path in files:
        tensors = read_tensors(path, fix="run `interp evaluate` again to write it")
        if "canvases" not in tensors:
            raise ValueError(f"{path} has no 'canvases' tensor (keys: {sorted(tensors)})")
        predictions = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("prediction.")}
        rows.append((path.stem, tensors["canvases"][0], {k: v[0] for k, v in predictions.items()}))
    return [("prompts", prompt_panels(rows))]


def prompt_panels(rows: Sequence[tuple[str, torch.Tensor, Mapping[str, torch.Tensor]]], padding: int = 1) -> go.Figure:
    """Rows of (name, normalised canvas ``[3, H, W]``, {condition: predicted canvas in [0, 1]})."""
    from interp.viz.prompts import COLUMN_TITLES, image_rows

    conditions = list(dict.fromkeys(k for _, _, preds in rows for k in preds))
    titles = [*COLUMN_TITLES[:4], *[condition_label(c).replace(" + ", "<br>+ ") for c in conditions]]
    cell_rows = []
    for _, canvas, preds in rows:
        size = canvas.shape[-1]
        grid = CanvasGrid(size, _patch_for(size), padding)
        cells = [denormalize(grid.cell(canvas, q)) for q in QUADRANTS]
        cell_rows.append(cells + [grid.cell(preds[c], "target") if c in preds else None for c in conditions])
    return image_rows(cell_rows, [r[0] for r in rows], titles, cell_px=130)


def lens_figures(run_dir: Path) -> list[tuple[str, go.Figure]]:
    """``lens/<task>.*`` and ``paths/<task>.csv`` (``interp lens`` / ``interp paths``): :mod:`interp.viz.lens`."""
    from interp.viz.lens import run_figures

    figures = run_figures(run_dir)
    if not figures:
        raise _Skip("no lens/<task>.csv or paths/<task>.csv")
    return figures


def _patch_for(size: int) -> int:
    """Any patch size that tiles the canvas (cells depend on the canvas size and padding only)."""
    for patch in (16, 8, 4, 2, 1):
        if size % patch == 0 and (size // patch) % 2 == 0:
            return patch
    raise ValueError(f"a {size}px canvas cannot be cut into a 2x2 grid")


def _task_order(tasks: Iterable[str]) -> list[str]:
    """Task names in the order of :data:`interp.data.tasks.TASKS`."""
    return [path.stem for path in _task_sorted([Path(t) for t in tasks], by_stem=True)]


def _task_sorted(paths: Iterable[Path], by_stem: bool = False) -> list[Path]:
    """Per-task files (task = folder name, or file stem) in the order of :data:`interp.data.tasks.TASKS`."""
    from interp.data.registry import TASKS

    rank = {t: i for i, t in enumerate(TASKS)}

    def key(path: Path) -> tuple[int, str]:
        task = path.stem if by_stem else path.parent.name
        return rank.get(task, len(rank)), task

    return sorted(paths, key=key)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


#: figure builders in the order they are written; each returns [(stem, figure)] or skips
BUILDERS: dict[str, Callable[[Path], list[tuple[str, go.Figure]]]] = {
    "results": results_figures,
    "taskness": taskness_figures,
    "reinforce policies": reinforce_figures,
    "reinforce curves": curve_figures,
    "sweep": sweep_figures,
    "prompts": prompt_figures,
    "lens": lens_figures,
    "search comparison": search_comparison_figures,
}


def write_run_figures(
    run_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    out_dir: str | Path | None = None,
    only: Iterable[str] | None = None,
    width: str | None = None,
    titles: bool | None = None,
) -> list[Path]:
    """Write every figure a run's files allow into ``RUN_DIR/figures``; returns the files written.

    ``formats``: any of html, png, pdf, svg (static ones need kaleido + Chrome; without them
    only HTML is written and a note says how to get the rest). ``only``: names of
    :data:`BUILDERS` to run. ``width``: ``"column"`` or ``"page"`` for paper mode
    (:func:`~interp.viz.paper.paper_figure`: print size, fonts >= 7 pt, vector heatmaps; no
    titles unless ``titles``; screen figures keep theirs unless ``titles=False``). Raises :class:`FigureError` after writing the rest when some
    input was present but could not be drawn.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found; give the folder `interp demo --out` wrote")
    formats = check_formats(formats)
    out = Path(out_dir) if out_dir is not None else run_dir / FIGURES_DIR
    names = list(BUILDERS) if only is None else [n.replace("-", " ").replace("_", " ") for n in only]
    if width is not None:
        paper_width_px(width)  # a bad width fails before anything is drawn
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise ConfigError(f"unknown figure group(s) {unknown}", fix=f"Choose from {', '.join(BUILDERS)}")
    if not (run_dir / "manifest.json").is_file():
        print(f"note: {run_dir} has no manifest.json; drawing whatever tables it holds")

    static = [f for f in formats if f != "html"]
    if static and not chrome_available():
        print(f"note: writing HTML only. {STATIC_HELP}.")
        formats = tuple(f for f in formats if f == "html") or ("html",)

    written: list[Path] = []
    failures: list[str] = []
    with export_session() if any(f != "html" for f in formats) else nullcontext():
        for name in names:
            try:
                builder = BUILDERS[name]  # a builder taking `width` lays its figure out for that print width
                figures = builder(run_dir, width=width) if "width" in inspect.signature(builder).parameters else builder(run_dir)
            except _Skip as skip:
                print(f"skip {name}: {skip}")
                continue
            except Exception as error:  # noqa: BLE001 - report, write the other figures, raise at the end
                failures.append(f"{name}: {type(error).__name__}: {error}")
                print(f"FAILED {name}: {error}")
                continue
            for stem, fig in figures:
                if width is not None:
                    paper_figure(fig, width, title=bool(titles))
                elif titles is False:
                    fig.update_layout(title=None)
                written += save_figure(fig, out / stem, formats, plotlyjs="beside")  # one plotly.min.js for the folder
    kinds = ", ".join(formats)
    print(f"{len(written)} files ({kinds}) written to {out}")
    if failures:
        raise FigureError("some figures could not be drawn:\n  " + "\n  ".join(failures))
    if not written:
        inputs = ("results.csv, taskness.csv, sweep.csv, search_comparison.csv, a search's <method>/<task>/seed<k>/, "
                  "prompts/, lens/, paths/")
        what = (f" for {', '.join(names)} (the notes above say what each lacks)" if only is not None
                else f" (it has none of {inputs})")
        raise FigureError(f"{run_dir} holds nothing to draw{what}",
                          fix=f"Run the pipeline stages into it first (e.g. `interp collect --run {run_dir}`, then "
                              "taskness, search, sweep, evaluate), or give the folder `interp demo --out` wrote")
    return written


__all__ = [
    "write_run_figures", "BUILDERS", "FigureError", "policy_space", "read_policy_file",
    "prompt_panels", "results_figures", "taskness_figures", "reinforce_figures", "curve_figures",
    "sweep_figures", "prompt_figures", "lens_figures", "search_comparison_figures",
]
