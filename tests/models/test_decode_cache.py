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


def test_a_rows_pixels_do_not_depend_on_its_batch() -> None:
    """torch takes another CPU convolution kernel from batch 16 on; decodes pad small batches,
    so a row decodes to the same pixels alone, in a small batch and in a large one."""
    vqgan = random_model(with_vqgan=True).vqgan
    codes = _codes(vqgan.config.n_embed, list(range(40)))
    whole = vqgan.decode_codes(codes, grid=(8, 8))
    for rows in (slice(0, 1), slice(3, 8), slice(0, 15), slice(0, 16), slice(5, 22), slice(39, 40)):
        assert torch.equal(vqgan.decode_codes(codes[rows], grid=(8, 8)), whole[rows]), rows


def test_large_batches_are_split_for_memory_with_the_same_pixels_and_codes() -> None:
    vqgan = random_model(with_vqgan=True).vqgan
    codes = _codes(vqgan.config.n_embed, list(range(40)))
    whole = vqgan.decode_codes(codes, grid=(8, 8))
    canvases = (whole - 0.5) * 2
    whole_codes = vqgan.encode_to_codes(canvases)
    vqgan.max_activation_bytes = 1  # every call takes the minimum batch
    assert vqgan.rows_per_call(64, 64) == 16
    assert torch.equal(vqgan.decode_codes(codes, grid=(8, 8)), whole)
    assert torch.equal(vqgan.encode_to_codes(canvases), whole_codes)
