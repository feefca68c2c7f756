"""The quality-vs-size figure: a panel per task, a line per method, units on a log axis."""

from __future__ import annotations

import pandas as pd
import pytest

from interp.viz.size_curves import size_curves_figure


def test_size_curves_figure_has_a_line_per_method_and_task() -> None:
    rows = [{"task": t, "method": m, "seed": s, "units": u, "held_out_score": -u / 100 + s}
            for t in ("lowlight", "inpainting") for m in ("prune", "reinforce") for s in (0, 1) for u in (1, 2, 4, 168)]
    fig = size_curves_figure(pd.DataFrame(rows))
    assert len(fig.data) == 4 and {d.name for d in fig.data} == {"prune", "reinforce"}
    first = fig.data[0]
    assert list(first.x) == [1, 2, 4, 168] and first.y[0] == pytest.approx(0.49)  # mean over the two seeds
    assert fig.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="no column"):
        size_curves_figure(pd.DataFrame([{"task": "x"}]))
