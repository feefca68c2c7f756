"""MAE-VQGAN with hook points: the visual-prompting model of Bar et al. (2022).

Read top-down, as in the official ``models_mae.py``:

* :class:`MAEEncoder` embeds the canvas into patches, keeps the *visible* ones of a
  :class:`~interp.canvas.PromptLayout`, prepends CLS and runs the ViT blocks.
* :class:`MAEDecoder` projects the encoder output, places it at its slots among mask tokens
  for the hidden patches, adds positions and runs its blocks; ``pred`` gives logits over the
  VQGAN codebook for every decoder patch.
* :class:`MAEVQGAN` ties them together with the optional :class:`~interp.models.vqgan.VQGAN`
  that turns predicted codes back into pixels.

The official model hard-codes the one-shot sequence (CLS + 147 visible, then all 197 slots in
the decoder). Here a layout says which slots each stack holds, so the zero-shot prompt of
"Finding Visual Task Vectors" (encoder: CLS + query; decoder: CLS + bottom half) is the same
code with another layout. Hook names (``encoder.blocks.3.attn.hook_z``) come from the module
tree; see :mod:`interp.models.vit` for shapes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from interp.canvas import CanvasGrid, PromptLayout, get_layout
from interp.errors import InputError
from interp.hooks import HookedModule, HookPoint
from interp.models.pixels import Decode, Decoder, predict_pixels, soft_prediction
from interp.models.protocol import StackInfo
from interp.models.vit import Block
from interp.models.vqgan import VQGAN, VQGANConfig


@dataclass(frozen=True)
class MAEConfig:
    """Shapes of the MAE part; field names follow the official ``MaskedAutoencoderViT``."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    vocab_size: int = 1024

    @classmethod
    def large(cls) -> MAEConfig:
        """``mae_vit_large_patch16``, the official MAE-VQGAN."""
        return cls()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MAEConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown MAE config keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def grid(self) -> CanvasGrid:
        return CanvasGrid(self.img_size, self.patch_size)


