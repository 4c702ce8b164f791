"""Benchmark folders (``images/`` + ``masks/``) and the training sample generator.

A folder holds one instance per mask; a mask's name without extension equals
its image's. Mask values: 0 background; 128 unknown (GrabCut's band, ignored);
anything else object (COCO stores 255, DAVIS 1).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fewclick_contract.crop import CropBox, extract_crop, relaxed_box

from .copy_paste import paste_object, swap_background
from .holes import punch_hole
from .simulator import extreme_points

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
IGNORE_VALUE = 128
LOG = logging.getLogger(__name__)


@dataclass
class Instance:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) bool, the object
    ignore: np.ndarray | None  # (H, W) bool, unknown pixels, or None


def default_datasets_root() -> Path:
    """``../shared/datasets`` beside the checkout."""
    return Path(__file__).resolve().parents[3] / "shared" / "datasets"


def read_image_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if raw is None:
        raise ValueError(f"cannot decode mask {path}")
    ignore = raw == IGNORE_VALUE
    obj = (raw > 0) & ~ignore
    return obj, (ignore if ignore.any() else None)


def list_instances(folder: Path) -> list[tuple[Path, Path]]:
    """(image, mask) path pairs of a benchmark folder, sorted by name. A mask pairs with the image of
    exactly its name (any of `IMAGE_SUFFIXES`); files without a partner are reported, not paired."""
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise FileNotFoundError(f"{folder} needs images/ and masks/ folders")
    images = _by_stem(images_dir)
    masks = _by_stem(masks_dir)
    pairs = [(images[stem], masks[stem]) for stem in sorted(masks) if stem in images]
    if not pairs:
        raise FileNotFoundError(
            f"no image/mask pairs in {folder} ({len(images)} images, {len(masks)} masks with a suffix of "
            f"{', '.join(IMAGE_SUFFIXES)}; a mask pairs with the image of the same name)"
        )
    unpaired_masks = sorted(set(masks) - set(images))
    unpaired_images = sorted(set(images) - set(masks))
    if unpaired_masks or unpaired_images:
        LOG.warning(
            "%s: %d masks without an image%s and %d images without a mask%s are left out",
            folder,
            len(unpaired_masks),
            f" (e.g. {unpaired_masks[0]})" if unpaired_masks else "",
            len(unpaired_images),
            f" (e.g. {unpaired_images[0]})" if unpaired_images else "",
        )
    return pairs


def _by_stem(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            found.setdefault(path.stem, path)  # a.jpg before a.png: the first by name
    return found


def load_instance(image_path: Path, mask_path: Path) -> Instance:
    image = read_image_rgb(image_path)
    mask, ignore = read_mask(mask_path)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{mask_path} is {mask.shape}, its image is {image.shape[:2]}")
    return Instance(mask_path.stem, image, mask, ignore)


# The share of instances `fewclick train` holds out unless told otherwise (every release so far).
DEFAULT_HOLDOUT_SHARE = 0.05


def is_holdout(name: str, share: float) -> bool:
    """A stable split by name, so resumed runs and evaluation agree on it. Nested: the instances
    held out at a smaller share are held out at every larger one too."""
    digest = hashlib.sha1(name.encode()).digest()
    return digest[0] / 256.0 < share


FOLDS = ("A", "B")


def holdout_share_of(meta: dict[str, Any]) -> float:
    """The share of instances the network behind ``meta`` (exported weights or a training
    checkpoint) never trained on."""
    return float(meta.get("holdout_share", DEFAULT_HOLDOUT_SHARE))  # weights before it was recorded: 5 %


def fold_of(name: str) -> str:
    """Which half of the training instances ``name`` falls in, by a hash byte independent of
    `is_holdout`'s: a serving-side part (the boundary refiner) trained on one fold is measured
    on the other, which it has never seen, when the held-out instances are too few or too worn."""
    return "A" if hashlib.sha1(name.encode()).digest()[1] < 128 else "B"


@dataclass
class TrainingSample:
    crop: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) bool
    points: np.ndarray  # (4, 2) float crop pixel indices, the extreme points


# Smaller objects are left out of training: their extreme points coincide.
MIN_TRAINING_OBJECT_PX = 16


@dataclass(frozen=True)
class Augmentations:
    """The optional augmentations' shares of samples, as one value from `fewclick train`'s options to
    each loader worker's generator (all 0, the released recipe: each was measured and left off)."""

    # Another instance's object pasted across the target's edge (`copy_paste`).
    paste_share: float = 0.0
    # The target pasted onto another instance's photo (`copy_paste`).
    background_share: float = 0.0
    # A hole punched through the target (`holes`).
    hole_share: float = 0.0


NO_AUGMENTATIONS = Augmentations()


