"""Bad tensors and arguments at the public API: named errors that say what is wrong (and what is
valid), never a reshape error deep in torch or a silent wrong result."""

from __future__ import annotations

import pytest
import torch

from interp.canvas import CanvasGrid, get_layout, one_shot
from interp.errors import HookError, InputError
from interp.models.presets import random_model
from interp.taskvectors.patching import as_mask
from interp.taskvectors.units import UnitSpace
from tests.robustness.probes import assert_named


@pytest.fixture(scope="module")
def model():
    return random_model(with_vqgan=True)


@pytest.fixture(scope="module")
def canvas():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def space(model):
    return UnitSpace.for_model(model, "group")


# --- unit selection and masks ---------------------------------------------------------------

SELECT = [
    ({"stack": "decoder", "group": "traget"}, "'cls', 'query', 'target'"),
    ({"stack": "Decoder"}, "'decoder', 'encoder'"),
    ({"layer": 99}, "valid: 0, 1"),
    ({"head": 42}, "valid: 0..3"),
    ({"group": ["query", "nope"]}, "'nope'"),
    ({"token": 3}, "has no tokens"),
]


@pytest.mark.parametrize("kwargs, valid", SELECT, ids=[str(k) for k, _ in SELECT])
def test_select_with_unknown_values_names_the_valid_ones(space, kwargs, valid) -> None:
    with pytest.raises(InputError) as info:
        space.select(**kwargs)
    assert_named(info.value, valid)


def test_select_of_valid_values_still_works(space) -> None:
    mask = space.select(stack="decoder", group="target")
    assert mask.dtype == torch.bool and int(mask.sum()) == 2 * 4  # 2 decoder layers x 4 heads
    assert space.select().all()


BAD_MASKS = {
    "short": torch.ones(39, dtype=torch.bool),
    "long": torch.ones(41, dtype=torch.bool),
    "probabilities": torch.full((40,), 0.5),
    "twos": torch.full((40,), 2),
    "nan": torch.full((40,), float("nan")),
    "complex": torch.ones(40, dtype=torch.complex64),
    "3-d": torch.ones(2, 3, 40),
    "no rows": torch.ones(0, 40, dtype=torch.bool),
    "strings": ["a"] * 40,
    "none": None,
}


@pytest.mark.parametrize("name", sorted(BAD_MASKS))
def test_bad_unit_masks_are_named_errors(space, name) -> None:
    with pytest.raises(InputError) as info:
        as_mask(BAD_MASKS[name], space)
    assert_named(info.value, "mask")


def test_good_masks_of_any_form(space) -> None:
    for mask in ([True] * 40, torch.ones(40, dtype=torch.int64), torch.zeros(3, 40), torch.ones(40).numpy()):
        assert as_mask(mask, space).dtype == torch.bool


# --- layouts and canvases ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", [None, "one-shot", "few_shot", 3, one_shot(CanvasGrid())])
def test_bad_layouts_are_named_errors(model, canvas, layout) -> None:
    with pytest.raises(InputError):
        model(canvas, layout)
    with pytest.raises(InputError):
        get_layout(layout, model.grid)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_canvases_of_other_float_dtypes_run_in_the_model_dtype(model, canvas, dtype) -> None:
    logits = model(canvas.to(dtype))
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, model(canvas.to(dtype).float()))


BAD_CANVASES = {
    "nan": (lambda c: c.masked_fill(c > 2, float("nan")), "NaN"),
    "inf": (lambda c: c / 0, "infinite"),
    "empty batch": (lambda c: c[:0], "empty"),
    "other device": (lambda c: c.to("meta"), "meta"),
    "uint8": (lambda c: (c * 50).to(torch.uint8), "uint8"),
    "no batch dim": (lambda c: c[0], "batch"),
    "4 channels": (lambda c: torch.cat([c, c[:, :1]], 1), "channels"),
    "wrong size": (lambda c: c[..., :32, :32], "32x32"),
}


@pytest.mark.parametrize("name", sorted(BAD_CANVASES))
def test_bad_canvases_are_named_errors(model, canvas, name) -> None:
    make, word = BAD_CANVASES[name]
    with pytest.raises(InputError) as info:
        model(make(canvas))
    assert_named(info.value, word)
    with pytest.raises(InputError):
        model.predict_canvas(make(canvas), "zero_shot")


# --- hooks ---------------------------------------------------------------------------------------

Z = "encoder.blocks.0.attn.hook_z"
BAD_HOOKS = {
    "narrower": (Z, lambda z, hook: z[:, :, :3]),
    "same numel, other shape": (Z, lambda z, hook: z.transpose(1, 2)),
    "batch 1 (broadcast)": (Z, lambda z, hook: z[:1]),
    "logits, other vocabulary": ("decoder.hook_logits", lambda x, hook: x[..., :-1]),
    "not a tensor": (Z, lambda z, hook: 0.0),
    "other device": (Z, lambda z, hook: z.to("meta")),
}


@pytest.mark.parametrize("name", sorted(BAD_HOOKS))
def test_hook_return_values_are_checked_with_the_hook_name(model, canvas, name) -> None:
    point, fn = BAD_HOOKS[name]
    with pytest.raises(HookError) as info:
        model.run_with_hooks(canvas, fwd_hooks=[(point, fn)])
    assert_named(info.value, point)
    assert not any(hp.has_hooks for hp in model.hook_dict.values())  # removed after the error


def test_hook_returning_another_dtype_is_cast(model, canvas) -> None:
    clean = model(canvas)
    out = model.run_with_hooks(canvas, fwd_hooks=[(Z, lambda z, hook: z.double())])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, clean)


def test_hook_filters_that_match_nothing(model, canvas) -> None:
    with pytest.raises(HookError, match="matches no hook point"):
        model.run_with_hooks(canvas, fwd_hooks=[(lambda name: name.endswith("hook_nothing"), lambda z, hook: None)])
    with pytest.raises(HookError, match="matches no hook point"):
        model.run_with_cache(canvas, names_filter=lambda name: False)
    with pytest.raises(KeyError, match="hook_zz"):  # still a KeyError for old callers
        model.run_with_cache(canvas, names_filter=[Z, "encoder.blocks.0.attn.hook_zz"])
    with pytest.raises(HookError, match="hook_zz"):
        model.run_with_hooks(canvas, fwd_hooks=[("encoder.blocks.0.attn.hook_zz", lambda z, hook: None)])
