"""How interp uses the CPU: library settings made before torch loads, and the thread count.

Two problems of a CPU run are settled here, once, for every entry point.

**Exact answers at any thread count.** Batched scoring skips repeated rows and reuses the
unpatched prefix (:mod:`interp.taskvectors.patched_rows`); that is exact only if a row's
logits do not depend on which other rows share its batch. With more than one thread they
did: torch's CPU attention kernel (``scaled_dot_product_attention``) gives each OpenMP thread
its own scratch buffer and runs MKL's ``sgemm`` on it, and by default MKL picks its code path
by the alignment of that buffer, so the same (row, head) computed by another thread (another
batch size moves it) could differ in the last bit (measured: up to 2.4e-7 in the attention
output on the test model at 2 threads). MKL's *conditional numerical reproducibility* in its
strict mode (``MKL_CBWR=AUTO,STRICT``) makes ``sgemm`` independent of alignment: rows are then
bit-identical whatever the batch, and the same at 1 and 2 threads. Measured cost: none
within noise on the ``small`` and ``large`` forwards (one thread). The same setting changes
the last bits of results relative to MKL's default path, once.

**No collapse when the CPU is shared.** torch's OpenMP runtime (GNU libgomp in the pip
wheels) lets idle worker threads spin; with other work on the cores they spin on cores other
processes need, and each parallel region waits for a descheduled thread. Passive waiting
(``OMP_WAIT_POLICY=PASSIVE``; ``KMP_BLOCKTIME=0`` for Intel's runtime) lets them sleep.
The thread count itself follows the cores this process may use (:func:`available_cpus`:
its CPU affinity and a cgroup CPU quota), not the machine's.

Both environment settings are read by the libraries when they initialise (libgomp when
torch is imported, MKL at its first call), so :func:`configure_environment` runs when
``interp`` is imported and must come before ``import torch`` to take full effect; it never
overrides a value the user set. ``bench.contention`` measures the result under contention.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

#: environment defaults set before torch initialises its libraries (a user's value wins)
ENVIRONMENT: dict[str, str] = {
    "MKL_CBWR": "AUTO,STRICT",  # MKL results independent of memory alignment (see the module docstring)
    "OMP_WAIT_POLICY": "PASSIVE",  # libgomp: idle OpenMP threads sleep instead of spinning
    "KMP_BLOCKTIME": "0",  # Intel OpenMP (if a torch build uses it): the same
}

#: whether torch had been imported before :func:`configure_environment` first ran (then the
#: OpenMP setting came too late for this process; MKL's only if a matmul had already run)
torch_loaded_first: bool | None = None


def configure_environment() -> None:
    """Set :data:`ENVIRONMENT` where the user has not (idempotent; children inherit it)."""
    global torch_loaded_first
    if torch_loaded_first is None:
        torch_loaded_first = "torch" in sys.modules
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def available_cpus() -> int:
    """Cores this process may use: its CPU affinity, bounded by a cgroup CPU quota (v2 or v1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup's CPU quota in cores (``cpu.max`` of v2, ``cfs_quota_us / cfs_period_us`` of
    v1), None if unlimited or unreadable."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


_torch_default: list[int] = []  # torch's own thread count, read at the first default_threads()


def default_threads() -> int:
    """The thread count interp uses unless told: ``OMP_NUM_THREADS`` if the user set it, else
    the smaller of torch's default (physical cores) and :func:`available_cpus`."""
    import torch

    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    if not _torch_default:
        _torch_default.append(torch.get_num_threads())
    return max(1, min(_torch_default[0], available_cpus()))


def set_threads(threads: int | None = None) -> int:
    """``torch.set_num_threads(threads or default_threads())``; returns the count now in use."""
    import torch

    count = default_threads() if threads is None else int(threads)
    if count < 1:
        raise ValueError(f"threads must be >= 1, got {count}")
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    return torch.get_num_threads()


def describe() -> dict[str, object]:
    """What is in effect, for a run manifest or a benchmark report."""
    import torch

    return {"threads": torch.get_num_threads(), "available_cpus": available_cpus(),
            "torch_loaded_first": bool(torch_loaded_first),
            **{key.lower(): os.environ.get(key) for key in ENVIRONMENT}}
