"""The GPU check: everything interp claims on a GPU, in one timed script writing one JSON.

Made to run in the few minutes a GPU is lent (``bench/gpu_check.sh`` caps it at 8); each
part runs in its own process with its own time limit, and the JSON is rewritten after each
part, so a part that runs out of time still leaves the others' results:

1. ``tests`` — ``pytest -m cuda tests/test_cuda.py``: logits, patching, rewards and a REINFORCE
   step on cuda equal to the CPU within the tolerances that file states, autocast bf16 against
   float32, NCCL with one rank; what each test measured (largest differences) is kept;
2. ``probe`` — the GPU's float32 and bf16 matmul FLOP/s (8192^2, best of 5) and, for GPUs in
   :data:`BF16_PEAK_TFLOPS`, the datasheet's dense bf16 peak;
3. ``reinforce_run`` — a whole pixel-reward REINFORCE run on ``large`` (``--steps``, default
   the official 500, ``--samples`` unit sets a step) with its wall time, and the official
   per-sample loop timed on the same GPU (``bench.reinforce_run``);
4. ``run_all`` — ``bench.run_all --device cuda`` on ``small`` and ``large`` (REINFORCE steps and
   collection: seconds, FLOP/s against the float32 probe, peak memory), then the large
   REINFORCE step again under bf16 autocast.

``python scripts/update_readme.py --only gpu`` turns the JSON into the README's GPU table.
``--dry-run`` runs the same parts on the CPU at the smallest sizes (the tests with
``INTERP_GPU_DRY_RUN=1``, the tiny model): a check that the script works, run in CI.

    bash bench/gpu_check.sh                 # on a GPU machine -> bench/gpu/gpu_check.json
    python -m bench.gpu_check --dry-run --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "gpu" / "gpu_check.json"

#: dense bf16 tensor-core peak, TFLOP/s, from the vendors' datasheets (SXM parts)
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a part; ``{"ok", "seconds", "tail"}`` (the output's last lines), never raising."""
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                             timeout=timeout, check=False)
        ok, text = out.returncode == 0, out.stdout + out.stderr
    except subprocess.TimeoutExpired as e:
        ok, text = False, f"timed out after {timeout:.0f} s\n" + ((e.stdout or b"").decode(errors="replace")
                                                                   if isinstance(e.stdout, bytes) else (e.stdout or ""))
    return {"ok": ok, "seconds": round(time.perf_counter() - start, 2), "tail": text.strip().splitlines()[-15:]}


def probe(device: str, size: int) -> dict[str, Any]:
    """float32 and bf16 matmul FLOP/s on ``device`` and the GPU's datasheet bf16 peak (if known)."""
    import torch

    out: dict[str, Any] = {"device": device}
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        out.update(gpu=name, memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                   bf16_peak_tflops=next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None))
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size, device=device).to(dtype)
        best = float("inf")
        for _ in range(6):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            (a @ a).sum().item()
            best = min(best, time.perf_counter() - start)
        out[f"{str(dtype).split('.')[-1]}_matmul_tflops"] = 2.0 * size**3 / best / 1e12
    return out


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the same parts on the CPU at the smallest sizes (CI)")
    p.add_argument("--steps", type=int, default=500, help="steps of the large pixel-reward REINFORCE run")
    p.add_argument("--samples", type=int, default=320, help="unit sets a step (official: 320)")
    p.add_argument("--parts", nargs="+", default=["tests", "probe", "reinforce_run", "run_all"],
                   choices=["tests", "probe", "reinforce_run", "run_all"])
    p.add_argument("--out", default=None, help=f"default: {OUT.relative_to(ROOT)}")
    args = p.parse_args(argv)
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    py = sys.executable
    out = Path(args.out) if args.out else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"bench": "gpu_check", "dry_run": dry, "device": device,
                              "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "parts": {}}
    if not dry:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("bench.gpu_check: no CUDA device here; --dry-run runs it on the CPU")
    started = time.perf_counter()

    def save() -> None:
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(result, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        if "tests" in args.parts:
            report = Path(tmp) / "tests.jsonl"
            part = _run([py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests/test_cuda.py"],
                        timeout=60 if dry else 120,
                        env={"INTERP_GPU_REPORT": str(report), **({"INTERP_GPU_DRY_RUN": "1"} if dry else {})})
            part["measured"] = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
            result["parts"]["tests"] = part
            save()
        if "probe" in args.parts:
            result["parts"]["probe"] = probe(device, 256 if dry else 8192)
            save()
        if "reinforce_run" in args.parts:
            path = Path(tmp) / "reinforce_run.json"
            sizes = (["--model", "tiny", "--steps", "2", "--samples", "4", "--prompts", "2", "--collect", "2",
                      "--official-samples", "2", "--threads", "1"] if dry else
                     ["--model", "large", "--steps", str(args.steps), "--samples", str(args.samples)])
            part = _run([py, "-m", "bench.reinforce_run", "--device", device, "--reward", "pixel", *sizes, "--out", str(path)],
                        timeout=60 if dry else 270)
            part["result"] = _without_curve(json.loads(path.read_text())) if path.exists() else None
            result["parts"]["reinforce_run"] = part
            save()
        if "run_all" in args.parts:
            runs = []
            jobs = ([["--models", "tiny", "--quick", "--threads", "1"]] if dry else
                    [["--models", "small", "large"], ["--models", "large", "--only", "reinforce_step", "--autocast", "bf16"]])
            for k, extra in enumerate(jobs):
                path = Path(tmp) / f"run_all{k}.json"
                only = [] if "--only" in extra else ["--only", "reinforce_step", "collect"]
                part = _run([py, "-m", "bench.run_all", "--device", device, *only, *extra, "--keep-going", "--out", str(path)],
                            timeout=60 if dry else 150)
                part["results"] = json.loads(path.read_text())["results"] if path.exists() else []
                runs.append(part)
                result["parts"]["run_all"] = runs
                save()
    parts = [x for name, part in result["parts"].items() if name != "probe"
             for x in (part if isinstance(part, list) else [part])]
    result["ok"] = all(x["ok"] for x in parts)
    save()
    print(json.dumps({k: v for k, v in result.items() if k != "parts"} | {"wrote": str(out)}), flush=True)
    return result


def _without_curve(r: dict[str, Any]) -> dict[str, Any]:
    """A reinforce_run result without its per-step curve (kept short), with the curve's summary."""
    steps = r.pop("steps", [])
    r["steps_summary"] = {"count": len(steps), "first_mean_reward": steps[0]["mean_reward"] if steps else None,
                          "last_mean_reward": steps[-1]["mean_reward"] if steps else None}
    return r


if __name__ == "__main__":
    run(sys.argv[1:])
