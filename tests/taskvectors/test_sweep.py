"""Single-unit sweeps: prefix reuse changes nothing but the cost."""

from __future__ import annotations

import pytest
import torch

from interp.canvas import zero_shot
from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_task_prompts
from interp.taskvectors.patching import MeanPatcher
from interp.scoring import reward_from_logits
from interp.taskvectors.collect import collect
from interp.taskvectors.sweep import sweep
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model


@pytest.fixture(scope="module")
def setup():
    model = random_model(seed=2, with_vqgan=True)
    source = SyntheticPascal(seed=3, size_per_split=40)
    batch = build_task_prompts(source, fold=1, n=4, grid=model.grid, seed=0, split="val", tasks=("lowlight",))["lowlight"]
    means = collect(model, [batch.canvases], layout="one_shot", progress=False)
    return model, batch, means


@pytest.mark.parametrize("granularity", ["layer", "head", "group"])
def test_prefix_reuse_equals_full_forwards(setup, granularity) -> None:
    model, batch, means = setup
    space = UnitSpace.for_model(model, granularity)
    reused = sweep(model, space, means, batch, reward="token", reuse_prefix=True, chunk=7, progress=False)
    full = sweep(model, space, means, batch, reward="token", reuse_prefix=False, progress=False)
    assert len(reused) == len(space)
    torch.testing.assert_close(torch.tensor(reused["reward"].values), torch.tensor(full["reward"].values), atol=1e-5, rtol=0)
    assert reused["delta"].abs().max() > 1e-4  # patches do something


def test_sweep_row_equals_a_manual_patch(setup) -> None:
    model, batch, means = setup
    space = UnitSpace.for_model(model, "head")
    table = sweep(model, space, means, batch, reward="pixel", progress=False)
    unit = space.index("decoder", 1, head=2)
    mask = torch.zeros(1, len(space), dtype=torch.bool)
    mask[0, unit] = True
    with torch.no_grad():
        logits = MeanPatcher(model, means, "zero_shot", space).forward(batch.canvases, mask)
        expected = reward_from_logits(model, "lowlight", batch.canvases, logits, zero_shot(model.grid), "pixel")
    assert table.loc[table["unit"] == unit, "reward"].item() == pytest.approx(float(expected.mean()), abs=1e-5)
    assert table["metric"].unique().tolist() == ["-mse"]
    with torch.no_grad():  # the delta's standard error, paired over the prompts
        clean = reward_from_logits(model, "lowlight", batch.canvases, model(batch.canvases, zero_shot(model.grid)),
                                   zero_shot(model.grid), "pixel")
    paired = (expected - clean).double()
    assert table.loc[table["unit"] == unit, "sem"].item() == pytest.approx(float(paired.std() / len(paired) ** 0.5), abs=1e-5)


def test_a_sweep_of_some_units_equals_those_rows_of_the_whole_sweep(setup) -> None:
    model, batch, means = setup
    space = UnitSpace.for_model(model, "head")
    whole = sweep(model, space, means, batch, reward="pixel", progress=False)
    some = [space.index("decoder", 1, head=2), 0, space.index("encoder", 1, head=3)]
    part = sweep(model, space, means, batch, reward="pixel", progress=False, units=some)
    assert part["unit"].tolist() == sorted(some)
    expected = whole.set_index("unit").loc[sorted(some)]
    assert torch.equal(torch.tensor(part["reward"].values), torch.tensor(expected["reward"].values))


def test_sweep_under_the_intervention_kinds(setup) -> None:
    from interp.taskvectors.patching import Intervention

    model, batch, means = setup
    space = UnitSpace.for_model(model, "layer")
    replace = sweep(model, space, means, batch, reward="token", progress=False)
    scaled = sweep(model, space, means, batch, reward="token", progress=False, intervention=Intervention("scaled", 1.0))
    assert scaled["reward"].equals(replace["reward"])  # scaled(1) is replace
    base = collect(model, [batch.canvases], layout="zero_shot", progress=False)
    none = sweep(model, space, means, batch, reward="token", progress=False, intervention=Intervention("add", 0.0),
                 base_means=base)
    assert (none["delta"] == 0).all()  # add(0) patches nothing
    add = sweep(model, space, means, batch, reward="token", progress=False, intervention=Intervention("add", 3.0),
                base_means=base)
    assert (add["delta"] - replace["delta"]).abs().max() > 1e-4
