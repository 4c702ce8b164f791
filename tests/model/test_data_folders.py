"""Benchmark folders: which files pair up, and what is refused with a message instead of a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from fewclick_model.data import SampleGenerator, list_instances, load_instance


def _folder(root: Path, images: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, pixels in images.items():
        cv2.imwrite(str(root / "images" / name), pixels)
    for name, pixels in masks.items():
        cv2.imwrite(str(root / "masks" / name), pixels)
    return root


def _object(h: int = 40, w: int = 50) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 10:40] = 255
    return mask


IMAGE = np.full((40, 50, 3), 120, np.uint8)


def test_a_mask_pairs_with_the_image_of_exactly_its_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _folder(
        tmp_path / "set",
        # "[1]" is a glob character class: the old glob lookup skipped this pair.
        {"cat[1].jpg": IMAGE, "dog.JPG": IMAGE, "lonely.png": IMAGE, "dog-2.png": IMAGE},
        {"cat[1].png": _object(), "dog.bmp": _object(), "ghost.png": _object()},
    )
    with caplog.at_level(logging.WARNING):
        pairs = list_instances(root)
    assert [(i.name, m.name) for i, m in pairs] == [("cat[1].jpg", "cat[1].png"), ("dog.JPG", "dog.bmp")]
    # The left-outs are said, with counts and an example of each.
    assert "1 masks without an image (e.g. ghost)" in caplog.text
    assert "2 images without a mask (e.g. dog-2)" in caplog.text


def test_folders_and_masks_that_cannot_be_used_are_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="needs images/ and masks/"):
        list_instances(tmp_path / "missing")
    root = _folder(tmp_path / "unpaired", {"a.png": IMAGE}, {"b.png": _object()})
    with pytest.raises(FileNotFoundError, match="1 images, 1 masks"):
        list_instances(root)

    root = _folder(
        tmp_path / "bad",
        {"empty.png": IMAGE, "small.png": IMAGE, "corrupt.png": IMAGE},
        {"empty.png": np.zeros((40, 50), np.uint8), "small.png": _object(20, 25)},
    )
    (root / "masks" / "corrupt.png").write_bytes(b"not a png")
    # An empty mask loads (training and `pack` skip it; `evaluate` refuses it, naming the file).
    assert not load_instance(root / "images" / "empty.png", root / "masks" / "empty.png").mask.any()
    with pytest.raises(ValueError, match=r"small\.png is \(20, 25\), its image is \(40, 50\)"):
        load_instance(root / "images" / "small.png", root / "masks" / "small.png")
    with pytest.raises(ValueError, match=r"cannot decode mask .*corrupt\.png"):
        load_instance(root / "images" / "corrupt.png", root / "masks" / "corrupt.png")


def test_training_refuses_data_with_no_object_large_enough(tmp_path: Path) -> None:
    tiny = np.zeros((40, 50), np.uint8)
    tiny[5:8, 5:8] = 255  # 9 px: its extreme points would coincide
    root = _folder(tmp_path / "tiny", {"a.png": IMAGE}, {"a.png": tiny})
    instances = [load_instance(i, m) for i, m in list_instances(root)]
    with pytest.raises(ValueError, match="no training instance has an object of at least 16 pixels"):
        SampleGenerator(instances, 64)