@dataclass(frozen=True)
class ModelConfig:
    """A whole MAE-VQGAN: the MAE and (optionally) its VQGAN tokenizer."""

    mae: MAEConfig
    vqgan: VQGANConfig | None = None

    @classmethod
    def large(cls) -> ModelConfig:
        return cls(MAEConfig.large(), VQGANConfig.large())

    def to_dict(self) -> dict[str, Any]:
        return {"mae": self.mae.to_dict(), "vqgan": self.vqgan.to_taming() if self.vqgan else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        vqgan = d.get("vqgan")
        return cls(MAEConfig.from_dict(d["mae"]), VQGANConfig.from_taming(vqgan) if vqgan else None)

    def fingerprint(self) -> str:
        """Short stable hash of the config, stored beside activation statistics."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class PatchEmbed(nn.Module):
    """Non-overlapping patches through one strided convolution: ``[B,3,H,W] -> [B,N,D]``."""

    def __init__(self, patch_size: int, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, canvas: Tensor) -> Tensor:
        return self.proj(canvas).flatten(2).transpose(1, 2)


class MAEEncoder(nn.Module):
    """ViT encoder over CLS + the visible patches of a layout."""

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        num_slots = cfg.grid.num_slots
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_slots, cfg.embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.norm_eps) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.hook_embed = HookPoint()  # [batch, enc_pos, d_model]: embeddings + positions, CLS first

    def embed(self, canvas: Tensor, layout: PromptLayout) -> Tensor:
        """Patch + position embeddings of the visible patches, CLS prepended."""
        patches = self.patch_embed(canvas) + self.pos_embed[:, 1:]
        visible = patches[:, list(layout.encoder_patches)]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(canvas.shape[0], -1, -1)
        return self.hook_embed(torch.cat([cls, visible], dim=1))

    def forward(self, canvas: Tensor, layout: PromptLayout) -> Tensor:
        x = self.embed(canvas, layout)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class MAEDecoder(nn.Module):
    """ViT decoder over CLS + the decoder patches of a layout; predicts a code per patch."""

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        num_slots = cfg.grid.num_slots
        self.embed = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_slots, cfg.decoder_embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(cfg.decoder_embed_dim, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.norm_eps)
            for _ in range(cfg.decoder_depth)
        )
        self.norm = nn.LayerNorm(cfg.decoder_embed_dim, eps=cfg.norm_eps)
        self.pred = nn.Linear(cfg.decoder_embed_dim, cfg.vocab_size)
        self.hook_embed = HookPoint()  # [batch, dec_pos, d_decoder]: tokens + positions, CLS first
        self.hook_logits = HookPoint()  # [batch, dec_patches, vocab]: CLS row dropped

    def embed_tokens(self, latent: Tensor, layout: PromptLayout) -> Tensor:
        """Encoder output at its slots, mask tokens at the hidden ones, plus positions."""
        x = self.embed(latent)
        batch, _, dim = x.shape
        visible_at = layout.positions("decoder", layout.encoder_slots[1:])
        tokens = self.mask_token.to(x.dtype).expand(batch, len(layout.decoder_patches), dim).clone()  # autocast: x may be bf16
        tokens[:, [p - 1 for p in visible_at]] = x[:, 1:]
        tokens = torch.cat([x[:, :1], tokens], dim=1)
        return self.hook_embed(tokens + self.pos_embed[:, list(layout.decoder_slots)])

    def forward(self, latent: Tensor, layout: PromptLayout) -> Tensor:
        x = self.embed_tokens(latent, layout)
        for block in self.blocks:
            x = block(x)
        return self.hook_logits(self.pred(self.norm(x))[:, 1:])


class MAEVQGAN(HookedModule):
    """The hooked visual-prompting model: ``model(canvas, layout) -> code logits``.

    ``canvas`` is ``[batch, 3, H, W]``, ImageNet-normalised; ``layout`` a
    :class:`~interp.canvas.PromptLayout` or ``"one_shot"`` / ``"zero_shot"``. The logits are
    ``[batch, len(layout.decoder_patches), vocab]``, row ``i`` for ``layout.decoder_patches[i]``.
    It implements :class:`~interp.models.protocol.PromptModel`, the only face the rest of the
    package sees.
    """

    def __init__(self, config: ModelConfig | MAEConfig) -> None:
        super().__init__()
        self.config = config if isinstance(config, ModelConfig) else ModelConfig(config)
        self.grid = self.config.mae.grid
        self.encoder = MAEEncoder(self.config.mae)
        self.decoder = MAEDecoder(self.config.mae)
        self.vqgan = VQGAN(self.config.vqgan) if self.config.vqgan is not None else None
        self.setup_hooks()

    def initialize_weights(self) -> MAEVQGAN:
        """The official MAE initialisation: fixed 2-D sin-cos positions, xavier-uniform linear
        layers and patch projection, N(0, 0.02) CLS and mask tokens, unit LayerNorms."""
        n = self.grid.patches_per_side
        with torch.no_grad():
            for stack in (self.encoder, self.decoder):
                stack.pos_embed.copy_(sincos_pos_embed(stack.pos_embed.shape[-1], n)[None])
            for module in (self.encoder, self.decoder):
                for m in module.modules():
                    if isinstance(m, nn.Linear):
                        nn.init.xavier_uniform_(m.weight)
                        nn.init.zeros_(m.bias)
                    elif isinstance(m, nn.LayerNorm):
                        nn.init.ones_(m.weight)
                        nn.init.zeros_(m.bias)
            w = self.encoder.patch_embed.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.normal_(self.encoder.cls_token, std=0.02)
            nn.init.normal_(self.decoder.mask_token, std=0.02)
        return self

    # --- the PromptModel protocol -----------------------------------------------------------

    @property
    def stacks(self) -> dict[str, StackInfo]:
        """``{"encoder": StackInfo(depth, heads, d_head), "decoder": ...}`` from the config."""
        c = self.config.mae
        return {"encoder": StackInfo(c.depth, c.num_heads, c.embed_dim // c.num_heads),
                "decoder": StackInfo(c.decoder_depth, c.decoder_num_heads, c.decoder_embed_dim // c.decoder_num_heads)}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def has_pixels(self) -> bool:
        """Whether the VQGAN is loaded (target codes and pixels need it)."""
        return self.vqgan is not None

    def layout(self, layout: PromptLayout | str) -> PromptLayout:
        """A layout by name (``"one_shot"``, ``"zero_shot"``) for this model's grid, or a given one checked."""
        return get_layout(layout, self.grid)

    def config_hash(self) -> str:
        """Short stable hash of the config (recorded with activation statistics)."""
        return self.config.fingerprint()

    def fingerprint(self) -> dict[str, str]:
        """The config hash and the hash of the weights (a retrained model differs)."""
        from interp.provenance import weights_hash

        return {"config": self.config_hash(), "weights": weights_hash(self)}

    def _tokenizer(self) -> VQGAN:
        if self.vqgan is None:
            raise RuntimeError("this model has no VQGAN (codes and pixels need it); load a model with one")
        return self.vqgan

    def target_codes(self, canvases: Tensor) -> Tensor:
        """The canvases' VQGAN codes ``[B, num_patches]``."""
        return self._tokenizer().encode_to_codes(canvases)

    def decode_codes(self, codes: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        """A code grid ``[B, h*w]`` -> VQGAN pixels in [0, 1], ``[B, 3, h*p, w*p]``."""
        return self._tokenizer().decode_codes(codes, grid=grid)

    def predict_pixels(self, canvases: Tensor, codes: Tensor, layout: PromptLayout, decode: Decode = "official",
                       decoder: Decoder | None = None) -> Tensor:
        """The official pasted integer image (int32 0..255) of predicted codes (:func:`~interp.models.pixels.predict_pixels`)."""
        return predict_pixels(self._tokenizer(), canvases, codes, layout, decode, decoder)

    def predict_soft(self, probs: Tensor, layout: PromptLayout) -> Tensor:
        """The soft decode of code probabilities ``[B, len(decoder_patches), vocab]``: float pixels in
        [0, 1], differentiable (:func:`~interp.models.pixels.soft_prediction`; the soft reward)."""
        return soft_prediction(self._tokenizer(), probs, layout)

    # --- forward -------------------------------------------------------------------------

    def forward(self, canvas: Tensor, layout: PromptLayout | str = "one_shot") -> Tensor:
        layout = get_layout(layout, self.grid)
        canvas = self.check_canvas(canvas)
        return self.decoder(self.encoder(canvas, layout), layout)

    def residual_stream(self, canvas: Tensor, layout: PromptLayout | str) -> Iterator[tuple[str, int, Tensor]]:
        """The clean forward one block at a time: ``(stack, layer, block input [batch, pos, d])``
        in forward order, every block's ``hook_resid_pre`` without keeping them all (what
        :meth:`forward_from` restarts from; a sweep holds one layer's activations at a time)."""
        layout = get_layout(layout, self.grid)
        x = self.encoder.embed(self.check_canvas(canvas), layout)
        for i, block in enumerate(self.encoder.blocks):
            yield "encoder", i, x
            x = block(x)
        x = self.decoder.embed_tokens(self.encoder.norm(x), layout)
        for i, block in enumerate(self.decoder.blocks):
            yield "decoder", i, x
            x = block(x)

    def forward_from(self, resid: Tensor, layout: PromptLayout | str, stack: str, layer: int) -> Tensor:
        """Finish a forward from ``{stack}.blocks.{layer}.hook_resid_pre``: code logits.

        ``resid`` is that block's input (e.g. from a cache of a clean run). An edit at layer
        ``layer`` or later leaves everything before it unchanged, so sweeps over many edits
        run only the layers that can differ (prefix reuse). ``layer`` is in ``[0, depth]``
        (``depth``: ``resid`` is the stack's output); any other value is an :class:`InputError`.
        """
        layout = get_layout(layout, self.grid)
        if stack not in ("encoder", "decoder"):
            raise InputError(f"forward_from(stack={stack!r})", fix="Pass stack='encoder' or 'decoder'")
        depth = len((self.encoder if stack == "encoder" else self.decoder).blocks)
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= depth:
            raise InputError(f"forward_from(layer={layer!r}): the {stack} has blocks 0..{depth - 1}",
                             fix=f"Pass a layer in [0, {depth}] (the block whose hook_resid_pre resid is; {depth}: the stack's output)")
        if stack == "encoder":
            x = resid
            for block in self.encoder.blocks[layer:]:
                x = block(x)
            return self.decoder(self.encoder.norm(x), layout)
        if stack == "decoder":
            x = resid
            for block in self.decoder.blocks[layer:]:
                x = block(x)
            return self.decoder.hook_logits(self.decoder.pred(self.decoder.norm(x))[:, 1:])
        raise ValueError(f"stack must be 'encoder' or 'decoder', got {stack!r}")

    def check_canvas(self, canvas: Tensor) -> Tensor:
        """The canvas batch in the model's float dtype; an :class:`InputError` naming what is
        wrong with it (and how to fix it) otherwise: not float, wrong shape, empty, on another
        device than the model, NaN or infinite values."""
        size = self.grid.canvas_size
        if not isinstance(canvas, Tensor):
            raise TypeError(f"canvas must be a torch.Tensor [batch, 3, {size}, {size}], got {type(canvas).__name__}")
        if not canvas.is_floating_point():
            raise InputError(
                f"canvas has dtype {canvas.dtype}; expected a float tensor normalised with ImageNet "
                "mean/std: use interp.canvas.normalize(images.float() / 255)"
            )
        if canvas.dim() != 4:
            raise InputError(
                f"canvas has shape {tuple(canvas.shape)}; expected [batch, 3, {size}, {size}] "
                "(add a batch dimension with canvas[None])"
            )
        if canvas.shape[1] != 3:
            raise InputError(f"canvas has {canvas.shape[1]} channels; expected 3 (RGB) at dim 1")
        if tuple(canvas.shape[2:]) != (size, size):
            raise InputError(
                f"canvas is {canvas.shape[2]}x{canvas.shape[3]} pixels; this model takes {size}x{size} "
                "(build it with interp.canvas.assemble_canvas for the model's grid)"
            )
        if canvas.shape[0] == 0:
            raise InputError("the canvas batch is empty (batch size 0)", fix="pass at least one canvas")
        param = next(self.parameters())
        if canvas.device != param.device:
            raise InputError(f"canvas is on {canvas.device}, the model on {param.device}",
                             fix=f"move one of them: canvas.to({str(param.device)!r}) or model.to({str(canvas.device)!r})")
        if not bool(torch.isfinite(canvas).all()):
            bad = int((~torch.isfinite(canvas)).sum())
            raise InputError(f"canvas holds {bad} NaN or infinite values",
                             fix="check the images and their normalisation (interp.canvas.normalize of values in [0, 1])")
        return canvas.to(param.dtype)  # fp16 / bf16 / fp64 canvases run in the model's dtype

    @torch.no_grad()
    def predict_canvas(
        self, canvas: Tensor, layout: PromptLayout | str = "one_shot", logits: Tensor | None = None,
        decode: Decode = "official",
    ) -> Tensor:
        """The official pasted prediction in [0, 1] (integer pixels / 255), ``[B, 3, H, W]``.

        The predicted codes are laid out and VQGAN-decoded as the official
        ``decode_raw_predicion`` does (zero-shot: the bottom-half codes repeated into the top
        half, the full grid decoded), quantised to integers and pasted into the integer canvas
        on the masked patches (:mod:`interp.models.pixels`). ``decode="band"`` decodes only the
        rows the decoder covers (faster, not the official image). Pass ``logits`` to reuse a
        forward you already ran.
        """
        if self.vqgan is None:
            raise RuntimeError("this model has no VQGAN; build it with a ModelConfig that has one")
        layout = get_layout(layout, self.grid)
        codes = (self(canvas, layout) if logits is None else logits).argmax(dim=-1)
        return predict_pixels(self.vqgan, canvas, codes, layout, decode).float() / 255.0

    def enable_all_hook_points(self, enabled: bool = True) -> None:
        """Compute ``hook_result`` and the attention pattern even when no torch hook watches.

        Needed for tools that intercept modules without PyTorch hooks (e.g. reading
        ``attn.hook_pattern`` through nnsight); costs memory and the fused attention kernel.
        """
        for module in self.modules():
            if hasattr(module, "always_compute_result"):
                module.always_compute_result = enabled
                module.always_compute_pattern = enabled


def sincos_pos_embed(dim: int, grid_size: int) -> Tensor:
    """2-D sin-cos position embeddings ``[1 + grid_size**2, dim]`` with a zero CLS row (MAE)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a dimension divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def embed(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # the official code embeds the w coordinate first, then h
    table = torch.cat([embed(cols), embed(rows)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).float()

