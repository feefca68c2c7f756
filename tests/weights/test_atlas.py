"""aTLAS: planted per-block and per-group coefficients are recovered; the wrapper stays light."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.weights import AtlasModel, TaskVector, TaskVectorError, train_atlas
from interp.weights.atlas import _PartitionMix
from interp.weights.atlas_train import entropy_loss
from tests.weights import SmallNet, perturbed

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup():
    torch.manual_seed(0)
    base = SmallNet()
    tvs = {f"task{t}": TaskVector.from_modules(base, perturbed(base, 0.5, seed=10 + t)) for t in range(3)}
    return base, tvs


def plant(base, tvs, partitions: int, seed: int = 1, partition_seed: int = 0):
    """A target model with known coefficients in [-0.25, 1.25], and inputs/outputs to fit."""
    planted = AtlasModel(base, tvs, partitions=partitions, seed=partition_seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        planted.coefficients.copy_(torch.rand(planted.coefficients.shape, generator=g) * 1.5 - 0.25)
        x = torch.randn(256, base.fc1.in_features, generator=g)
        y = planted(x)
    return planted.coefficients.detach().clone(), x, y


def test_recovers_planted_blockwise_coefficients(setup):
    base, tvs = setup
    before = {k: v.clone() for k, v in base.state_dict().items()}
    truth, x, y = plant(base, tvs, partitions=1)
    model = AtlasModel(base, tvs)
    assert model.coefficients.shape == (5, 3, 1) and float(model.coefficients.detach().abs().sum()) == 0
    assert torch.allclose(model(x), base(x))  # starts at the base model
    log = train_atlas(model, [(x, y)], loss="mse", steps=250, lr=0.1, progress=False)
    assert log.loss.iloc[-1] < 1e-3 * log.loss.iloc[0]
    assert (model.coefficients.detach() - truth).abs().max() < 0.05
    for k, v in base.state_dict().items():  # the base is used, never modified
        assert torch.equal(v, before[k])
    table = model.coefficient_table()
    assert len(table) == 15 and set(table.task) == set(tvs)


def test_partitions_fit_a_planted_per_group_pattern():
    torch.manual_seed(0)
    base = SmallNet(16, 32, 16)
    tvs = [TaskVector.from_modules(base, perturbed(base, 0.5, seed=10 + t), name=f"t{t}") for t in range(2)]
    truth, x, y = plant(base, tvs, partitions=3, partition_seed=1)
    model = AtlasModel(base, tvs, partitions=3, seed=1)
    assert model.coefficients.shape == (5, 2, 3)
    for name in model.blocks:  # every block is partitioned, 1-D ones included
        groups = model.partition_groups(name)
        assert groups.shape == base.get_parameter(name).shape
        assert set(groups.unique().tolist()) == {0, 1, 2}
    log = train_atlas(model, [(x, y)], loss="mse", steps=300, lr=0.1, progress=False)
    assert log.loss.iloc[-1] < 1e-6 * log.loss.iloc[0]
    # each group has more elements than there are task vectors, so every coefficient is identifiable
    counts = torch.stack([torch.bincount(model.partition_groups(b).flatten(), minlength=3) for b in model.blocks])
    assert (counts > len(tvs)).all()
    assert (model.coefficients.detach() - truth).abs().max() < 0.05


def test_partition_assignment_is_seeded(setup):
    base, tvs = setup
    a, b = AtlasModel(base, tvs, partitions=4, seed=3), AtlasModel(base, tvs, partitions=4, seed=3)
    c = AtlasModel(base, tvs, partitions=4, seed=4)
    assert torch.equal(a.partition_groups("fc1.weight"), b.partition_groups("fc1.weight"))
    assert not torch.equal(a.partition_groups("fc1.weight"), c.partition_groups("fc1.weight"))


def test_partition_mix_gradient():
    g = torch.Generator().manual_seed(0)
    coef = torch.randn(2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    tau = torch.randn(2, 4, 5, dtype=torch.float64, generator=g)
    group = torch.randint(3, (4, 5), generator=g, dtype=torch.uint8)
    assert torch.autograd.gradcheck(lambda c: _PartitionMix.apply(c, tau, group), (coef,))
    dense = sum(coef[t][group.long()] * tau[t] for t in range(2))
    assert torch.allclose(_PartitionMix.apply(coef, tau, group), dense)


def test_memory_layout_and_exports(setup):
    base, tvs = setup
    model = AtlasModel(base, tvs, partitions=2)
    assert model.base is base  # no copy of the base
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0] is model.coefficients
    assert model.stacked("fc1.weight").shape == (3, 16, 8)
    assert model.partition_groups("fc1.weight").dtype == torch.long
    assert getattr(model, "_group1").dtype == torch.uint8  # 1 byte per element kept
    assert not any(k.startswith("_tau") or k.startswith("_group") for k in model.state_dict())
    with torch.no_grad():
        model.coefficients.uniform_(-1, 1)
    x = torch.randn(5, 8)
    merged = model.merged_model()
    assert torch.allclose(merged(x), model(x), atol=1e-6)
    assert torch.allclose(model.learned_task_vector().apply_to(base)(x), model(x), atol=1e-6)
    single = AtlasModel(base, [tvs["task0"]])
    assert single.stacked("fc1.weight").data_ptr() == tvs["task0"]["fc1.weight"].data_ptr()  # a view


def test_coefficients_roundtrip(tmp_path, setup):
    base, tvs = setup
    model = AtlasModel(base, tvs)
    with torch.no_grad():
        model.coefficients.normal_()
    path = model.save_coefficients(tmp_path / "coef.safetensors")
    other = AtlasModel(base, tvs)
    other.load_coefficients(path)
    assert torch.equal(other.coefficients, model.coefficients)
    with pytest.raises(TaskVectorError, match="partitions"):
        AtlasModel(base, tvs, partitions=2).load_coefficients(path)


def test_unsupervised_entropy_and_supervised_cross_entropy(setup):
    base, tvs = setup
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 8, generator=g)
    model = AtlasModel(base, tvs)
    with torch.no_grad():
        start = float(entropy_loss(model(x)))
    log = train_atlas(model, [x], loss="entropy", steps=60, lr=0.1, progress=False)
    with torch.no_grad():
        assert float(entropy_loss(model(x))) < start
    assert list(log.columns) == ["step", "loss", "lr"] and len(log) == 60
    labels = torch.randint(4, (64,), generator=g)
    model = AtlasModel(base, tvs)
    scores = []

    def evaluate(m):
        with torch.no_grad():
            scores.append(float((m(x).argmax(-1) == labels).float().mean()))
        return scores[-1]

    log = train_atlas(model, [(x[:32], labels[:32]), (x[32:], labels[32:])], loss="cross_entropy",
                      steps=40, evaluate=evaluate, eval_every=10, progress=False)
    assert log.loss.iloc[-5:].mean() < log.loss.iloc[1:6].mean()
    assert "score" in log and log.score.notna().sum() == 5  # step 0, 10, 20, 30, 40
    assert evaluate(model) == pytest.approx(max(scores[:-1]))  # best coefficients kept


def test_batchnorm_buffers_and_named_errors():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    tv = TaskVector.from_modules(base, perturbed(base, 0.1, seed=1))
    plain = AtlasModel(base, [tv])
    assert "1.running_mean" in plain.skipped and "1.running_mean" not in plain.blocks
    assert plain.blocks == ["0.weight", "0.bias", "1.weight", "1.bias"]
    x = torch.randn(2, 4)
    assert torch.allclose(plain(x), base(x))  # running statistics stay at the base values

    with pytest.raises(TaskVectorError, match="head.weight"):
        AtlasModel(base, [TaskVector({"head.weight": torch.zeros(2)})])
    with pytest.raises(TaskVectorError, match=r"0.weight: \(2,\) vs \(3, 4\)"):
        AtlasModel(base, [TaskVector({"0.weight": torch.zeros(2)})])
    with pytest.raises(ValueError, match="partitions"):
        AtlasModel(base, [tv], partitions=0)
    with pytest.raises(TaskVectorError, match="no task vectors"):
        AtlasModel(base, [])
    model = AtlasModel(base, [tv])
    with pytest.raises(ValueError, match="needs targets"):
        train_atlas(model, [torch.ones(2, 4)], loss="mse", steps=1, progress=False)
    with pytest.raises(ValueError, match="unknown loss"):
        train_atlas(model, [torch.ones(2, 4)], loss="hinge", steps=1, progress=False)
    with pytest.raises(TypeError, match="forward="):
        train_atlas(model, [{"x": 1}], loss="entropy", steps=1, progress=False)
    with pytest.raises(TypeError, match="AtlasModel"):
        train_atlas(base, [torch.ones(2, 4)], progress=False)


# --- conventions: interp's default against the upstream rule (fredzzhang/atlas mask_multiply) ---
def upstream_masks(base: nn.Module, K: int, seed: int) -> dict[tuple, torch.Tensor]:
    """The upstream rule from its description: seed the global generator, draw randint(K, shape)
    for every parameter in order, keep the last draw per shape (the global RNG is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        masks = {}
        for p in base.parameters():
            masks[tuple(p.shape)] = torch.randint(K, p.shape)
    return masks


def test_upstream_partitions_only_2d_blocks_with_zero_gradient(setup):
    base, tvs = setup
    K = 3
    model = AtlasModel(base, tvs, partitions=K, seed=7, convention="upstream")
    mine = AtlasModel(base, tvs, partitions=K, seed=7)
    g = torch.Generator().manual_seed(2)
    coef = torch.rand(model.coefficients.shape, generator=g) * 2 - 0.5
    with torch.no_grad():
        model.coefficients.copy_(coef)
        mine.coefficients.copy_(coef)
    merged, params = model.merged_parameters(), dict(base.named_parameters())
    masks = upstream_masks(base, K, seed=7)
    for b, name in enumerate(model.blocks):
        tau = model.stacked(name)
        if params[name].dim() == 2:  # sum_t coef[t, group[e]] * tau_t[e] with the shared mask
            group = masks[tuple(params[name].shape)]
            assert torch.equal(model.partition_groups(name), group)
            expected = params[name] + sum(coef[b, t][group] * tau[t] for t in range(3))
            torch.testing.assert_close(merged[name], expected, rtol=0, atol=1e-6)
        else:  # shift, fc1.bias, fc2.bias: exactly theta_0; interp moves them
            assert model.partition_groups(name) is None
            assert torch.equal(merged[name], params[name]), name
            assert (mine.merged_parameters()[name] - params[name]).abs().max() > 0.05
    x = torch.randn(16, 8, generator=g)
    model(x).square().sum().backward()
    grad = model.coefficients.grad
    one_d = [b for b, name in enumerate(model.blocks) if params[name].dim() != 2]
    assert one_d == [0, 2, 4]
    assert torch.equal(grad[one_d], torch.zeros_like(grad[one_d]))  # a zero gradient, not None
    assert (grad[[1, 3]].abs() > 0).all()
    fresh = AtlasModel(base, tvs, partitions=K, seed=7, convention="upstream")
    train_atlas(fresh, [(x, torch.zeros(16, 4))], loss="mse", steps=5, weight_decay=0.1, progress=False)
    learned = fresh.coefficients.detach()
    assert torch.equal(learned[one_d], torch.zeros_like(learned[one_d])) and (learned[[1, 3]] != 0).all()


def test_upstream_masks_are_shared_per_shape():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))
    tvs = [TaskVector.from_modules(base, perturbed(base, 0.3, seed=s), name=f"t{s}") for s in range(2)]
    upstream = AtlasModel(base, tvs, partitions=4, seed=11, convention="upstream")
    mine = AtlasModel(base, tvs, partitions=4, seed=11)
    assert torch.equal(upstream.partition_groups("0.weight"), upstream.partition_groups("2.weight"))
    assert not torch.equal(mine.partition_groups("0.weight"), mine.partition_groups("2.weight"))
    masks = upstream_masks(base, 4, seed=11)  # 0.bias, 2.bias are [6] too: drawn, then unused
    for name in ("0.weight", "2.weight", "4.weight"):
        assert torch.equal(upstream.partition_groups(name), masks[tuple(base.get_parameter(name).shape)])
    # the upstream convention leaves interp's default untouched: the interp masks are the seeded per-block draw
    generator = torch.Generator().manual_seed(11)
    first = torch.randint(4, (6, 6), generator=generator, dtype=torch.uint8)
    assert torch.equal(mine.partition_groups("0.weight"), first.long())


