"""The explorer's code-lens tab: computed only while shown; its last readouts are the explorer's own predictions."""

from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets", reason="the patch explorer needs ipywidgets (pip install ipywidgets)")
pytest.importorskip("anywidget", reason="the explorer's unit grid needs anywidget (pip install anywidget)")

from interp.taskvectors.units import UnitSpace  # noqa: E402
from interp.viz.explorer import NO_POLICY, PatchExplorer  # noqa: E402
from tests.viz.test_explorer import setup  # noqa: E402,F401  (the module fixture: model, prompts, means, policy)


def test_lens_tab(setup, tmp_path) -> None:  # noqa: F811
    model, prompts, means, policy = setup
    space = UnitSpace.for_model(model, "group")
    ex = PatchExplorer(model, prompts, means, {"segmentation": (space, policy)}, export_dir=tmp_path, formats=("html",))
    with ex.hold():
        ex.controls["task"].value = "lowlight"
        ex.controls["policy"].value = NO_POLICY
        ex.controls["encoder"].value = ex.controls["decoder"].value = False
    ex.clicked = {(u.stack, u.layer, u.head, u.group): True for u in ex.space().units}  # every unit set on by hand:
    # the patched prediction differs from the zero-shot one
    ex.update()
    assert ex.lens._shown is None  # hidden tab: nothing computed
    ex.tabs.selected_index = list(ex.tabs.titles).index("code lens")
    assert ex.lens._shown is not None and "dec 1" in ex.lens.table.value
    labels, images, metric = ex.lens.compute()
    scores = ex.scores()
    assert labels[-1] == "dec 1" and len(images) == 3
    for condition, panel in zip(metric, ("one_shot", "zero_shot", "patched")):
        assert float(metric[condition][-1]) == pytest.approx(scores[panel], rel=1e-6)  # the last readout = the prediction
    assert float(metric["zero_shot"][-1]) != pytest.approx(scores["patched"], rel=1e-6)
    ex.tabs.selected_index = 0
