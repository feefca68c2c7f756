"""VQGAN tokenizer/detokenizer of MAE-VQGAN (taming-transformers ``VQModel``).

A dependency-free re-implementation of the f16 VQGAN that MAE-VQGAN vendors
(amirbar/visual_prompting ``vqgan.py``, itself taming's ``Encoder``/``Decoder``/
``VectorQuantizer2``). Module and parameter names mirror taming exactly, so an official
state dict (minus its ``loss.*`` keys) loads with ``strict=True``.

Two levels of API:

* ``encode`` / ``decode`` work in taming's pixel space [-1, 1]; ``encode`` returns the
  straight-through quantised latent, the codes and the two (unweighted) VQ loss terms, so a
  small VQGAN built from this class can be trained by backprop.
* ``encode_to_codes`` / ``decode_codes`` are the MAE-VQGAN views: ImageNet-normalised canvas
  -> row-major code grid (``get_codebook_indices``) and codes -> pixels in [0, 1]
  (``get_codebook_entry`` + ``decode`` with the vendored ``unmap_pixels``: clamp to [-1, 1],
  then ``(x + 1) / 2``).

Attention positions are fixed by ``config.resolution`` (taming's ``curr_res`` bookkeeping),
not by the input size, so a 224 canvas gives a 14x14 code grid with the same layers.
Nothing here forces ``torch.no_grad``; that is the caller's choice.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.canvas import denormalize

__all__ = ["VQGANConfig", "VQGAN"]


@contextmanager
def _native_cpu_kernels(device: torch.device) -> Iterator[None]:
    """Run CPU convolutions without oneDNN (whose small-batch kernels depend on the thread count)."""
    if device.type != "cpu":
        yield
        return
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


#: torch runs CPU convolutions of a batch of at least this many images on NNPACK (when it is
#: built in) and smaller batches on another kernel, with other rounding; decodes pad to it
NNPACK_MIN_BATCH = 16


def _pad_batch(codes: Tensor) -> Tensor:
    """``codes`` (or latents ``[B, C, h, w]``) padded to :data:`NNPACK_MIN_BATCH` rows (copies of the last row) where the CPU
    kernel torch picks would otherwise depend on the batch size."""
    if codes.device.type != "cpu" or not torch.backends.nnpack.is_available() or not 0 < len(codes) < NNPACK_MIN_BATCH:
        return codes
    return torch.cat([codes, codes[-1:].expand(NNPACK_MIN_BATCH - len(codes), *codes.shape[1:])])


@dataclass(frozen=True)
class VQGANConfig:
    """Hyper-parameters of a taming ``VQModel``: its ``ddconfig`` plus ``n_embed``/``embed_dim``."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    z_channels: int
    resolution: int
    in_channels: int = 3
    out_ch: int = 3
    dropout: float = 0.0
    double_z: bool = False
    n_embed: int = 1024
    embed_dim: int = 256

    def __post_init__(self) -> None:
        # accept lists (e.g. from JSON) but store hashable tuples
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))

    @classmethod
    def large(cls) -> "VQGANConfig":
        """The official ``vqgan_imagenet_f16_1024`` used by MAE-VQGAN."""
        return cls(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
                   z_channels=256, resolution=256, n_embed=1024, embed_dim=256)

    @classmethod
    def from_taming(cls, d: dict[str, Any]) -> "VQGANConfig":
        """Build from ``{"ddconfig": {...}, "n_embed": ..., "embed_dim": ...}`` (taming params)."""
        dd = d["ddconfig"]
        fields = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels",
                  "resolution", "in_channels", "out_ch", "dropout", "double_z")
        return cls(**{k: dd[k] for k in fields if k in dd},
                   n_embed=int(d["n_embed"]), embed_dim=int(d["embed_dim"]))

    def to_taming(self) -> dict[str, Any]:
        """Inverse of :meth:`from_taming` (lists instead of tuples, JSON-friendly)."""
        dd = asdict(self)
        n_embed, embed_dim = dd.pop("n_embed"), dd.pop("embed_dim")
        dd["ch_mult"], dd["attn_resolutions"] = list(self.ch_mult), list(self.attn_resolutions)
        return {"ddconfig": dd, "n_embed": n_embed, "embed_dim": embed_dim}

    @property
    def downsample_factor(self) -> int:
        """Pixels per code along each side (16 for the f16 models)."""
        return 2 ** (len(self.ch_mult) - 1)


# --------------------------------------------------------------------------- building blocks


def _normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def _swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