def test_fixed_numbers_for_both_conventions():
    """Linear(2, 2) at zero, one task vector of ones, K = 2, coefficients (block, group) fixed."""
    base = nn.Linear(2, 2)
    with torch.no_grad():
        base.weight.zero_()
        base.bias.zero_()
    tv = TaskVector({"weight": torch.ones(2, 2), "bias": torch.ones(2)}, name="ones")
    coef = torch.tensor([[[0.5, -2.0]], [[3.0, 0.25]]])  # [blocks=2, T=1, K=2]
    for convention in ("interp", "upstream"):
        model = AtlasModel(base, [tv], partitions=2, seed=0, convention=convention)
        with torch.no_grad():
            model.coefficients.copy_(coef)
        merged = model.merged_parameters()
        groups = model.partition_groups("weight")
        assert torch.equal(merged["weight"], torch.tensor([0.5, -2.0])[groups])
        if convention == "upstream":
            assert torch.equal(merged["bias"], torch.zeros(2))
        else:
            assert torch.equal(merged["bias"], torch.tensor([3.0, 0.25])[model.partition_groups("bias")])
    # blockwise (K = 1): the two conventions agree
    a, b = AtlasModel(base, [tv]), AtlasModel(base, [tv], convention="upstream")
    with torch.no_grad():
        a.coefficients.fill_(0.75)
        b.coefficients.fill_(0.75)
    assert torch.equal(a.merged_parameters()["weight"], torch.full((2, 2), 0.75))
    assert torch.equal(b.merged_parameters()["weight"], torch.full((2, 2), 0.75))


