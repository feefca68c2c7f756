"""Shared pieces of the benchmarks: model choice, prompts, timing, the official-shaped
per-head recording, and the one-line JSON report.

Models (``--model``):

* ``tiny``  — the bundled tiny MAE-VQGAN (``interp.load_model("tiny")``); where its weights
  are missing, the same architecture (``interp.models.presets.tiny``) with random weights.
  Timings do not depend on the weights, so the numbers stay comparable.
* ``small`` — the official layer and head counts (24 + 8 blocks, 16 heads, 224 px canvas,
  16 px patches) at narrow widths (96 / 48), with a small f16 VQGAN: the geometry of the
  ``mae_small`` reference fixture, random weights. Cheap, but shaped like the real thing.
* ``large`` — ``ModelConfig.large()`` (MAE ViT-L/16 + the f16 VQGAN with 1024 codes) with
  ``initialize_weights()``: random weights, real sizes (~1.3 GB in float32).

Every script has ``run(argv) -> dict`` (what ``run_all`` and the smoke test call) and
``main()``; the dict is printed as one JSON line at the end and, with ``--out``, written
to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

MODELS = ("tiny", "small", "large")
_MODEL_CACHE: dict[tuple[str, str], tuple[Any, str]] = {}


# --------------------------------------------------------------------------------------------
# arguments


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", choices=MODELS, default="tiny")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per variant (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smallest sizes: a smoke test, not a measurement")
    p.add_argument("--out", default=None, help="also write the JSON object to this file")
    p.add_argument("--autocast", choices=("none", "bf16", "fp16"), default="none",
                   help="run the timed variants under torch.autocast (default none: float32, for parity)")
    return p


_AUTOCAST: dict[str, Any] = {}  # set by setup(): the device type and dtype timed runs autocast to


def precision():
    """The ``--autocast`` context for a timed run (a no-op for float32)."""
    from contextlib import nullcontext

    if not _AUTOCAST:
        return nullcontext()
    return torch.autocast(_AUTOCAST["device_type"], dtype=_AUTOCAST["dtype"])


def to_device(tensor: Tensor, device: str) -> Tensor:
    """Host -> device copy; on CUDA from pinned memory, asynchronously."""
    if str(device).startswith("cuda"):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def pick(value: Any, args: argparse.Namespace, default: Any, large_cpu: Any = None, quick: Any = None) -> Any:
    """A size: the explicit value, else the quick size, else the large-on-CPU size, else the default."""
    if value is not None:
        return value
    if args.quick and quick is not None:
        return quick
    if args.model == "large" and not str(args.device).startswith("cuda") and large_cpu is not None:
        return large_cpu
    return default


def setup(args: argparse.Namespace) -> None:
    """Threads and device checks. ``--quick`` defaults to one thread: on a CPU that other work
    keeps busy, several OpenMP threads contend and small ops get many times slower."""
    threads = args.threads if args.threads is not None else (1 if args.quick else None)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = 0.0
    if not args.quick and load > 0.5 * (os.cpu_count() or 1):
        print(f"bench: load average {load:.1f} on {os.cpu_count()} CPUs; timings will be noisy "
              f"(with {torch.get_num_threads()} torch threads)", file=sys.stderr)
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available in this torch ({torch.__version__})")
    _AUTOCAST.clear()
    if getattr(args, "autocast", "none") != "none":
        _AUTOCAST.update(device_type=torch.device(args.device).type,
                         dtype=torch.bfloat16 if args.autocast == "bf16" else torch.float16)


# --------------------------------------------------------------------------------------------
# models and data


def get_model(name: str, device: str = "cpu", seed: int = 0) -> tuple[Any, str]:
    """``(model in eval mode on device, where its weights come from)``; cached per (name, device)."""
    key = (name, str(device))
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    from interp.models import presets

    if name == "tiny":
        import interp

        try:
            model, source = interp.load_model("tiny"), "bundled tiny weights"
        except FileNotFoundError:
            model = presets.initialized(presets.tiny(), seed)
            source = "random weights, tiny architecture (bundled tiny.safetensors missing)"
    elif name == "small":
        model, source = presets.initialized(presets.small(), seed), "random weights, official depths/heads at widths 96/48"
    elif name == "large":
        model, source = presets.initialized(presets.large(), seed), "random weights, ModelConfig.large()"
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    _MODEL_CACHE[key] = (model, source)
    return model, source


def make_prompts(model: Any, task: str, n: int, seed: int = 0, split: str = "val"):
    """``n`` synthetic prompts of ``task`` for the model's canvas (offline, deterministic)."""
    from interp.data.synthetic import SyntheticPascal
    from interp.data.tasks import build_prompts

    source = SyntheticPascal(seed=seed, size_per_split=40)
    return build_prompts(source, task, fold=0, n=n, grid=model.grid, seed=seed, split=split)


def random_means(model: Any, seed: int = 0, scale: float = 0.5) -> dict[str, Tensor]:
    """Stand-in task means ``{site: [num_slots, head, d_head]}`` for every ``attn.hook_z``.

    Timing does not depend on the values; real means would need a collection pass first.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, hp in model.hook_dict.items():
        if name.endswith("attn.hook_z"):
            attn = model.get_submodule(name.rsplit(".", 1)[0])
            shape = (model.grid.num_slots, attn.n_heads, attn.d_head)
            out[name] = scale * torch.randn(shape, generator=g)
    return out


def sample_masks(n_units: int, n: int, seed: int = 0, init_logit: float = -1.0) -> Tensor:
    """``[n, n_units]`` Bernoulli unit sets from the official initial policy (logit -1, p ~ 0.27)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.sigmoid(torch.tensor(init_logit))
    return torch.bernoulli(p.expand(n, n_units), generator=g).bool()


