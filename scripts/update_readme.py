"""Regenerate the README's measured tables from run outputs (no hand-copied numbers).

    python scripts/update_readme.py                 # every section whose source exists
    python scripts/update_readme.py --only demo     # one section
    python scripts/update_readme.py --check         # exit 1 if the README is out of date

A section is the text between ``<!-- BEGIN table:NAME -->`` and ``<!-- END table:NAME -->``.
Each NAME has a renderer in :data:`RENDERERS`: ``(source path relative to the repo, function
source -> Markdown)``. To add one, write the function and register it with :func:`renderer`.
Sections whose source is missing are left as they are (and listed).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RENDERERS: dict[str, tuple[str, Callable[[Path], str]]] = {}
SECTION = re.compile(r"(<!-- BEGIN table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- END table:(?P=name) -->)", re.S)


def renderer(name: str, source: str) -> Callable[[Callable[[Path], str]], Callable[[Path], str]]:
    """Register ``fn(source_path) -> markdown`` as the renderer of section ``name``."""

    def register(fn: Callable[[Path], str]) -> Callable[[Path], str]:
        RENDERERS[name] = (source, fn)
        return fn

    return register


def markdown_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _arrow(metric: str) -> str:
    return "mIoU ↑" if metric == "iou" else "MSE ↓"


def _label(task: str) -> str:
    return {"inpainting_lowlight": "inpainting + low-light", "segmentation_inpainting": "segmentation + in-painting"}.get(
        task, task)


@renderer("in_context", "interp/assets/in_context_learning.csv")
def render_in_context(path: Path) -> str:
    """The tiny model's one-shot vs zero-shot table (written by scripts/publish_tiny.py)."""
    table = pd.read_csv(path, comment="#")
    rows = []
    for task, part in table.groupby("task", sort=False):
        by = part.set_index("condition")
        gain = by.loc["one_shot", "gain_vs_zero_shot"]
        rows.append([_label(task), _arrow(part["metric"].iloc[0]), f"{by.loc['one_shot', 'mean']:.3f}",
                     f"{by.loc['zero_shot', 'mean']:.3f}", f"{gain:+.0%}"])
    return markdown_table(["task", "metric", "one-shot", "zero-shot", "gain"], rows)


@renderer("demo", "runs/demo/results.csv")
def render_demo(path: Path) -> str:
    """The demo's results.csv: per task, the method and reward that found the task vector, one-shot /
    zero-shot / + task vector / + random units / + every unit, the paired intervals of the task
    vector against zero-shot and the strongest control, and the share of the one-shot gain."""
    import json

    table = pd.read_csv(path)
    manifest = path.parent / "manifest.json"
    searches = json.loads(manifest.read_text()).get("searches", {}) if manifest.exists() else {}
    rows = []

    def ci(row: pd.Series, name: str) -> str:
        if f"diff_{name}" not in row or pd.isna(row[f"diff_{name}"]):
            return ""
        return f"{row[f'diff_{name}']:+.3f} [{row[f'ci_low_{name}']:+.3f}, {row[f'ci_high_{name}']:+.3f}]"

    for task, part in table.groupby("task", sort=False):
        by = part.set_index("condition")
        means = by["mean"]
        composed = [c for c in means.index if c.startswith("zero_shot+tv[")]
        tv_name = "zero_shot+tv" if "zero_shot+tv" in means.index else (composed[-1] if composed else None)
        label = f"{_label(task)} ({_arrow(part['metric'].iloc[0])})" if tv_name == "zero_shot+tv" else \
            f"{_label(task)}, both vectors ({_arrow(part['metric'].iloc[0])})"
        tv = None if tv_name is None else means[tv_name]
        search = searches.get(task, {})
        found = f"{by.loc[tv_name, 'method']} ({search['reward']})" if tv_name == "zero_shot+tv" and search else \
            ("" if tv_name is None or pd.isna(by.loc[tv_name].get("method", None)) else str(by.loc[tv_name, "method"]))
        cells = [means.get("one_shot"), means.get("zero_shot"), tv, means.get("zero_shot+random"), means.get("zero_shot+control:all")]
        one, zero = means.get("one_shot"), means.get("zero_shot")
        recovered = "" if tv is None or one is None or zero is None or one == zero else f"{(tv - zero) / (one - zero):.0%}"
        units = "" if tv_name != "zero_shot+tv" else f"{by.loc[tv_name, 'units']:.0f}"
        tv_row = by.loc[tv_name] if tv_name is not None else pd.Series(dtype=float)
        rows.append([label, found, units] + ["" if v is None or pd.isna(v) else f"{v:.3f}" for v in cells]
                    + [ci(tv_row, "zero_shot"), ci(tv_row, "strongest_control"), recovered])
    return markdown_table(["task", "found by (reward)", "units", "one-shot", "zero-shot", "zero-shot + task vector",
                           "+ random units", "+ every unit", "Δ zero-shot [95% CI]", "Δ strongest control [95% CI]",
                           "one-shot gain recovered"], rows)


