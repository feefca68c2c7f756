"""Unit spaces: the official Bernoulli order, its (layer, head, position) expansion, readable units."""

from __future__ import annotations

import json

import pytest
import torch

from interp.canvas import CanvasGrid, one_shot, zero_shot
from interp.taskvectors.unit import GRANULARITIES, Unit
from interp.taskvectors.unit_maps import official_triples
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model

OFFICIAL = {0: "head", 1: "group", 2: "token"}


@pytest.fixture(scope="module")
def construct_indices(reference_dir):
    return json.loads((reference_dir / "construct_indices.json").read_text())


def official_space(granularity: int, zero_shot_flag: int) -> UnitSpace:
    """The official construct_indices: units of the zero-shot sequences; zero_shot=0 applies
    their position indices to the one-shot sequences (granularity 0: the whole sequence)."""
    grid = CanvasGrid()
    return UnitSpace(
        OFFICIAL[granularity], 24, 8, 16, layout=zero_shot(grid),
        apply_to=None if zero_shot_flag else one_shot(grid),
    )


def test_every_construct_indices_entry(construct_indices) -> None:
    seen = set()
    for entry in construct_indices:
        space = official_space(entry["granularity"], entry["zero_shot"])
        assert len(space) == entry["n_variables"]
        assert space.official_granularity == entry["granularity"]
        mask = torch.zeros(len(space))
        mask[entry["active"]] = 1
        triples = official_triples(space, mask)
        assert triples == [tuple(t) for t in entry["indices"]], (entry["granularity"], entry["zero_shot"])
        seen.add((entry["granularity"], entry["zero_shot"]))
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)}


def test_zero_shot_flag_semantics(construct_indices) -> None:
    """What zero_shot=0 means in the official code, stated on the data itself."""
    by_key = {(e["granularity"], e["zero_shot"]): e for e in construct_indices}
    positions = lambda e: {p for _, _, p in e["indices"]}  # noqa: E731
    # granularity 0 covers the whole sequence of the forward's layout: 148 / 197 one-shot, 50 / 99 zero-shot
    g0 = by_key[(0, 0)]["indices"]
    assert max(p for l, _, p in g0 if l < 24) == 147 and max(p for l, _, p in g0 if l >= 24) == 196
    assert max(positions(by_key[(0, 1)])) == 98
    # granularity 1 and 2 use zero-shot positions (encoder < 50, decoder < 99) whatever the flag
    for key in [(1, 0), (2, 0)]:
        assert max(p for l, _, p in by_key[key]["indices"] if l < 24) < 50
        assert max(p for l, _, p in by_key[key]["indices"] if l >= 24) < 99
    # ... so on a one-shot forward the "query" group lands on example-input tokens: not the query
    layout, grid = one_shot(), CanvasGrid()
    enc_query = {p for l, _, p in by_key[(1, 0)]["indices"] if l < 24 and p > 0}
    assert {grid.slot_quadrant[layout.encoder_slots[p]] for p in enc_query} <= {"example_input", "example_output"}


@pytest.mark.parametrize("case", [0, 1, 2])
def test_patch_cases(reference_dir, mae_golden, case: int) -> None:
    cases = json.loads((reference_dir / "mae_small.patch_cases.json").read_text())
    triples = official_triples(official_space(1, 1), mae_golden[f"patched.{case}.sample"])
    assert len(triples) == cases[case]["n_indices"]
    assert [list(t) for t in triples[:50]] == cases[case]["indices_head_layer_pos"]


