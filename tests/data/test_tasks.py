"""Pixel checks of the seven tasks' cells, the canvas, and prompt-batch determinism."""

from __future__ import annotations

import pytest
import torch

from interp.canvas import CanvasGrid, assemble_canvas, denormalize
from interp.data.source import Sample
from interp.data.synthetic import SyntheticPascal
from interp.data.registry import TASKS, grayscale, square_side
from interp.data.tasks import build_prompts, build_task_prompts, make_cells, square_origin

GRID = CanvasGrid(64, 8)  # 31-px cells
CELL = GRID.cell_size


def _sample(colour: tuple[float, float, float], box: tuple[int, int, int, int], name: str) -> Sample:
    """A two-tone image (the class region brighter) and the mask of that region."""
    image = torch.tensor(colour).view(3, 1, 1).expand(3, CELL, CELL).clone()
    mask = torch.zeros(CELL, CELL, dtype=torch.bool)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = True
    image[:, mask] = 0.9
    return Sample(image=image, mask=mask, class_id=3, name=name)


SUPPORT = _sample((0.2, 0.4, 0.6), (2, 3, 12, 20), "support")
QUERY = _sample((0.7, 0.3, 0.1), (15, 10, 29, 25), "query")


def _square(seed: int) -> torch.Tensor:
    top, left = square_origin(CELL, seed)
    side = square_side(CELL)
    inside = torch.zeros(CELL, CELL, dtype=torch.bool)
    inside[top : top + side, left : left + side] = True
    return inside


def _holed(image: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    return image.masked_fill(inside, 0.0)


def _white(mask: torch.Tensor) -> torch.Tensor:
    return mask.float().expand(3, -1, -1)


@pytest.mark.parametrize("task", TASKS)
def test_cells_hold_what_the_docstring_says(task: str) -> None:
    seed = 11
    cells = make_cells(task, SUPPORT, QUERY, CELL, seed=seed)
    hole = _square(seed)
    s, q = SUPPORT.image, QUERY.image
    expected = {
        "segmentation": (s, _white(SUPPORT.mask), q, _white(QUERY.mask)),
        "lowlight": (0.5 * s, s, 0.5 * q, q),
        "identity": (s, s, q, q),
        "inpainting": (_holed(s, hole), s, _holed(q, hole), q),
        "colorization": (grayscale(s), s, grayscale(q), q),
        "inpainting_lowlight": (0.5 * _holed(s, hole), s, 0.5 * _holed(q, hole), q),
        "segmentation_inpainting": (_holed(s, hole), _white(SUPPORT.mask), _holed(q, hole), _white(QUERY.mask)),
    }[task]
    for got, want in zip(cells, expected):
        assert got.shape == (3, CELL, CELL)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_square_and_grayscale_pixels() -> None:
    side = square_side(CELL)
    assert side == CELL // 4 == 7
    cells = make_cells("inpainting", SUPPORT, QUERY, CELL, seed=5)
    black = (cells.example_input == 0).all(dim=0)
    assert black.sum() == side * side  # the only pure-black pixels: the square
    assert torch.equal(black, (cells.query == 0).all(dim=0))  # same spot in example and query
    origins = {square_origin(111, seed) for seed in range(200)}
    assert len(origins) > 100 and all(0 <= t <= 111 - 27 and 0 <= l <= 111 - 27 for t, l in origins)
    gray = make_cells("colorization", SUPPORT, QUERY, CELL).example_input[:, 0, 0]
    assert torch.allclose(gray, torch.full((3,), 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6))


def test_make_cells_resizes_other_sizes() -> None:
    big = Sample(torch.rand(3, 50, 50), torch.ones(50, 50, dtype=torch.bool), 1, "big")
    cells = make_cells("segmentation", big, big, CELL)
    assert cells.example_output.shape == (3, CELL, CELL) and bool((cells.example_output == 1).all())


@pytest.mark.parametrize("grid", [CanvasGrid(224, 16), CanvasGrid(64, 8)], ids=["224/16", "64/8"])
def test_batch_canvas_includes_target_and_matches_make_cells(grid: CanvasGrid) -> None:
    source = SyntheticPascal(seed=3, size_per_split=60)
    batches = build_task_prompts(source, fold=1, n=6, grid=grid, seed=9)
    assert list(batches) == list(TASKS)
    for task, batch in batches.items():
        assert batch.canvases.shape == (6, 3, grid.canvas_size, grid.canvas_size)
        assert batch.cells.target.shape == (6, 3, grid.cell_size, grid.cell_size)
        torch.testing.assert_close(batch.canvases, assemble_canvas(*batch.cells, grid=grid))
        target = denormalize(grid.cell(batch.canvases, "target"))
        torch.testing.assert_close(target, batch.cells.target, atol=1e-5, rtol=0)
        i = 4  # any single prompt can be rebuilt from its entries and seed
        pair = batch.pairs[i]
        support = source.load(pair.support.name, pair.support.class_id, grid.cell_size)
        query = source.load(pair.query.name, pair.query.class_id, grid.cell_size)
        single = make_cells(task, support, query, grid.cell_size, seed=batch.seeds[i])
        for got, want in zip(single, batch.cells[i]):
            assert torch.equal(got, want)
    meta = batches["segmentation"].metadata()
    assert meta[0]["class_id"] in source.fold_classes(1) and meta[0]["source"] == "synthetic"
    assert batches["segmentation"].select(slice(0, 2)).canvases.shape[0] == 2


def test_build_prompts_deterministic() -> None:
    source = SyntheticPascal(seed=0, size_per_split=80)
    a = build_prompts(source, "inpainting", fold=2, n=8, grid=GRID, seed=1)
    b = build_prompts(SyntheticPascal(seed=0, size_per_split=80), "inpainting", fold=2, n=8, grid=GRID, seed=1)
    c = build_prompts(source, "inpainting", fold=2, n=8, grid=GRID, seed=2)
    assert torch.equal(a.canvases, b.canvases) and a.pairs == b.pairs
    assert not torch.equal(a.canvases, c.canvases)


def test_unknown_task() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        make_cells("denoising", SUPPORT, QUERY, CELL)