@renderer("demo_time", "bench/runs/demo_time.json")
def render_demo_time(path: Path) -> str:
    """How long ``interp demo`` took (``python -m bench.demo_time``): wall-clock, CPU, memory, stages."""
    import json

    m = json.loads(path.read_text())
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in m.get("stages_s", {}).items())
    quiet = "quiet" if max(m.get("load_before", [0])[:1] or [0]) < 1.0 else f"load average {m['load_before'][0]:.1f} before it"
    return (f"Measured: `{m['command']}` took **{m['wall_s'] / 60:.1f} min wall-clock** ({m['user_s']:.0f} s user + "
            f"{m['system_s']:.0f} s system CPU, peak {m['peak_rss_kb'] / 1024**2:.2f} GiB) on {m['cores']} cores ({quiet}), "
            f"at commit {m.get('git')} on {m['when'][:10]}; stages: {stages}. Command: `python -m bench.demo_time` "
            "(GNU `time -v` around the demo, after `make install`)." + _full_time(path.parents[2] / "runs" / "demo" / "manifest.json"))


def _full_time(manifest: Path) -> str:
    """The search comparison's seconds of ``interp demo --full`` (its manifest), if that run is here."""
    import json

    if not manifest.exists():
        return ""
    m = json.loads(manifest.read_text())
    seconds = (m.get("timings_s") or {}).get("compare-search")
    if not m.get("full") or seconds is None:
        return ""
    return (f" `interp demo --full` adds the search comparison: {seconds / 60:.0f} min for that stage in the run this "
            "README's comparison tables come from (`runs/demo/manifest.json`, measured beside other jobs).")


@renderer("weights", "runs/weights/comparison.csv")
def render_weights(path: Path) -> str:
    """The weight- vs activation-space summary (one row per method) of ``interp compare-weights``."""
    from interp.comparison.table import render_markdown

    return render_markdown(pd.read_csv(path))


@renderer("search", "runs/demo/search_comparison.csv")
def render_search(path: Path) -> str:
    """The demo's search-method comparison (``interp compare-search``, run by ``make demo``)."""
    from interp.compare_search import markdown_table as search_table

    return search_table(pd.read_csv(path))


#: the pipeline's tasks in the order the README's per-task tables list them
TASK_ORDER = ("segmentation", "lowlight", "inpainting", "colorization")


def _task_rank(task: str) -> int:
    return TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER)


def _demo_runs(path: Path) -> list[tuple[Path, str]]:
    """``(file, data)`` for ``path`` (a file of ``runs/demo``) and the same file of every
    ``runs/demo-*`` beside it (``interp demo --full --data synthetic:K --out runs/demo-K``), each
    labelled by the data its manifest records."""
    out = []
    for source in [path, *sorted(path.parents[1].glob(f"demo-*/{path.name}"))]:
        manifest = source.parent / "manifest.json"
        out.append((source, str(json.loads(manifest.read_text()).get("data", "?")) if manifest.exists() else "?"))
    return out


@renderer("agreement", "runs/demo/agreement.csv")
def render_agreement(path: Path) -> str:
    """Each training reward's agreement with the official metric (``interp agreement``), per task,
    reward and data seed (:func:`_demo_runs`). The official pixel reward's own row (1 by
    construction) is left out."""
    rows = []
    for source, data in _demo_runs(path):
        table = pd.read_csv(source)
        for _, r in table[table.reward != table.reference].iterrows():
            rows.append([r["task"], data, r["reward"], f"{r['pearson']:+.3f}", f"{r['spearman']:+.3f}",
                         f"{r['sign_agreement']:.0%}", f"{int(r['masks'])} x {int(r['prompts'])}",
                         "low: warned" if str(r["low"]) == "True" else "agrees"])
    cheap = ["token", "soft"]  # cheapest first
    rows.sort(key=lambda r: (_task_rank(r[0]), cheap.index(r[2]) if r[2] in cheap else len(cheap), r[1]))
    return markdown_table(["task", "data", "reward", "Pearson", "Spearman", "advantage sign agreement", "masks x prompts",
                           "at the 0.5 threshold"], rows)


