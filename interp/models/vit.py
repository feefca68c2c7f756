"""A pre-norm ViT block (timm / MAE layout) with TransformerLens hook points.

Parameter names match the official MAE (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``), so official weights load by name. Shapes at each hook point:

=====================  ==================================  ==================================
hook                   shape                               meaning
=====================  ==================================  ==================================
hook_resid_pre         [batch, pos, d_model]               block input
attn.hook_q/k/v        [batch, pos, head, d_head]          queries, keys, values
attn.hook_attn_scores  [batch, head, q_pos, k_pos]         scaled dot products (pre-softmax)
attn.hook_pattern      [batch, head, q_pos, k_pos]         softmax of the scores
attn.hook_z            [batch, pos, head, d_head]          each head's ``pattern @ v``
attn.hook_result       [batch, pos, head, d_model]         each head through W_O, plus the bias
hook_attn_out          [batch, pos, d_model]               attention output (sum over heads)
hook_resid_mid         [batch, pos, d_model]               after the attention residual
mlp.hook_pre/hook_post [batch, pos, d_mlp]                 before / after GELU
hook_mlp_out           [batch, pos, d_model]               MLP output
hook_resid_post        [batch, pos, d_model]               block output
=====================  ==================================  ==================================

Two hook points cost extra work and are computed only when something watches them:
``hook_result`` (``[.., head, d_model]`` is 16x ``hook_z``) and the attention scores /
pattern (which force explicit attention instead of ``scaled_dot_product_attention``).
Set ``always_compute_result`` / ``always_compute_pattern`` when a tool that does not use
PyTorch hooks (nnsight) should see them.

``hook_result`` follows the official "separated heads" of Finding Visual Task Vectors: head
``h``'s slice of ``z`` projected through its columns of W_O, *plus the full W_O bias*. The
block output is then ``sum_h result_h - (n_heads - 1) * bias``, identical to the plain path,
so an edit to one head's result reaches the output unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import Tensor, nn

from interp.hooks import HookPoint


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection, as in timm."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.scale = self.d_head**-0.5
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.always_compute_result = False
        self.always_compute_pattern = False

        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, q_pos, k_pos]
        self.hook_pattern = HookPoint()  # [batch, head, q_pos, k_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.hook_result = HookPoint()  # [batch, pos, head, d_model]

    def forward(self, x: Tensor) -> Tensor:
        qkv = rearrange(self.qkv(x), "b p (three h d) -> three b p h d", three=3, h=self.n_heads)
        q = self.hook_q(qkv[0])
        k = self.hook_k(qkv[1])
        v = self.hook_v(qkv[2])

        if self.always_compute_pattern or self.hook_attn_scores.has_hooks or self.hook_pattern.has_hooks:
            scores = einsum(q * self.scale, k, "b q h d, b k h d -> b h q k")
            scores = self.hook_attn_scores(scores)
            pattern = self.hook_pattern(scores.softmax(dim=-1))
            z = einsum(pattern, v, "b h q k, b k h d -> b q h d")
        else:
            z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            z = z.transpose(1, 2)
        z = self.hook_z(z)

        if self.always_compute_result or self.hook_result.has_hooks:
            w_o = rearrange(self.proj.weight, "m (h d) -> h d m", h=self.n_heads)
            result = einsum(z, w_o, "b p h d, h d m -> b p h m") + self.proj.bias
            result = self.hook_result(result)
            return result.sum(dim=2) - (self.n_heads - 1) * self.proj.bias
        return self.proj(z.flatten(2))


class MLP(nn.Module):
    """Two-layer MLP with exact (erf) GELU."""

    def __init__(self, d_model: int, d_mlp: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_mlp)
        self.fc2 = nn.Linear(d_mlp, d_model)
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: Tensor) -> Tensor:
        pre = self.hook_pre(self.fc1(x))
        return self.fc2(self.hook_post(F.gelu(pre)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``+ mlp(norm2(.))``."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=norm_eps)
        self.attn = Attention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model, eps=norm_eps)
        self.mlp = MLP(d_model, int(d_model * mlp_ratio))

        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Tensor) -> Tensor:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.norm1(x))))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.norm2(x))))
