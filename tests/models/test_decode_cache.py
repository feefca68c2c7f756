"""DecodeCache: each distinct code grid decoded once, pixels bit-identical to the plain decode."""

from __future__ import annotations

import torch

from interp.models.decode_cache import DecodeCache
from tests.conftest import random_model


def _codes(n_codes: int, rows: list[int], seed: int = 0) -> torch.Tensor:
    """Rows drawn from a few distinct 8x8 code grids (``rows`` names which grid each row is)."""
    g = torch.Generator().manual_seed(seed)
    distinct = torch.randint(0, n_codes, (max(rows) + 1, 64), generator=g)
    return distinct[torch.tensor(rows)]


def test_cached_pixels_equal_the_plain_decode_bitwise() -> None:
    vqgan = random_model(with_vqgan=True).vqgan
    cache = DecodeCache(vqgan.decode_codes)
    step1 = _codes(vqgan.config.n_embed, [0, 1, 0, 2, 1, 0])
    step2 = torch.cat([step1[:3], _codes(vqgan.config.n_embed, [0, 1], seed=1)])  # two old grids, two new
    for codes in (step1, step2):
        plain = vqgan.decode_codes(codes, grid=(8, 8))
        cached = cache(codes, grid=(8, 8))
        assert torch.equal(cached, plain)
    assert cache.misses == 3 + 2 and cache.hits == 3 + 3  # within-step repeats and cross-step repeats
    assert len(cache) == 5


def test_the_cache_is_bounded_lru() -> None:
    calls = []

    def decode(codes, grid=None):
        calls.append(len(codes))
        return codes.float()[:, None].expand(-1, 3, -1).clone()  # 3 x 64 float32 = 768 bytes a row

    cache = DecodeCache(decode, max_bytes=2 * 768)
    a, b, c = (torch.full((1, 64), v) for v in (1, 2, 3))
    cache(a), cache(b), cache(a)  # a is now the most recent
    cache(c)  # evicts b
    assert len(cache) == 2 and cache.nbytes == 2 * 768
    cache(a)
    assert calls == [1, 1, 1]  # a still cached
    cache(b)
    assert calls == [1, 1, 1, 1]  # b was evicted: decoded again
