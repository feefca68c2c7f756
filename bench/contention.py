"""How much slower interp gets when another CPU-bound process shares the cores.

A fixed workload — collect one-shot task means, then token-reward REINFORCE steps (and the
held-out pick, token reward too) on the tiny model —
runs in a fresh process (as a user's command would: ``interp`` imported first, so
:mod:`interp.runtime`'s settings apply), timed inside that process after the model loads.
It runs **alone** and **beside** a competitor: another process doing float32 matmuls on
2 torch threads for as long as the workload runs. The slowdown is the median time beside
over the median time alone (goal: <= 2.5x on 2 cores; a fair share of 2 cores between two
2-thread jobs is 2x). Alone and beside runs alternate, so a change of machine load touches
both; ``alone_spread`` (max / min of the alone runs) says how noisy the machine was.

``--policies`` also times the workload with OpenMP's active waiting (``OMP_WAIT_POLICY=ACTIVE``,
idle threads spin), the behaviour interp's passive default replaces, for comparison.

    python -m bench.contention                       # interp's policy, 3 alone + 3 beside (~1-2 min)
    python -m bench.contention --policies passive active --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]

#: the competitor: 2-thread float32 matmuls until killed (a plain torch user: no interp settings)
COMPETITOR = ("import torch\ntorch.set_num_threads(2)\na = torch.randn(512, 512)\n"
              "print('ready', flush=True)\nwhile True:\n    a = (a @ a).clamp_(-1, 1)\n")


def workload(steps: int, samples: int, prompts: int) -> dict[str, float]:
    """The timed work (in this process): collect means, then ``steps`` REINFORCE steps."""
    import interp  # first: interp.runtime's environment
    import torch

    from interp import runtime

    from interp.data.synthetic import SyntheticPascal
    from interp.data.tasks import build_prompts
    from interp.taskvectors.search import SearchProblem
    from interp.taskvectors.search import reinforce
    from interp.taskvectors.collect import collect
    from interp.taskvectors.units import UnitSpace

    runtime.set_threads(None)
    model = interp.load_model("tiny")
    source = SyntheticPascal(seed=0, size_per_split=40)
    one_shot = build_prompts(source, "lowlight", fold=0, n=prompts, grid=model.grid, seed=0, split="val")
    train = build_prompts(source, "lowlight", fold=0, n=4, grid=model.grid, seed=1, split="val")
    start = time.perf_counter()
    means = collect(model, [one_shot.canvases], layout="one_shot", task="lowlight", progress=False)
    collected = time.perf_counter()
    cfg = reinforce.ReinforceConfig(steps=steps, samples=samples, eval_every=10**6, seed=0)
    space = UnitSpace.for_model(model, "head")
    problem = SearchProblem(model, space, means, train, train, reward="token", select_reward="token", chunk=samples)
    reinforce.run(problem, cfg, progress=False)
    done = time.perf_counter()
    return {"seconds": done - start, "collect_s": collected - start, "reinforce_s": done - collected,
            "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def _child(args: argparse.Namespace, policy: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_WAIT_POLICY": policy.upper(), "TQDM_DISABLE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [sys.executable, "-m", "bench.contention", "--child", "--steps", str(args.steps), "--samples",
           str(args.samples), "--prompts", str(args.prompts)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench.contention: the workload failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _beside(args: argparse.Namespace, policy: str) -> dict[str, Any]:
    competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], stdout=subprocess.PIPE, text=True,
                                  env={k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")})
    try:
        competitor.stdout.readline()  # "ready": torch loaded, the matmuls running
        return _child(args, policy)
    finally:
        competitor.kill()
        competitor.wait()


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="REINFORCE steps of the workload")
    p.add_argument("--samples", type=int, default=64, help="unit sets per step (token reward)")
    p.add_argument("--prompts", type=int, default=24, help="one-shot prompts collected")
    p.add_argument("--repeats", type=int, default=3, help="alone and beside runs per policy")
    p.add_argument("--policies", nargs="+", choices=("passive", "active"), default=["passive"],
                   help="OMP_WAIT_POLICY of the workload (interp's default: passive)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the workload (default: interp's policy)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 step of 8 samples, 4 prompts, 1 repeat")
    p.add_argument("--out", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = workload(args.steps, args.samples, args.prompts)
        print(json.dumps(result), flush=True)
        return result
    if args.quick:
        args.steps, args.samples, args.prompts, args.repeats = 1, 8, 4, 1
    result: dict[str, Any] = {"bench": "contention", "model": "tiny", "cpu_count": os.cpu_count(),
                              "sizes": {"steps": args.steps, "samples": args.samples, "prompts": args.prompts,
                                        "reward": "token"},
                              "competitor": "2 torch threads, 512x512 float32 matmuls", "policies": {}}
    for policy in args.policies:
        alone, beside = [], []
        for _ in range(args.repeats):  # alternate, so a change of machine load touches both
            alone.append(_child(args, policy))
            beside.append(_beside(args, policy))
        a = [r["seconds"] for r in alone]
        b = [r["seconds"] for r in beside]
        result["policies"][policy] = {
            "alone_s": a, "beside_s": b, "threads": alone[0]["threads"],
            "slowdown": statistics.median(b) / statistics.median(a),
            "alone_spread": max(a) / min(a),
            "collect_slowdown": statistics.median(r["collect_s"] for r in beside) / statistics.median(r["collect_s"] for r in alone),
            "reinforce_slowdown": statistics.median(r["reinforce_s"] for r in beside) / statistics.median(r["reinforce_s"] for r in alone),
        }
    try:
        result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        pass
    result["slowdown"] = result["policies"][args.policies[0]]["slowdown"]
    result["goal"] = 2.5
    line = json.dumps(result)
    print(line, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    run(sys.argv[1:])