@renderer("budgets", "runs/budgets/search_comparison.csv")
def render_budgets(path: Path) -> str:
    """Matched budgets (``interp compare-search --budget F,...``): per task, every method at each
    forward budget (``<method>@<F>``, a backward counted at its measured cost), REINFORCE at the
    search stage's own settings (``reinforce@pipeline``), quality against forwards spent."""
    table = pd.read_csv(path)
    rows = []
    for _, r in table[table.condition.str.contains("@")].iterrows():
        method, _, budget = r["condition"].partition("@")
        rows.append([_label(r["task"]), method, budget, f"{r['effective_forwards']:.0f}", str(int(r["units"])),
                     f"{_arrow(r['metric']).split()[0]} {r['mean']:.3f}",
                     f"{r['diff_zero_shot']:+.3f} [{r['ci_low_zero_shot']:+.3f}, {r['ci_high_zero_shot']:+.3f}]"])
    rows.sort(key=lambda r: (r[0], r[2] == "pipeline", int(r[2]) if r[2].isdigit() else 0, r[1]))  # the pipeline row last
    return markdown_table(["task", "method", "budget (forwards)", "forwards spent (backwards at their cost)", "units",
                           "val metric", "Δ zero-shot [95% CI]"], rows)


@renderer("science", "runs/demo/search_comparison.csv")
def render_science(path: Path) -> str:
    """Issue 22's summary per task and data seed: the reward the picked method trained on and its
    agreement with the task metric (the comparison's ``reward_pearson``, else ``agreement.csv``
    beside it), the method the held-out search prompts pick, its share of the one-shot gain with
    the intervals against zero-shot and the strongest control, and what the strongest cheap
    baseline (control) achieves; from every demo run (:func:`_demo_runs`)."""
    rows = []
    for source, data in _demo_runs(path):
        rows += _science_rows(pd.read_csv(source), source.parent, data)
    rows.sort(key=lambda r: (_task_rank(r[0]), r[0]))  # by task, runs in order (a stable sort)
    return markdown_table(["task", "data", "metric", "reward", "agreement (Pearson)", "method picked", "val",
                           "share of one-shot gain", "Δ zero-shot [95% CI]", "Δ strongest control [95% CI]",
                           "strongest cheap baseline (share)"], rows)


def _science_rows(table: pd.DataFrame, run: Path, data: str) -> list[list[str]]:
    """One science row per task of one comparison (see :func:`render_science`)."""
    from interp.compare_search import best_method

    agreement = pd.read_csv(run / "agreement.csv") if (run / "agreement.csv").exists() else None
    rows = []
    for task in dict.fromkeys(table["task"]):
        part = table[table.task == task].set_index("condition")
        pick = best_method(table, task)
        one, zero = part.loc["one_shot", "mean"], part.loc["control:none", "mean"]

        def share(value: float) -> str:
            return "" if one == zero else f"{(value - zero) / (one - zero):.0%}"

        chosen = part.loc[pick]
        reward = str(chosen["reward"]) if "reward" in part.columns and pd.notna(chosen.get("reward")) else "?"
        pearson = ""
        if "reward_pearson" in part.columns and pd.notna(chosen.get("reward_pearson")):
            pearson = f"{chosen['reward_pearson']:+.2f}"  # measured at the start of the searches
        elif agreement is not None and reward != "?":
            match = agreement[(agreement.task == task) & (agreement.reward == reward)]
            pearson = "" if match.empty else f"{match['pearson'].iloc[-1]:+.2f}"
        control = str(chosen["strongest_control"])
        ci = lambda name: f"{chosen[f'diff_{name}']:+.3f} [{chosen[f'ci_low_{name}']:+.3f}, {chosen[f'ci_high_{name}']:+.3f}]"  # noqa: E731
        rows.append([_label(task), data, _arrow(part.loc[pick, "metric"]), reward, pearson, pick, f"{chosen['mean']:.3f}",
                     share(chosen["mean"]), ci("zero_shot"), ci("strongest_control"),
                     f"{control.split(':', 1)[-1]} {part.loc[control, 'mean']:.3f} ({share(part.loc[control, 'mean'])})"])
    return rows


