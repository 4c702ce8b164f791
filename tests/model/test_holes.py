"""Hole punching (`fewclick_model.holes`) on objects and backgrounds whose pixels are known exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from fewclick_model import train
from fewclick_model.data import Augmentations, SampleGenerator
from fewclick_model.holes import MIN_DEPTH_PX, RIM_SHARE, punch_hole
from fewclick_model.train import TrainingBatch

from .synthetic import make_instances, train_parser

OBJECT_GREY = 40
BACKGROUND_GREY = 200


def _disk_scene(radius: int = 50, size: int = 240) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius, 1, -1)
    image = np.where(mask[..., None] > 0, OBJECT_GREY, BACKGROUND_GREY).astype(np.uint8).repeat(3, axis=2)
    return image, mask.astype(bool)


def _enclosed_background(mask: np.ndarray) -> np.ndarray:
    """Background pixels not connected to the image's frame: the mask's holes."""
    _count, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    frame = set(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]).tolist())
    return (~mask) & ~np.isin(labels, list(frame))


def test_a_hole_lies_inside_the_object_and_shows_the_photos_background() -> None:
    image, mask = _disk_scene()
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(25):
        punched = punch_hole(image, mask, None, rng)
        assert punched is not None  # a 50 px disk on a wide background always has room
        out, holed = punched
        lost = mask & ~holed
        assert lost.any() and not (holed & ~mask).any()  # the target only loses pixels
        # Enclosed with a rim of object all round: every lost pixel is a hole pixel, none reaches the edge.
        assert np.array_equal(lost, _enclosed_background(holed))
        assert depth[lost].min() > RIM_SHARE * MIN_DEPTH_PX
        # What shows through is background (the photo shifted), at least half of it where the mask lost it.
        assert (out[lost] >= (OBJECT_GREY + BACKGROUND_GREY) / 2 - 1).all()
        # Nothing changes beyond the hole's soft rim; the object's outer edge and the background are intact.
        rim = cv2.dilate(lost.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        assert np.array_equal(out[~rim], image[~rim])
        areas.append(int(lost.sum()))
    # Sizes and shapes vary (slits to round holes), none takes over the object.
    assert min(areas) < 0.5 * max(areas) and max(areas) < 0.6 * mask.sum()


def test_no_hole_where_the_object_has_no_room_for_one() -> None:
    image, _ = _disk_scene()
    thin = np.zeros(image.shape[:2], bool)
    thin[100:108, 20:220] = True  # 8 px wide: no pixel lies MIN_DEPTH_PX inside it
    rng = np.random.default_rng(1)
    assert all(punch_hole(image, thin, None, rng) is None for _ in range(10))


def test_an_object_that_fills_its_photo_shows_another_photo_through_its_hole() -> None:
    image, mask = _disk_scene(radius=200, size=240)  # no background far enough from the object
    donor = np.full((90, 120, 3), 250, np.uint8)
    rng = np.random.default_rng(2)
    assert all(punch_hole(image, mask, None, rng) is None for _ in range(5))
    out, holed = punch_hole(image, mask, donor, rng) or (image, mask)
    lost = mask & ~holed
    assert lost.any() and (out[lost] >= (OBJECT_GREY + 250) / 2 - 1).all()


def test_training_samples_with_holes_keep_their_extreme_points_and_the_stream_without_them() -> None:
    instances = make_instances(6, seed=3)
    punching = SampleGenerator(instances, 96, seed=4, augmentations=Augmentations(hole_share=1.0))
    holed = 0
    for _ in range(20):
        sample = punching.sample()
        holed += int(_enclosed_background(sample.mask).sum() > 4)
        near = cv2.dilate(sample.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        for x, y in sample.points:
            assert near[min(95, max(0, round(y))), min(95, max(0, round(x)))]
    assert holed >= 10  # most synthetic ellipses have room for a hole the crop still shows
    # Off, the stream is the one runs had before the option (no extra random draws).
    off = SampleGenerator(instances, 96, seed=4, augmentations=Augmentations(hole_share=0.0)).sample()
    assert np.array_equal(off.crop, SampleGenerator(instances, 96, seed=4).sample().crop)


def test_the_cli_option_reaches_the_batches_a_run_trains_on(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fewclick train --hole-share` through argparse and `train.run` to the batch source's samples."""
    seen: list[TrainingBatch] = []
    real_source = train.batch_source

    def recording_source(*args: object, **kwargs: object) -> Callable[[], TrainingBatch]:
        next_batch = real_source(*args, **kwargs)  # type: ignore[arg-type]

        def record() -> TrainingBatch:
            seen.append(next_batch())
            return seen[-1]

        return record

    monkeypatch.setattr(train, "batch_source", recording_source)
    parser = train_parser()
    for share in ("0", "1"):
        out = tmp_path / f"holes-{share}"
        argv = ["--data", str(tiny_root), "--out", str(out), "--export", str(out / "w.pt"), "--size", "96"]
        argv += ["--decoder-channels", "16", "--steps", "2", "--batch", "4", "--validate-every", "100"]
        seen.clear()
        assert train.run(parser.parse_args([*argv, "--hole-share", share])) == 0
        holed = sum(int(_enclosed_background(mask).sum() > 4) for batch in seen for mask in batch.masks)
        if share == "0":
            assert holed == 0  # the synthetic objects are solid
        else:
            assert holed >= len(seen) * 4 // 2
