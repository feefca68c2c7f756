"""Loading weights: the official MAE-VQGAN / VQGAN checkpoints, and our own safetensors files.

Official files are pickles (``checkpoint-1000.pth`` with key ``model``; the taming
``last.ckpt`` with key ``state_dict``). They are read with ``torch.load(weights_only=True)``,
which never runs code from the file. Training scripts also pickle metadata next to the
weights (an ``argparse.Namespace`` of arguments, Lightning callback states); those classes,
and only those on a short list, are replaced by an inert stand-in so the weights can be read.
Anything else that would need pickle code execution is refused with a
:class:`CheckpointError` that names it and says how to convert the file.

Keys are mapped strictly: every official key must land on exactly one of ours and every one
of ours must be filled, or the error lists the missing and unexpected keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.errors import CheckpointError
from interp.io import atomic_write
from interp.models.mae_vqgan import MAEVQGAN, ModelConfig

# Classes that training scripts pickle beside the weights and that we may ignore safely.
_METADATA_GLOBALS = re.compile(
    r"^(argparse\.Namespace|pathlib\.\w*Path|numpy\.(core\.multiarray\.scalar|dtype|dtypes\.\w+)"
    r"|numpy\._core\.multiarray\.scalar|(pytorch_lightning|lightning)\..*|omegaconf\..*"
    r"|collections\.(OrderedDict|defaultdict)|builtins\.(set|frozenset|slice))$"
)


class _Inert:
    """Stand-in for pickled metadata objects: swallows its arguments, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def read_torch_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` with known metadata classes made inert."""
    path = _existing_file(path)
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as error:  # not a zip-format torch file
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({error}); expected a file written by torch.save"
        ) from None
    unsafe = [name for name in found if not _METADATA_GLOBALS.match(name)]
    if unsafe:
        raise CheckpointError(
            f"{path} needs pickle code execution to load (it pickles {unsafe}); refusing. If you trust "
            "the file, convert its weights once on a trusted machine (unpickle it with weights_only=False, "
            "then safetensors.torch.save_file(checkpoint['model'], 'weights.safetensors')) and load the "
            ".safetensors file instead."
        )
    stand_ins = [(_Inert, name) for name in found]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} could not be read with weights_only=True: {error}") from None


def read_resume_state(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A resumable state (search or training checkpoint) written by ``torch.save``, read with
    ``weights_only=True``; a damaged one is a :class:`CheckpointError` whose fix is starting over."""
    fix = f"delete {path} to start over (or rerun with --force)"
    try:
        saved = read_torch_checkpoint(path)
    except CheckpointError as error:
        raise CheckpointError(error.problem, fix=fix) from None
    missing = [k for k in required if not isinstance(saved, Mapping) or k not in saved]
    if missing:
        raise CheckpointError(f"{path} is not a resumable checkpoint of this kind (it lacks {missing})", fix=fix)
    if not isinstance(saved, Mapping):
        raise CheckpointError(f"{path} holds a {type(saved).__name__}, not a resumable state", fix=fix)
    problem = _resume_field_problem(saved)
    if problem:
        raise CheckpointError(f"{path} is damaged or edited: {problem}", fix=fix)
    return dict(saved)


def _resume_field_problem(saved: Mapping[str, Any]) -> str | None:
    """What is wrong with the well-known fields of a resumable state (None when nothing is).

    ``step`` a count, ``log`` a list, ``optimizer`` a ``state_dict`` (``state`` and
    ``param_groups``), ``provenance`` an object, ``best_score`` a number, every tensor finite.
    """
    import math

    step = saved.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step is {step!r}, not a count"
    if "log" in saved and not isinstance(saved["log"], list):
        return f"log is a {type(saved['log']).__name__}, not a list"
    optimizer = saved.get("optimizer", {"state": {}, "param_groups": []})
    if not isinstance(optimizer, Mapping) or not {"state", "param_groups"} <= set(optimizer) or \
            not isinstance(optimizer["param_groups"], list):
        return "optimizer is not an optimizer state_dict"
    if saved.get("provenance") is not None and not isinstance(saved["provenance"], Mapping):
        return f"provenance is a {type(saved['provenance']).__name__}, not an object"
    score = saved.get("best_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        return f"best_score is {score!r}, not a number"
    if isinstance(score, float) and math.isinf(score) and score > 0:
        return "best_score is +inf"
    for key, value in saved.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"{key} holds NaN or infinite values"
    logits, best = saved.get("logits"), saved.get("best_logits")
    if isinstance(logits, Tensor) and isinstance(best, Tensor) and logits.shape != best.shape:
        return f"logits {tuple(logits.shape)} and best_logits {tuple(best.shape)} differ in shape"
    return None


def read_state_dict(path: str | Path, key: str | None) -> dict[str, Tensor]:
    """Tensors of a checkpoint: a ``.safetensors`` file, or ``ckpt[key]`` of a torch file."""
    path = _existing_file(path)
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    ckpt = read_torch_checkpoint(path)
    if key is not None and isinstance(ckpt, Mapping) and key in ckpt:
        ckpt = ckpt[key]
    elif key is not None and not _is_state_dict(ckpt):
        keys = list(ckpt)[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{path} has no {key!r} entry (top level: {keys}); is it the right file?")
    if not _is_state_dict(ckpt):
        raise CheckpointError(
            f"{path}: {key or 'the file'} holds a {type(ckpt).__name__}, not a state dict of tensors; "
            "save model.state_dict() instead of the model object"
        )
    return dict(ckpt)


def official_mae_key(key: str) -> str:
    """Our name for an official ``MaskedAutoencoderViT`` key (``blocks.3.attn.qkv.weight`` ->
    ``encoder.blocks.3.attn.qkv.weight``)."""
    for official, ours in _MAE_PREFIXES:
        if key == official or key.startswith(official + "."):
            return ours + key[len(official) :]
    return "encoder." + key  # unknown keys stay recognisable in error messages


_MAE_PREFIXES = (
    ("decoder_blocks", "decoder.blocks"),
    ("decoder_embed", "decoder.embed"),
    ("decoder_pos_embed", "decoder.pos_embed"),
    ("decoder_norm", "decoder.norm"),
    ("decoder_pred", "decoder.pred"),
    ("mask_token", "decoder.mask_token"),
    ("blocks", "encoder.blocks"),
    ("patch_embed", "encoder.patch_embed"),
    ("cls_token", "encoder.cls_token"),
    ("pos_embed", "encoder.pos_embed"),
    ("norm", "encoder.norm"),
)


def to_official_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our MAE state dict under the official key names (VQGAN keys dropped)."""
    inverse = {ours: official for official, ours in _MAE_PREFIXES}
    out = {}
    for key, value in state_dict.items():
        if key.startswith("vqgan."):
            continue
        for ours, official in inverse.items():
            if key == ours or key.startswith(ours + "."):
                out[official + key[len(ours) :]] = value
                break
    return out


def load_official(
    mae_checkpoint: str | Path,
    vqgan_checkpoint: str | Path | None = None,
    config: ModelConfig | None = None,
    dtype: torch.dtype = torch.float32,
) -> MAEVQGAN:
    """Build MAE-VQGAN from the official checkpoints (``large`` config unless given).

    Weights of any dtype (fp16, bf16, fp64, integer) are cast to ``dtype`` (float32 unless
    another is asked for), so the model runs whatever precision the file was saved in.

    ``mae_checkpoint``: ``checkpoint-1000.pth`` (weights under ``model``) or a ``.safetensors``
    state dict with official keys. ``vqgan_checkpoint``: taming ``last.ckpt`` (``state_dict``;
    ``loss.*`` keys ignored). When it is omitted, the MAE checkpoint's own ``vae.*`` weights are
    used if it has them.
    """
    config = config or ModelConfig.large()
    mae_sd = read_state_dict(mae_checkpoint, "model")
    vae_sd = {k[4:]: v for k, v in mae_sd.items() if k.startswith("vae.")}
    state = {official_mae_key(k): v for k, v in mae_sd.items() if not k.startswith("vae.")}
    if config.vqgan is not None:
        if vqgan_checkpoint is not None:
            vae_sd = read_state_dict(vqgan_checkpoint, "state_dict")
        elif not vae_sd:
            raise CheckpointError(
                f"{mae_checkpoint} holds no VQGAN (vae.*) weights; pass vqgan_checkpoint='last.ckpt' "
                "(the taming vqgan_imagenet_f16_1024 checkpoint)"
            )
        state.update({f"vqgan.{k}": v for k, v in vae_sd.items() if not k.startswith("loss.")})
    model = _build(config)
    if config.vqgan is not None:  # a VQGAN mismatch names the file the VQGAN weights came from
        expected = {k: v for k, v in model.state_dict().items() if k.startswith("vqgan.")}
        check_fit(expected, {k: v for k, v in state.items() if k.startswith("vqgan.")},
                  source=f"{vqgan_checkpoint} (VQGAN)" if vqgan_checkpoint is not None else f"{mae_checkpoint} (its vae.* VQGAN)")
    load_strict(model, state, source=str(mae_checkpoint), dtype=dtype)
    return model.eval()


def load_strict(model: torch.nn.Module, state: Mapping[str, Tensor], source: str, dtype: torch.dtype | None = None) -> None:
    """``load_state_dict`` that first checks keys and shapes and names every mismatch.

    Floating entries of the model get ``dtype`` (default: the model's own), others the model's
    dtype, so a file saved in fp16 / bf16 / fp64 or with integer weights loads into a model
    that runs (also into a model on the meta device, which takes the tensors as they are)."""
    expected = model.state_dict()
    check_fit(expected, state, source)
    state = {k: v.to(dtype if dtype is not None and expected[k].is_floating_point() else expected[k].dtype)
             for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=_is_meta(model))


def check_fit(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], source: str) -> None:
    """A :class:`CheckpointError` naming every missing, unexpected and reshaped key."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"weights from {source} do not fit the model "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong_shape)} of another shape); "
            f"missing: {missing}; unexpected: {unexpected}; shape mismatches: {wrong_shape}. "
            "Check that the config matches the checkpoint (e.g. ModelConfig.large() for the official one)."
        )
    not_finite = sorted(k for k, v in state.items() if v.is_floating_point() and v.device.type != "meta" and not bool(torch.isfinite(v).all()))
    if not_finite:
        raise CheckpointError(
            f"weights from {source} hold NaN or infinite values in {len(not_finite)} tensors ({', '.join(not_finite[:4])}"
            f"{' ...' if len(not_finite) > 4 else ''}): a diverged training run or a damaged file",
            fix="Use the last good checkpoint, or retrain (lower --lr)")


def save_model(model: MAEVQGAN, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write weights and config into one safetensors file (config in its metadata)."""
    meta = {"config": json.dumps(model.config.to_dict()), "format": "interp.MAEVQGAN/1"}
    meta.update(metadata or {})
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


#: models shipped inside the package, by name
PRETRAINED = {"tiny": "tiny.safetensors"}


def pretrained_path(name: str) -> Path:
    """Where a bundled model's weights live inside the installed package."""
    from importlib.resources import files

    if name not in PRETRAINED:
        raise ValueError(f"no bundled model {name!r}; bundled: {sorted(PRETRAINED)}. For the official "
                         "MAE-VQGAN use load_official('checkpoint-1000.pth', 'last.ckpt')")
    path = Path(str(files("interp") / "assets" / PRETRAINED[name]))
    if not path.is_file():
        raise FileNotFoundError(f"bundled weights {path} are missing; reinstall interp or train them with "
                                "`interp train-tiny` and copy tiny.safetensors there")
    return path


def load_model(path: str | Path, device: torch.device | str = "cpu") -> MAEVQGAN:
    """Load a bundled model by name (``"tiny"``) or a file written by :func:`save_model`."""
    path = pretrained_path(path) if str(path) in PRETRAINED else _existing_file(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except SafetensorError as error:
        raise CheckpointError(f"{path} is not a valid safetensors file: {error}") from None
    if "config" not in meta:
        raise CheckpointError(
            f"{path} carries no model config in its metadata; for official weights use load_official"
        )
    try:
        model = MAEVQGAN(ModelConfig.from_dict(json.loads(meta["config"])))
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path} carries a model config that cannot be used ({type(error).__name__}: {error})",
                              fix="rewrite the file with interp.models.save_model") from None
    load_strict(model, _load_safetensors(path), source=str(path))
    return model.to(device).eval()


def _build(config: ModelConfig) -> MAEVQGAN:
    with torch.device("meta"):
        return MAEVQGAN(config)


def _is_meta(model: torch.nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a valid safetensors file: {error}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def _existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint file {path} not found; give the path to the downloaded file "
            "(the official MAE-VQGAN weights are not bundled: see the README)"
        )
    return path