@renderer("bench", "bench/results.json")
def render_bench(path: Path) -> str:
    """The benchmark table of bench/run_all.py, then the long runs kept in bench/runs/*.json
    (``bench.reinforce_run``, ``bench.memory``), in name order."""
    sys.path.insert(0, str(ROOT))
    from bench.run_all import table

    results = json.loads(path.read_text())["results"]
    runs = [json.loads(p.read_text()) for p in sorted((path.parent / "runs").glob("*.json"))]
    results += [r for r in runs if r.get("bench") in ("reinforce_run", "memory")]  # not demo_time (its own table)
    return table(results)


@renderer("op_shares", "bench/runs/op_shares_tiny.json")
def render_op_shares(path: Path) -> str:
    """Where a forward's time goes (``python -m bench.op_shares``), one row per model that has a
    ``bench/runs/op_shares_<model>.json``: the forward's and the matmuls' FLOP/s as shares of the
    matmul probe, the time shares per op category, and the attention kernels at its shapes."""
    rows = []
    for model in ("tiny", "small", "large"):
        source = path.parent / f"op_shares_{model}.json"
        if not source.exists():
            continue
        r = json.loads(source.read_text())
        shares = r["shares"]
        kernels = "; ".join(
            f"{stack} {'x'.join(map(str, k['shape'][1:]))}: " + ", ".join(f"{name} {sec * 1e3:.2f}" for name, sec in k["seconds"].items())
            for stack, k in r["attention_kernels"].items())
        matmul = r.get("matmul_fraction_of_probe")
        rows.append([model, str(r["sizes"]["batch"]), str(r["threads"]), f"{r['fraction_of_matmul_probe']:.0%}",
                     "" if matmul is None else f"{matmul:.0%}",
                     *(f"{shares[c]:.0%}" for c in ("matmul", "attention", "elementwise", "conv", "other")), kernels])
    shares = markdown_table(["model", "batch", "threads", "forward FLOP/s (share of probe)", "matmuls alone (share of probe)",
                             "time: matmul", "attention", "elementwise", "conv", "other",
                             "attention kernels, ms (heads x tokens x d_head): fused, explicit, math"], rows)
    quiet = [json.loads(p.read_text()) for p in sorted(path.parent.glob("large_quiet_*.json"))]
    if not quiet:
        return shares
    sys.path.insert(0, str(ROOT))
    from bench.run_all import table

    return shares + "\n\nCollection and the token-reward step on `large`, measured on the quiet machine (`bench/runs/large_quiet_*.json`):\n\n" + table(quiet)


@renderer("speed_goals", "bench/results.json")
def render_speed_goals(path: Path) -> str:
    """Issue 17's speed goals against what bench/ measured (run_all rows and bench/runs/*.json)."""
    results = json.loads(path.read_text())["results"]
    runs = [json.loads(p.read_text()) for p in sorted((path.parent / "runs").glob("*.json"))]

    def step(model: str, reward: str) -> dict | None:
        return next((r for r in results if r.get("bench") == "reinforce_step" and r["model"] == model
                     and r["sizes"].get("reward") == reward and "error" not in r), None)

    def run_of(model: str, reward: str) -> list[dict]:
        return [r for r in runs if r.get("bench") == "reinforce_run" and r["model"] == model
                and r["sizes"]["reward"] == reward]

    def cell(parts: list[tuple[str, float]]) -> str:
        return "; ".join(f"{what} x{ratio:.1f}" for what, ratio in parts) or "not measured"

    rows = []
    for reward, goal in (("pixel", 10.0), ("token", 50.0)):
        parts, on_large = [], []
        for model in ("tiny", "small", "large"):
            r = step(model, reward)
            if r:
                parts.append((f"{model}, step at the initial policy (S={r['sizes']['samples']})", r["ratio"]))
                on_large += [r["ratio"]] if model == "large" else []
            for run in run_of(model, reward):
                if run["sizes"].get("start_profile"):
                    parts.append((f"{model}, late step (policy profile of a finished run, S={run['sizes']['samples']})",
                                  run["ratio_run"]))
                else:
                    parts.append((f"{model}, whole {run['sizes']['steps']}-step run (S={run['sizes']['samples']})",
                                  run["ratio_run"]))
                on_large += [run["ratio_run"]] if model == "large" else []
        met = "not measured on large" if not on_large else ("met" if min(on_large) >= goal else "not met")
        if reward == "pixel" and not any(run_of("large", reward)):
            met += " (initial step only: no 500-step run on large)" if on_large else ""
        where = "large, over a 500-step run" if reward == "pixel" else "large"
        rows.append([f"{reward}-reward REINFORCE step >= {goal:.0f}x ({where})", cell(parts), met])
    collect = [r for r in results if r.get("bench") == "collect" and "error" not in r]
    large = [r["ratio"] for r in collect if r["model"] == "large"]
    rows.append(["collection >= 25x (large)", cell([(f"{r['model']}, N={r['sizes']['prompts']}", r["ratio"]) for r in collect]),
                 "not measured on large" if not large else ("met" if min(large) >= 25 else "not met")])
    return markdown_table(["goal (official work / interp, same run)", "measured", "on large"], rows)


