"""Hook machinery: run_with_hooks, nested contexts, caching, clean-up on error."""

from __future__ import annotations

import pytest
import torch

from interp.hooks import ActivationCache

Z0 = "encoder.blocks.0.attn.hook_z"


def _no_hooks_left(model) -> bool:
    return not any(hp.has_hooks for hp in model.hook_dict.values())


def test_returned_tensor_replaces_activation(tiny_random, canvases) -> None:
    clean = tiny_random(canvases)
    zeroed = tiny_random.run_with_hooks(canvases, fwd_hooks=[(Z0, lambda z, hook: torch.zeros_like(z))])
    observed = tiny_random.run_with_hooks(canvases, fwd_hooks=[(Z0, lambda z, hook: None)])
    assert not torch.allclose(clean, zeroed)
    assert torch.equal(clean, observed)
    assert _no_hooks_left(tiny_random)


def test_hook_receives_its_hook_point(tiny_random, canvases) -> None:
    seen = []
    tiny_random.run_with_hooks(canvases, fwd_hooks=[(lambda n: n.endswith("hook_resid_post"), lambda t, hook: seen.append(hook.name))])
    assert seen == [f"{s}.blocks.{i}.hook_resid_post" for s in ("encoder", "decoder") for i in range(2)]


def test_nested_contexts_remove_only_their_hooks(tiny_random, canvases) -> None:
    calls = []
    with tiny_random.hooks([(Z0, lambda z, hook: calls.append("outer"))]):
        with tiny_random.hooks([(Z0, lambda z, hook: calls.append("inner"))]):
            tiny_random(canvases)
        tiny_random(canvases)
    tiny_random(canvases)
    assert calls == ["outer", "inner", "outer"]
    assert _no_hooks_left(tiny_random)


def test_hooks_removed_when_a_hook_raises(tiny_random, canvases) -> None:
    def boom(z, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        tiny_random.run_with_hooks(canvases, fwd_hooks=[(Z0, boom), ("decoder.hook_logits", lambda t, h: None)])
    assert _no_hooks_left(tiny_random)
    with pytest.raises(RuntimeError, match="boom"):
        with tiny_random.hooks([(Z0, boom)]):
            tiny_random(canvases)
    assert _no_hooks_left(tiny_random)


def test_unknown_hook_name_is_named(tiny_random) -> None:
    with pytest.raises(KeyError, match="encoder.blocks.0.attn.hook_zz"):
        with tiny_random.hooks([("encoder.blocks.0.attn.hook_zz", lambda z, h: None)]):
            pass


def test_run_with_cache_filters_and_matches_forward(tiny_random, canvases) -> None:
    out, cache = tiny_random.run_with_cache(canvases, "zero_shot", names_filter=lambda n: n.endswith("attn.hook_z"))
    assert torch.equal(out, tiny_random(canvases, "zero_shot"))
    assert sorted(cache) == sorted(f"{s}.blocks.{i}.attn.hook_z" for s in ("encoder", "decoder") for i in range(2))
    assert cache[Z0].shape == (2, 1 + 16, 4, 8)  # zero-shot encoder: CLS + 16 query patches
    stacked = cache.stack_heads("decoder")
    assert stacked.shape == (2, 2, 1 + 32, 4, 4)
    assert torch.equal(stacked[1], cache["decoder.blocks.1.attn.hook_z"])
    assert _no_hooks_left(tiny_random)


def test_cache_records_edited_value_downstream(tiny_random, canvases) -> None:
    """A cache hook added after an editing hook sees the edited activation."""
    with tiny_random.hooks([(Z0, lambda z, hook: z * 0)]):
        _, cache = tiny_random.run_with_cache(canvases, names_filter=Z0)
    assert torch.count_nonzero(cache[Z0]) == 0


def test_cache_errors_name_the_problem(tiny_random, canvases) -> None:
    with pytest.raises(ValueError, match="matches no hook point"):
        tiny_random.run_with_cache(canvases, names_filter="nope")
    _, cache = tiny_random.run_with_cache(canvases, names_filter=Z0)
    with pytest.raises(KeyError, match="was not cached"):
        cache["encoder.blocks.1.attn.hook_z"]
    with pytest.raises(KeyError, match="no cached"):
        cache.stack_heads("decoder")
    assert isinstance(cache.to("cpu"), ActivationCache)
