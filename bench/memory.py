"""Peak memory of ``collect`` and ``sweep``: bounded by the batch, not by the prompts or units.

Each case runs in a fresh process (peak RSS is a process high-water mark), which loads the
model, notes its resident memory (``model_rss_mib``), runs the stage and reports the peak
(``peak_rss_mib``; ``peak_cuda_mib`` on a GPU). What the stages keep:

* ``collect`` — float64 sums and sums of squares per (slot, head, d_head) of every site, plus
  one batch's activations: flat in the number of prompts;
* ``sweep`` — the clean residual stream one layer at a time (``[prompts, pos, d]``), ``--chunk``
  rows' activations, VQGAN calls split to ``max_activation_bytes`` and the ``[units, prompts]``
  float64 table. At token granularity on ``large`` (31,872 units) sweeping every unit is
  ~3 million forwards; ``--sweep-units`` rows of the full space are swept, which reaches the
  steady state of every buffer but the table (sized for all units, reported as ``table_mib``).

    python -m bench.memory --model large --prompts 25 100
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Sequence

from bench import common


def _child(args: Any) -> dict[str, Any]:
    import torch

    from interp.taskvectors.collect import collect
    from interp.taskvectors.sweep import sweep
    from interp.taskvectors.units import UnitSpace

    model, source = common.get_model(args.model, args.device, args.seed)
    prompts = common.make_prompts(model, args.task, args.n, seed=args.seed)
    base = common.memory(args.device)["peak_rss_mib"]
    canvases = common.to_device(prompts.canvases, args.device)
    extra: dict[str, Any] = {}
    if args.case == "collect":
        collect(model, canvases.split(args.batch), "one_shot", progress=False)
    else:
        space = UnitSpace.for_model(model, args.granularity, layout="zero_shot")
        means = common.random_means(model, args.seed)
        table = sweep(model, space, means, prompts, "zero_shot", args.reward, chunk=args.chunk, progress=False,
                      units=list(range(args.sweep_units)))
        extra = {"units": len(space), "rows_swept": len(table) * args.n,
                 "table_mib": len(space) * args.n * 8 / 2**20}
    torch.cuda.synchronize() if str(args.device).startswith("cuda") else None
    return {"case": args.case, "prompts": args.n, "model_source": source, "model_rss_mib": base,
            **common.memory(args.device), **extra}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, nargs="+", default=None, help="prompt counts to measure (default 25 100)")
    p.add_argument("--batch", type=int, default=8, help="collect: prompts per forward")
    p.add_argument("--chunk", type=int, default=64, help="sweep: rows per forward")
    p.add_argument("--granularity", default="token", help="sweep unit space (official: token, 31,872 units on large)")
    p.add_argument("--reward", choices=("pixel", "token"), default="pixel")
    p.add_argument("--sweep-units", type=int, default=None, help="units swept (default 2; quick 1)")
    p.add_argument("--task", default="segmentation")
    p.add_argument("--cases", nargs="+", choices=("collect", "sweep"), default=["collect", "sweep"])
    p.add_argument("--case", choices=("collect", "sweep"), help=argparse_hidden())
    p.add_argument("--n", type=int, help=argparse_hidden())
    args = p.parse_args(argv)
    if args.case:  # the child process
        common.setup(args)
        args.sweep_units = args.sweep_units or 2
        print(json.dumps(_child(args)), flush=True)
        return {}
    common.setup(args)
    counts = args.prompts or ([2, 4] if args.quick else [25, 100])
    units = args.sweep_units or (1 if args.quick else 2)
    rows = []
    for case in args.cases:
        for n in counts:
            cmd = [sys.executable, "-m", "bench.memory", "--case", case, "--n", str(n), "--model", args.model,
                   "--device", args.device, "--batch", str(args.batch), "--chunk", str(args.chunk),
                   "--granularity", args.granularity, "--reward", args.reward, "--sweep-units", str(units),
                   "--task", args.task, "--seed", str(args.seed)]
            if args.threads is not None:
                cmd += ["--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"bench.memory {case} n={n} failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {
        "bench": "memory", "model": args.model, "model_source": rows[0]["model_source"], "device": str(args.device),
        "quick": bool(args.quick), **common.environment(args.device),
        "sizes": {"prompts": counts, "batch": args.batch, "chunk": args.chunk, "granularity": args.granularity,
                  "sweep_units": units, "reward": args.reward},
        "cases": rows,
        "growth_mib": {case: _growth(rows, case) for case in args.cases},
    }
    return common.emit(result, args.out)


def _growth(rows: list[dict[str, Any]], case: str) -> float:
    """Peak-minus-model RSS of the largest prompt count minus that of the smallest (MiB)."""
    mine = sorted((r for r in rows if r["case"] == case), key=lambda r: r["prompts"])
    over = [r["peak_rss_mib"] - r["model_rss_mib"] for r in mine]
    return over[-1] - over[0]


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    common.script_main(run)