@renderer("contention", "bench/contention.json")
def render_contention(path: Path) -> str:
    """``bench.contention``: the workload alone and beside a 2-thread CPU-bound process."""
    r = json.loads(path.read_text())
    rows = []
    for policy, p in r["policies"].items():
        runs = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
        rows.append([f"OMP_WAIT_POLICY={policy.upper()}" + (" (interp's default)" if policy == "passive" else ""),
                     str(p["threads"]), runs(p["alone_s"]), runs(p["beside_s"]), f"{p['slowdown']:.2f}x",
                     f"{p['alone_spread']:.2f}"])
    return markdown_table(["workload", "threads", "alone s (runs)", "beside the competitor s (runs)",
                           "slowdown (median / median)", "alone spread (max / min)"], rows)


@renderer("gpu", "bench/gpu/gpu_check.json")
def render_gpu(path: Path) -> str:
    """The GPU check (``bash bench/gpu_check.sh``): what each part measured, one row a figure."""
    r = json.loads(path.read_text())
    parts = r["parts"]
    rows: list[list[str]] = []
    probe = parts.get("probe") or {}
    gpu = probe.get("gpu", r["device"]) + (" (dry run on the CPU)" if r.get("dry_run") else "")
    peak = probe.get("bf16_peak_tflops")
    if probe:
        rows.append(["matmul probe", gpu, f"float32 {probe['float32_matmul_tflops']:.1f} TFLOP/s, bf16 "
                     f"{probe['bfloat16_matmul_tflops']:.1f} TFLOP/s" + (f" (datasheet bf16 peak {peak:.0f})" if peak else ""), ""])
    tests = parts.get("tests")
    if tests:
        rows.append(["tests marked cuda", "passed" if tests["ok"] else "FAILED", tests["tail"][-1] if tests["tail"] else "", ""])
        for m in tests.get("measured", []):
            rows.append([f"  {m['test']}", "", ", ".join(f"{k} {v:.3g}" for k, v in m.items() if k != "test"), ""])
    run = (parts.get("reinforce_run") or {}).get("result")
    if run:
        sz = run["sizes"]
        rows.append([f"REINFORCE {sz['reward']} reward, {sz['steps']} steps x {sz['samples']}", run["model"],
                     f"wall {run['wall_seconds']:.0f} s; interp {run['seconds']['interp']:.3g} s/step, official loop "
                     f"{run['seconds']['official_work']:.3g} s/step (timed on {sz['official_samples_timed']} samples)",
                     f"x{run['ratio_run']:.1f}"])
    for part in parts.get("run_all", []):
        for b in part.get("results", []):
            if "error" in b:
                rows.append([b["bench"], b["model"], f"error: {b['error']}", ""])
                continue
            fast, slow = b["fast"], b["slow"]
            flops = b.get("achieved_flop_s", {}).get(fast)
            share = f", {flops / 1e12 / peak:.1%} of the bf16 peak" if flops and peak else ""
            memory = f", peak {b['peak_cuda_mib']:.0f} MiB" if "peak_cuda_mib" in b else ""
            what = b["bench"] + (f" ({b['sizes'].get('reward')})" if "reward" in b.get("sizes", {}) else "") + \
                (f", autocast {b['autocast']}" if b.get("autocast", "none") != "none" else "")
            rows.append([what, b["model"], f"interp {b['seconds'][fast]:.4g} s, official {b['seconds'][slow]:.4g} s"
                         + (f"; {flops / 1e12:.1f} TFLOP/s" if flops else "") + share + memory, f"x{b['ratio']:.1f}"])
    header = ["part", "model / result", f"measured ({r['generated'][:10]}, {r['wall_seconds']:.0f} s in all)", "ratio"]
    return markdown_table(header, rows)


