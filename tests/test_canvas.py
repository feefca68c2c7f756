"""Canvas geometry, slots, layouts and assembly."""

from __future__ import annotations

import pytest
import torch

from interp.canvas import (
    CanvasGrid, assemble_canvas, custom_layout, denormalize, normalize, one_shot, zero_shot,
)


@pytest.mark.parametrize("size, patch, per_side, cell", [(224, 16, 14, 111), (64, 8, 8, 31)])
def test_grid_geometry(size, patch, per_side, cell) -> None:
    grid = CanvasGrid(size, patch)
    assert grid.patches_per_side == per_side and grid.num_slots == per_side**2 + 1
    assert grid.cell_size == cell
    assert grid.cell_origin("example_input") == (0, 0)
    assert grid.cell_origin("target") == (size - cell, size - cell)
    half = per_side // 2
    assert grid.quadrant_patches("query")[0] == half * per_side
    assert grid.quadrant_patches("target")[-1] == per_side**2 - 1
    assert sorted(sum((grid.quadrant_patches(q) for q in ("example_input", "example_output", "query", "target")), ())) == list(range(per_side**2))


def test_official_layouts_224() -> None:
    grid = CanvasGrid()
    one, zero = one_shot(grid), zero_shot(grid)
    assert len(one.encoder_slots) == 148 and len(one.decoder_slots) == 197
    assert len(zero.encoder_slots) == 50 and len(zero.decoder_slots) == 99
    assert zero.masked_patches == grid.quadrant_patches("target")
    assert one.mask().sum() == 49
    assert {k: len(v) for k, v in zero.token_groups("decoder").items()} == {"cls": 1, "query": 49, "target": 49}
    assert {k: len(v) for k, v in one.token_groups("encoder").items()} == {"cls": 1, "example_input": 49, "example_output": 49, "query": 49}
    # slots are shared across layouts: the zero-shot query tokens are the same slots as one-shot's
    query_slots = grid.quadrant_slots("query")
    assert zero.positions("encoder", query_slots) == list(range(1, 50))
    assert one.positions("encoder", query_slots) == list(range(99, 148))
    with pytest.raises(ValueError, match="no encoder tokens at slots"):
        zero.positions("encoder", [1])


def test_custom_layout() -> None:
    grid = CanvasGrid(64, 8)
    layout = custom_layout(grid, visible=[5, 1, 3])
    assert layout.encoder_slots == (0, 2, 4, 6)
    assert len(layout.decoder_slots) == 65
    with pytest.raises(ValueError, match="every visible patch"):
        custom_layout(grid, visible=[1, 2], decoder=[2, 3])


def test_bad_grids() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        CanvasGrid(100, 16)
    with pytest.raises(ValueError, match="even number"):
        CanvasGrid(48, 16)


def test_assemble_canvas_places_cells_on_white() -> None:
    grid = CanvasGrid(64, 8)
    colours = [0.1, 0.3, 0.5, 0.7]
    cells = [torch.full((3, 31, 31), c) for c in colours]
    canvas = assemble_canvas(*cells, grid=grid)
    pixels = denormalize(canvas)
    for quadrant, colour in zip(("example_input", "example_output", "query", "target"), colours):
        torch.testing.assert_close(grid.cell(pixels, quadrant), torch.full((3, 31, 31), colour))
    torch.testing.assert_close(pixels[:, 31:33, :], torch.ones(3, 2, 64))  # white gutter
    torch.testing.assert_close(pixels[:, :, 31:33], torch.ones(3, 64, 2))
    without_target = denormalize(assemble_canvas(*cells[:3], grid=grid))
    torch.testing.assert_close(grid.cell(without_target, "target"), torch.ones(3, 31, 31))
    # other sizes are resized; batches work
    batch = assemble_canvas(*(torch.rand(4, 3, 50, 50) for _ in range(4)), grid=grid)
    assert batch.shape == (4, 3, 64, 64)
    with pytest.raises(ValueError, match="1 channels"):
        assemble_canvas(torch.rand(1, 31, 31), *cells[1:], grid=grid)


def test_normalize_roundtrip() -> None:
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(denormalize(normalize(x)), x)
    assert normalize(torch.ones(3, 1, 1)).flatten().tolist() == pytest.approx([(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


def test_patch_image() -> None:
    grid = CanvasGrid(64, 8)
    canvas = torch.arange(64 * 64, dtype=torch.float).view(1, 1, 64, 64).expand(1, 3, 64, 64)
    patches = grid.patch_image(canvas)
    assert patches.shape == (1, 64, 3, 8, 8)
    assert patches[0, 9, 0, 0, 0] == canvas[0, 0, 8, 8]
