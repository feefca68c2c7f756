"""A short pipeline run is bit-identical run to run and at 1 vs 2 torch threads (issue 13).

Each run is a fresh subprocess (so no state is shared) on the bundled tiny model: collect,
REINFORCE (pixel reward, official decode), evaluate; it prints a SHA-256 of the results table,
the policies and the example predictions, and the numbers themselves.

Across thread counts oneDNN's small-batch convolutions sum in another order, which would move
a decoded value next to a truncation boundary onto the other integer; the VQGAN decode therefore
runs on the native CPU kernels (``interp.models.vqgan``), and the pixels are the same at any
thread count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = r"""
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[2]))
from pathlib import Path
from safetensors.torch import load_file
from interp.pipeline import PipelineConfig, load_source, stage_collect, stage_evaluate, stage_search
from interp.run import RunDir
from interp.taskvectors.search.reinforce import ReinforceConfig
import interp
model, source = interp.load_model("tiny"), load_source("synthetic:3")
cfg = PipelineConfig(tasks=("segmentation", "lowlight"), n_collect=4, n_candidates=8, n_train=3, n_search_eval=2,
                     n_eval=4, composition=None)
run = RunDir.create(Path(sys.argv[1]), command="determinism", config={})
stats = stage_collect(run, model, source, cfg)
probabilities = stage_search(run, model, source, stats, cfg, ReinforceConfig(steps=3, samples=8, eval_every=1))
table = stage_evaluate(run, model, source, stats, probabilities, cfg)
h = hashlib.sha256(table.to_csv(index=False).encode())
for task in cfg.tasks:
    for path in (f"reinforce/{task}/seed0/policy.safetensors", f"prompts/{task}.safetensors"):
        for name, t in sorted(load_file(run.path / path).items()):
            h.update(name.encode() + t.contiguous().numpy().tobytes())
import json
policies = {t: load_file(run.path / f"reinforce/{t}/seed0/policy.safetensors")["logits"].tolist() for t in cfg.tasks}
print(json.dumps({"hash": h.hexdigest(), "means": table["mean"].tolist(), "policies": policies}))
"""


def _run(tmp_path: Path, name: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / name), str(threads)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pipeline_bit_identical_run_to_run_and_across_threads(tmp_path) -> None:
    first = _run(tmp_path, "a", 1)
    assert len(first["hash"]) == 64
    assert _run(tmp_path, "b", 1)["hash"] == first["hash"], "two runs at 1 thread differ"
    other = _run(tmp_path, "c", 2)
    assert other["means"] == first["means"], "1 and 2 threads give other metrics"
    assert other["hash"] == first["hash"], "1 and 2 threads differ (tables, policies or predicted pixels)"
