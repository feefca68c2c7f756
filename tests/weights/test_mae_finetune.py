"""Per-task fine-tuning of the MAE: only the MAE's trainable weights change (small sizes)."""

from __future__ import annotations

import pytest
import torch

from interp.data.synthetic import SyntheticPascal
from interp.weights.mae import FinetuneConfig, finetune_task, mae_parameter_names, prompts_for, split_train_pairs
from tests.conftest import random_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def source():
    return SyntheticPascal(seed=7, size_per_split={"trn": 200, "val": 80})


def test_finetune_changes_mae_only(source):
    model = random_model(with_vqgan=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pool, _ = split_train_pairs(source, 0, n_val=4, n_pool=8)
    prompts = prompts_for(source, pool, ["lowlight"], 0, model.grid, seed=0)["lowlight"]
    result = finetune_task(model, prompts, FinetuneConfig(steps=3, batch_size=4, lr=1e-2, warmup=1), progress=False)

    for key, value in model.state_dict().items():  # the base is not modified
        assert torch.equal(value, before[key]), key
    tuned = result.model.state_dict()
    assert all(torch.equal(tuned[k], before[k]) for k in before if k.startswith("vqgan."))
    assert any(not torch.equal(tuned[k], before[k]) for k in before if not k.startswith("vqgan."))
    # position tables are fixed, so they are no part of the task vector either
    assert torch.equal(tuned["encoder.pos_embed"], before["encoder.pos_embed"])

    tv = result.task_vector
    assert tv.name == "lowlight"
    assert not [k for k in tv if k.startswith("vqgan.")]
    assert sorted(tv) == sorted(mae_parameter_names(model))
    assert tv.norm() > 0
    rebuilt = tv.apply_to(model, 1.0).state_dict()
    for key in tv:
        torch.testing.assert_close(rebuilt[key], tuned[key])
    assert list(result.log.columns) == ["step", "loss", "lr"] and len(result.log) == 3
