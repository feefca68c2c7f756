"""What made an artifact: the model (config *and* a hash of its weights), the data spec, the options.

Every resumable stage output records such a description (:func:`stage_config`) and a resume
compares it with the current one (:func:`check_resume`): a difference is a
:class:`~interp.errors.ResumeConflict` that names each differing field and offers ``--force``
(recompute) or a new run directory, so a run never mixes results of two configs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from interp.errors import ResumeConflict


def weights_hash(model: Any) -> str:
    """SHA-256 (first 16 hex digits) over a module's state dict: names, dtypes, shapes and values.

    Cached on the module until a parameter or buffer changes in place (torch's version counters).
    """
    state = model.state_dict()
    key = tuple((name, t.data_ptr(), t._version) for name, t in state.items())
    cached = getattr(model, "_interp_weights_hash", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    value = digest.hexdigest()[:16]
    object.__setattr__(model, "_interp_weights_hash", (key, value))
    return value


def model_fingerprint(model: Any) -> dict[str, str]:
    """The model config fingerprint and the hash of its weights (a retrained model differs):
    :meth:`~interp.models.PromptModel.fingerprint`."""
    return model.fingerprint()


def source_spec(source: Any) -> str:
    """The data spec a source was made from (``synthetic:2``), recorded with its seed."""
    spec = getattr(source, "spec", None)
    if spec:
        return str(spec)
    fields = {k: v for k, v in sorted(vars(source).items()) if isinstance(v, (int, float, str, bool, Path)) and not k.startswith("_")}
    return f"{getattr(source, 'name', type(source).__name__)}({', '.join(f'{k}={v}' for k, v in fields.items())})"


def normalized(value: Any) -> Any:
    """JSON round trip (tuples become lists), so recorded and current configs compare equal."""
    return json.loads(json.dumps(value, default=str))


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``"field: recorded -> current"`` for every field that differs (nested dicts flattened)."""
    out = []
    for key in sorted(set(recorded) | set(current)):
        a, b = recorded.get(key, "(absent)"), current.get(key, "(absent)")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_resume(recorded: Mapping[str, Any] | None, current: Mapping[str, Any], path: str | Path, run: str | Path) -> None:
    """Raise :class:`ResumeConflict` unless ``path`` was made with the ``current`` config."""
    current = normalized(current)
    if recorded is None:
        raise ResumeConflict(f"{path} records no config (made by an older interp), so resuming could mix configs",
                             fix=f"Pass --force (force=True) to recompute it, or use a new run directory instead of {run}")
    if not isinstance(recorded, Mapping):
        raise ResumeConflict(f"{path} records a config that is a {type(recorded).__name__}, not an object (damaged or edited)",
                             fix=f"Pass --force (force=True) to recompute it, or use a new run directory instead of {run}")
    diff = differences(normalized(recorded), current)
    if diff:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise ResumeConflict(f"{path} was made with another config ({shown})",
                             fix=f"Pass --force (force=True) to recompute it with this config, or use a new run directory instead of {run}")