class SampleGenerator:
    """Random, augmented crops of training instances, as the network will see them served."""

    def __init__(
        self,
        instances: Sequence[Instance],
        size: int,
        seed: int = 0,
        augmentations: Augmentations = NO_AUGMENTATIONS,
    ) -> None:
        self.instances = [i for i in instances if i.mask.sum() >= MIN_TRAINING_OBJECT_PX]
        if not self.instances:
            raise ValueError(
                f"no training instance has an object of at least {MIN_TRAINING_OBJECT_PX} pixels "
                f"(of {len(instances)} given): nothing to learn from"
            )
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.augmentations = augmentations

    def _geometric(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Small rotations and anisotropic scaling of the whole image, sometimes."""
        if self.rng.random() > 0.35:
            return image, mask
        h, w = mask.shape
        angle = self.rng.uniform(-20, 20)
        a = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        a[0, :2] *= self.rng.uniform(0.85, 1.15)
        return (
            cv2.warpAffine(image, a, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
            cv2.warpAffine(mask.astype(np.uint8), a, (w, h), flags=cv2.INTER_NEAREST).astype(bool),
        )

    def _photometric(self, crop: np.ndarray) -> np.ndarray:
        x = crop.astype(np.float32)
        if self.rng.random() < 0.8:
            x = x * self.rng.uniform(0.7, 1.3) + self.rng.uniform(-30, 30)
            gray = x.mean(axis=2, keepdims=True)
            x = gray + (x - gray) * self.rng.uniform(0.6, 1.4)
        if self.rng.random() < 0.1:
            x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
        if self.rng.random() < 0.2:
            x = x + self.rng.normal(0, self.rng.uniform(2, 8), x.shape)
        return np.clip(x, 0, 255).astype(np.uint8)

    def sample(self) -> TrainingSample:
        while True:
            inst = self.instances[int(self.rng.integers(len(self.instances)))]
            image, mask = self._geometric(inst.image, inst.mask)
            # Drawn only when asked for, so runs without an augmentation keep the random stream they had.
            if len(self.instances) > 1 and self._drawn(self.augmentations.paste_share):
                image, mask = self._paste(image, mask, inst)
            if len(self.instances) > 1 and self._drawn(self.augmentations.background_share):
                image = self._swap_background(image, mask, inst)
            if self._drawn(self.augmentations.hole_share):
                image, mask = self._punch_hole(image, mask, inst)
            if mask.sum() >= MIN_TRAINING_OBJECT_PX:
                break
        ys, xs = np.nonzero(mask)
        extent = max(xs.max() - xs.min(), ys.max() - ys.min())
        points = extreme_points(mask, self.rng, jitter=min(0.02 * extent, 6.0))
        box = relaxed_box(points, margin_ratio=self.rng.uniform(0.06, 0.2))
        box = self._jitter_box(box)
        crop = extract_crop(image, box, self.size)
        crop_mask = extract_crop(mask.astype(np.float32), box, self.size) > 0.5
        crop_points = box.to_crop(points, self.size)
        if self.rng.random() < 0.5:
            crop = crop[:, ::-1].copy()
            crop_mask = crop_mask[:, ::-1].copy()
            crop_points[:, 0] = self.size - 1 - crop_points[:, 0]
        return TrainingSample(self._photometric(crop), crop_mask, crop_points)

    def _drawn(self, share: float) -> bool:
        """True for ``share`` of the calls; draws nothing at 0."""
        return share > 0 and self.rng.random() < share

    def _paste(self, image: np.ndarray, mask: np.ndarray, target: Instance) -> tuple[np.ndarray, np.ndarray]:
        donor = self.instances[int(self.rng.integers(len(self.instances)))]
        if donor is target:
            return image, mask
        pasted = paste_object(image, mask, donor.image, donor.mask, self.rng, MIN_TRAINING_OBJECT_PX)
        return pasted if pasted is not None else (image, mask)

    def _swap_background(self, image: np.ndarray, mask: np.ndarray, target: Instance) -> np.ndarray:
        donor = self.instances[int(self.rng.integers(len(self.instances)))]
        return image if donor is target else swap_background(image, mask, donor.image, self.rng)

    def _punch_hole(self, image: np.ndarray, mask: np.ndarray, target: Instance) -> tuple[np.ndarray, np.ndarray]:
        donor = self.instances[int(self.rng.integers(len(self.instances)))]
        punched = punch_hole(image, mask, None if donor is target else donor.image, self.rng)
        return punched if punched is not None else (image, mask)

    def _jitter_box(self, box: CropBox) -> CropBox:
        """Shift each side a little: served crops also see objects off-centre (grown crops)."""
        d = self.rng.uniform(-0.05, 0.05, size=4) * np.array([box.width, box.height] * 2)
        return CropBox(box.x0 + d[0], box.y0 + d[1], box.x1 + d[2], box.y1 + d[3])
