"""The Policy artifact: save/load round trip with its unit space, named errors, masks and controls."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from interp.taskvectors.policy import Policy, PolicyError, random_like, stratified_like
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model


@pytest.fixture(scope="module")
def space() -> UnitSpace:
    return UnitSpace.for_model(random_model(0), "group")


def make_policy(space: UnitSpace, seed: int = 0) -> Policy:
    g = torch.Generator().manual_seed(seed)
    logits, best = torch.randn(len(space), generator=g), torch.randn(len(space), generator=g)
    return Policy(space, logits, best, {"task": "lowlight", "method": "reinforce", "best_score": -0.25,
                                        "config": {"lr": 0.1, "steps": 3}})


def test_save_load_round_trip_keeps_space_tensors_and_metadata(tmp_path, space) -> None:
    policy = make_policy(space)
    path = policy.save(tmp_path / "p" / "policy.safetensors")
    loaded = Policy.load(path)
    assert loaded.space == space and loaded.metadata == policy.metadata
    assert torch.equal(loaded.logits, policy.logits) and torch.equal(loaded.best_logits, policy.best_logits)
    assert torch.equal(loaded.probabilities(), torch.sigmoid(policy.best_logits))
    assert torch.equal(loaded.probabilities("last"), torch.sigmoid(policy.logits))
    assert torch.equal(loaded.mask(0.7), torch.sigmoid(policy.best_logits) > 0.7)
    assert loaded.mask().dtype == torch.bool


def test_pipeline_files_from_before_policy_still_load(tmp_path, space) -> None:
    """The flat header the pipeline wrote before (task, space, best_score, config as strings)."""
    logits = torch.randn(len(space))
    meta = {"task": "segmentation", "space": json.dumps(space.to_dict()), "best_score": "0.5", "config": json.dumps({"lr": 0.1})}
    save_file({"logits": logits, "best_logits": logits + 1}, str(tmp_path / "old.safetensors"), metadata=meta)
    policy = Policy.load(tmp_path / "old.safetensors")
    assert policy.metadata == {"method": "reinforce", "task": "segmentation", "best_score": 0.5, "config": {"lr": 0.1}}
    assert torch.equal(policy.probabilities(), torch.sigmoid(logits + 1))


def test_best_falls_back_to_last(space) -> None:
    policy = Policy(space, torch.zeros(len(space)))
    assert policy.which("best") == "last" and torch.equal(policy.probabilities(), torch.full((len(space),), 0.5))
    with pytest.raises(PolicyError, match="which="):
        policy.probabilities("first")


def test_corrupt_and_incomplete_files_are_named(tmp_path, space) -> None:
    good = make_policy(space).save(tmp_path / "good.safetensors")
    cases = {}
    (tmp_path / "truncated.safetensors").write_bytes(good.read_bytes()[:-100])
    cases["truncated"] = "not a readable safetensors file"
    save_file({"logits": torch.zeros(len(space))}, str(tmp_path / "nospace.safetensors"))
    cases["nospace"] = "no 'space'"
    save_file({"best": torch.zeros(len(space))}, str(tmp_path / "nologits.safetensors"), metadata={"space": json.dumps(space.to_dict())})
    cases["nologits"] = "neither 'logits' nor a 'kept' set"
    save_file({"logits": torch.zeros(len(space) + 1)}, str(tmp_path / "short.safetensors"), metadata={"space": json.dumps(space.to_dict())})
    cases["short"] = f"{len(space) + 1} values, its unit space {len(space)} units"
    save_file({"logits": torch.zeros(len(space))}, str(tmp_path / "badspace.safetensors"), metadata={"space": "{\"granularity\""})
    cases["badspace"] = "malformed header"
    save_file({"logits": torch.full((len(space),), float("nan"))}, str(tmp_path / "nan.safetensors"), metadata={"space": json.dumps(space.to_dict())})
    cases["nan"] = "NaN"
    for name, message in cases.items():
        with pytest.raises(PolicyError, match=message) as info:
            Policy.load(tmp_path / f"{name}.safetensors")
        assert f"{name}.safetensors" in str(info.value)
    with pytest.raises(PolicyError, match="does not exist"):
        Policy.load(tmp_path / "missing.safetensors")
    with pytest.raises(PolicyError, match="dtype"):
        Policy(space, torch.zeros(len(space), dtype=torch.long))


def test_random_like_keeps_the_count_and_is_seeded(space) -> None:
    mask = torch.zeros(len(space), dtype=torch.bool)
    mask[:7] = True
    a, b = random_like(mask, 1), random_like(mask, 1)
    assert torch.equal(a, b) and int(a.sum()) == 7 and not torch.equal(a, random_like(mask, 2))
    assert int(random_like(mask, 1, k=3).sum()) == 3


def test_stratified_like_matches_the_composition(space) -> None:
    policy = make_policy(space, seed=3)
    mask = policy.mask()
    control = policy.stratified_like(seed=5)

    def composition(m):
        counts = {}
        for i in m.nonzero().flatten().tolist():
            unit = space.unit(i)
            counts[(unit.stack, unit.group)] = counts.get((unit.stack, unit.group), 0) + 1
        return counts

    assert composition(control) == composition(mask) and not torch.equal(control, mask)
    assert torch.equal(control, stratified_like(space, mask, 5))
    with pytest.raises(PolicyError, match="units"):
        stratified_like(space, mask[:-1], 0)


def test_a_unit_set_is_a_policy_without_invented_logits(tmp_path, space) -> None:
    """What gradient, greedy or the explorer keep is a set: saved and read back as one, 0/1
    probabilities, the same mask at any threshold, and no logits in the file."""
    mask = torch.zeros(len(space), dtype=torch.bool)
    mask[[0, 5, 9]] = True
    scores = torch.linspace(1, 0, len(space), dtype=torch.float64)
    policy = Policy.from_mask(space, mask, {"task": "lowlight", "method": "greedy"}, scores=scores)
    assert policy.is_set and policy.logits is None
    assert torch.equal(policy.mask(), mask) and torch.equal(policy.mask(0.9), mask) and torch.equal(policy.mask(0.0), mask)
    assert torch.equal(policy.probabilities(), mask.float())
    back = Policy.load(policy.save(tmp_path / "policy.safetensors"))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "policy.safetensors"), "pt") as f:
        assert set(f.keys()) == {"kept", "scores"}
    assert back.is_set and torch.equal(back.mask(), mask) and torch.equal(back.scores, scores)
    assert back.metadata["method"] == "greedy"
    with pytest.raises(PolicyError, match="bool or 0/1"):
        Policy.from_mask(space, torch.full((len(space),), 0.5))
    with pytest.raises(PolicyError, match="logits .* or a kept unit set"):
        Policy(space)


def test_a_stochastic_policy_with_a_chosen_set_keeps_that_set(space) -> None:
    logits = torch.full((len(space),), -3.0)
    logits[:4] = 3.0
    kept = torch.zeros(len(space), dtype=torch.bool)
    kept[:2] = True  # a size chosen on held-out prompts, smaller than p > 0.5
    policy = Policy(space, logits, logits.clone(), {}, kept=kept)
    assert torch.equal(policy.mask(), kept)
    assert int(policy.mask(0.5).sum()) == 4  # a threshold asks the probabilities
