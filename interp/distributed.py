"""torch.distributed for the pipeline: rank helpers, sharding, and reductions that keep results exact.

Launch any stage on several processes with ``torchrun`` (gloo on CPU, NCCL on GPUs)::

    torchrun --nproc_per_node=2 -m interp.cli collect --distributed --run runs/tv ...

:func:`init` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and switches sharding on; until then every helper here is a
no-op for one process (rank 0 of 1), so library code calls them unconditionally. Work is
sharded **by item index** (``index % world == rank``), and results come back **in item
order** (:func:`gather_rows`, :func:`ordered_partials`), so a reduction can fold the shards in
exactly the single-process order: statistics stay bit-identical however many ranks run.
Rank 0 writes artifacts (:func:`is_main`); the others wait at :func:`barrier`. A rank that
dies makes the others' next collective fail; :func:`guard` turns that into a
:class:`RankFailure` that says the run resumes with the same command.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from interp.errors import ConfigError, InterpError

T = TypeVar("T")
_ACTIVE = False  # set by init(): sharding only runs where the user asked for it


class RankFailure(InterpError):
    """Another rank of a distributed run died or lost contact; finished work is kept."""


def init(device: str | torch.device = "cpu", timeout_s: float = 600.0) -> torch.device:
    """Join the process group torchrun describes; returns this rank's device.

    Backend: NCCL for ``cuda`` (each rank on ``cuda:LOCAL_RANK``), gloo otherwise. Idempotent.
    """
    global _ACTIVE
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"--distributed needs the torchrun environment ({', '.join(missing)} not set)",
            fix="launch with `torchrun --nproc_per_node=N -m interp.cli <stage> --distributed ...`",
        )
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    _ACTIVE = True
    return device


def shutdown() -> None:
    """Leave the process group (end of a run)."""
    global _ACTIVE
    if dist.is_initialized():
        dist.destroy_process_group()
    _ACTIVE = False


def active() -> bool:
    """True when :func:`init` joined a group of more than one rank."""
    return _ACTIVE and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def local() -> Iterator[None]:
    """Within the block, helpers act as one process (e.g. a single-process reference)."""
    global _ACTIVE
    before, _ACTIVE = _ACTIVE, False
    try:
        yield
    finally:
        _ACTIVE = before


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes artifacts."""
    return rank() == 0


def barrier() -> None:
    if active():
        _collective(dist.barrier)


def _device() -> torch.device:
    """Where collectives run: NCCL needs CUDA tensors, gloo takes CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _collective(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as e:  # a peer died: connection closed / timeout
        raise RankFailure(
            f"rank {rank()} of {world_size()} lost contact with another rank ({str(e).splitlines()[0][:200]})",
            fix="another rank died or was killed (see its error above); finished stages and the last "
            "checkpoint are kept: rerun the same command to resume",
        ) from None


# --------------------------------------------------------------------------------------------
# sharding


def mine(index: int) -> bool:
    """Is item ``index`` this rank's? (round robin: ``index % world == rank``)"""
    return index % world_size() == rank()


def shard(items: Sequence[T]) -> list[T]:
    """This rank's items, in order."""
    return [x for i, x in enumerate(items) if mine(i)]


def shard_indices(n: int) -> Tensor:
    """Indices ``0..n-1`` that are this rank's, ``[n_mine]`` long."""
    return torch.arange(rank(), n, world_size())


# --------------------------------------------------------------------------------------------
# reductions


def gather_rows(local_rows: Tensor, n: int) -> Tensor:
    """Rows ``[n_mine, ...]`` of the items :func:`shard_indices(n)` -> all ``n`` rows in item order.

    Every rank gets the whole ``[n, ...]`` tensor; values are copied, never added, so they are
    exactly what each rank computed.
    """
    if not active():
        return local_rows
    world = world_size()
    per_rank = -(-n // world)  # ceil: rank r holds items r, r + world, ...
    padded = local_rows.new_zeros((per_rank, *local_rows.shape[1:]))
    padded[: len(local_rows)] = local_rows
    padded = padded.to(_device())
    parts = [torch.empty_like(padded) for _ in range(world)]
    _collective(dist.all_gather, parts, padded)
    out = local_rows.new_empty((n, *local_rows.shape[1:]))
    for r, part in enumerate(parts):
        idx = torch.arange(r, n, world)
        out[idx] = part[: len(idx)].to(out.device)
    return out


def ordered_partials(local: Tensor | None, like: Tensor) -> list[Tensor]:
    """One round of a sharded fold: each rank's partial (``None``: none this round), in rank order.

    All ranks get the same list, so each can add the partials in the single-process order
    (float addition is not associative: an all-reduce would change the last bits).
    """
    if not active():
        return [] if local is None else [local]
    flag = torch.tensor([0 if local is None else 1], device=_device())
    flags = [torch.empty_like(flag) for _ in range(world_size())]
    _collective(dist.all_gather, flags, flag)
    send = (like.new_zeros(like.shape) if local is None else local.to(like.dtype)).to(_device()).contiguous()
    parts = [torch.empty_like(send) for _ in range(world_size())]
    _collective(dist.all_gather, parts, send)
    return [p.to(like.device) for p, f in zip(parts, flags) if int(f)]


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over ranks, in place and returned (float64 stays float64)."""
    if active():
        moved = tensor.to(_device())
        _collective(dist.all_reduce, moved, op=dist.ReduceOp.SUM)
        if moved is not tensor:
            tensor.copy_(moved)
    return tensor


def all_reduce_gradients(parameters: Sequence[Tensor]) -> None:
    """Sum every parameter's ``.grad`` over ranks (each rank backpropagated its share of the
    objective). Reusable by any search method that splits samples over ranks."""
    if not active():
        return
    for p in parameters:
        if p.grad is not None:
            all_reduce_sum(p.grad)


@contextmanager
def guard() -> Iterator[None]:
    """Around a distributed stage: a peer's death surfaces as :class:`RankFailure` here,
    and this rank's own error names the rank before it propagates (torchrun then stops the rest)."""
    try:
        yield
    except RankFailure:
        raise
    except Exception as e:
        if active() and not isinstance(e, InterpError):
            raise RankFailure(
                f"rank {rank()} of {world_size()} failed: {type(e).__name__}: {e}",
                fix="fix the cause; finished stages and the last checkpoint are kept, so rerunning the "
                "same command resumes",
            ) from e
        raise


def start(device: str = "cpu") -> str:
    """For a command line: :func:`init`, leave the group at exit; returns this rank's device."""
    import atexit

    rank_device = init(device)
    atexit.register(shutdown)
    return str(rank_device)
