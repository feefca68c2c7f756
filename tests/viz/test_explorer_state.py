"""The explorer's state is what it shows: policy, patched forward, task and prompt changed in every order.

An independent model of the state (the chosen policy's units above the threshold, looked up by
unit name in the policy's own space, plus the units clicked by hand) predicts the mask after
each action; the explorer's mask, its grid and its summary line must all agree with it.
"""

from __future__ import annotations

import itertools

import pytest
import torch

pytest.importorskip("ipywidgets", reason="the patch explorer needs ipywidgets (pip install ipywidgets)")
pytest.importorskip("anywidget", reason="the explorer's unit grid needs anywidget (pip install anywidget)")

from interp.taskvectors.units import UnitSpace  # noqa: E402
from interp.viz.explorer import NO_POLICY, PatchExplorer  # noqa: E402
from tests.viz.test_explorer import setup  # noqa: E402,F401  (the module fixture: model, prompts, means, policy)

ACTIONS = ("policy", "forward", "task", "prompt")


@pytest.fixture(scope="module")
def explorer(setup, tmp_path_factory):  # noqa: F811
    model, prompts, means, policy = setup
    space = UnitSpace.for_model(model, "group")
    other = torch.rand(len(space), generator=torch.Generator().manual_seed(1))
    ex = PatchExplorer(model, prompts, means, {"segmentation": (space, policy), "lowlight": (space, other)},
                       export_dir=tmp_path_factory.mktemp("figures"), formats=("html",))
    return ex, {"segmentation": policy, "lowlight": other}, space


def _key(u):
    return (u.stack, u.layer, u.head, u.group)


def _expected(ex, model: dict, probabilities: dict, policy_space) -> list[bool]:
    """The mask the state model predicts on the explorer's current space."""
    chosen = set()
    if model["policy"] != NO_POLICY:
        p = probabilities[model["policy"]]
        chosen = {_key(u) for u, v in zip(policy_space.units, p.tolist()) if v > model["threshold"]}
    out = []
    for u in ex.space(model["layout"]).units:
        out.append(model["clicked"].get(_key(u), _key(u) in chosen))
    return out


def _check(ex, model, probabilities, policy_space, where: str) -> None:
    assert ex.task == model["task"] and ex.layout == model["layout"] and ex.index == model["index"], where
    assert ex.controls["policy"].value == model["policy"], f"{where}: policy {ex.controls['policy'].value!r}"
    assert not ex.controls["encoder"].value and not ex.controls["decoder"].value, f"{where}: a layer range got ticked"
    want = _expected(ex, model, probabilities, policy_space)
    got = ex.current_mask().tolist()
    assert got == want, f"{where}: {sum(got)} units patched, the state says {sum(want)}"
    assert ex.grid.patched() == [i for i, on in enumerate(want) if on], f"{where}: the grid shows another mask"
    n = sum(want)
    assert (f"{n} of {len(want)} units patched" if n else "nothing patched") in ex.summary.value, where
    assert ex.status.value == "", f"{where}: {ex.status.value}"


def _act(ex, model: dict, action: str) -> None:
    c = ex.controls
    if action == "policy":  # the task's own policy <-> none
        model["policy"] = model["task"] if model["policy"] == NO_POLICY else NO_POLICY
        c["policy"].value = model["policy"]
    elif action == "forward":
        model["layout"] = "one_shot" if model["layout"] == "zero_shot" else "zero_shot"
        c["layout"].value = model["layout"]
    elif action == "task":  # the task's own policy follows the task
        old = model["task"]
        model["task"] = "lowlight" if old == "segmentation" else "segmentation"
        if model["policy"] == old:
            model["policy"] = model["task"]
        c["task"].value = model["task"]
    elif action == "prompt":
        model["index"] = (model["index"] + 1) % 2
        c["index"].value = model["index"]


def _start(ex, space) -> dict:
    """Segmentation, zero-shot, its policy; one unit set on and one set off by hand, one of one-shot only."""
    with ex.hold():
        ex.clicked = {}
        c = ex.controls
        c["layout"].value, c["task"].value, c["index"].value = "zero_shot", "segmentation", 0
        c["policy"].value, c["threshold"].value = "segmentation", 0.5
        c["encoder"].value = c["decoder"].value = False
    mask = ex.current_mask()
    on = next(i for i in range(len(space)) if not mask[i])
    off = next(i for i in range(len(space)) if mask[i])
    ex.toggle(on)
    ex.toggle(off)
    with ex.hold():
        ex.controls["layout"].value = "one_shot"
    example = next(i for i, u in enumerate(ex.space().units) if u.group == "example_output")
    ex.toggle(example)  # kept aside in zero-shot, applied again in one-shot
    with ex.hold():
        ex.controls["layout"].value = "zero_shot"
    clicked = {_key(space.unit(on)): True, _key(space.unit(off)): False, _key(ex.space("one_shot").unit(example)): True}
    assert ex.clicked == clicked
    assert "1 clicked unit(s) not in the zero-shot forward" in ex.summary.value
    return {"task": "segmentation", "layout": "zero_shot", "index": 0, "policy": "segmentation", "threshold": 0.5,
            "clicked": clicked}


def test_state_is_what_it_shows_in_every_order(explorer) -> None:
    ex, probabilities, space = explorer
    for order in itertools.permutations(ACTIONS):
        model = _start(ex, space)
        _check(ex, model, probabilities, space, "start")
        for step, action in enumerate(order):
            _act(ex, model, action)
            _check(ex, model, probabilities, space, f"{' -> '.join(order[: step + 1])}")


def test_none_again_patches_nothing_and_clicks_survive(explorer) -> None:
    ex, probabilities, space = explorer
    model = _start(ex, space)
    ex.controls["policy"].value = NO_POLICY  # the reported bug: none again patched every unit
    assert int(ex.current_mask().sum()) == 1 and not ex.controls["encoder"].value  # only the unit set on by hand
    ex.controls["policy"].value = "segmentation"
    assert not ex.controls["encoder"].value and not ex.controls["decoder"].value  # nothing ticked behind the user's back
    ex.controls["layout"].value = "one_shot"
    model["layout"] = "one_shot"
    _check(ex, model, probabilities, space, "one-shot keeps the clicks")
    assert "by hand: +2 −1" in ex.summary.value
    ex.clear_clicks()
    model["clicked"] = {}
    _check(ex, model, probabilities, space, "clear clicks")
    ex.controls["layout"].value = "zero_shot"
