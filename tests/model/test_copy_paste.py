"""Copy-paste augmentation (`fewclick_model.copy_paste`) on objects whose pixels are known exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fewclick_model.copy_paste import MAX_KEPT_BAND, MIN_KEPT_SHARE, paste_object, swap_background
from fewclick_model.data import Augmentations, SampleGenerator

from .synthetic import make_instances

TARGET_GREY = 40
DONOR_GREY = 220


def _disk(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, centre, radius, 1, -1)
    return mask.astype(bool)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    image = np.full((200, 200, 3), TARGET_GREY, np.uint8)
    target = _disk((200, 200), (100, 100), 50)
    donor = _disk((120, 120), (60, 60), 30)
    donor_image = np.repeat(np.where(donor, DONOR_GREY, 0).astype(np.uint8)[..., None], 3, axis=2)  # on black
    return image, target, donor_image, donor


def test_a_pasted_object_lands_across_the_targets_edge_and_only_its_own_pixels_move() -> None:
    image, target, donor_image, donor = _scene()
    rng = np.random.default_rng(0)
    in_front = behind = 0
    for _ in range(40):
        pasted = paste_object(image, target, donor_image, donor, rng)
        if pasted is None:
            continue
        out, kept = pasted
        changed = np.abs(out.astype(int) - image).max(axis=2) > 0
        assert changed.any()
        # Nothing but the donor's disk (and its soft rim) arrived: its black background would show below grey.
        assert (out >= TARGET_GREY).all()
        # It meets the target's edge: it lands outside the target, and within a few pixels of it.
        near_target = cv2.dilate(target.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        assert (changed & ~target).any() and (changed & near_target).any()
        if (kept != target).any():
            in_front += 1
            # In front: the target loses exactly what the donor now covers, never gains.
            assert not (kept & ~target).any()
            assert (out[target & ~kept] >= (TARGET_GREY + DONOR_GREY) / 2 - 1).all()  # half covered or more
            assert kept.sum() >= MIN_KEPT_SHARE * target.sum()
        else:
            behind += 1
            # Behind: the target's own pixels are untouched.
            assert (out[target] == TARGET_GREY).all()
    assert in_front > 5 and behind > 5


def test_a_donor_cut_by_its_frame_or_a_paste_that_hides_the_target_is_not_used() -> None:
    image, target, donor_image, donor = _scene()
    cut = donor.copy()
    cut[:, :40] = True  # runs off the left of its image
    rng = np.random.default_rng(1)
    assert all(paste_object(image, target, donor_image, cut, rng) is None for _ in range(10))
    # The donor is scaled to 0.3-1.0 of the target, so on a small target some pastes in front would
    # hide most of it: those are refused (seeded, so some are), and what is returned keeps its share.
    small = _disk((200, 200), (100, 100), 6)
    results = [paste_object(image, small, donor_image, donor, rng, min_object_px=16) for _ in range(30)]
    assert any(pasted is None for pasted in results)
    for pasted in results:
        if pasted is not None:
            assert pasted[1].sum() >= MIN_KEPT_SHARE * small.sum()


@pytest.mark.parametrize("share", ["paste_share", "background_share"])
def test_training_samples_with_either_paste_keep_their_extreme_points_on_the_target(share: str) -> None:
    instances = make_instances(6, seed=3)
    plain = SampleGenerator(instances, 64, seed=4)
    pasting = SampleGenerator(instances, 64, seed=4, augmentations=Augmentations(**{share: 1.0}))
    differs = 0
    for _ in range(20):
        a, b = plain.sample(), pasting.sample()
        differs += int(not np.array_equal(a.crop, b.crop))
        assert b.mask.any()
        # The extreme points are the pasted target's: each lies on (or next to) its mask.
        near = cv2.dilate(b.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        for x, y in b.points:
            assert near[min(63, max(0, round(y))), min(63, max(0, round(x)))]
    assert differs > 0
    # Without pasting the stream is the one runs had before the option (no extra random draws).
    again = SampleGenerator(instances, 64, seed=4, augmentations=Augmentations(**{share: 0.0}))
    first = SampleGenerator(instances, 64, seed=4).sample()
    assert np.array_equal(again.sample().crop, first.crop)


def test_a_target_on_a_new_background_keeps_its_pixels_its_mask_and_a_band_of_its_surroundings() -> None:
    image, target, _, _ = _scene()
    # Another photo: a horizontal ramp, so which part of it arrived (scaled, cut, mirrored) varies.
    background = np.repeat(np.tile(np.linspace(120, 250, 90).astype(np.uint8), (60, 1))[..., None], 3, axis=2)
    rng = np.random.default_rng(5)
    bands = []
    for _ in range(30):
        out = swap_background(image, target, background, rng)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert (out[target] == TARGET_GREY).all()  # the target is exactly its own pixels
        # Far from the target every pixel is the other photo's (brighter than anything of this one).
        far = cv2.dilate(target.astype(np.uint8), np.ones((31, 31), np.uint8)) == 0
        assert (out[far] >= 120).all()
        # The band of its own surroundings it kept: the unchanged pixels around it, never wider than allowed.
        own = (out == TARGET_GREY).all(axis=2) & ~target
        band = int(np.ceil(np.max(cv2.distanceTransform((~target).astype(np.uint8), cv2.DIST_L2, 5)[own], initial=0)))
        assert band <= round(MAX_KEPT_BAND * 101) + 1
        bands.append(band)
    # Some keep a visible band, some almost none: the seam is not always the target's edge.
    assert max(bands) >= 5 and min(bands) <= 2
