"""A data source named on the command line or in a config: ``synthetic[:seed]`` |
``pascal:<VOC2012 dir>[,<splits dir>]``, parsed once into a :class:`DataSpec`.

The CLI parses (and checks) a spec while reading its options; the pipeline builds the source
from the same object. ``str(spec)`` is the canonical spec (``synthetic:0`` for ``synthetic``):
it is recorded with every output, so the seed is always part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from interp.errors import InputError

SPEC_HELP = "synthetic[:seed] | pascal:<VOC2012 dir>[,<splits dir>]"


class DataSpecError(InputError):
    """A data spec that names no source (unknown kind, a bad seed, missing directories)."""


@dataclass(frozen=True)
class DataSpec:
    """``kind``: ``"synthetic"`` (with ``seed``) or ``"pascal"`` (``root`` and optional ``splits``)."""

    kind: Literal["synthetic", "pascal"]
    seed: int = 0
    root: str = ""
    splits: str = ""

    @classmethod
    def parse(cls, text: str | DataSpec) -> DataSpec:
        """The spec of ``text`` (a DataSpec is returned as it is); directories are not checked."""
        if isinstance(text, DataSpec):
            return text
        kind, _, rest = text.partition(":")
        if kind == "synthetic":
            if rest and not rest.lstrip("-").isdigit():
                raise DataSpecError(f"the synthetic seed must be an integer, got {rest!r}", fix="e.g. synthetic:1234")
            return cls("synthetic", seed=int(rest) if rest else 0)
        if kind == "pascal":
            root, _, splits = rest.partition(",")
            if not root:
                raise DataSpecError(f"data spec {text!r} names no VOC2012 directory", fix=f"use {SPEC_HELP}")
            return cls("pascal", root=root, splits=splits)
        raise DataSpecError(f"unknown data source {text!r}", fix=f"use {SPEC_HELP}")

    def check(self) -> DataSpec:
        """The spec itself if its directories exist, else a :class:`DataSpecError` naming them."""
        if self.kind == "pascal":
            missing = [d for d in (self.root, self.splits) if d and not Path(d).expanduser().is_dir()]
            if missing:
                raise DataSpecError(f"no directory {', '.join(missing)}", fix="use pascal:<VOC2012 dir>[,<splits dir>]")
        return self

    def load(self):
        """The :class:`~interp.data.source.PromptSource`, its ``spec`` set to ``str(self)``."""
        if self.kind == "synthetic":
            from interp.data.synthetic import SyntheticPascal

            source = SyntheticPascal(seed=self.seed)
        else:
            from interp.data.pascal import Pascal5i

            source = Pascal5i(self.root, splits_dir=self.splits or None)
        source.spec = str(self)  # recorded with every output (the seed included)
        return source

    def __str__(self) -> str:
        if self.kind == "synthetic":
            return f"synthetic:{self.seed}"
        return f"pascal:{self.root}" + (f",{self.splits}" if self.splits else "")
