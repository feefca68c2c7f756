"""torch.distributed with gloo, 2 ranks on CPU: the same results as one process.

Each test starts two spawned processes that join a gloo group as torchrun would (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``); rank 0 also computes the single-process
reference in the same process (same threads), and both ranks write what they got to files
that the test compares. Statistics, sweep tables and evaluation scores must be bitwise
identical; REINFORCE policies equal to 1e-9 (float64 logits: summing the ranks' gradients
changes the order of the additions) and identical on both ranks.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

WORLD = 2
POLICY_TOL = 1e-9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(target, out: Path, timeout: float = 120.0) -> list[int | None]:
    """Run ``target(rank, out)`` on WORLD processes in one gloo group; their exit codes."""
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_entry, args=(target, r, port, out)) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


def _entry(target, rank: int, port: int, out: Path) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from interp import distributed

    distributed.init("cpu", timeout_s=60)
    try:
        target(rank, out)
    except Exception as e:  # noqa: BLE001 - reported to the test through a file
        (out / f"error{rank}.txt").write_text(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        raise SystemExit(1)
    finally:
        distributed.shutdown()


def _setup():
    from interp.data.synthetic import SyntheticPascal
    from interp.data.tasks import build_prompts
    from tests.conftest import random_model

    model = random_model(seed=2, with_vqgan=True)
    source = SyntheticPascal(seed=3, size_per_split=40)
    prompts = build_prompts(source, "segmentation", fold=0, n=11, grid=model.grid, seed=0, split="val")
    return model, prompts


def _stages(model, prompts) -> dict[str, torch.Tensor]:
    """collect, sweep, evaluate and REINFORCE as the pipeline calls them (sharded when active)."""
    from interp.taskvectors.evaluate import score_prompts
    from interp.taskvectors.search import SearchProblem
    from interp.taskvectors.search.reinforce import ReinforceConfig, run
    from interp.taskvectors.sharded import collect_sharded
    from interp.taskvectors.sweep import sweep
    from interp.taskvectors.units import UnitSpace

    out: dict[str, torch.Tensor] = {}
    stats = collect_sharded(model, list(prompts.canvases.split(2)), layout="one_shot", task="segmentation", progress=False)
    for site in stats.sites:
        out[f"stats.{site}.sum"], out[f"stats.{site}.sum_sq"] = stats.sum[site], stats.sum_sq[site]
        out[f"stats.{site}.count"] = stats.count[site]
    out["stats.n_prompts"] = torch.tensor(stats.n_prompts)
    space = UnitSpace.for_model(model, "group")
    table = sweep(model, space, stats, prompts.select(range(3)), reward="pixel", chunk=5, progress=False)
    out["sweep.reward"] = torch.tensor(table["reward"].values)
    out["sweep.delta"] = torch.tensor(table["delta"].values)
    out["evaluate.scores"] = score_prompts(model, prompts, "zero_shot", batch_size=3)
    cfg = ReinforceConfig(steps=6, samples=12, eval_every=3, sparsity=0.01)
    problem = SearchProblem(model, space, stats, prompts.select(range(4)), prompts.select(range(4, 9)), reward="token", chunk=5)
    state = run(problem, cfg, progress=False)
    out["reinforce.logits"], out["reinforce.best_logits"] = state.logits, state.best_logits
    return out


def _equivalence_worker(rank: int, out: Path) -> None:
    from interp import distributed

    model, prompts = _setup()
    save_file({k: v.contiguous() for k, v in _stages(model, prompts).items()}, str(out / f"rank{rank}.safetensors"))
    if rank == 0:
        with distributed.local():
            reference = _stages(model, prompts)
        save_file({k: v.contiguous() for k, v in reference.items()}, str(out / "single.safetensors"))


def _errors(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(out.glob("error*.txt")))


@pytest.mark.slow
def test_two_ranks_equal_one_process(tmp_path: Path) -> None:
    codes = _spawn(_equivalence_worker, tmp_path)
    assert codes == [0, 0], _errors(tmp_path)
    single = load_file(str(tmp_path / "single.safetensors"))
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(WORLD)]
    assert set(single) == set(ranks[0]) == set(ranks[1])
    for key, expected in single.items():
        for r in range(WORLD):
            got = ranks[r][key]
            if key.startswith("reinforce."):
                torch.testing.assert_close(got, expected, atol=POLICY_TOL, rtol=0, msg=f"rank {r} {key}")
                assert torch.equal(got, ranks[0][key]), f"ranks hold different policies ({key})"
            else:  # statistics, sweep rows, evaluation scores: bitwise
                assert torch.equal(got, expected), f"rank {r}: {key} differs from one process"
    assert int(single["stats.n_prompts"]) == 11
    assert not torch.equal(single["reinforce.logits"], torch.full_like(single["reinforce.logits"], -1.0))


# --------------------------------------------------------------------------------------------
# a rank dies mid-stage: the other fails with a clear message, the run resumes


def _pipeline_worker(rank: int, out: Path) -> None:
    import interp.pipeline as pipeline
    from interp import distributed
    from interp.data.synthetic import SyntheticPascal
    from interp.run import RunDir
    from interp.taskvectors.collect import collect
    from tests.conftest import random_model

    model = random_model(seed=2, with_vqgan=True)
    source = SyntheticPascal(seed=3, size_per_split=40)
    cfg = pipeline.PipelineConfig(tasks=("segmentation", "lowlight"), n_collect=5, n_candidates=8)
    run = RunDir(out / "run")
    if (out / "die").exists() and rank == 1:
        real = pipeline.collect_sharded

        def dying(model, batches, task=None, **kw):
            if task == "lowlight":
                os._exit(3)  # killed mid-run, no cleanup
            return real(model, batches, task=task, **kw)

        pipeline.collect_sharded = dying
    stats = pipeline.stage_collect(run, model, source, cfg, batch_size=2)
    if rank == 0:
        with distributed.local():
            for task in cfg.tasks:
                prompts = pipeline.select_prompts(model, source, task, cfg)
                single = collect(model, list(prompts.canvases.split(2)), layout="one_shot", progress=False)
                same = all(torch.equal(single.sum[s], stats[task].sum[s]) and torch.equal(single.sum_sq[s], stats[task].sum_sq[s])
                           for s in single.sites)
                (out / f"same_{task}.json").write_text(json.dumps(same))


@pytest.mark.slow
def test_dead_rank_fails_clearly_and_the_run_resumes(tmp_path: Path) -> None:
    (tmp_path / "die").touch()
    codes = _spawn(_pipeline_worker, tmp_path)
    assert codes[1] == 3 and codes[0] == 1
    message = (tmp_path / "error0.txt").read_text().splitlines()[0]
    assert message.startswith("RankFailure: rank 0 of 2 lost contact with another rank"), message
    assert "rerun the same command to resume" in message
    finished = tmp_path / "run" / "stats" / "segmentation.safetensors"
    assert finished.exists() and not (tmp_path / "run" / "stats" / "lowlight.safetensors").exists()
    written = finished.stat().st_mtime_ns

    (tmp_path / "die").unlink()
    (tmp_path / "error0.txt").unlink()
    codes = _spawn(_pipeline_worker, tmp_path)
    assert codes == [0, 0], _errors(tmp_path)
    assert finished.stat().st_mtime_ns == written  # the finished task was loaded, not collected again
    for task in ("segmentation", "lowlight"):
        assert json.loads((tmp_path / f"same_{task}.json").read_text()), f"{task}: resumed stats differ from one process"
