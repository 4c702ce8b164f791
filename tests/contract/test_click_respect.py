"""`fewclick_contract.click_respect`: the "clicks respected" test, read from a window around each click,
against a whole-image reference (distance to every edge pixel) on masks with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fewclick_contract.click_respect import RESPECTED_WITHIN_PX, click_respected, missed_clicks


def _reference_boundary(x: int, y: int, mask: np.ndarray) -> bool:
    """The definition, over the whole image: mask pixels with an 8-neighbour outside the mask or the
    image, and background pixels with an 8-neighbour in the mask; exact Euclidean distance."""
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    inner = m - cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    beside = cv2.dilate(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) & (1 - m)
    edge = (inner | beside).astype(bool)
    if not edge.any():
        return False
    ys, xs = np.nonzero(edge)
    return bool(np.hypot(xs - x, ys - y).min() <= RESPECTED_WITHIN_PX)


def test_region_clicks() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    assert click_respected(4, 4, "positive", mask)
    assert not click_respected(4, 4, "negative", mask)
    assert click_respected(0, 0, "negative", mask)
    assert not click_respected(0, 0, "positive", mask)


def test_boundary_clicks_within_three_pixels_of_the_edge() -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True  # edge pixels: rows/cols 9..10 and 29..30 (inner and beside)
    assert click_respected(20, 10, "boundary", mask)  # on the edge
    assert click_respected(20, 6, "boundary", mask)  # 3 px above the outer edge row 9
    assert not click_respected(20, 5, "boundary", mask)
    assert click_respected(20, 13, "boundary", mask)  # 3 px inside the inner edge row 10
    assert not click_respected(20, 14, "boundary", mask)
    assert click_respected(7, 7, "boundary", mask)  # (9, 9) is 2.8 px away
    assert not click_respected(6, 6, "boundary", mask)  # 4.2 px: the tolerance is Euclidean


def test_the_frame_ends_the_object_but_is_no_edge_of_the_background() -> None:
    empty = np.zeros((40, 40), bool)
    assert not click_respected(20, 0, "boundary", empty)
    cut = np.zeros((40, 40), bool)
    cut[:, :35] = True  # an object cut by the top, left and bottom of the frame
    assert click_respected(20, 0, "boundary", cut)  # where it meets the frame
    assert click_respected(38, 0, "boundary", cut)  # 3 px beside its edge column 35
    assert not click_respected(39, 0, "boundary", cut)
    full = np.ones((12, 12), bool)
    assert click_respected(0, 5, "boundary", full) and not click_respected(6, 6, "boundary", full)


@pytest.mark.parametrize("seed", range(6))
def test_the_window_reads_what_the_whole_image_says(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = rng.integers(5, 60, 2)
    noise = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), rng.uniform(0.5, 4))
    mask = noise > np.quantile(noise, rng.uniform(0.2, 0.8))
    for y in range(height):
        for x in range(width):
            assert click_respected(x, y, "boundary", mask) == _reference_boundary(x, y, mask), (x, y)


def test_missed_clicks_names_the_ones_not_followed_in_order() -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    clicks = [
        (20, 20, "positive"),
        (20, 20, "negative"),
        (20, 10, "boundary"),
        (20, 20, "boundary"),
        (1, 1, "negative"),
    ]
    assert missed_clicks(mask, clicks) == [1, 3]
    assert missed_clicks(mask, []) == []
    with pytest.raises(ValueError, match="unknown click kind 'edge'"):
        click_respected(1, 1, "edge", mask)
