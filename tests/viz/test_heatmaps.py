"""Layers x heads heatmaps and REINFORCE policies as heatmap tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from interp.taskvectors.units import UnitSpace
from interp.viz.heatmaps import layer_head_heatmap, mask_frame, policy_frame
from interp.viz.style import PAPER_TEMPLATE
from tests.conftest import random_model


@pytest.fixture(scope="module")
def model():
    return random_model(0)


def test_group_policy_facets_and_values(model) -> None:
    space = UnitSpace.for_model(model, "group")
    probabilities = torch.rand(len(space), generator=torch.Generator().manual_seed(0))
    frame = policy_frame(space, probabilities)
    assert len(frame) == len(space) and list(frame.columns) == ["stack", "layer", "head", "group", "probability"]
    i = space.index("decoder", 1, 2, group="target")
    row = frame.query("stack == 'decoder' and layer == 1 and head == 2 and group == 'target'")
    assert row["probability"].item() == pytest.approx(probabilities[i].item())

    fig = layer_head_heatmap(frame, "probability", title="policy")
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 3 * 2 - 1  # (cls, query, target) x (encoder, decoder), less the encoder's target
    assert {t.coloraxis for t in heatmaps} == {"coloraxis"}  # one shared colour scale
    dec_target = next(t for t in heatmaps if t.name == "decoder target")
    assert np.asarray(dec_target.z, dtype=float)[1, 2] == pytest.approx(probabilities[i].item())
    assert "decoder L1 H2" in np.asarray(dec_target.text)[1, 2] and "target" in np.asarray(dec_target.text)[1, 2]
    assert "encoder target" not in {t.name for t in heatmaps}  # the encoder never sees the target: no empty panel
    texts = [a.text for a in fig.layout.annotations]
    assert {"encoder", "decoder", "CLS", "query", "target"} <= set(texts) and "no target" not in texts
    bar = fig.layout.coloraxis.colorbar  # the colour bar takes the missing panel's place, across it
    enc = sorted({tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("xaxis")})[0]
    assert bar.orientation == "h" and enc[0] < bar.x < enc[1] and bar.y < 1 / 3
    assert fig.layout.yaxis.autorange == "reversed"  # layer 0 at the top
    assert fig.layout.template == PAPER_TEMPLATE


def test_granularities(model) -> None:
    layer = UnitSpace.for_model(model, "layer")
    frame = policy_frame(layer, torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert "group" not in frame and len(frame) == 4 * 4  # broadcast to every head
    assert np.allclose(frame.query("stack == 'decoder' and layer == 1")["probability"], 0.4)

    token = UnitSpace.for_model(model, "token")
    p = torch.rand(len(token), generator=torch.Generator().manual_seed(1))
    frame = policy_frame(token, p, agg="max")
    positions = token.layout.token_groups("encoder")["query"]
    expected = max(p[token.index("encoder", 0, 3, token=t)].item() for t in positions)
    got = frame.query("stack == 'encoder' and layer == 0 and head == 3 and group == 'query'")["probability"].item()
    assert got == pytest.approx(expected)
    mean = policy_frame(token, p, agg="mean").query("stack == 'encoder' and layer == 0 and head == 3 and group == 'query'")
    assert mean["probability"].item() < got

    head = UnitSpace.for_model(model, "head")
    fig = layer_head_heatmap(policy_frame(head, torch.full((len(head),), 0.5)), "probability")
    assert len(fig.data) == 2 and fig.layout.annotations[-1].text == "decoder"  # one facet: all tokens
    masked = mask_frame(head, torch.arange(len(head)) < 3)
    assert masked["patched"].sum() == 3

    sweep = pd.DataFrame({"stack": ["encoder", "decoder"], "layer": [1, 0], "head": [None, None], "delta": [0.1, -0.1]})
    fig = layer_head_heatmap(sweep, "delta")  # layer units: one column for all heads
    assert list(fig.data[0].x) == ["all"] and "all heads" in np.asarray(fig.data[0].text)[1, 0]


def test_deltas_diverge_and_infinities_are_labelled() -> None:
    df = pd.DataFrame({"stack": ["encoder", "encoder", "decoder"], "layer": [0, 1, 0], "head": [0, 0, 1],
                       "group": ["", "", ""], "delta": [-0.2, 0.5, np.inf]})
    fig = layer_head_heatmap(df, "delta")
    axis = fig.layout.coloraxis
    assert axis.cmid == 0 and axis.cmin == -axis.cmax == -0.5
    decoder = fig.data[1]
    assert np.asarray(decoder.z, dtype=float)[0, 1] == 0.5 and "inf" in np.asarray(decoder.text)[0, 1]
    log = layer_head_heatmap(df.assign(taskness=[1.0, 100.0, 10.0]), "taskness", log=True)
    assert np.nanmax(np.asarray(log.data[0].z, dtype=float)) == pytest.approx(2.0)
    assert log.layout.coloraxis.colorbar.title.text == "taskness (log scale)"
    assert list(log.layout.coloraxis.colorbar.ticktext) == ["1", "10", "100"]  # in taskness units
    assert log.layout.coloraxis.colorbar.len == 1.0  # spans every row of panels


def test_bad_input_names_the_fix(model) -> None:
    df = pd.DataFrame({"stack": ["encoder"] * 2, "layer": [0, 0], "head": [0, 0], "task": ["a", "b"], "delta": [1.0, 2.0]})
    with pytest.raises(ValueError, match="no column.*'taskness'"):
        layer_head_heatmap(df, "taskness")
    with pytest.raises(ValueError, match=r"agg='mean'.*|differ in \['task'\]"):
        layer_head_heatmap(df, "delta")
    fig = layer_head_heatmap(df, "delta", agg="mean")
    assert np.asarray(fig.data[0].z, dtype=float)[0, 0] == 1.5
    with pytest.raises(ValueError, match="stack must be"):
        layer_head_heatmap(df.assign(stack="middle"), "delta", agg="mean")
    with pytest.raises(ValueError, match="no rows for group"):
        layer_head_heatmap(df, "delta", agg="mean", groups=["query"])
    space = UnitSpace.for_model(model, "group")
    with pytest.raises(ValueError, match="sigmoid"):
        policy_frame(space, torch.randn(len(space)) * 3)
    with pytest.raises(ValueError, match="granularity"):
        policy_frame(space, torch.rand(7))


def test_sqrt_scale_and_marks(model) -> None:
    """Most taskness values near 0, a few large: a square-root colour scale, ticks in the value's units, named."""
    space = UnitSpace.for_model(model, "head")
    values = np.concatenate([np.linspace(0, 2, len(space) - 2), [6.0, 9.5]])
    frame = policy_frame(space, torch.zeros(len(space))).assign(taskness=values, top=values > 5)
    fig = layer_head_heatmap(frame, "taskness", sqrt=True, mark="top", mark_label="top units")
    z = np.concatenate([np.asarray(t.z, dtype=float).ravel() for t in fig.data if isinstance(t, go.Heatmap)])
    assert np.nanmax(z) == pytest.approx(np.sqrt(9.5))
    bar = fig.layout.coloraxis.colorbar
    assert "√" in bar.title.text and [float(t) for t in bar.ticktext] == [0, 1, 4, 9]  # evenly spaced along the bar
    assert np.allclose(np.square(bar.tickvals), [float(t) for t in bar.ticktext])
    # 0..2 takes almost half the colour range (a linear scale gives it a fifth)
    assert np.sqrt(2) / np.sqrt(9.5) > 0.45
    dots = [t for t in fig.data if isinstance(t, go.Scatter)]
    assert sum(len(t.x) for t in dots) == 2 and [t.name for t in dots if t.showlegend] == ["top units"]
    with pytest.raises(ValueError, match="non-negative"):
        layer_head_heatmap(frame.assign(taskness=-1.0), "taskness", sqrt=True)
