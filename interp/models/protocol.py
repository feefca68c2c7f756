"""What the pipeline needs from a visual-prompting model: the :class:`PromptModel` protocol.

Everything above ``interp/models`` (statistics, unit spaces, patching, search, scoring,
evaluation, figures) uses a model only through these members, so a second model is one class
that provides them; :class:`~interp.models.MAEVQGAN` is the first. The members:

=========================  ===================================================================
``grid``                   the :class:`~interp.canvas.CanvasGrid` of its canvases (patches, slots)
``stacks``                 ``{"encoder": StackInfo(layers, heads, d_head), "decoder": ...}``, in
                           forward order; each block has the hook points ``{stack}.blocks.{layer}.hook_resid_pre``
                           (its input ``[batch, pos, d]``) and ``.attn.hook_z`` (``[batch, pos, heads, d_head]``),
                           positions of the layout's sequence of that stack (:mod:`interp.models.vit`)
``layout(l)``              a layout given by name (``"one_shot"``) resolved for ``grid``, checked
``device``, ``dtype``      where and in which float type it runs
``model(canvas, layout)``  code logits ``[batch, len(layout.decoder_patches), vocab]``
``residual_stream``        the clean forward one block at a time: ``(stack, layer, block input)``
``forward_from``           finish a forward from one block's input (prefix reuse)
``config_hash()``          a short hash of the architecture (recorded with statistics)
``fingerprint()``          ``{"config": config_hash(), "weights": hash of the weights}``
``has_pixels``             whether it can encode canvases to codes and decode codes to pixels
``target_codes(canvas)``   the codes of canvases ``[batch, num_patches]`` (the token reward's target)
``decode_codes(codes, grid=(h, w))``  code grid -> pixels in [0, 1] (cacheable, see ``DecodeCache``)
``predict_pixels(...)``    the official pasted integer image of predicted codes (the pixel path)
``hooks``, ``run_with_cache``, ``hook_dict``  hook points (:class:`~interp.hooks.HookedModule`)
=========================  ===================================================================

Optional (not checked by ``isinstance``): ``predict_soft(probs, layout)``, the differentiable
soft decode of code probabilities the ``soft`` reward needs (:mod:`interp.scoring`).

The protocol is ``runtime_checkable``: ``isinstance(model, PromptModel)`` checks that every
member is present (not their signatures). ``tests/models/test_protocol.py`` builds a second,
different model and runs the pipeline on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager, Iterator, Mapping, Protocol, runtime_checkable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from interp.canvas import CanvasGrid, PromptLayout
    from interp.hooks import ActivationCache, FwdHooks
    from interp.models.pixels import Decode, Decoder


@dataclass(frozen=True)
class StackInfo:
    """One transformer stack of a model: its blocks, their attention heads and head width."""

    layers: int
    heads: int
    d_head: int


@runtime_checkable
class PromptModel(Protocol):
    """A hooked visual-prompting model (see the module docstring for each member)."""

    grid: CanvasGrid
    hook_dict: Mapping[str, Any]

    @property
    def stacks(self) -> Mapping[str, StackInfo]: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def has_pixels(self) -> bool: ...

    def layout(self, layout: PromptLayout | str) -> PromptLayout: ...

    def __call__(self, canvas: Tensor, layout: PromptLayout | str = ...) -> Tensor: ...

    def residual_stream(self, canvas: Tensor, layout: PromptLayout | str) -> Iterator[tuple[str, int, Tensor]]: ...

    def forward_from(self, resid: Tensor, layout: PromptLayout | str, stack: str, layer: int) -> Tensor: ...

    def config_hash(self) -> str: ...

    def fingerprint(self) -> dict[str, str]: ...

    def target_codes(self, canvases: Tensor) -> Tensor: ...

    def decode_codes(self, codes: Tensor, grid: tuple[int, int] | None = None) -> Tensor: ...

    def predict_pixels(self, canvases: Tensor, codes: Tensor, layout: PromptLayout, decode: Decode = "official",
                       decoder: Decoder | None = None) -> Tensor: ...

    def hooks(self, fwd_hooks: FwdHooks = ()) -> ContextManager[Any]: ...

    def run_with_cache(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ActivationCache]: ...


__all__ = ["PromptModel", "StackInfo"]