class _ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = _normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class _AttnBlock(nn.Module):
    """Single-head spatial self-attention over the h*w positions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)  # b, hw, c
        k = self.k(h).reshape(b, c, hh * ww)  # b, c, hw
        v = self.v(h).reshape(b, c, hh * ww)  # b, c, hw
        attn = torch.softmax(torch.bmm(q, k) * (int(c) ** -0.5), dim=2)  # b, hw_q, hw_k
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class _Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class _Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = _ResnetBlock(channels, channels, dropout)
    mid.attn_1 = _AttnBlock(channels)
    mid.block_2 = _ResnetBlock(channels, channels, dropout)
    return mid


def _run_level(level: nn.Module, h: Tensor) -> Tensor:
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[i](h)
    return h


class _Encoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        n_levels = len(cfg.ch_mult)
        in_ch_mult = (1,) + cfg.ch_mult
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, 1, 1)
        self.down = nn.ModuleList()
        curr_res = cfg.resolution
        block_in = cfg.ch
        for i_level in range(n_levels):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_in = cfg.ch * in_ch_mult[i_level]
            block_out = cfg.ch * cfg.ch_mult[i_level]
            for _ in range(cfg.num_res_blocks):
                level.block.append(_ResnetBlock(block_in, block_out, cfg.dropout))
                block_in = block_out
                if curr_res in cfg.attn_resolutions:
                    level.attn.append(_AttnBlock(block_in))
            if i_level != n_levels - 1:
                level.downsample = _Downsample(block_in)
                curr_res //= 2
            self.down.append(level)
        self.mid = _mid(block_in, cfg.dropout)
        self.norm_out = _normalize(block_in)
        z_out = 2 * cfg.z_channels if cfg.double_z else cfg.z_channels
        self.conv_out = nn.Conv2d(block_in, z_out, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for i_level, level in enumerate(self.down):
            h = _run_level(level, h)
            if i_level != len(self.down) - 1:
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(_swish(self.norm_out(h)))


class _Decoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        n_levels = len(cfg.ch_mult)
        block_in = cfg.ch * cfg.ch_mult[-1]
        curr_res = cfg.resolution // 2 ** (n_levels - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, 1, 1)
        self.mid = _mid(block_in, cfg.dropout)
        self.up = nn.ModuleList()
        for i_level in reversed(range(n_levels)):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_out = cfg.ch * cfg.ch_mult[i_level]
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(_ResnetBlock(block_in, block_out, cfg.dropout))
                block_in = block_out
                if curr_res in cfg.attn_resolutions:
                    level.attn.append(_AttnBlock(block_in))
            if i_level != 0:
                level.upsample = _Upsample(block_in)
                curr_res *= 2
            self.up.insert(0, level)  # taming's order: up.0 is the finest level
        self.norm_out = _normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, 1, 1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i_level in reversed(range(len(self.up))):
            h = _run_level(self.up[i_level], h)
            if i_level != 0:
                h = self.up[i_level].upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class _VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup (taming ``VectorQuantizer2``, no remap)."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def codes(self, z: Tensor) -> Tensor:
        """[B, C, H, W] latent -> [B, H*W] nearest-code indices (taming's distance formula)."""
        b, c, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).reshape(-1, c)
        e = self.embedding.weight
        d = (zf.pow(2).sum(dim=1, keepdim=True) + e.pow(2).sum(dim=1)
             - 2 * torch.einsum("bd,dn->bn", zf, e.t()))
        return d.argmin(dim=1).view(b, h * w)

    def lookup(self, codes: Tensor, grid: tuple[int, int]) -> Tensor:
        """[B, H*W] indices -> [B, C, H, W] codebook vectors."""
        b = codes.shape[0]
        return self.embedding(codes).view(b, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- the model


class VQGAN(nn.Module):
    """taming ``VQModel`` (inference + straight-through training path, no GAN loss)."""

    #: decode on the CPU with the native kernels, so pixels do not depend on the thread count;
    #: ``False`` uses oneDNN (about 1.6x faster on the f16 VQGAN at 2 threads, measured once)
    thread_invariant: bool = True
    #: activation memory one encode / decode call aims at; larger batches are split (same pixels)
    max_activation_bytes: int = 1 << 30

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _Encoder(config)
        self.decoder = _Decoder(config)
        self.quantize = _VectorQuantizer(config.n_embed, config.embed_dim)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Quantise an image in [-1, 1].

        Returns ``(z_q, codes, (codebook_loss, commitment_loss))``: ``z_q`` [B, embed_dim, h, w]
        carries the straight-through gradient to the encoder; ``codes`` [B, h*w] int64,
        row-major; the loss terms are the *unweighted* MSEs ``|sg[z] - e|^2`` (moves the
        codebook) and ``|z - sg[e]|^2`` (moves the encoder). The VQ-VAE objective is
        ``codebook + 0.25 * commitment``; taming's default (``legacy=True``) VQModel, which
        trained the official checkpoint, used ``commitment + 0.25 * codebook``.
        """
        z = self.quant_conv(self.encoder(x))
        codes = self.quantize.codes(z)
        e = self.quantize.lookup(codes, (z.shape[2], z.shape[3]))
        codebook_loss = torch.mean((e - z.detach()) ** 2)
        commitment_loss = torch.mean((e.detach() - z) ** 2)
        z_q = z + (e - z).detach()
        return z_q, codes, (codebook_loss, commitment_loss)

    def decode(self, z_q: Tensor) -> Tensor:
        """[B, embed_dim, h, w] quantised latent -> image, nominally in [-1, 1] (not clamped)."""
        return self.decoder(self.post_quant_conv(z_q))

    def encode_to_codes(self, canvas: Tensor) -> Tensor:
        """ImageNet-normalised [B, 3, H, W] canvas -> [B, (H/f)*(W/f)] int64 codes, row-major."""
        step = self.rows_per_call(canvas.shape[2], canvas.shape[3], canvas.device)
        out = []
        for part in canvas.split(step) if len(canvas) else [canvas]:  # batches bounded for memory
            x = 2.0 * denormalize(part) - 1.0  # the vendored map_pixels
            out.append(self.quantize.codes(self.quant_conv(self.encoder(x))))
        return torch.cat(out) if len(out) > 1 else out[0]

    def decode_codes(self, codes: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        """[B, N] int64 codes -> [B, 3, h*f, w*f] pixels in [0, 1].

        ``grid`` is the (h, w) code layout, square by default. On the CPU the decoder runs without
        oneDNN unless ``thread_invariant`` is off: for small batches oneDNN picks kernels by thread
        count, which moves values by ~1e-7 and so flips integer pixels at truncation boundaries;
        the native kernels give the same pixels at any thread count (``tests/test_determinism.py``).
        Batches below :data:`NNPACK_MIN_BATCH` are padded to it, so a row's pixels do not depend
        on how many rows share its batch either (what :class:`~interp.models.decode_cache.DecodeCache`
        and deduplicated scoring rely on; ``tests/models/test_decode_cache.py``).
        """
        if grid is None:
            side = int(round(codes.shape[1] ** 0.5))
            if side * side != codes.shape[1]:
                raise ValueError(f"{codes.shape[1]} codes are not a square grid; pass grid=")
            grid = (side, side)
        step = self.rows_per_call(grid[0] * self.config.downsample_factor, grid[1] * self.config.downsample_factor,
                                  codes.device)
        out = []
        for part in codes.split(step) if len(codes) else [codes]:
            rows = len(part)
            if self.thread_invariant:
                part = _pad_batch(part)
            with _native_cpu_kernels(codes.device) if self.thread_invariant else nullcontext():
                out.append(self.decode(self.quantize.lookup(part.long(), grid))[:rows])
        x = torch.cat(out) if len(out) > 1 else out[0]
        return (x.clamp(-1.0, 1.0) + 1.0) / 2.0

    def decode_soft(self, probs: Tensor, grid: tuple[int, int]) -> Tensor:
        """Soft decode: ``[B, h*w, n_embed]`` code probabilities -> ``[B, 3, h*f, w*f]`` pixels in [0, 1].

        Each position's latent is the probability-weighted codebook embedding ``probs @ E``
        (differentiable in ``probs``), decoded like :meth:`decode_codes` (same kernels, same
        batch padding, same clamp). One-hot ``probs`` give exactly the codebook rows, so the
        pixels equal ``decode_codes`` of their argmax (``tests/models/test_vqgan.py``).
        """
        if probs.dim() != 3 or probs.shape[1] != grid[0] * grid[1] or probs.shape[2] != self.config.n_embed:
            raise ValueError(f"probs must be [B, {grid[0] * grid[1]}, {self.config.n_embed}]; got {tuple(probs.shape)}")
        weight = self.quantize.embedding.weight
        latent = torch.matmul(probs.to(weight.dtype), weight)  # [B, h*w, embed_dim]
        latent = latent.view(len(probs), grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()
        f = self.config.downsample_factor
        step = self.rows_per_call(grid[0] * f, grid[1] * f, latent.device)
        out = []
        for part in latent.split(step) if len(latent) else [latent]:  # as decode_codes batches them
            rows = len(part)
            if self.thread_invariant:
                part = _pad_batch(part)
            with _native_cpu_kernels(latent.device) if self.thread_invariant else nullcontext():
                out.append(self.decode(part)[:rows])
        x = torch.cat(out) if len(out) > 1 else out[0]
        return (x.clamp(-1.0, 1.0) + 1.0) / 2.0

    def rows_per_call(self, height: int, width: int, device: torch.device | str = "cpu") -> int:
        """Images one encoder / decoder call takes.

        On the CPU with NNPACK: :data:`NNPACK_MIN_BATCH`, the smallest batch its kernels take and
        the fastest per image (measured on the tiny VQGAN, 1 thread: 16-image calls ~22 ms an
        image, 64 ~32-38 ms, 320 ~40 ms: larger batches fall out of the caches). Elsewhere as many
        as keep the activations near ``max_activation_bytes`` (estimate: six float32 maps of the
        widest full-resolution layer per image), at least :data:`NNPACK_MIN_BATCH`.
        """
        if torch.device(device).type == "cpu" and torch.backends.nnpack.is_available():
            return NNPACK_MIN_BATCH
        per_image = 6 * 4 * self.config.ch * self.config.ch_mult[0] * height * width
        return max(NNPACK_MIN_BATCH, self.max_activation_bytes // max(per_image, 1))
