"""The explorer's ``patch`` control: the intervention kinds reach its predictions and its state."""

from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets", reason="the patch explorer needs ipywidgets (pip install ipywidgets)")
pytest.importorskip("anywidget", reason="the explorer's unit grid needs anywidget (pip install anywidget)")

from interp.taskvectors.units import UnitSpace  # noqa: E402
from interp.viz.explorer import NO_POLICY, PatchExplorer  # noqa: E402
from tests.viz.test_explorer import setup  # noqa: E402,F401  (the module fixture: model, prompts, means, policy)


def test_intervention_control(setup, tmp_path) -> None:  # noqa: F811
    model, prompts, means, policy = setup
    space = UnitSpace.for_model(model, "group")
    ex = PatchExplorer(model, prompts, means, {"segmentation": (space, policy)}, export_dir=tmp_path, formats=("html",))
    with ex.hold():
        ex.controls["task"].value = "lowlight"  # MSE: any change of the prediction changes the metric
        ex.controls["policy"].value = NO_POLICY
        ex.controls["encoder"].value = ex.controls["decoder"].value = False
    ex.clicked = {(u.stack, u.layer, u.head, u.group): True for u in ex.space().units}  # every unit, set by hand
    ex.update()
    replace, zero = ex.set_scores()["patched"][0], ex.set_scores()["zero_shot"][0]
    assert replace != zero
    with ex.hold():
        ex.controls["intervention"].value, ex.controls["alpha"].value = "scaled", 1.0
    assert ex.set_scores()["patched"][0] == replace  # scaled(1) is replace
    with ex.hold():
        ex.controls["intervention"].value, ex.controls["alpha"].value = "add", 0.0
    assert ex.set_scores()["patched"][0] == zero  # add(0) is the zero-shot forward
    assert len(ex.current_mask().nonzero()) == len(ex.space())  # changing the kind keeps the patched units
    with ex.hold():
        ex.controls["alpha"].value = 1.0
    assert ex.set_scores()["patched"][0] not in (replace, zero)
    state = ex.state()
    assert (state["intervention"], state["alpha"]) == ("add", 1.0)
    ex.load_state({**state, "intervention": "replace"})
    assert ex.set_scores()["patched"][0] == replace
