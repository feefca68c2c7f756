"""Controls: sizes and strata match the reference; best-of-random spends the search's held-out budget."""

from __future__ import annotations

import torch

from interp.taskvectors.controls import random_sets, stratified_sets
from interp.taskvectors.units import UnitSpace
from tests.conftest import random_model


def test_stratified_sets_match_the_reference_composition() -> None:
    space = UnitSpace.for_model(random_model(), "group")
    reference = torch.zeros(len(space), dtype=torch.bool)
    reference[[0, 1, 3, len(space) - 1, len(space) - 2]] = True
    sets = stratified_sets(reference, space, seed=0, draws=4)
    labels = [(u.stack, u.group) for u in space.units]
    for s in sets:
        for stratum in set(labels):
            members = [i for i, l in enumerate(labels) if l == stratum]
            assert int(s[members].sum()) == int(reference[members].sum())
    assert not all(torch.equal(s, reference) for s in sets)
    assert not torch.equal(sets[0], sets[1])


def test_random_sets_have_the_reference_size_and_differ() -> None:
    sets = random_sets(50, 7, seed=1, draws=3)
    assert sets.sum(1).tolist() == [7, 7, 7] and not torch.equal(sets[0], sets[1])
    assert torch.equal(sets, random_sets(50, 7, seed=1, draws=3))
