"""Pascal-5i inputs that used to give all-black targets or raw tracebacks: each is a DataError
naming the file (binary or foreign-valued masks, classes listed but absent, empty built lists,
UTF-16 lists, decompression bombs)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interp.data.pascal import Pascal5i
from interp.data.source import DataError, Entry, write_split_list
from tests.data.test_pascal import _write_voc
from tests.robustness.probes import assert_named


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return _write_voc(tmp_path / "pascal")


def _rewrite_mask(voc: Path, name: str, edit) -> Path:
    path = voc / "SegmentationClassAug" / f"{name}.png"
    label = np.asarray(Image.open(path), dtype=np.uint8).copy()
    Image.fromarray(edit(label).astype(np.uint8)).save(path)
    return path


def test_binary_masks_are_refused(voc) -> None:
    path = _rewrite_mask(voc, "2007_000002", lambda label: np.where(label > 0, 255, 0))
    with pytest.raises(DataError) as info:
        Pascal5i(voc).load("2007_000002", 1, 31)
    assert_named(info.value, path, "binary mask")


def test_split_lists_built_from_binary_masks_name_a_mask(voc) -> None:
    for path in (voc / "SegmentationClassAug").glob("*.png"):
        _rewrite_mask(voc, path.stem, lambda label: np.where(label > 0, 255, 0))
    with pytest.raises(DataError) as info:
        Pascal5i(voc).entries(0, "val")
    assert_named(info.value, "SegmentationClassAug", ".png", "binary mask")


@pytest.mark.parametrize("value", [41, 42, 254])
def test_labels_outside_the_classes_are_refused(voc, value) -> None:
    path = _rewrite_mask(voc, "2007_000002", lambda label: np.where(label == 1, value, label))
    with pytest.raises(DataError) as info:
        Pascal5i(voc).load("2007_000002", 1, 31)
    assert_named(info.value, path, str(value))


def test_a_class_listed_but_absent_from_its_mask(voc, tmp_path) -> None:
    lists = tmp_path / "lists"
    for split in ("trn", "val"):
        for fold in range(4):
            write_split_list(lists / split / f"fold{fold}.txt", [])
    write_split_list(lists / "val" / "fold0.txt", [Entry("2007_000002", 2), Entry("2007_000001", 2)])  # bicycle: absent
    source = Pascal5i(voc, splits_dir=lists)
    with pytest.raises(DataError) as info:
        source.load_many(source.entries(0, "val"), 31)
    assert_named(info.value, "2007_000002.png", "bicycle")


def test_sampling_from_an_empty_list_names_it(voc, tmp_path) -> None:
    lists = tmp_path / "lists"
    for split in ("trn", "val"):
        for fold in range(4):
            write_split_list(lists / split / f"fold{fold}.txt", [])
    with pytest.raises(DataError) as info:
        Pascal5i(voc, splits_dir=lists).sample_pairs(1, "val", 4)
    assert_named(info.value, lists / "val" / "fold1.txt")


def test_utf16_split_list_and_val_list(voc, tmp_path) -> None:
    lists = tmp_path / "lists"
    (lists / "val").mkdir(parents=True)
    (lists / "val" / "fold0.txt").write_text("2007_000001__1\n", encoding="utf-16")
    with pytest.raises(DataError) as info:
        Pascal5i(voc, splits_dir=lists).entries(0, "val")
    assert_named(info.value, lists / "val" / "fold0.txt", "UTF-8")
    val = voc / "ImageSets" / "Segmentation" / "val.txt"
    val.write_text(val.read_text(), encoding="utf-16")
    with pytest.raises(DataError) as info:
        Pascal5i(voc).entries(0, "val")
    assert_named(info.value, val, "UTF-8")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` (PIL refuses it from the header, before decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("damage", ["bomb", "truncated", "text"])
def test_unreadable_images_name_the_path(voc, damage) -> None:
    path = voc / "JPEGImages" / "2007_000002.jpg"
    data = {"bomb": _png_header_only(16000, 16000), "truncated": path.read_bytes()[:100], "text": b"not an image"}[damage]
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        Pascal5i(voc).load("2007_000002", 1, 31)
    assert_named(info.value, path, "too large" if damage == "bomb" else "corrupt")