# --------------------------------------------------------------------------------------------
# the official "record=True" per-head projection


class OfficialRecord:
    """Hook on one block's ``attn.hook_z`` that does what the official ``Attention.forward``
    does with ``record=True``: each head's output projected through ``attn.proj`` one head at
    a time, from a zero-padded holder, into a ``[B, N, heads, C]`` tensor.

    The buffers are allocated as the official code does (on the CPU, then moved to the
    activation's device: a host-to-device copy per head on a GPU). ``sink`` (optional) gets
    ``(site, recorded)``; otherwise the result is dropped, as in the official REINFORCE loop.
    """

    def __init__(self, attn: Any, site: str, sink: Callable[[str, Tensor], None] | None = None) -> None:
        self.attn, self.site, self.sink = attn, site, sink

    def __call__(self, z: Tensor, hook: Any) -> None:
        batch, n_pos, n_heads, d_head = z.shape
        channels = n_heads * d_head
        recorded = torch.zeros(batch, n_pos, n_heads, channels).to(device=z.device, dtype=z.dtype)
        for h in range(n_heads):
            holder = torch.zeros(z.shape).to(device=z.device, dtype=z.dtype)
            holder[:, :, h, :] = z[:, :, h, :]
            recorded[:, :, h] = self.attn.proj(holder.reshape(batch, n_pos, channels))
        if self.sink is not None:
            self.sink(self.site, recorded)
        return None


def official_record_hooks(model: Any, sink: Callable[[str, Tensor], None] | None = None) -> list:
    """``[(site, OfficialRecord)]`` for every block of both stacks (what ``record=True`` costs)."""
    hooks = []
    for name in model.hook_dict:
        if name.endswith("attn.hook_z"):
            attn = model.get_submodule(name.rsplit(".", 1)[0])
            hooks.append((name, OfficialRecord(attn, name, sink)))
    return hooks


def explicit_attention(model: Any, enabled: bool) -> None:
    """Force the explicit ``softmax(q k^T) v`` path (as the official code) instead of SDPA."""
    for module in model.modules():
        if hasattr(module, "always_compute_pattern"):
            module.always_compute_pattern = enabled


# --------------------------------------------------------------------------------------------
# timing


_PROBE: dict[str, float] = {}


def probe(device: str) -> float:
    """Float32 matmul FLOP/s of ``device``, measured once per process (:func:`bench.official.matmul_probe`)."""
    if str(device) not in _PROBE:
        from bench.official import matmul_probe

        _PROBE[str(device)] = matmul_probe(device)
    return _PROBE[str(device)]


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measure(
    fn: Callable[[], Any],
    device: str,
    repeats: int = 3,
    warmup: int = 1,
    warmup_fn: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` untimed runs
    (of ``warmup_fn`` when given: a cheaper call that touches the same code paths)."""
    for _ in range(warmup):
        (warmup_fn or fn)()
    sync(device)
    runs = []
    for _ in range(max(1, repeats)):
        sync(device)
        start = time.perf_counter()
        with precision():
            fn()
        sync(device)
        runs.append(time.perf_counter() - start)
    return {"median": statistics.median(runs), "runs": runs}


def measure_interleaved(
    fns: dict[str, Callable[[], Any]], device: str, repeats: int = 5, warmup: int = 1
) -> dict[str, dict[str, Any]]:
    """Like :func:`measure` for several variants, timed in turn within each repeat, so a
    change in machine load affects them all alike (for variants whose times are close)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            runs[name].append(time.perf_counter() - start)
    return {k: {"median": statistics.median(v), "runs": v} for k, v in runs.items()}


# --------------------------------------------------------------------------------------------
# report


def environment(device: str) -> dict[str, Any]:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        env["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover (not on every OS)
        pass
    if str(device).startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def memory(device: str) -> dict[str, float]:
    """Peak resident memory of this process so far (MiB; ``ru_maxrss``, a high-water mark over
    everything the process ran) and, on CUDA, the peak allocated device memory."""
    import resource

    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if str(device).startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return out


def report(
    bench: str,
    args: argparse.Namespace,
    model_source: str,
    sizes: dict[str, Any],
    timings: dict[str, dict[str, Any]],
    fast: str,
    slow: str,
    extra: dict[str, Any] | None = None,
    per: str | None = None,
) -> dict[str, Any]:
    """The benchmark's JSON object. ``ratio`` = slow / fast seconds (or per-``per`` seconds)."""
    seconds = {k: v["median"] for k, v in timings.items()}
    result: dict[str, Any] = {
        "bench": bench,
        "model": args.model,
        "model_source": model_source,
        "device": str(args.device),
        "quick": bool(args.quick),
        **environment(args.device),
        "sizes": sizes,
        "repeats": {k: len(v["runs"]) for k, v in timings.items()},
        "seconds": seconds,
        "fast": fast,
        "slow": slow,
        "ratio": seconds[slow] / seconds[fast] if seconds[fast] > 0 else float("inf"),
        "autocast": getattr(args, "autocast", "none"),
        **memory(args.device),
    }
    if per is not None:
        result["per"] = per
    if extra:
        result.update(extra)
    return result


def emit(result: dict[str, Any], out: str | None) -> dict[str, Any]:
    line = json.dumps(result, sort_keys=False)
    print(line, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def script_main(run: Callable[[Sequence[str] | None], dict[str, Any]]) -> None:
    """Entry point: ``run(sys.argv[1:])``; the result is already printed by ``run``."""
    run(sys.argv[1:])
