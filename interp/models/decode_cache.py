"""A bounded LRU cache of VQGAN decodes keyed by the code grid: less work, same pixels.

A REINFORCE step scores hundreds of patched predictions, and as the policy converges more and
more of them predict the very same code grid (identical rows within a step, and the same grids
step after step). Decoding dominates the pixel reward's cost, so :class:`DecodeCache` decodes
each distinct grid once: rows are keyed by their codes' bytes (plus the grid shape), repeats
within a batch are decoded once, and decodes are kept across calls up to ``max_bytes``
(least recently used evicted first). It has the signature of ``vqgan.decode_codes`` and can
replace it wherever a decoder is taken (``Scorer(decoder=...)``).

Pixels are those of decoding the distinct rows as one batch; ``tests/models/test_decode_cache.py``
checks that they equal the plain batched decode bit for bit.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import Tensor

Decode = Callable[..., Tensor]


class DecodeCache:
    """``cache(codes [B, N], grid=(h, w)) -> pixels [B, 3, H, W]``, decoding each distinct row once.

    ``decode``: the decoder it stands for (e.g. ``model.vqgan.decode_codes``). ``max_bytes``
    bounds the decodes kept (default 256 MiB; 0 keeps nothing across calls but still
    deduplicates within a batch). ``hits`` / ``misses`` count rows served from the cache / decoded.
    """

    def __init__(self, decode: Decode, max_bytes: int = 256 << 20) -> None:
        self.decode = decode
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple, Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    @torch.no_grad()
    def __call__(self, codes: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        rows = codes.detach().to("cpu", torch.int64).contiguous()
        shape = tuple(grid) if grid is not None else None
        keys = [(shape, bytes(row.numpy().tobytes())) for row in rows]
        fresh: dict[tuple, int] = {}  # distinct uncached key -> its first row
        for i, key in enumerate(keys):
            if key not in self._entries and key not in fresh:
                fresh[key] = i
        decoded: dict[tuple, Tensor] = {}
        if fresh:
            first = torch.tensor(list(fresh.values()), device=codes.device)
            pixels = self.decode(codes.index_select(0, first), grid=grid)
            decoded = {key: pixels[j] for j, key in enumerate(fresh)}
        self.misses += len(fresh)
        self.hits += len(keys) - len(fresh)
        out = torch.stack([decoded[k] if k in decoded else self._entries[k] for k in keys])
        for key in dict.fromkeys(keys):  # most recently used last
            if key in self._entries:
                self._entries.move_to_end(key)
            else:
                self._store(key, decoded[key].clone())
        return out

    def _store(self, key: tuple, pixels: Tensor) -> None:
        size = pixels.numel() * pixels.element_size()
        if size > self.max_bytes:
            return
        self._entries[key] = pixels
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()
