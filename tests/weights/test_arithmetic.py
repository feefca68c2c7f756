"""Task vectors: construction, algebraic identities, applying, files, coefficient search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from interp.weights import TaskVector, TaskVectorError, search_coefficient
from tests.weights import SmallNet, perturbed

pytestmark = pytest.mark.usefixtures("one_thread")


class WithNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.fc(x))


@pytest.fixture
def pair():
    torch.manual_seed(0)
    pre = WithNorm()
    fine = perturbed(pre, 0.1, seed=1)
    fine.bn.num_batches_tracked += 7
    return pre, fine


def close(a: TaskVector, b: TaskVector, tol: float = 1e-6) -> bool:
    return set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=tol) for k in a)


def test_from_modules_skips_integer_buffers_keeps_float_ones(pair):
    pre, fine = pair
    tv = TaskVector.from_modules(pre, fine, name="t")
    assert "bn.num_batches_tracked" not in tv
    assert {"fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"} == set(tv)
    assert torch.allclose(tv["fc.weight"], fine.fc.weight - pre.fc.weight)
    assert tv.name == "t" and tv.numel() == 12 + 3 * 5


def test_identities():
    g = torch.Generator().manual_seed(0)
    a = TaskVector({"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g)})
    b = TaskVector({"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g)})
    zero = a - a
    assert close((a + b) - b, a)
    assert close(a + b, b + a)
    assert close(-(-a), a)
    assert close(2 * a, a + a) and close(a * 2.0, a + a)
    assert close(a / 2, 0.5 * a)
    assert close(a - b, a + (-b))
    assert close(sum([a, b]), a + b)
    assert all(float(v.abs().max()) == 0.0 for v in zero.values())
    assert a.dot(b) == pytest.approx(float(a.flatten() @ b.flatten()), rel=1e-5)
    assert a.norm() == pytest.approx(float(a.flatten().norm()), rel=1e-5)
    assert a.cosine(a) == pytest.approx(1.0)
    assert close(a * torch.tensor(3.0), 3 * a)


def test_apply_to_recovers_finetuned_and_leaves_input_untouched(pair):
    pre, fine = pair
    before = {k: v.clone() for k, v in pre.state_dict().items()}
    tv = TaskVector.from_modules(pre, fine)
    out = tv.apply_to(pre, 1.0)
    assert out is not pre
    for k, v in pre.state_dict().items():
        assert torch.equal(v, before[k])
    for k, v in fine.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(out.state_dict()[k], v, atol=1e-6)
    half = tv.apply_to(pre, 0.5, inplace=True)
    assert half is pre
    assert torch.allclose(pre.fc.weight, before["fc.weight"] + 0.5 * tv["fc.weight"])
    state = tv.apply_to_state_dict(before, -1.0)
    assert torch.allclose(state["fc.bias"], before["fc.bias"] - tv["fc.bias"])
    assert state["bn.num_batches_tracked"] is before["bn.num_batches_tracked"]


def test_apply_to_tied_weights_adds_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3, bias=False)
            self.b = nn.Linear(3, 3, bias=False)
            self.b.weight = self.a.weight

    pre = Tied()
    tv = TaskVector({"a.weight": torch.ones(3, 3), "b.weight": torch.ones(3, 3)})
    out = tv.apply_to(pre)
    assert torch.allclose(out.a.weight, pre.a.weight + 1) and out.b.weight is out.a.weight


def test_named_errors(pair):
    pre, fine = pair
    sd_pre, sd_fine = pre.state_dict(), fine.state_dict()
    missing = {k: v for k, v in sd_fine.items() if k != "fc.bias"}
    with pytest.raises(TaskVectorError, match="fc.bias"):
        TaskVector.from_state_dicts(sd_pre, missing)
    extra = dict(sd_fine, **{"head.weight": torch.zeros(2)})
    with pytest.raises(TaskVectorError, match="head.weight"):
        TaskVector.from_state_dicts(sd_pre, extra)
    wrong = dict(sd_fine, **{"fc.weight": torch.zeros(3, 5)})
    with pytest.raises(TaskVectorError, match=r"fc.weight: \(3, 4\) vs \(3, 5\)"):
        TaskVector.from_state_dicts(sd_pre, wrong)
    a = TaskVector({"w": torch.zeros(2)})
    with pytest.raises(TaskVectorError, match="'v'"):
        a + TaskVector({"v": torch.zeros(2)})
    with pytest.raises(TaskVectorError, match="shape"):
        a + TaskVector({"w": torch.zeros(3)})
    with pytest.raises(TypeError, match="dot"):
        a * a
    with pytest.raises(TaskVectorError, match="'w'"):
        a.apply_to(pre)
    with pytest.raises(TaskVectorError, match="floating-point"):
        TaskVector({"i": torch.zeros(2, dtype=torch.long)})


def test_files_roundtrip(tmp_path, pair):
    pre, fine = pair
    save_file(pre.state_dict(), str(tmp_path / "pre.safetensors"))
    save_file(fine.state_dict(), str(tmp_path / "fine.safetensors"))
    torch.save({"model": pre.state_dict()}, tmp_path / "pre.pt")
    torch.save({"model": fine.state_dict()}, tmp_path / "fine.pt")
    expected = TaskVector.from_modules(pre, fine)
    assert close(TaskVector.from_files(tmp_path / "pre.safetensors", tmp_path / "fine.safetensors"), expected)
    from_pt = TaskVector.from_files(tmp_path / "pre.pt", tmp_path / "fine.pt", key="model")
    assert close(from_pt, expected) and from_pt.name == "fine"
    torch.save(fine, tmp_path / "module.pt")  # a pickled module: needs code execution, refused
    with pytest.raises(ValueError, match="pickle|weights_only|state dict"):
        TaskVector.from_files(tmp_path / "pre.pt", tmp_path / "module.pt", key="model")
    path = expected.save(tmp_path / "tv.safetensors")
    loaded = TaskVector.load(path)
    assert close(loaded, expected)
    with pytest.raises(FileNotFoundError):
        TaskVector.load(tmp_path / "nope.safetensors")


def test_search_coefficient_finds_the_planted_scale():
    torch.manual_seed(0)
    pre = SmallNet()
    tv = TaskVector.from_modules(pre, perturbed(pre, 0.3, seed=2), name="t")
    target = tv.apply_to(pre, 0.6)
    w0 = pre.fc1.weight.detach().clone()
    x = torch.randn(64, 8)
    with torch.no_grad():
        y = target(x)

    def evaluate(model):
        with torch.no_grad():
            return -float((model(x) - y).square().mean())

    best, table = search_coefficient(pre, tv, evaluate, coefs=np.linspace(0, 1, 11), progress=False)
    assert best == pytest.approx(0.6)
    assert list(table.columns) == ["coef", "score", "admissible"] and len(table) == 11
    assert torch.equal(pre.fc1.weight, w0)  # the search works on a copy
    # dict scores, minimise, with a constraint that rules out the optimum
    best, table = search_coefficient(
        pre, tv, lambda m: {"mse": -evaluate(m), "c": 1.0}, coefs=[0.2, 0.6, 1.0], metric="mse",
        higher_is_better=False, constraint=lambda s: s["mse"] > 1e-9, progress=False,
    )
    assert best in (0.2, 1.0) and not table.loc[table.coef == 0.6, "admissible"].item()
    with pytest.raises(ValueError, match="metric"):
        search_coefficient(pre, tv, lambda m: {"a": 1.0}, coefs=[0.0], progress=False)