def test_for_model_sizes_and_official_order() -> None:
    model = random_model()  # 2+2 layers, 4 heads, 8x8 patches: zero-shot encoder 1+16, decoder 1+32
    H = 4
    sizes = {"layer": 4, "head": 4 * H, "group": 2 * H * 2 + 2 * H * 3, "token": 2 * H * 17 + 2 * H * 33}
    for granularity in GRANULARITIES:
        space = UnitSpace.for_model(model, granularity)
        assert len(space) == sizes[granularity]
        assert [u.index for u in space.units] == list(range(len(space)))
        for unit in space.units:  # index() inverts unit()
            fields = {k: getattr(unit, k) for k in ("head", "group", "token") if getattr(unit, k) is not None}
            assert space.index(unit.stack, unit.layer, **fields) == unit.index
    group = UnitSpace.for_model(model, "group")
    assert group.unit(1 * H * 2 + 3 * 2 + 1) == Unit(1 * H * 2 + 3 * 2 + 1, "encoder", 1, 3, group="query")
    assert group.unit(16 + 1 * H * 3 + 2 * 3 + 2) == Unit(16 + 1 * H * 3 + 2 * 3 + 2, "decoder", 1, 2, group="target")
    token = UnitSpace.for_model(model, "token")
    assert token.unit(1 * H * 17 + 2 * 17 + 5) == Unit(1 * H * 17 + 2 * 17 + 5, "encoder", 1, 2, token=5)
    assert token.unit(2 * H * 17 + 33 + 32).token == 32
    assert UnitSpace.for_model(model, "head").unit(-1) == Unit(15, "decoder", 1, 3)
    assert str(group.unit(3)) == "encoder L0 H1 query"
    assert "16 positions of zero_shot" in group.describe(3)
    assert "reused as indices in one_shot" in UnitSpace.for_model(model, "token", apply_to="one_shot").describe(0)


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("layouts", [("zero_shot", None), ("one_shot", None), ("zero_shot", "one_shot")])
def test_site_index_matches_unit_cells(granularity, layouts) -> None:
    model = random_model()
    space = UnitSpace.for_model(model, granularity, layout=layouts[0], apply_to=layouts[1])
    expected = {site: torch.full_like(index, len(space)) for site, index in space.site_index().items()}
    for i in range(len(space)):
        site, heads, positions = space.unit_cells(i)
        for h in heads:
            for p in positions:
                assert expected[site][p, h] == len(space), "units must not overlap"
                expected[site][p, h] = i
    for site, index in space.site_index().items():
        assert torch.equal(index, expected[site]), site


def test_one_shot_groups_are_the_query_by_slot() -> None:
    model = random_model()
    layout = one_shot(model.grid)
    space = UnitSpace.for_model(model, "group", layout=layout)
    _, _, positions = space.unit_cells(space.index("encoder", 0, 0, group="query"))
    assert [layout.encoder_slots[p] for p in positions] == list(model.grid.quadrant_slots("query"))


def test_official_vectors_and_select() -> None:
    space = UnitSpace.for_model(random_model(), "group")
    mask = space.select(stack="decoder", layer=1, group=["query", "target"])
    assert mask.sum() == 4 * 2 and all(space.unit(i).layer == 1 for i in mask.nonzero().flatten().tolist())
    official = space.to_official(mask)
    assert official.dtype == torch.float32 and torch.equal(space.from_official(official), mask)
    assert space.from_official(official.numpy()[None]).shape == (1, len(space))
    with pytest.raises(ValueError, match="40 units"):
        space.from_official(torch.zeros(41))
    with pytest.raises(ValueError, match="only 0 and 1"):
        space.from_official(torch.full((40,), 0.5))


def test_clear_errors() -> None:
    model = random_model()
    with pytest.raises(ValueError, match="unknown granularity"):
        UnitSpace.for_model(model, "neuron")
    with pytest.raises(ValueError, match="no encoder tokens in group"):
        UnitSpace.for_model(model, "group", enc_groups=("cls", "example_input"))
    with pytest.raises(ValueError, match="a 'group' unit is addressed by"):
        UnitSpace.for_model(model, "group").index("encoder", 0, 1)
    with pytest.raises(ValueError, match="fewer than"):
        UnitSpace.for_model(model, "token", layout="one_shot", apply_to="zero_shot")
    space = UnitSpace.for_model(model, "token")
    with pytest.raises(ValueError, match="apply_to='one_shot'"):
        space.check_target(one_shot(model.grid))
    big = UnitSpace(space.granularity, 24, 8, 16, layout=zero_shot())
    with pytest.raises(ValueError, match="for_model"):
        big.check_model(model)


def test_bare_constructor_is_the_official_space() -> None:
    sizes = {"layer": 32, "head": 512, "group": 1152, "token": 31872}
    for granularity, size in sizes.items():
        space = UnitSpace(granularity, 24, 8, 16)  # zero-shot layout of the 224 px grid
        assert len(space) == size and space.layout.name == "zero_shot"
    assert (UnitSpace("token", 24, 8, 16).enc_tokens, UnitSpace("token", 24, 8, 16).dec_tokens) == (50, 99)
    assert UnitSpace("token", 24, 8, 16).unit(19200 + 1584 + 99 + 7) == Unit(19200 + 1584 + 99 + 7, "decoder", 1, 1, token=7)
    assert "148 positions x 16 heads of one_shot" in UnitSpace("layer", 24, 8, 16, apply_to=one_shot()).describe(0)
