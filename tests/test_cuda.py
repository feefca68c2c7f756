"""interp on a GPU equals interp on the CPU, within stated tolerances (``-m cuda``).

Every test here is marked ``cuda`` and runs on ``cuda`` when torch sees a GPU, else is
skipped, so CPU-only CI never needs one. ``INTERP_GPU_DRY_RUN=1`` runs the same code on the
CPU instead (both sides then on the CPU: the code paths are exercised, the tolerances
trivially met): that is what ``python -m bench.gpu_check --dry-run`` does in CI. With
``INTERP_GPU_REPORT=<file.jsonl>`` each test appends what it measured (the largest
differences) to that file, which ``bench.gpu_check`` puts into its JSON.

Tolerances (float32 everywhere, TF32 off for matmuls and convolutions in these tests):

* logits, plain and mean-patched: max |GPU - CPU| <= :data:`LOGITS_ATOL`, argmax codes
  agree on >= :data:`CODE_AGREEMENT` of the patches;
* rewards: token reward |diff| <= :data:`TOKEN_REWARD_ATOL` on every row; pixel reward (integer
  pixels after a truncation that a 1e-6 change can flip, and a code that flips on a near-tie):
  mean |diff| <= :data:`PIXEL_REWARD_MEAN_ATOL`;
* one REINFORCE step (token reward, Adam): >= :data:`STEP_AGREEMENT` of the policy logits
  within 1e-4 (Adam's first step is ``lr * sign(gradient)``, so only a unit whose gradient is
  within rounding of 0 may differ);
* autocast bf16 against float32 on the same device: argmax codes agree on >= :data:`BF16_CODE_AGREEMENT`,
  max |diff| <= :data:`BF16_LOGITS_RTOL` x max |logit|;
* NCCL with one rank: ``interp.distributed.init("cuda")`` joins an NCCL group of world 1 and
  an all_reduce returns its input (gloo on the CPU in the dry run).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_prompts
from interp.taskvectors.collect import collect
from interp.taskvectors.patching import MeanPatcher
from interp.taskvectors.search import SearchProblem
from interp.taskvectors.search.reinforce import ReinforceConfig, run
from interp.taskvectors.units import UnitSpace

pytestmark = pytest.mark.cuda

LOGITS_ATOL = 1e-3
CODE_AGREEMENT = 0.99
TOKEN_REWARD_ATOL = 1e-3
PIXEL_REWARD_MEAN_ATOL = 1e-2
STEP_AGREEMENT = 0.98
BF16_CODE_AGREEMENT = 0.95
BF16_LOGITS_RTOL = 0.05


@pytest.fixture(scope="module")
def gpu() -> str:
    """``cuda``; ``cpu`` in a dry run; skip otherwise."""
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("INTERP_GPU_DRY_RUN") == "1":
        return "cpu"
    pytest.skip("no CUDA device (INTERP_GPU_DRY_RUN=1 runs these on the CPU)")


@pytest.fixture(autouse=True)
def _no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def report(test: str, **measured: float) -> None:
    """Append what a test measured to ``$INTERP_GPU_REPORT`` (one JSON line), if set."""
    path = os.environ.get("INTERP_GPU_REPORT")
    if path:
        with Path(path).open("a") as f:
            f.write(json.dumps({"test": test, **{k: float(v) for k, v in measured.items()}}) + "\n")


@pytest.fixture(scope="module")
def setup(gpu):
    """The bundled tiny model on the CPU and on the device, prompts and task means (CPU)."""
    import interp

    cpu_model = interp.load_model("tiny")
    dev_model = interp.load_model("tiny", gpu)
    source = SyntheticPascal(seed=3, size_per_split=40)
    prompts = build_prompts(source, "segmentation", fold=0, n=8, grid=cpu_model.grid, seed=0, split="val")
    shots = build_prompts(source, "segmentation", fold=0, n=8, grid=cpu_model.grid, seed=1, split="trn")
    means = collect(cpu_model, [shots.canvases], layout="one_shot", task="segmentation", progress=False)
    return cpu_model, dev_model, prompts, means


def _masks(space: UnitSpace, rows: int) -> torch.Tensor:
    return torch.rand(rows, len(space), generator=torch.Generator().manual_seed(0)) < 0.27


@torch.no_grad()
def test_logits_and_patched_logits_match_the_cpu(setup, gpu) -> None:
    cpu_model, dev_model, prompts, means = setup
    space = UnitSpace.for_model(cpu_model, "head")
    masks = _masks(space, len(prompts))
    on_cpu = cpu_model(prompts.canvases, "zero_shot")
    on_dev = dev_model(prompts.canvases.to(gpu), "zero_shot").cpu()
    patched_cpu = MeanPatcher(cpu_model, means, "zero_shot", space).forward(prompts.canvases, masks)
    patched_dev = MeanPatcher(dev_model, means, "zero_shot", space).forward(prompts.canvases.to(gpu), masks).cpu()
    for name, a, b in (("logits", on_cpu, on_dev), ("patched_logits", patched_cpu, patched_dev)):
        diff = float((a - b).abs().max())
        agree = float((a.argmax(-1) == b.argmax(-1)).float().mean())
        report(name, max_abs_diff=diff, code_agreement=agree)
        assert diff <= LOGITS_ATOL and agree >= CODE_AGREEMENT, (name, diff, agree)


@pytest.mark.parametrize("reward", ["token", "pixel"])
def test_rewards_match_the_cpu(setup, gpu, reward) -> None:
    cpu_model, dev_model, prompts, means = setup
    space = UnitSpace.for_model(cpu_model, "group")
    masks = _masks(space, 24)
    which = torch.arange(24) % len(prompts)
    on_cpu = SearchProblem(cpu_model, space, means, prompts, prompts, reward=reward, chunk=24).rewards(prompts, which, masks, reward)
    on_dev = SearchProblem(dev_model, space, means, prompts, prompts, reward=reward, chunk=24).rewards(prompts, which, masks, reward)
    diff = (on_cpu - on_dev.cpu()).abs().nan_to_num(0)
    report(f"{reward}_reward", max_abs_diff=diff.max(), mean_abs_diff=diff.mean())
    if reward == "token":
        assert float(diff.max()) <= TOKEN_REWARD_ATOL
    else:
        assert float(diff.mean()) <= PIXEL_REWARD_MEAN_ATOL


def test_a_reinforce_step_matches_the_cpu(setup, gpu) -> None:
    cpu_model, dev_model, prompts, means = setup
    space = UnitSpace.for_model(cpu_model, "head")
    train, held_out = prompts.select(range(4)), prompts.select(range(4, 8))
    cfg = ReinforceConfig(steps=1, samples=16, eval_every=10**6, seed=0)
    on_cpu = run(SearchProblem(cpu_model, space, means, train, held_out, reward="token", chunk=16), cfg, progress=False).logits
    on_dev = run(SearchProblem(dev_model, space, means, train, held_out, reward="token", chunk=16), cfg,
                 progress=False).logits.cpu()
    close = float(((on_cpu - on_dev).abs() <= 1e-4).float().mean())
    report("reinforce_step", share_within_1e4=close, max_abs_diff=(on_cpu - on_dev).abs().max())
    assert close >= STEP_AGREEMENT


@torch.no_grad()
def test_autocast_bf16_stays_near_float32(setup, gpu) -> None:
    _, dev_model, prompts, _ = setup
    canvases = prompts.canvases.to(gpu)
    full = dev_model(canvases, "zero_shot").float()
    with torch.autocast(torch.device(gpu).type, dtype=torch.bfloat16):
        half = dev_model(canvases, "zero_shot").float()
    rel = float((full - half).abs().max() / full.abs().max())
    agree = float((full.argmax(-1) == half.argmax(-1)).float().mean())
    report("autocast_bf16", max_rel_diff=rel, code_agreement=agree)
    assert rel <= BF16_LOGITS_RTOL and agree >= BF16_CODE_AGREEMENT


def test_nccl_with_one_rank(gpu, monkeypatch) -> None:
    import torch.distributed as dist

    from interp import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    device = distributed.init(gpu, timeout_s=60)
    try:
        assert dist.get_backend() == ("nccl" if gpu == "cuda" else "gloo")
        x = torch.arange(6, dtype=torch.float32, device=device)
        dist.all_reduce(x)
        assert torch.equal(x.cpu(), torch.arange(6, dtype=torch.float32))
        report("nccl_one_rank", ok=1)
    finally:
        distributed.shutdown()
