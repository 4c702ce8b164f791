import cv2
import numpy as np
from fewclick_model.simulator import (
    Click,
    boundary_click,
    boundary_of,
    extreme_points,
    random_boundary_click,
    region_click,
    sample_training_click,
)


def square(h: int = 100, w: int = 100, y0: int = 20, y1: int = 80, x0: int = 30, x1: int = 70) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_extreme_points_of_a_rectangle_are_the_middles_of_its_sides() -> None:
    pts = extreme_points(square())
    assert pts.tolist() == [[50, 20], [30, 50], [50, 79], [69, 50]]


def test_jittered_extreme_points_stay_in_the_image_and_near_the_truth() -> None:
    rng = np.random.default_rng(0)
    truth = extreme_points(square())
    for _ in range(20):
        pts = extreme_points(square(), rng, jitter=3)
        assert (pts >= 0).all() and (pts <= 99).all()
        assert np.abs(pts - truth).max() <= 33  # random tied pixel along a flat side, plus jitter


def test_region_click_goes_to_the_centre_of_the_largest_missed_region() -> None:
    truth = square(y0=30, y1=70)  # a true square: one distance-transform maximum
    pred = np.zeros_like(truth)  # everything missed
    click = region_click(truth, pred)
    assert click is not None and click.kind == "positive"
    assert abs(click.x - 49.5) <= 1 and abs(click.y - 49.5) <= 1


def test_region_click_is_negative_when_background_was_taken() -> None:
    truth = square()
    pred = truth.copy()
    pred[0:15, 0:100] = True  # a large false band
    click = region_click(truth, pred)
    assert click is not None and click.kind == "negative"
    assert not truth[click.y, click.x]


def test_region_click_ignores_unknown_pixels_and_stops_when_perfect() -> None:
    truth = square()
    assert region_click(truth, truth.copy()) is None
    pred = truth.copy()
    pred[0:10, :] = True
    ignore = np.zeros_like(truth)
    ignore[0:10, :] = True
    assert region_click(truth, pred, ignore) is None


def test_boundary_click_is_on_the_true_edge_farthest_from_the_predicted_edge() -> None:
    truth = square()
    pred = square(x1=50)  # the right part of the object is missed
    click = boundary_click(truth, pred)
    assert click is not None and click.kind == "boundary"
    assert click.x == 69  # the true right edge
    assert 20 <= click.y < 80


def test_training_clicks_fall_on_errors_or_on_the_true_edge() -> None:
    rng = np.random.default_rng(1)
    truth = square()
    pred = square(x1=50)
    for _ in range(50):
        click = sample_training_click(truth, pred, rng)
        assert isinstance(click, Click)
        if click.kind == "positive":
            assert truth[click.y, click.x] and not pred[click.y, click.x]
        elif click.kind == "negative":
            assert not truth[click.y, click.x] and pred[click.y, click.x]
        else:
            assert truth[click.y, click.x]


def test_the_less_exact_labeler_clicks_on_the_true_edge_near_the_farthest_point() -> None:
    truth = np.zeros((80, 80), bool)
    truth[10:70, 10:70] = True
    prediction = truth.copy()
    prediction[10:70, 40:70] = False  # the right half missed: its right edge is the farthest
    rng = np.random.default_rng(0)
    clicks = [random_boundary_click(truth, prediction, rng) for _ in range(40)]
    dist = cv2.distanceTransform((~boundary_of(prediction)).astype(np.uint8), cv2.DIST_L2, 5)
    farthest = boundary_click(truth, prediction)
    assert farthest is not None
    for c in clicks:
        assert c is not None and c.kind == "boundary" and boundary_of(truth)[c.y, c.x]
        assert dist[c.y, c.x] >= 0.6 * dist[farthest.y, farthest.x]
    assert len({(c.x, c.y) for c in clicks if c is not None}) > 10  # spread along the far edge
    assert random_boundary_click(truth, truth, rng) is None  # nothing left to correct
