"""A plain functional MAE forward: the hooked model's weights, none of its hook points.

Written like the official ``forward_encoder`` / ``forward_decoder`` (timm blocks): patch
embedding, the visible patches gathered, CLS prepended, pre-norm blocks with fused qkv and
``F.scaled_dot_product_attention``, the final norm; then the decoder embedding, mask tokens
at the hidden slots, positions, blocks, norm and the code prediction without the CLS row.
No ``HookPoint`` is called, no einops, no Python-level checks per call: the baseline that
``hooks_overhead`` compares the hooked model against.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.canvas import PromptLayout, get_layout


def _attention(attn: Any, x: Tensor) -> Tensor:
    batch, n_pos, channels = x.shape
    qkv = F.linear(x, attn.qkv.weight, attn.qkv.bias)
    qkv = qkv.reshape(batch, n_pos, 3, attn.n_heads, channels // attn.n_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # [batch, head, pos, d_head]
    z = F.scaled_dot_product_attention(q, k, v)
    return F.linear(z.transpose(1, 2).reshape(batch, n_pos, channels), attn.proj.weight, attn.proj.bias)


def _block(block: Any, x: Tensor) -> Tensor:
    n1, n2, mlp = block.norm1, block.norm2, block.mlp
    x = x + _attention(block.attn, F.layer_norm(x, n1.normalized_shape, n1.weight, n1.bias, n1.eps))
    h = F.layer_norm(x, n2.normalized_shape, n2.weight, n2.bias, n2.eps)
    return x + F.linear(F.gelu(F.linear(h, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)


def _norm(norm: Any, x: Tensor) -> Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class PlainForward:
    """``PlainForward(model, layout)(canvas) -> logits``, equal to ``model(canvas, layout)``."""

    def __init__(self, model: Any, layout: PromptLayout | str = "one_shot") -> None:
        self.model = model
        self.layout = layout = get_layout(layout, model.grid)
        device = next(model.parameters()).device
        self.patch = model.grid.patch_size
        self.visible = torch.tensor(layout.encoder_patches, dtype=torch.long, device=device)
        visible_at = layout.positions("decoder", layout.encoder_slots[1:])
        self.visible_at = torch.tensor([p - 1 for p in visible_at], dtype=torch.long, device=device)
        self.n_dec_patches = len(layout.decoder_patches)
        self.dec_slots = torch.tensor(layout.decoder_slots, dtype=torch.long, device=device)

    @torch.no_grad()
    def __call__(self, canvas: Tensor) -> Tensor:
        enc, dec = self.model.encoder, self.model.decoder
        proj = enc.patch_embed.proj
        x = F.conv2d(canvas, proj.weight, proj.bias, stride=self.patch).flatten(2).transpose(1, 2)
        x = (x + enc.pos_embed[:, 1:]).index_select(1, self.visible)
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(canvas.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in enc.blocks:
            x = _block(block, x)
        x = _norm(enc.norm, x)

        x = F.linear(x, dec.embed.weight, dec.embed.bias)
        batch, _, dim = x.shape
        tokens = dec.mask_token.expand(batch, self.n_dec_patches, dim).clone()
        tokens[:, self.visible_at] = x[:, 1:]
        x = torch.cat([x[:, :1], tokens], dim=1) + dec.pos_embed.index_select(1, self.dec_slots)
        for block in dec.blocks:
            x = _block(block, x)
        return F.linear(_norm(dec.norm, x), dec.pred.weight, dec.pred.bias)[:, 1:]


def check_matches(model: Any, canvas: Tensor, layout: PromptLayout | str = "one_shot", tol: float = 1e-5) -> float:
    """Max abs difference of the plain and hooked logits; raises AssertionError above ``tol``."""
    plain = PlainForward(model, layout)
    with torch.no_grad():
        diff = float((plain(canvas) - model(canvas, layout)).abs().max())
    if not diff <= tol:
        raise AssertionError(f"plain forward differs from the hooked model by {diff:.3g} > {tol:g}")
    return diff
