"""Pascal-5i as the official evaluation reads it.

Layout (VOC2012 plus the SBD-augmented masks)::

    <root>/JPEGImages/<name>.jpg
    <root>/SegmentationClassAug/<name>.png     label PNG: 0 background, 1..20 classes, 255 ignore
    <root>/ImageSets/Segmentation/val.txt      (only needed to build split lists from masks)

``root`` may also be the official ``base_dir`` holding ``VOCdevkit/VOC2012``. Split lists are
``<splits_dir>/{trn,val}/fold{0..3}.txt`` with one ``name__class`` per line (HSNet format, as
in the official ``evaluate/splits/pascal``); fold ``f`` lists the images of its own classes
``5f+1..5f+5``. Without ``splits_dir`` the lists are built from the masks: ``val`` holds the
names of ``ImageSets/Segmentation/val.txt``, ``trn`` every other mask; a name is listed for
class ``c`` when its mask has at least ``min_pixels`` pixels of ``c`` (default 1: present).
HSNet ships fixed lists and documents no rule; the shipped lists are a little shorter than
"present" gives, so for numbers comparable with the paper pass the official lists.

Loading follows the official dataloader (github amirbar/visual_prompting,
evaluate/pascal_dataloader.py and evaluate/evaluate_segmentation.py; alhojel/
visual_task_vectors, evaluate/multitask_dataloader.py): the RGB image is resized straight to
``size x size`` with PIL bicubic (aspect ratio not kept; torchvision ``Resize((111, 111), 3)``
on a PIL image is exactly this), the mask of the class is a 0/255 image (255 "ignore" counts as
background, as in ``extract_ignore_idx``) resized the same way. The official canvas keeps that
mask's grey edges and rounds them away at scoring time (nearest of white/black); here the mask
is rounded at load (``>= 128``), which equals the official rounded target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from interp.data.source import (
    NUM_FOLDS,
    SPLITS,
    DataError,
    Entry,
    PromptSource,
    Sample,
    check_fold,
    check_split,
    class_fold,
    fold_classes,
    read_split_list,
    read_text,
    write_split_list,
)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle",
    "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
IGNORE_LABEL = 255


def resolve_voc_root(root: str | Path) -> Path:
    """The directory holding ``JPEGImages``: ``root`` itself or ``root/VOCdevkit/VOC2012``."""
    root = Path(root).expanduser()
    for candidate in (root, root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DataError(
        f"no Pascal VOC tree at {root}: expected {root / 'JPEGImages'} (or "
        f"{root / 'VOCdevkit/VOC2012/JPEGImages'}) beside SegmentationClassAug/; "
        "point root at the VOC2012 directory"
    )


def _open_image(path: Path, kind: str) -> Image.Image:
    """Open and fully decode an image file, turning every failure into an error naming it."""
    if not path.is_file():
        raise DataError(f"{kind} {path} not found; check the dataset root and that the split lists match it")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except Image.DecompressionBombError as error:  # e.g. 16000 x 16000: PIL refuses to decode it
        raise DataError(f"{kind} {path} is too large to decode safely ({error})",
                        fix="resize it (Pascal images are about 500 x 375) or drop the name from the split lists") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(
            f"{kind} {path} is corrupt or not an image ({error}); re-extract it from the "
            "VOC / SBD archives or drop the name from the split lists"
        ) from error


class Pascal5i(PromptSource):
    """Pascal-5i (VOC2012 + SegmentationClassAug) behind the :class:`PromptSource` interface."""

    name = "pascal5i"
    classes = VOC_CLASSES

    def __init__(self, root: str | Path, splits_dir: str | Path | None = None, min_pixels: int = 1) -> None:
        self.root = resolve_voc_root(root)
        self.image_dir = self.root / "JPEGImages"
        self.mask_dir = self.root / "SegmentationClassAug"
        if not self.mask_dir.is_dir():
            raise DataError(
                f"{self.mask_dir} not found; Pascal-5i needs the SBD-augmented label PNGs "
                "(SegmentationClassAug) inside the VOC2012 directory"
            )
        self.splits_dir = None if splits_dir is None else Path(splits_dir).expanduser()
        if self.splits_dir is not None and not self.splits_dir.is_dir():
            raise DataError(f"split-list directory {self.splits_dir} not found")
        self.min_pixels = min_pixels
        self._lists: dict[tuple[str, int], list[Entry]] = {}

    # -- paths and raw files ------------------------------------------------------------------

    def image_path(self, name: str) -> Path:
        return self.image_dir / f"{name}.jpg"

    def mask_path(self, name: str) -> Path:
        return self.mask_dir / f"{name}.png"

    def read_image(self, name: str) -> Image.Image:
        """The RGB image as PIL."""
        return _open_image(self.image_path(name), "image").convert("RGB")

    def read_label(self, name: str) -> np.ndarray:
        """The label map ``[H, W]`` uint8 (class ids, 255 = ignore).

        A binary 0/255 mask or one with values outside 0..20 and 255 is a :class:`DataError`
        naming the file: read as class ids, it would give all-black targets."""
        path = self.mask_path(name)
        image = _open_image(path, "mask")
        if image.mode not in ("P", "L"):
            raise DataError(
                f"mask {path} has mode {image.mode}; expected a palette or grey label PNG whose "
                "values are class ids (SegmentationClassAug), not a colour rendering"
            )
        label = np.asarray(image, dtype=np.uint8)
        values = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
        foreign = [int(v) for v in values if len(VOC_CLASSES) < v < IGNORE_LABEL]
        if foreign:
            raise DataError(f"mask {path} holds label values {foreign[:5]} outside 0..{len(VOC_CLASSES)} (classes) and "
                            f"{IGNORE_LABEL} (ignore)", fix="use the SegmentationClassAug label PNGs, whose values are class ids")
        if values.tolist() == [0, IGNORE_LABEL]:
            raise DataError(f"mask {path} holds only 0 and {IGNORE_LABEL}: a binary mask, not class ids "
                            f"({IGNORE_LABEL} means 'ignore', so every class would be absent)",
                            fix="use the SegmentationClassAug label PNGs (values 1..20 = the VOC classes)")
        return label

    # -- split lists ----------------------------------------------------------------------------

    def entries(self, fold: int, split: str = "val") -> list[Entry]:
        check_fold(fold)
        check_split(split)
        if (split, fold) not in self._lists:
            if self.splits_dir is not None:
                path = self.splits_dir / split / f"fold{fold}.txt"
                entries = read_split_list(path)
                allowed = set(fold_classes(fold))
                stray = [e for e in entries if e.class_id not in allowed]
                if stray:
                    raise DataError(
                        f"{path} lists {stray[0]} whose class is not in fold {fold} "
                        f"(classes {sorted(allowed)}); is it the right fold file?"
                    )
                self._lists[(split, fold)] = entries
            else:
                self._lists.update(self.build_split_lists())
        return list(self._lists[(split, fold)])

    def build_split_lists(self) -> dict[tuple[str, int], list[Entry]]:
        """Build every (split, fold) list from the masks (one pass; slow on full VOC: save it)."""
        val_file = self.root / "ImageSets" / "Segmentation" / "val.txt"
        if not val_file.is_file():
            raise DataError(
                f"{val_file} not found: building split lists needs the VOC val image list; "
                "or pass splits_dir with the official trn/ and val/ fold lists"
            )
        val_names = {line.strip() for line in read_text(val_file, "VOC val list").splitlines() if line.strip()}
        lists: dict[tuple[str, int], list[Entry]] = {(s, f): [] for s in SPLITS for f in range(NUM_FOLDS)}
        masks = sorted(self.mask_dir.glob("*.png"))
        if not masks:
            raise DataError(f"{self.mask_dir} holds no .png masks", fix="extract SegmentationClassAug there, or pass splits_dir")
        for path in masks:
            name = path.stem
            counts = np.bincount(self.read_label(name).ravel(), minlength=256)
            split = "val" if name in val_names else "trn"
            for class_id in range(1, len(VOC_CLASSES) + 1):
                if counts[class_id] >= max(self.min_pixels, 1):
                    lists[(split, class_fold(class_id))].append(Entry(name, class_id))
        if not any(lists.values()):
            raise DataError(f"the split lists built from the {len(masks)} masks in {self.mask_dir} are all empty",
                            fix="check that the masks hold class ids 1..20, or pass splits_dir with the official lists")
        return {key: sorted(entries, key=str) for key, entries in lists.items()}

    def list_origin(self, fold: int, split: str) -> str:
        """Where the ``(split, fold)`` list comes from (for error messages)."""
        if self.splits_dir is not None:
            return str(self.splits_dir / split / f"fold{fold}.txt")
        return f"built from the masks in {self.mask_dir} and {self.root / 'ImageSets' / 'Segmentation' / 'val.txt'}"

    def write_split_lists(self, out_dir: str | Path) -> None:
        """Write ``out_dir/{trn,val}/fold{0..3}.txt`` (reuse them as ``splits_dir``)."""
        for split in SPLITS:
            for fold in range(NUM_FOLDS):
                write_split_list(Path(out_dir) / split / f"fold{fold}.txt", self.entries(fold, split))

    # -- samples --------------------------------------------------------------------------------

    def load(self, name: str, class_id: int, size: int) -> Sample:
        image, label = self._read_pair(name)
        return Sample(
            image=self._resize_image(image, size),
            mask=self._resize_mask(label, class_id, size, name),
            class_id=class_id,
            name=name,
        )

    def load_many(self, entries: Sequence[Entry], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched load; each distinct image is read and resized once."""
        if not entries:
            return torch.zeros(0, 3, size, size), torch.zeros(0, size, size, dtype=torch.bool)
        images: dict[str, torch.Tensor] = {}
        masks: dict[Entry, torch.Tensor] = {}
        for name in dict.fromkeys(entry.name for entry in entries):
            image, label = self._read_pair(name)
            images[name] = self._resize_image(image, size)
            for entry in {e for e in entries if e.name == name}:
                masks[entry] = self._resize_mask(label, entry.class_id, size, name)
        return torch.stack([images[e.name] for e in entries]), torch.stack([masks[e] for e in entries])

    def _read_pair(self, name: str) -> tuple[Image.Image, np.ndarray]:
        image, label = self.read_image(name), self.read_label(name)
        if label.shape != (image.height, image.width):
            raise DataError(
                f"mask {self.mask_path(name)} is {label.shape[1]}x{label.shape[0]} but image "
                f"{self.image_path(name)} is {image.width}x{image.height}; one of them is wrong"
            )
        return image, label

    @staticmethod
    def _resize_image(image: Image.Image, size: int) -> torch.Tensor:
        resized = image.resize((size, size), Image.BICUBIC)  # [S, S, 3] uint8 -> [3, S, S] in [0, 1]
        return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0

    def _resize_mask(self, label: np.ndarray, class_id: int, size: int, name: str = "") -> torch.Tensor:
        if not (label == class_id).any():  # listed for a class its mask lacks: an all-black target
            present = [VOC_CLASSES[c - 1] for c in np.unique(label).tolist() if 1 <= c <= len(VOC_CLASSES)]
            raise DataError(f"the split list gives {name}__{class_id} ({VOC_CLASSES[class_id - 1]}), but mask "
                            f"{self.mask_path(name)} has no pixel of that class (it has {present or 'none'})",
                            fix="fix the split list (or rebuild it from the masks without splits_dir)")
        binary = Image.fromarray(np.where(label == class_id, 255, 0).astype(np.uint8))  # mode L
        return torch.from_numpy(np.asarray(binary.resize((size, size), Image.BICUBIC)) >= 128)

    def names(self, fold: int, split: str = "val") -> list[str]:
        """Distinct image names of a fold's split list, in list order."""
        return list(dict.fromkeys(entry.name for entry in self.entries(fold, split)))
