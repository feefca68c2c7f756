"""Run every benchmark on several models, write one JSON file and print a Markdown table.

    python -m bench.run_all                       # tiny and large on CPU -> bench/results.json
    python -m bench.run_all --device cuda         # the same on a GPU
    python -m bench.run_all --quick               # smoke run: tiny and small, smallest sizes
    python -m bench.run_all --models tiny --only sweep hooks_overhead

``--quick`` numbers are a smoke test, not measurements (sizes of 1-4, one repeat). Each
benchmark runs in this process, one after another; a model is built once per device.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from bench import collect, common, decode, hooks_overhead, memory, reinforce_run, reinforce_step, sweep

#: (label, module, extra arguments)
JOBS: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("reinforce_step", reinforce_step, ("--reward", "pixel")),
    ("reinforce_step", reinforce_step, ("--reward", "token")),
    ("collect", collect, ()),
    ("sweep", sweep, ("--reward", "token")),
    ("hooks_overhead", hooks_overhead, ()),
    ("decode", decode, ()),
)
#: long runs, only with ``--only``: a whole REINFORCE run (tiny: official 500 x 320) and memory
LONG_JOBS: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("reinforce_run", reinforce_run, ("--reward", "pixel")),
    ("reinforce_run", reinforce_run, ("--reward", "token")),
    ("memory", memory, ()),
)
HERE = Path(__file__).resolve().parent


def _also(r: dict[str, Any]) -> str:
    """The secondary figures of a result, for the table."""
    parts = []
    sizes = r.get("sizes", {})
    if r["bench"] == "reinforce_step":
        parts.append(f"{sizes.get('reward')} reward, S={sizes.get('samples')}, {sizes.get('granularity')}")
        if "interp_reward_share" in r:
            parts.append(f"reward = {r['interp_reward_share']:.0%} of interp")
    elif r["bench"] == "collect":
        parts.append(f"N={sizes.get('prompts')}, batch {sizes.get('batch')}")
    elif r["bench"] == "sweep":
        parts.append(f"{sizes.get('granularity')}, {sizes.get('rows')} rows, {sizes.get('reward')} reward")
        if r.get("ratio_forward_only") is not None:
            parts.append(f"forward only x{r['ratio_forward_only']:.2f}")
    elif r["bench"] == "reinforce_run":
        start = " from a converged profile" if sizes.get("start_profile") else ""
        parts.append(f"{sizes.get('reward')} reward, {sizes.get('steps')} steps x {sizes.get('samples')} samples{start}; "
                     f"x{r['ratio_first']:.1f} first tenth, x{r['ratio_last']:.1f} last tenth; savings x{r['saving_vs_plain']:.1f} "
                     f"vs plain interp (bitwise equal); {r['distinct_share_last']:.0%} distinct rows at the end")
    elif r["bench"] == "decode":
        for task, a in r.get("agreement", {}).items():
            parts.append(f"{task}: band r={a['reward_pearson']:.3f}, sign {a['advantage_sign_agreement']:.0%}")
    elif r["bench"] == "hooks_overhead":
        parts.append(f"batch {sizes.get('batch')}, {sizes.get('layout')}")
        parts.append(f"cache hook_z x{r['ratio_cache_z']:.2f}")
    return "; ".join(parts)


def _fraction(r: dict[str, Any], variant: str) -> str:
    share = r.get("fraction_of_matmul_probe", {}).get(variant)
    return "" if share is None else f" ({share:.0%})"


def table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: slow (official work) and fast (interp) seconds, the ratio, and in brackets each
    side's achieved FLOP/s as a share of the matmul probe of the same run."""
    rows = [
        "| bench | model | device | slow side | slow s (FLOP/s share) | fast side | fast s (FLOP/s share) | ratio | notes |",
        "|---|---|---|---|---:|---|---:|---:|---|",
    ]
    for r in results:
        if r.get("bench") == "memory":
            rows.extend(memory_rows(r))
            continue
        if "error" in r:
            rows.append(f"| {r['bench']} | {r['model']} | {r['device']} | | | | | | error: {r['error']} |")
            continue
        fast, slow = r["fast"], r["slow"]
        rows.append(
            f"| {r['bench']} | {r['model']} | {r['device']} | {slow} | {r['seconds'][slow]:.4g}{_fraction(r, slow)} | "
            f"{fast} | {r['seconds'][fast]:.4g}{_fraction(r, fast)} | {r['ratio']:.2f} | {_also(r)} |"
        )
    return "\n".join(rows)


