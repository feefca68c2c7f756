"""A model named on the command line or in a config: ``tiny`` | ``weights.safetensors`` |
``official:<mae.pth>[,<vqgan.ckpt>]``, parsed once into a :class:`ModelSpec`.

The CLI parses (and checks the files of) a spec while reading its options, before any model
loads; the pipeline loads the same object. ``str(spec)`` is the spec as written, which is what
run manifests record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from interp.errors import InputError

SPEC_HELP = "tiny | weights.safetensors | official:<mae.pth>[,<vqgan.ckpt>]"


class ModelSpecError(InputError):
    """A model spec that names no model (unknown form, or files that are not there)."""


@dataclass(frozen=True)
class ModelSpec:
    """``kind``: ``"bundled"`` (a name of :data:`~interp.models.checkpoint.PRETRAINED`), ``"file"``
    (a ``.safetensors`` written by ``save_model``) or ``"official"`` (the official MAE checkpoint
    and optionally the VQGAN's); ``paths``: the name or files."""

    kind: Literal["bundled", "file", "official"]
    paths: tuple[str, ...]

    @classmethod
    def parse(cls, text: str | ModelSpec) -> ModelSpec:
        """The spec of ``text`` (a ModelSpec is returned as it is); the form only, no file checked."""
        if isinstance(text, ModelSpec):
            return text
        from interp.models.checkpoint import PRETRAINED

        if text in PRETRAINED:
            return cls("bundled", (text,))
        if text.startswith("official:"):
            paths = tuple(text.split(":", 1)[1].split(","))
            if not all(paths) or len(paths) > 2:
                raise ModelSpecError(f"model spec {text!r} names no checkpoint files", fix=f"use {SPEC_HELP}")
            return cls("official", paths)
        if not text:
            raise ModelSpecError("empty model spec", fix=f"use {SPEC_HELP}")
        return cls("file", (text,))

    def check(self) -> ModelSpec:
        """The spec itself if its files exist, else a :class:`ModelSpecError` naming the missing ones."""
        if self.kind == "bundled":
            return self
        missing = [f for f in self.paths if not Path(f).expanduser().is_file()]
        if missing:
            from interp.models.checkpoint import PRETRAINED

            raise ModelSpecError(f"no model file {', '.join(missing)}",
                                 fix=f"use {', '.join(PRETRAINED)}, a .safetensors file from save_model, or "
                                     "official:<checkpoint-1000.pth>[,<last.ckpt>]")
        return self

    def load(self, device: str = "cpu"):
        """The model (:class:`~interp.models.MAEVQGAN`) on ``device``, in eval mode."""
        from interp.models.checkpoint import load_model, load_official

        if self.kind == "official":
            return load_official(self.paths[0], self.paths[1] if len(self.paths) > 1 else None).to(device)
        return load_model(self.paths[0], device)

    def __str__(self) -> str:
        return f"official:{','.join(self.paths)}" if self.kind == "official" else self.paths[0]
