"""Pascal-5i loader end to end on a small VOC tree written by the test, and the real lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interp.canvas import CanvasGrid
from interp.data.pascal import Pascal5i
from interp.data.source import (
    NUM_FOLDS, SPLITS, DataError, Entry, read_split_list, sample_pairs, select_pairs, write_split_list,
)
from interp.data.tasks import build_prompts

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SIZE = 62  # image side; loaded at 31 px (a 2x bicubic downscale)

# name -> (val?, background colour, [(class id, (top, left, bottom, right)), ...])
IMAGES = {
    "2007_000001": (True, (200, 30, 30), [(1, (0, 0, 20, 20)), (15, (30, 30, 62, 62))]),
    "2007_000002": (True, (30, 200, 30), [(1, (10, 10, 40, 50))]),
    "2007_000003": (True, (30, 30, 200), [(15, (20, 0, 62, 30)), (7, (0, 40, 10, 62))]),
    "2008_000004": (True, (120, 120, 30), [(15, (0, 0, 62, 20)), (20, (40, 40, 62, 62))]),
    "2008_000005": (False, (10, 120, 200), [(2, (4, 4, 30, 30)), (1, (40, 0, 62, 20))]),
    "2009_000006": (False, (90, 40, 160), [(2, (0, 30, 30, 62))]),
    "2009_000007": (False, (160, 160, 160), [(1, (10, 10, 20, 20)), (7, (30, 30, 60, 60))]),
    "2010_000008": (False, (60, 60, 60), [(7, (0, 0, 62, 62))]),
}


def split_sizes(source: Pascal5i) -> dict[str, list[int]]:
    """Lines per split list and fold, e.g. ``{"trn": [...], "val": [346, 451, 725, 346]}`` for the official lists."""
    return {split: [len(source.entries(fold, split)) for fold in range(NUM_FOLDS)] for split in SPLITS}


def _write_voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"  # the official base_dir layout
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClassAug").mkdir()
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    palette = [v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)]
    for name, (_, colour, objects) in IMAGES.items():
        Image.new("RGB", (SIZE, SIZE), colour).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
        label = np.zeros((SIZE, SIZE), dtype=np.uint8)
        for class_id, (t, l, b, r) in objects:
            label[t:b, l:r] = class_id
            label[t, l:r] = 255  # VOC boundary "ignore" pixels
        png = Image.fromarray(label)
        png = png.convert("P") if name.endswith("1") else png  # palette PNG and grey PNG
        if png.mode == "P":
            png.putpalette(palette)
        png.save(voc / "SegmentationClassAug" / f"{name}.png")
    val = [name for name, (is_val, _, _) in IMAGES.items() if is_val]
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(val) + "\n")
    return voc


def _expected_lists() -> dict[tuple[str, int], list[Entry]]:
    lists: dict[tuple[str, int], list[Entry]] = {(s, f): [] for s in ("trn", "val") for f in range(4)}
    for name, (is_val, _, objects) in sorted(IMAGES.items()):
        for class_id in sorted(c for c, _ in objects):
            lists[("val" if is_val else "trn", (class_id - 1) // 5)].append(Entry(name, class_id))
    return lists


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    return _write_voc(tmp_path / "pascal")


def test_splits_built_from_masks_equal_the_written_lists(voc: Path, tmp_path: Path) -> None:
    expected = _expected_lists()
    lists_dir = tmp_path / "lists"
    for (split, fold), entries in expected.items():
        write_split_list(lists_dir / split / f"fold{fold}.txt", entries)
    built = Pascal5i(voc.parent.parent)  # base_dir with VOCdevkit/VOC2012 resolves too
    given = Pascal5i(voc, splits_dir=lists_dir)
    for (split, fold), entries in expected.items():
        assert built.entries(fold, split) == entries
        assert given.entries(fold, split) == entries
    out = tmp_path / "rebuilt"
    built.write_split_lists(out)
    assert read_split_list(out / "val" / "fold0.txt") == expected[("val", 0)]
    assert split_sizes(built)["val"] == [2, 1, 3, 1]


def test_load_resizes_like_the_official_loader(voc: Path) -> None:
    source = Pascal5i(voc)
    sample = source.load("2007_000002", 1, 31)
    assert sample.image.shape == (3, 31, 31) and sample.mask.shape == (31, 31)
    assert sample.mask.dtype == torch.bool and sample.class_id == 1
    original = Image.open(voc / "JPEGImages" / "2007_000002.jpg").convert("RGB")
    reference = np.array(original.resize((31, 31), Image.BICUBIC))
    assert torch.equal(sample.image, torch.from_numpy(reference).permute(2, 0, 1).float() / 255)
    assert torch.allclose(sample.image[:, 15, 2], torch.tensor([30, 200, 30]) / 255, atol=3 / 255)
    # class 1 covers rows 10..40, cols 10..50 of 62 (row 10 is ignore = background): 2x smaller
    expected = torch.zeros(31, 31, dtype=torch.bool)
    expected[6:20, 5:25] = True
    assert (sample.mask ^ expected).sum() <= 31  # only boundary pixels may differ
    with pytest.raises(DataError, match="2007_000002.png has no pixel of that class"):  # not an all-black target
        source.load("2007_000002", 2, 31)


def test_prompts_end_to_end(voc: Path) -> None:
    source = Pascal5i(voc)
    grid = CanvasGrid(64, 8)
    batch = build_prompts(source, "segmentation", fold=2, n=5, grid=grid, seed=0)
    assert batch.canvases.shape == (5, 3, 64, 64)
    entries = source.entries(2, "val")
    for i, pair in enumerate(batch.pairs):
        assert pair.query == entries[i % len(entries)]
        assert pair.support.class_id == pair.query.class_id and pair.support.name != pair.query.name
        mask = source.load(pair.query.name, pair.query.class_id, grid.cell_size).mask
        assert torch.equal(batch.cells.target[i][0] == 1, mask)
    again = build_prompts(Pascal5i(voc), "segmentation", fold=2, n=5, grid=grid, seed=0)
    assert torch.equal(again.canvases, batch.canvases)
    entries = source.entries(0, "trn") + source.entries(3, "val")
    images, masks = source.load_many(entries, 31)  # batched load equals one by one
    for entry, image, mask in zip(entries, images, masks):
        sample = source.load(entry.name, entry.class_id, 31)
        assert torch.equal(sample.image, image) and torch.equal(sample.mask, mask)


def test_missing_files_are_named(voc: Path, tmp_path: Path) -> None:
    source = Pascal5i(voc)
    with pytest.raises(DataError, match="2099_000001.jpg"):
        source.load("2099_000001", 1, 31)
    (voc / "SegmentationClassAug" / "2010_000008.png").unlink()
    with pytest.raises(DataError, match=r"2010_000008\.png.*not found"):
        source.load("2010_000008", 7, 31)
    with pytest.raises(DataError, match="fold3.txt"):
        Pascal5i(voc, splits_dir=tmp_path).entries(3, "val")
    with pytest.raises(DataError, match="no Pascal VOC tree"):
        Pascal5i(tmp_path / "nowhere")


def test_corrupt_files_are_named(voc: Path) -> None:
    source = Pascal5i(voc)
    jpg = voc / "JPEGImages" / "2007_000003.jpg"
    jpg.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"2007_000003\.jpg is corrupt"):
        source.load("2007_000003", 15, 31)
    png = voc / "SegmentationClassAug" / "2008_000004.png"
    png.write_bytes(png.read_bytes()[:60])  # truncated
    with pytest.raises(DataError, match=r"2008_000004\.png is corrupt"):
        source.load("2008_000004", 15, 31)
    with pytest.raises(DataError, match=r"2008_000004\.png"):
        Pascal5i(voc).entries(0, "val")  # building the lists reads every mask
    Image.new("RGB", (SIZE, SIZE)).save(voc / "SegmentationClassAug" / "2009_000006.png")
    with pytest.raises(DataError, match=r"2009_000006\.png has mode RGB"):
        source.load("2009_000006", 2, 31)


def test_split_list_parse_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "fold0.txt"
    path.write_text("2007_000033__01\r\n\r\nbroken-line\r\n")
    with pytest.raises(DataError, match=r"fold0\.txt:3"):
        read_split_list(path)


def test_sample_pairs_and_select_pairs() -> None:
    entries = [Entry(f"im{i}", 1 + i % 2) for i in range(6)]
    pairs = sample_pairs(entries, 9, seed=4)
    assert [p.query for p in pairs] == [entries[i % 6] for i in range(9)]
    assert all(p.support.class_id == p.query.class_id and p.support != p.query for p in pairs)
    assert pairs == sample_pairs(entries, 9, seed=4) and pairs != sample_pairs(entries, 9, seed=5)
    with pytest.raises(ValueError, match="two images"):
        sample_pairs([Entry("a", 1), Entry("b", 2)], 1)

    records = [
        ("q1", "s1", 0.9),
        ("q1", "s2", 0.8),
        ("q2", "s1", 0.95),  # s1's best: drops (q1, s1)
        ("q2", "s3", 0.5),
        ("q3", "s4", 0.7),
        ("q3", "s5", float("nan")),
    ]
    # per support: s1->q2 .95, s2->q1 .8, s3->q2 .5, s4->q3 .7, s5->q3 nan
    # per query:   q1->s2 .8, q2->s1 .95, q3->s4 .7
    assert select_pairs(records, 10) == [("q2", "s1", 0.95), ("q1", "s2", 0.8), ("q3", "s4", 0.7)]
    assert select_pairs(records, 2) == [("q2", "s1", 0.95), ("q1", "s2", 0.8)]
    assert select_pairs(records, 1, higher_is_better=False) == [("q2", "s3", 0.5)]
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(records, columns=["query_name", "support_name", "score"])
    kept = select_pairs(frame, 2)
    assert list(zip(kept.query_name, kept.support_name)) == [("q2", "s1"), ("q1", "s2")]


def test_official_split_lists_parse(voc: Path) -> None:
    splits = SHARED / "reference" / "pascal_splits"
    if not splits.is_dir():
        pytest.skip(f"{splits} not found: the official lists live in ../shared beside the clone (CI has it)")
    sizes = split_sizes(Pascal5i(voc, splits_dir=splits))
    assert sizes == {"trn": [2286, 3425, 5883, 2086], "val": [346, 451, 725, 346]}
    for split in ("trn", "val"):
        for fold in range(4):
            classes = {e.class_id for e in read_split_list(splits / split / f"fold{fold}.txt")}
            assert classes == set(range(5 * fold + 1, 5 * fold + 6))
    first = read_split_list(splits / "val" / "fold0.txt")[0]
    assert first == Entry("2007_000033", 1) and str(first) == "2007_000033__01"
