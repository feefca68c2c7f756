"""Smoke test of bench/: every script runs at its smallest sizes and reports its JSON keys.

Not a timed test: no assertion looks at a timing (DESIGN.md §5 in ../shared). Uses the bundled tiny model,
or the same architecture with random weights where its weights are missing.
"""

from __future__ import annotations

import importlib
import json

import pytest

MODULES = ("common", "official", "plain_forward", "reinforce_step", "collect", "sweep", "hooks_overhead", "reinforce_run",
           "memory", "decode", "run_all", "contention", "gpu_check", "op_shares")
KEYS = {"bench", "model", "model_source", "device", "torch", "threads", "sizes", "seconds", "fast", "slow", "ratio"}


@pytest.mark.parametrize("name", MODULES)
def test_imports(name: str) -> None:
    importlib.import_module(f"bench.{name}")


def test_plain_forward_matches_hooked() -> None:
    import torch

    from bench.common import get_model
    from bench.plain_forward import check_matches

    model, _ = get_model("tiny")
    canvas = torch.randn(2, 3, model.grid.canvas_size, model.grid.canvas_size, generator=torch.Generator().manual_seed(0))
    for layout in ("one_shot", "zero_shot"):
        assert check_matches(model, canvas, layout) <= 1e-5


def test_run_all_quick_tiny(tmp_path, capsys) -> None:
    from bench import run_all

    out = tmp_path / "results.json"
    summary = run_all.run(["--quick", "--models", "tiny", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["quick"] is True and saved["models"] == ["tiny"]
    results = saved["results"]
    assert {r["bench"] for r in results} == {"reinforce_step", "collect", "sweep", "hooks_overhead", "decode"}
    for r in results:
        assert KEYS <= set(r), (r["bench"], KEYS - set(r))
        assert r["fast"] in r["seconds"] and r["slow"] in r["seconds"]
        assert r["ratio"] > 0
    by = {r["bench"]: r for r in results}
    assert by["reinforce_step"]["code_agreement"] > 0.99  # the same patched forwards in both variants
    for bench in ("reinforce_step", "collect"):
        r = by[bench]
        assert set(r["flops"]) == {"interp", "official_work"} and min(r["flops"].values()) > 0
        assert 0 < r["fraction_of_matmul_probe"]["interp"] and r["matmul_probe_flop_s"] > 0
    assert by["collect"]["max_abs_mean_diff"] < 1e-4
    assert -1 <= by["decode"]["agreement"]["lowlight"]["reward_pearson"] <= 1
    assert by["sweep"]["max_abs_reward_diff"] < 1e-4
    assert by["hooks_overhead"]["max_abs_logit_diff"] <= 1e-5
    printed = capsys.readouterr().out
    assert "| bench | model |" in printed  # the Markdown table
    assert len(summary["results"]) == len(results)


def test_script_prints_one_json_line(capsys) -> None:
    from bench import hooks_overhead

    hooks_overhead.run(["--quick", "--model", "tiny"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["bench"] == "hooks_overhead"


def test_official_reward_matches_the_official_goldens(reference_dir) -> None:
    """The benchmarks' official-work side reproduces the official pixel path (PIXELS.md):
    same codes, full-grid hstack decode within ±1 on the target cell, official MSE and IoU."""
    import torch
    from safetensors.torch import load_file

    from bench.official import official_image, official_reward
    from interp.canvas import get_layout
    from interp.models import load_official
    from interp.models.presets import small

    model = load_official(reference_dir / "mae_small.safetensors", reference_dir / "vqgan_small.safetensors", config=small())
    golden = load_file(str(reference_dir / "pixels.golden.safetensors"))
    canvas = golden["canvas"]
    for cond, layout_name in (("zeroshot", "zero_shot"), ("oneshot", "one_shot")):
        layout = get_layout(layout_name, model.grid)
        with torch.no_grad():
            logits = model(canvas, layout)
        assert torch.equal(logits.argmax(-1), golden[f"{cond}.codes"])
        pixels = (official_image(model, logits, layout).double() * 255).clamp(0, 255).floor().int().permute(0, 2, 3, 1)
        diff = (pixels[:, 113:, 113:] - golden[f"{cond}.image"][:, 113:, 113:]).abs()
        assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3
        torch.testing.assert_close(-official_reward(model, "lowlight", canvas, logits, layout),
                                   golden[f"{cond}.mse"].double(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(official_reward(model, "segmentation", canvas, logits, layout),
                                   golden[f"{cond}.iou"].double(), atol=1e-4, rtol=0)


def test_reinforce_run_checks_its_savings_against_the_plain_path(capsys) -> None:
    from bench import reinforce_run, run_all

    r = reinforce_run.run(["--quick", "--model", "tiny", "--check-every", "1"])
    assert len(r["steps"]) == 3 and all("plain_seconds" in s for s in r["steps"])  # every step bitwise equal
    assert [o["step"] for o in r["official_steps"]] == [0, 2]  # first and last (every 100)
    assert r["ratio_run"] > 0 and len(r["final_probabilities_sorted"]) > 1
    assert "reinforce_run" in run_all.table([r])


def test_memory_reports_each_case_from_its_own_process() -> None:
    from bench import memory, run_all

    r = memory.run(["--quick", "--model", "tiny"])
    assert [(c["case"], c["prompts"]) for c in r["cases"]] == [("collect", 2), ("collect", 4), ("sweep", 2), ("sweep", 4)]
    assert all(c["peak_rss_mib"] >= c["model_rss_mib"] > 0 for c in r["cases"])
    assert r["cases"][-1]["units"] > 1000  # token granularity
    assert len(run_all.memory_rows(r)) == 4


def test_run_all_joins_earlier_results(tmp_path) -> None:
    from bench import run_all

    for name, bench in (("a.json", "collect"), ("b.json", "sweep")):
        row = {"bench": bench, "model": "tiny", "device": "cpu", "error": "x"}
        (tmp_path / name).write_text(json.dumps({"models": ["tiny"], "results": [row], "wall_seconds": 1}))
    joined = run_all.run(["--join", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "r.json")])
    assert [r["bench"] for r in joined["results"]] == ["collect", "sweep"]
    assert json.loads((tmp_path / "r.json").read_text())["joined_from"][1]["file"] == "b.json"


def test_gpu_check_dry_run_writes_the_json_the_readme_table_reads(tmp_path) -> None:
    """``bench/gpu_check.sh --dry-run``: every part of the GPU check on the CPU at the smallest sizes."""
    import importlib.util
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    subprocess.run(["bash", str(root / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(out)], check=True, env=env,
                   capture_output=True, timeout=120)
    r = json.loads(out.read_text())
    assert r["ok"] and r["dry_run"] and set(r["parts"]) == {"tests", "probe", "reinforce_run", "run_all"}
    tests = {m["test"] for m in r["parts"]["tests"]["measured"]}
    assert tests == {"logits", "patched_logits", "token_reward", "pixel_reward", "reinforce_step", "autocast_bf16",
                     "nccl_one_rank"}  # every cuda test ran (on the CPU) and reported
    assert r["parts"]["reinforce_run"]["result"]["sizes"]["reward"] == "pixel"
    assert {b["bench"] for b in r["parts"]["run_all"][0]["results"]} == {"reinforce_step", "collect"}
    spec = importlib.util.spec_from_file_location("update_readme", root / "scripts" / "update_readme.py")
    update_readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update_readme)
    table = update_readme.render_gpu(out)
    assert "dry run on the CPU" in table and "autocast_bf16" in table and "REINFORCE pixel reward, 2 steps x 4" in table


@pytest.mark.slow  # three processes (the workload twice, the competitor once)
def test_contention_quick_reports_the_slowdown() -> None:
    from bench import contention

    r = contention.run(["--quick"])
    assert r["slowdown"] > 0 and r["goal"] == 2.5
    assert len(r["policies"]["passive"]["alone_s"]) == len(r["policies"]["passive"]["beside_s"]) == 1


def test_demo_time_reads_gnu_time_output() -> None:
    from bench.demo_time import parse_time

    text = """\tUser time (seconds): 185.36
\tSystem time (seconds): 9.30
\tPercent of CPU this job got: 34%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 9:17.01
\tMaximum resident set size (kbytes): 1116700"""
    assert parse_time(text) == {"user_s": 185.36, "system_s": 9.30, "cpu_percent": 34.0, "wall_s": 557.0,
                                "peak_rss_kb": 1116700.0}
    assert parse_time("\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03")["wall_s"] == 3723.0


def test_op_shares_quick_tiny(tmp_path) -> None:
    """The profile's shares cover the forward, the matmul FLOPs are part of the whole, and the
    three attention kernels agree with the fused one."""
    from bench import op_shares

    out = tmp_path / "op_shares_tiny.json"
    r = op_shares.run(["--quick", "--model", "tiny", "--out", str(out)])
    assert json.loads(out.read_text())["bench"] == "op_shares" and KEYS <= set(r)
    assert abs(sum(r["shares"].values()) - 1) < 1e-9 and r["shares"]["matmul"] > 0
    assert 0 < r["fraction_of_matmul_probe"] and r["matmul_fraction_of_probe"] > 0
    for stack in ("encoder", "decoder"):
        kernels = r["attention_kernels"][stack]
        assert set(kernels["seconds"]) == {"fused", "explicit", "math"}
        assert max(kernels["max_abs_diff_to_fused"].values()) < 1e-4
