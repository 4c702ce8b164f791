import cv2
import numpy as np
import pytest

from fewclick_contract.click_constraints import honor_clicks


def disk_probabilities(h: int = 200, w: int = 240, centre: tuple[int, int] = (120, 100), r: int = 50) -> np.ndarray:
    """A confident network: 0.98 inside a disk, 0.02 outside, a 3 px soft edge."""
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, centre, r, 1, -1)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (7, 7), 1.0)
    return (0.02 + 0.96 * soft).astype(np.float32)


def edge_distance(mask: np.ndarray, x: int, y: int) -> float:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    pts = np.concatenate([c[:, 0, :] for c in contours]).astype(np.float64)
    return float(np.hypot(pts[:, 0] - x, pts[:, 1] - y).min())


def test_a_positive_click_outside_a_confident_mask_flips_a_small_blob_only() -> None:
    prob = disk_probabilities()
    out = honor_clicks(prob, [(20, 20, "positive")], image_px_per_crop_px=2.0)
    assert out[20, 20] > 0.5 and prob[20, 20] < 0.5
    changed = (out > 0.5) != (prob > 0.5)
    # Only near the click (sigma = 3 crop px = 6 image px), and far less than the Gaussian's reach.
    ys, xs = np.nonzero(changed)
    assert np.hypot(xs - 20, ys - 20).max() <= 6 and changed.sum() < np.pi * 6**2
    assert np.array_equal(out[100:, 100:], prob[100:, 100:])  # the rest of the image is untouched


def test_a_negative_click_inside_takes_its_pixel_out() -> None:
    prob = disk_probabilities()
    out = honor_clicks(prob, [(120, 100, "negative")], 1.0)
    assert out[100, 120] < 0.5 and (out > 0.5).sum() > 0.9 * (prob > 0.5).sum()


def test_an_unsure_network_gives_way_along_its_own_probability_landscape() -> None:
    prob = np.full((60, 60), 0.45, np.float32)  # unsure everywhere: a big soft region flips
    out = honor_clicks(prob, [(30, 30, "positive")], 1.0)
    confident = honor_clicks(np.full((60, 60), 0.01, np.float32), [(30, 30, "positive")], 1.0)
    assert (out > 0.5).sum() > 3 * (confident > 0.5).sum() > 0


@pytest.mark.parametrize("x", [174, 176, 177, 164])  # outside the disk by 4, 6, 7 px; inside by 6 px
def test_a_boundary_click_near_the_edge_moves_the_edge_onto_it_as_a_smooth_stretch(x: int) -> None:
    prob = disk_probabilities()
    # 2 image px per crop px: shifts up to 4 crop px = 8 image px are the crop's resolution at work.
    out = honor_clicks(prob, [(x, 100, "boundary")], image_px_per_crop_px=2.0)
    before, after = prob > 0.5, out > 0.5
    assert edge_distance(before, x, 100) > 3
    assert edge_distance(after, x, 100) <= 1.5
    changed = before != after
    # The change is one connected piece next to the click, not a spike or a scattered edit.
    assert cv2.connectedComponents(changed.astype(np.uint8))[0] == 2
    reach = 3 * max(6, abs(x - 170)) + 1
    far = np.hypot(*np.meshgrid(np.arange(240) - x, np.arange(200) - 100)) > reach
    assert not changed[far].any()


def test_a_boundary_click_far_from_the_edge_is_left_to_the_network() -> None:
    # 30 px off at 2 image px per crop px: a missed part, not a resolution error; a bump would paint background.
    prob = disk_probabilities()
    assert np.array_equal(honor_clicks(prob, [(200, 100, "boundary")], 2.0), prob)
    # The same click on a crop 8x coarser is within the resolution's reach, so it is honored.
    assert edge_distance(honor_clicks(prob, [(200, 100, "boundary")], 8.0) > 0.5, 200, 100) <= 1.5


def test_clicks_already_honored_change_nothing() -> None:
    prob = disk_probabilities()
    clicks = [(120, 100, "positive"), (10, 10, "negative"), (170, 100, "boundary")]
    assert np.array_equal(honor_clicks(prob, clicks, 2.0), prob)


def test_the_later_click_wins_where_two_disagree() -> None:
    prob = disk_probabilities()
    out = honor_clicks(prob, [(20, 20, "positive"), (20, 20, "negative")], 1.0)
    assert out[20, 20] < 0.5


def test_input_is_not_modified_and_bad_kinds_fail_clearly() -> None:
    prob = disk_probabilities()
    copy = prob.copy()
    honor_clicks(prob, [(20, 20, "positive"), (190, 100, "boundary")], 1.0)
    assert np.array_equal(prob, copy)
    with pytest.raises(ValueError, match="unknown click kind"):
        honor_clicks(prob, [(20, 20, "maybe")], 1.0)
    # Off-image clicks (never produced by the proxy, which validates them) are skipped, not wrapped.
    assert np.array_equal(honor_clicks(prob, [(-5, 20, "positive")], 1.0), prob)
