"""The synthetic Pascal-5i analogue: determinism, folds, masks, resolution, interface."""

from __future__ import annotations

import pytest
import torch

from interp.canvas import CanvasGrid
from interp.data.source import DataError, fold_classes
from interp.data.synthetic import SYNTHETIC_CLASSES, SyntheticPascal
from interp.data.tasks import build_prompts


def test_identical_for_one_seed_different_for_another() -> None:
    a = SyntheticPascal(seed=7, size_per_split=60)
    b = SyntheticPascal(seed=7, size_per_split=60)
    c = SyntheticPascal(seed=8, size_per_split=60)
    images_a, labels_a = a.render("val", range(12), 32)
    images_b, labels_b = b.render("val", range(12), 32)
    images_c, _ = c.render("val", range(12), 32)
    assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)
    assert not torch.equal(images_a, images_c)
    assert not torch.equal(images_a, a.render("trn", range(12), 32)[0])  # splits differ too
    assert (images_a - images_c).abs().mean() > 0.05


def test_an_image_is_the_same_alone_or_in_any_batch() -> None:
    source = SyntheticPascal(seed=1, size_per_split=60, chunk=5)
    batch, labels = source.render("trn", range(20), 24)
    alone, label = source.render("trn", [13], 24)
    assert torch.equal(batch[13], alone[0]) and torch.equal(labels[13], label[0])


def test_folds_classes_and_entries() -> None:
    source = SyntheticPascal(seed=0, size_per_split={"trn": 100, "val": 40})
    assert len(source.classes) == 20 == len(set(SYNTHETIC_CLASSES))
    for fold in range(4):
        entries = source.entries(fold, "val")
        assert {e.class_id for e in entries} == set(fold_classes(fold))
        assert len(entries) == 10 and len(source.entries(fold, "trn")) == 25
    with pytest.raises(ValueError, match="fold"):
        source.entries(4)


def test_masks_are_the_visible_pixels_of_the_class() -> None:
    source = SyntheticPascal(seed=2, size_per_split=100)
    entries = [e for fold in range(4) for e in source.entries(fold, "val")]
    images, masks = source.load_many(entries, 31)
    assert images.shape == (100, 3, 31, 31) and masks.dtype == torch.bool
    assert 0 <= images.min() and images.max() <= 1
    pixels = masks.sum(dim=(1, 2))
    assert pixels.min() >= 10  # the primary objects are never lost
    assert (pixels < 31 * 31 // 2).all()  # and never the whole image
    _, labels = source.render("val", range(100), 31)
    with_distractors = sum(bool(set(labels[i].unique().tolist()) - {0, 1 + i % 20}) for i in range(100))
    assert with_distractors > 30  # objects of other classes appear
    single = source.load(entries[3].name, entries[3].class_id, 31)
    assert torch.equal(single.image, images[3]) and torch.equal(single.mask, masks[3])


def test_scene_does_not_depend_on_resolution() -> None:
    source = SyntheticPascal(seed=4, size_per_split=60)
    _, small = source.render("val", range(10), 32)
    _, large = source.render("val", range(10), 64)
    agreement = (large[:, 1::2, 1::2] == small).float().mean()  # nearest 2x downsampling
    assert agreement > 0.95


def test_plain_images_and_errors() -> None:
    source = SyntheticPascal(seed=0, size_per_split=50)
    plain = source.plain_images("trn", range(5), size=17)
    assert plain.shape == (5, 3, 17, 17)
    assert source.plain_images("val", size=8).shape == (50, 3, 8, 8)
    with pytest.raises(DataError, match="val_000050"):
        source.load("val_000050", 1, 16)
    with pytest.raises(ValueError, match="size_per_split"):
        SyntheticPascal(size_per_split=10)


def test_prompt_batch_builds_quickly_enough_to_be_used() -> None:
    source = SyntheticPascal(seed=0, size_per_split={"trn": 200, "val": 200})
    batch = build_prompts(source, "colorization", fold=3, n=200, grid=CanvasGrid(64, 8), seed=0)
    assert batch.canvases.shape == (200, 3, 64, 64)
    assert all(p.query.class_id in fold_classes(3) for p in batch.pairs)