def memory_rows(r: dict[str, Any]) -> list[str]:
    """Table rows of a ``bench.memory`` result: peak RSS over the model's, per case and prompt count."""
    out = []
    for c in r["cases"]:
        what = (f"{c['case']}, {c['prompts']} prompts" if c["case"] == "collect" else
                f"sweep, {c['prompts']} prompts, {c['units']} units ({r['sizes']['granularity']}), "
                f"{c['rows_swept']} rows swept")
        out.append(f"| memory | {r['model']} | {r['device']} | model alone | {c['model_rss_mib']:.0f} MiB | {what} | "
                   f"{c['peak_rss_mib']:.0f} MiB peak | | +{c['peak_rss_mib'] - c['model_rss_mib']:.0f} MiB over the model"
                   + (f"; table {c['table_mib']:.0f} MiB" if "table_mib" in c else "") + " |")
    return out


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, choices=common.MODELS,
                   help="default: tiny large (with --quick: tiny small)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="+", default=None, choices=sorted({j[0] for j in JOBS + LONG_JOBS}),
                   help="a subset; reinforce_run and memory run only when named here")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="default: bench/results.json (quick: bench/results.quick.json)")
    p.add_argument("--autocast", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--keep-going", action="store_true", help="record a failing benchmark and go on")
    p.add_argument("--join", nargs="+", default=None, metavar="RESULTS",
                   help="run nothing: join the results of earlier run_all files into --out (e.g. one model per run)")
    args = p.parse_args(argv)
    if args.join:
        return _join([Path(f) for f in args.join], Path(args.out) if args.out else HERE / "results.json")

    models = args.models or (["tiny", "small"] if args.quick else ["tiny", "large"])
    out = Path(args.out) if args.out else HERE / ("results.quick.json" if args.quick else "results.json")
    results: list[dict[str, Any]] = []
    started = time.time()
    for model in models:
        for label, module, extra in JOBS + LONG_JOBS:
            if (args.only and label not in args.only) or (not args.only and (label, module, extra) in LONG_JOBS):
                continue
            argv_job = ["--model", model, "--device", args.device, *extra]
            if args.quick:
                argv_job.append("--quick")
            if args.autocast != "none":
                argv_job += ["--autocast", args.autocast]
            if args.threads is not None:
                argv_job += ["--threads", str(args.threads)]
            try:
                results.append(module.run(argv_job))
            except Exception as error:  # noqa: BLE001 (reported, run goes on with --keep-going)
                if not args.keep_going:
                    raise
                traceback.print_exc()
                results.append({"bench": label, "model": model, "device": args.device, "argv": argv_job,
                                "error": f"{type(error).__name__}: {error}"})
    summary = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "models": models,
        "device": args.device,
        "wall_seconds": time.time() - started,
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print()
    print(table(results))
    print(f"\nwrote {out} ({summary['wall_seconds']:.0f} s)")
    return summary


def _join(files: Sequence[Path], out: Path) -> dict[str, Any]:
    """One results file from several ``run_all`` outputs, in the order given."""
    parts = [json.loads(f.read_text()) for f in files]
    summary = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "joined_from": [{"file": f.name, "generated": s.get("generated"), "models": s.get("models")} for f, s in zip(files, parts)],
        "quick": any(s.get("quick") for s in parts),
        "models": [m for s in parts for m in s.get("models", [])],
        "device": parts[0].get("device"),
        "wall_seconds": sum(s.get("wall_seconds", 0) for s in parts),
        "results": [r for s in parts for r in s["results"]],
    }
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(table(summary["results"]))
    print(f"\nwrote {out} (joined {len(files)} files)")
    return summary


if __name__ == "__main__":
    run()
