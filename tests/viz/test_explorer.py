"""The patch explorer, driven without a browser: set widget values, read the computed state."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest
import torch

ipywidgets = pytest.importorskip("ipywidgets", reason="the patch explorer needs ipywidgets (pip install ipywidgets)")

from interp.data.synthetic import SyntheticPascal  # noqa: E402
from interp.data.tasks import build_task_prompts  # noqa: E402
from interp.taskvectors.collect import collect  # noqa: E402
from interp.taskvectors.units import UnitSpace  # noqa: E402
from interp.viz.explorer import NO_POLICY, PatchExplorer  # noqa: E402
from interp.viz.export import figure_stem  # noqa: E402
from tests.conftest import random_model  # noqa: E402

TASKS = ("segmentation", "lowlight")


@pytest.fixture(scope="module")
def setup():
    model = random_model(3, with_vqgan=True)
    prompts = build_task_prompts(SyntheticPascal(seed=0, size_per_split=40), fold=0, n=2, grid=model.grid, seed=0, tasks=TASKS)
    means = {t: collect(model, [b.canvases], "one_shot", task=t, progress=False) for t, b in prompts.items()}
    space = UnitSpace.for_model(model, "group")
    policy = torch.rand(len(space), generator=torch.Generator().manual_seed(0))
    return model, prompts, means, policy


@pytest.fixture(scope="module")
def explorer(setup, tmp_path_factory):
    model, prompts, means, policy = setup
    space = UnitSpace.for_model(model, "group")
    return PatchExplorer(model, prompts, means, {"segmentation": (space, policy)},
                         export_dir=tmp_path_factory.mktemp("figures"), formats=("html",))


def test_widget_and_policy_start(explorer, setup) -> None:
    _, _, _, policy = setup
    assert isinstance(explorer.widget, ipywidgets.VBox)
    assert explorer.controls["layout"].value == "zero_shot"
    assert explorer.controls["policy"].value == "segmentation"  # starts from the task's own policy
    # zero-shot group space = the policy's space: the mask is the thresholded policy
    assert torch.equal(explorer.current_mask(), policy > 0.5)
    png = explorer.images["patched"].value
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mIoU" in explorer.image_titles["patched"].value and explorer.status.value == ""
    with explorer.hold():
        explorer.controls["threshold"].value = 0.0
    assert torch.equal(explorer.current_mask(), policy > 0.0)
    assert explorer.images["patched"].value != png  # redrawn in place


def test_controls_select_units_and_change_the_prediction(explorer) -> None:
    with explorer.hold():
        explorer.controls["policy"].value = NO_POLICY
        explorer.controls["threshold"].value = 0.5
        explorer.controls["encoder"].value = False
        explorer.controls["decoder"].value = False
    assert not explorer.current_mask().any()
    unpatched = explorer.predictions()
    assert torch.equal(unpatched["patched"], unpatched["zero_shot"])

    with explorer.hold():
        explorer.controls["decoder"].value = True
        explorer.controls["decoder_layers"].value = (1, 1)
        explorer.controls["heads"].value = (0, 2)
        for group, box in explorer.group_boxes.items():
            box.value = group == "target"
    space = explorer.space()
    chosen = [space.unit(i) for i in explorer.current_mask().nonzero().flatten().tolist()]
    assert [(u.stack, u.layer, u.head, u.group) for u in chosen] == [("decoder", 1, 0, "target"), ("decoder", 1, 2, "target")]
    patched = explorer.predictions()["patched"]
    assert not torch.equal(patched, unpatched["zero_shot"])
    assert "2 of 40 units patched" in explorer.summary.value

    fig = explorer.render()
    assert [type(t) for t in fig.data] == [go.Image] * 7  # example pair, query, three predictions, target
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:3] == ["example input", "example output", "query"]
    assert titles[5].startswith("patched zero-shot (2 units)") and "mIoU ↑" in titles[3]
    assert "query " in fig.layout.title.text and "prompt 0" in fig.layout.title.text  # the prompt's name


def test_grid_clicks_toggle_single_units(explorer) -> None:
    with explorer.hold():
        explorer.controls["task"].value = "segmentation"
        explorer.controls["layout"].value = "zero_shot"
        explorer.controls["policy"].value = NO_POLICY
        explorer.controls["encoder"].value = False
        explorer.controls["decoder"].value = False
    assert explorer.controls["threshold"].disabled  # no policy: nothing to threshold
    assert not explorer.current_mask().any() and len(explorer.grid.mask) == len(explorer.space())
    assert sum(len(b["units"]) * b["heads"] for b in explorer.grid.blocks) == len(explorer.space())
    before = explorer.predictions()["patched"]
    space = explorer.space()
    pick = [i for i, u in enumerate(space.units)
            if (u.stack, u.layer, u.head) == ("encoder", 1, 2) or (u.stack, u.layer, u.group) == ("decoder", 1, "target") and u.head in (0, 2)]
    for i in pick:
        explorer.grid.click(i)  # what a click on the cell does (the browser test clicks the cells)
    assert explorer.current_mask().nonzero().flatten().tolist() == pick
    assert explorer.grid.patched() == pick  # the grid is the live mask
    assert not torch.equal(explorer.predictions()["patched"], before)
    means = explorer.set_scores()
    assert means["patched"][2] == len(explorer.prompts["segmentation"]) and "± " in explorer.summary.value
    bar = explorer.mask_figure().layout.coloraxis.colorbar  # the static copy of the grid: two colours, named
    assert list(bar.ticktext) == ["not patched", "patched"]
    explorer.toggle(pick[0])
    assert explorer.current_mask().nonzero().flatten().tolist() == pick[1:] == explorer.grid.patched()


def test_selection_policy_code_and_state(explorer, tmp_path) -> None:
    from interp.taskvectors.policy import Policy

    with explorer.hold():
        explorer.controls["policy"].value = NO_POLICY
        explorer.controls["decoder"].value = True
        explorer.controls["decoder_layers"].value = (1, 1)
    explorer.toggle(0)
    mask, state = explorer.current_mask(), explorer.state()
    policy_file, code = explorer.export_policy(tmp_path / "sel.safetensors")
    saved = Policy.load(policy_file)  # the artifact a search writes: a unit set, no invented logits
    assert saved.is_set and saved.logits is None and torch.equal(saved.mask(), mask) and "load_state" in code.read_text()
    assert saved.metadata["method"] == "explorer" and saved.task == explorer.task
    compile(code.read_text(), str(code), "exec")
    with explorer.hold():
        explorer.controls["decoder"].value = False
    explorer.load_state(json.loads(json.dumps(state)))
    assert torch.equal(explorer.current_mask(), mask)
    with pytest.raises(ValueError, match="unknown explorer state"):
        explorer.load_state({"colour": 1})


def test_task_layout_and_export(explorer) -> None:
    with explorer.hold():
        explorer.controls["task"].value = "lowlight"
        explorer.controls["layout"].value = "one_shot"
        explorer.controls["index"].value = 1
        for box in explorer.group_boxes.values():
            box.value = True
    assert len(explorer.current_mask()) == len(explorer.space("one_shot")) > len(explorer.space("zero_shot"))
    assert "MSE ↓" in explorer.titles()["one_shot"]
    explorer.export_button.click()
    first = explorer.last_export
    stem = figure_stem("explorer", "lowlight", "prompt1", "one_shot", mask=explorer.current_mask())
    assert [p.name for p in first] == [stem + ".html", stem + "_units.html"]  # the view and its mask grid
    assert first[0].name.startswith("explorer_lowlight_prompt1_one_shot_") and all(p.exists() for p in first)
    assert "not patched" in first[1].read_text() and "patched units" in first[1].read_text()
    assert f"wrote {first[0].name}, {first[1].name} in <code>{first[0].resolve().parent}</code>" in explorer.status.value
    assert not explorer.export_button.disabled
    explorer.controls["heads"].value = (0,)  # another mask: another file, the first one kept
    explorer.export_button.click()
    second = explorer.last_export
    assert second[0] != first[0] and first[0].exists() and second[0].exists()


def test_bad_input(setup) -> None:
    model, prompts, means, policy = setup
    with pytest.raises(ValueError, match=r"no means for task\(s\) \['lowlight'\]"):
        PatchExplorer(model, prompts, {"segmentation": means["segmentation"]})
    with pytest.raises(ValueError, match="Pass \\(UnitSpace, probabilities\\)"):
        PatchExplorer(model, prompts, means, {"x": torch.rand(5)})
    with pytest.raises(ValueError, match="bare vector"):
        PatchExplorer(model, prompts, means, {"x": policy})  # even of a space's length: which space is unknown
    with pytest.raises(ValueError, match="sigmoid"):
        PatchExplorer(model, prompts, means, {"x": (UnitSpace.for_model(model, "group"), policy * 10 - 5)})
    with pytest.raises(ValueError, match="VQGAN"):
        PatchExplorer(random_model(0), prompts, means)


def test_run_policies_opens_every_search_result(setup, tmp_path) -> None:
    from interp.taskvectors.policy import Policy
    from interp.viz.explorer import run_policies

    model, prompts, means, policy = setup
    space = UnitSpace.for_model(model, "group")
    logits = torch.logit(policy.clamp(0.01, 0.99))
    from interp.run import RunDir

    run = RunDir(tmp_path)
    Policy(space, logits, logits.clone(), {"task": "segmentation"}).save(run.policy_path("segmentation", "reinforce"))
    Policy(space, -logits, -logits.clone(), {"task": "lowlight"}).save(run.policy_path("lowlight", "greedy"))
    Policy.from_mask(space, policy > 0.5, {"task": "segmentation"}).save(run.policy_path("segmentation", "greedy"))
    Policy.from_mask(space, policy > 0.9, {"task": "segmentation"}).save(run.policy_path("segmentation", "greedy", seed=2))
    found = run_policies(str(tmp_path))  # a str path: read through RunDir
    assert sorted(found) == ["lowlight (greedy)", "segmentation (greedy)", "segmentation (greedy, seed 2)",
                             "segmentation (reinforce)"]
    assert sorted(run_policies(tmp_path, method="greedy")) == ["lowlight (greedy)", "segmentation (greedy)",
                                                               "segmentation (greedy, seed 2)"]
    explorer = PatchExplorer(model, prompts, means, found, formats=("html",), export_dir=tmp_path / "figures")
    assert explorer.controls["policy"].value == "segmentation (reinforce)"  # the run's policy for the first task
    options = [v for _, v in explorer.controls["policy"].options]
    assert options == [NO_POLICY, "segmentation (reinforce)", "segmentation (greedy)", "segmentation (greedy, seed 2)"]
    assert torch.equal(explorer.current_mask(), policy.clamp(0.01, 0.99) > 0.5)
    explorer.controls["policy"].value = "segmentation (greedy)"
    explorer.controls["task"].value = "lowlight"  # the same method's policy of the new task
    assert explorer.controls["policy"].value == "lowlight (greedy)"
    assert [v for _, v in explorer.controls["policy"].options] == [NO_POLICY, "lowlight (greedy)"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="interp search"):
        run_policies(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown search method"):
        run_policies(tmp_path, method="annealing")


@pytest.mark.slow
def test_two_exports_of_two_masks_are_two_consistent_sets(setup, tmp_path) -> None:
    """Every format of one export shows the same mask; another mask gets another set, the first is kept."""
    from interp.viz.export import chrome_available

    if not chrome_available():
        pytest.skip("kaleido or Chromium absent here: static export is checked where they are (CI)")
    model, prompts, means, policy = setup
    space = UnitSpace.for_model(model, "group")
    explorer = PatchExplorer(model, prompts, means, {"segmentation": (space, policy)}, export_dir=tmp_path,
                             formats=("html", "svg", "pdf"))
    sets = []
    for threshold in (0.5, 0.8):
        with explorer.hold():
            explorer.controls["threshold"].value = threshold
        files = explorer.export()
        count = f"{int(explorer.current_mask().sum())} of {len(explorer.space())} units patched"
        assert [p.suffix for p in files] == [".html", ".svg", ".pdf"] * 2 and len({p.stem for p in files[:3]}) == 1
        assert {p.stem for p in files[3:]} == {files[0].stem + "_units"}  # the mask grid beside the view
        assert count in files[0].read_text() and count in files[1].read_text()  # HTML and SVG show this mask
        sets.append(files)
    assert sets[0][0].stem != sets[1][0].stem and all(p.exists() for files in sets for p in files)
