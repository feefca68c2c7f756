"""Figures of the code lens and path patching, from tables shaped as the stages write them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.canvas import CanvasGrid
from interp.viz.lens import lens_curves, lens_strip, path_heatmap

LABELS = ["enc 0", "enc 1", "dec embed", "dec 0", "dec 1"]


def test_lens_strip_shows_each_readouts_target_cell() -> None:
    grid = CanvasGrid(64, 8)
    canvas = torch.zeros(3, 64, 64)
    images = {c: torch.randint(0, 256, (5, 3, 64, 64), generator=torch.Generator().manual_seed(i), dtype=torch.int32)
              for i, c in enumerate(("one_shot", "zero_shot", "zero_shot+tv"))}
    fig = lens_strip(images, LABELS, canvas, grid)
    assert [t.type for t in fig.data].count("image") == 3 * (2 + 5)
    shown = np.asarray(fig.data[2].z)  # one-shot, readout enc 0: its target cell, as uint8
    cell = grid.cell(images["one_shot"][0].float() / 255, "target")
    assert shown.shape[:2] == tuple(cell.shape[1:])
    assert np.array_equal(shown, (cell.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def test_lens_curves_split_encoder_and_decoder_lines() -> None:
    rows = [{"condition": c, "readout": r, "stack": "encoder" if r.startswith("enc") else "decoder", "metric": "mse",
             "higher_is_better": False, "mean": float(i + j), "sem": 0.1}
            for i, c in enumerate(("one_shot", "zero_shot")) for j, r in enumerate(LABELS)]
    fig = lens_curves(pd.DataFrame(rows))
    assert len(fig.data) == 4 and [t.showlegend for t in fig.data] == [True, False, True, False]
    assert list(fig.data[1].x) == ["dec embed", "dec 0", "dec 1"] and list(fig.data[1].y) == [2.0, 3.0, 4.0]
    assert "MSE" in fig.layout.yaxis.title.text


def test_path_heatmap_layout_and_symmetric_scale() -> None:
    receivers = ["L0H0", "L0H1", "direct", "total"]
    rows = [{"sender": s, "sender_units": n, "receiver": r, "effect": (k + 1) * (-1) ** k * 0.01 * (i + 1),
             "metric": "iou", "higher_is_better": True}
            for i, (s, n) in enumerate((("all", 3), ("L1H2", 1))) for k, r in enumerate(receivers)]
    fig = path_heatmap(pd.DataFrame(rows))
    left, right = fig.data
    assert list(left.x) == ["L0H0", "L0H1"] and list(right.x) == ["direct", "total"]
    assert list(left.y) == ["all encoder (3)", "L1H2 (1)"]
    assert np.allclose(right.z, [[0.03, -0.04], [0.06, -0.08]])
    assert fig.layout.coloraxis.cmin == -0.08 and fig.layout.coloraxis.cmax == 0.08