@renderer("decode", "bench/decode.reference.json")
def render_decode(path: Path) -> str:
    """How far the band decode is from the official one (``python -m bench.decode --reference``)."""
    result = json.loads(path.read_text())
    rows = []
    for task, a in result["agreement"].items():
        rows.append([f"{task}, band decode", str(a["samples"]), f"{a['reward_pearson']:.4f}",
                     f"{a['advantage_sign_agreement']:.1%}"])
        if "before" in a:
            b = a["before"]
            rows.append([f"{task}, before (band, float MSE)", str(a["samples"]), f"{b['reward_pearson']:.4f}",
                         f"{b['advantage_sign_agreement']:.1%}"])
    rows.append(["cost of the official decode", str(result["sizes"]["rows"]), "", f"{result['ratio']:.2f}x the band's"])
    return markdown_table(["task, reward", "samples", "Pearson r with the official reward", "advantage sign agreement"],
                          rows)


@renderer("lens", "runs/demo/lens")
def render_lens(path: Path) -> str:
    """``interp lens`` outputs (``lens/<task>.csv``): per task and condition, the first and last
    readout of each stack and where the task becomes solved (90% of the way, per stack)."""
    rows = []
    for csv in sorted(path.glob("*.csv")):
        table = pd.read_csv(csv)
        for condition, part in table.groupby("condition", sort=False):
            by = part.set_index("readout")["mean"]
            rows.append([_label(csv.stem), condition.replace("_", "-").replace("+tv", " + task vector"),
                         _arrow(part["metric"].iloc[0]), f"{by['enc 0']:.3f}" if "enc 0" in by else "",
                         f"{by['dec embed']:.3f}", f"{by.iloc[-1]:.3f}", str(part["solved_at"].iloc[0])])
    return markdown_table(["task", "condition", "metric", "enc 0 (early exit)", "dec embed", "last (= prediction)",
                           "solved at (encoder, decoder)"], rows)


@renderer("interventions", "runs/lens/interventions.csv")
def render_interventions(path: Path) -> str:
    """``interp interventions`` output: each task vector under each intervention kind (best in bold)."""
    table = pd.read_csv(path)
    kinds = list(dict.fromkeys(table["condition"].str.split(":").str[1]))
    rows = []
    for task, part in table.groupby("task", sort=False):
        by = part.assign(kind=part["condition"].str.split(":").str[1]).set_index("kind")
        cells = [(f"**{by.loc[k, 'mean']:.3f}**" if by.loc[k, "best"] else f"{by.loc[k, 'mean']:.3f}") if k in by.index
                 else "" for k in kinds]
        rows.append([f"{_label(task)} ({_arrow(part['metric'].iloc[0])})", f"{part['one_shot'].iloc[0]:.3f}",
                     f"{part['zero_shot'].iloc[0]:.3f}", *cells])
    return markdown_table(["task", "one-shot", "zero-shot", *kinds], rows)


def update(text: str, root: Path = ROOT, only: set[str] | None = None) -> tuple[str, list[str], list[str]]:
    """``(new text, sections updated, sections skipped for a missing source)``."""
    updated, skipped = [], []

    def replace(match: re.Match) -> str:
        name = match["name"]
        if (only and name not in only) or name not in RENDERERS:
            return match[0]
        source, fn = RENDERERS[name]
        path = root / source
        if not path.exists():
            skipped.append(f"{name} ({source} missing)")
            return match[0]
        updated.append(name)
        return match[1] + fn(path).rstrip("\n") + "\n" + match[4]

    return SECTION.sub(replace, text), updated, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--only", nargs="+", default=None, choices=sorted(RENDERERS))
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a section would change")
    args = parser.parse_args()
    old = args.readme.read_text()
    new, updated, skipped = update(old, only=set(args.only) if args.only else None)
    for line in skipped:
        print(f"skipped {line}")
    if args.check:
        sys.exit(int(new != old))
    args.readme.write_text(new)
    print(f"updated {', '.join(updated) or 'nothing'} in {args.readme}")


if __name__ == "__main__":
    main()