def test_upstream_fp16_storage_and_mix(setup):
    """Upstream keeps task vectors in fp16 and mixes them in fp16: sum_t (tau16_t * lambda_t)."""
    base, tvs = setup
    halves = {k: TaskVector.from_modules(base, perturbed(base, 0.5, seed=10 + t), dtype=torch.float16)
              for t, k in enumerate(tvs)}
    assert all(torch.equal(halves[k][n], tvs[k][n].half()) for k in tvs for n in tvs[k])  # fp32 diff, then .half()
    model = AtlasModel(base, halves, dtype=torch.float16, convention="upstream")
    assert model.stacked("fc1.weight").dtype == torch.float16
    with torch.no_grad():
        model.coefficients.copy_(torch.tensor([0.3, -0.7, 1.1]).view(1, 3, 1).expand(5, 3, 1))
    merged = model.merged_parameters()
    for name, p in base.named_parameters():
        parts = [halves[k][name] * torch.tensor(c) for k, c in zip(halves, (0.3, -0.7, 1.1))]
        delta = parts[0] + parts[1] + parts[2]
        assert delta.dtype == torch.float16
        assert torch.equal(merged[name], p + delta)  # bit for bit
    full = AtlasModel(base, tvs)
    with torch.no_grad():
        full.coefficients.copy_(model.coefficients)
    with torch.no_grad():
        gap = max(float((full.merged_parameters()[k] - merged[k]).abs().max()) for k in merged)
    assert 0 < gap < 5e-3  # the fp16 rounding of the upstream storage


def test_convention_is_checked_on_load(tmp_path, setup):
    base, tvs = setup
    model = AtlasModel(base, tvs, partitions=2, convention="upstream")
    path = model.save_coefficients(tmp_path / "c.safetensors")
    AtlasModel(base, tvs, partitions=2, convention="upstream").load_coefficients(path)
    with pytest.raises(TaskVectorError, match="convention"):
        AtlasModel(base, tvs, partitions=2).load_coefficients(path)
    with pytest.raises(ValueError, match="convention"):
        AtlasModel(base, tvs, convention="official")
