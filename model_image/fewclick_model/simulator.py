"""Robot users: where a labeler would click, given the truth and the current prediction.

Evaluation uses the standard protocol (deterministic); training draws clicks at
random from the same kind of places, as RITM does, so the network sees the
variety real labelers produce.

Masks here are full-resolution boolean arrays; ``ignore`` marks pixels whose
label is unknown (GrabCut's 128 band), which never attract a click.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .encoding import ClickKind


@dataclass(frozen=True)
class Click:
    """A click in image pixel indices."""

    x: int
    y: int
    kind: ClickKind


def extreme_points(mask: np.ndarray, rng: np.random.Generator | None = None, jitter: float = 0.0) -> np.ndarray:
    """The object's top-, left-, bottom- and right-most pixels as (4, 2) [x, y].

    Where several pixels tie (a flat top), the deterministic choice is the
    middle one, as a careful labeler would pick; with ``rng`` a random tied
    pixel is taken and moved by up to ``jitter`` pixels, as a hurried one would.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty mask has no extreme points")
    picks = []
    for coords, other, extreme in ((ys, xs, ys.min()), (xs, ys, xs.min()), (ys, xs, ys.max()), (xs, ys, xs.max())):
        tied = np.sort(other[coords == extreme])
        value = tied[len(tied) // 2] if rng is None else tied[rng.integers(len(tied))]
        picks.append((value, extreme) if coords is ys else (extreme, value))
    points = np.array(picks, dtype=np.float64)
    if rng is not None and jitter > 0:
        points += rng.uniform(-jitter, jitter, size=points.shape)
        h, w = mask.shape
        points[:, 0] = np.clip(points[:, 0], 0, w - 1)
        points[:, 1] = np.clip(points[:, 1], 0, h - 1)
    return np.round(points).astype(np.int64)


def _padded_distance(region: np.ndarray) -> np.ndarray:
    """Distance to the region's edge, treating the image border as an edge too."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]


def error_masks(
    truth: np.ndarray, prediction: np.ndarray, ignore: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(missed object, wrongly taken background), ignore pixels excluded."""
    missed = truth & ~prediction
    taken = ~truth & prediction
    if ignore is not None:
        missed &= ~ignore
        taken &= ~ignore
    return missed, taken


def region_click(truth: np.ndarray, prediction: np.ndarray, ignore: np.ndarray | None = None) -> Click | None:
    """Standard protocol: the distance-transform maximum of the largest error region;
    positive where object was missed, negative where background was taken."""
    best: tuple[int, ClickKind, np.ndarray] | None = None
    for error, kind in zip(error_masks(truth, prediction, ignore), ("positive", "negative"), strict=True):
        if not error.any():
            continue
        _, labels, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = int(stats[largest, cv2.CC_STAT_AREA])
        if best is None or area > best[0]:
            best = (area, kind, labels == largest)
    if best is None:
        return None
    _, kind, region = best
    dist = _padded_distance(region)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Click(int(x), int(y), kind)


def boundary_of(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` that touch the outside (4-connectivity)."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m - eroded).astype(bool)


def _true_edge_distances(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray | None:
    """Each true-edge pixel's distance to the predicted edge, -1 off the true edge
    (inf where nothing is predicted); None when the boundaries already agree everywhere."""
    true_edge = boundary_of(truth)
    if not true_edge.any():
        return None
    predicted_edge = boundary_of(prediction)
    if predicted_edge.any():
        dist = cv2.distanceTransform((~predicted_edge).astype(np.uint8), cv2.DIST_L2, 5)
    else:
        dist = np.full(truth.shape, np.inf, dtype=np.float32)
    candidates = np.where(true_edge, dist, -1.0)
    return candidates if candidates.max() > 1.0 else None


def boundary_click(truth: np.ndarray, prediction: np.ndarray, ignore: np.ndarray | None = None) -> Click | None:
    """The point of the true boundary farthest from the predicted boundary.

    ``ignore`` is accepted for symmetry with `region_click`; the true edge of
    GrabCut's object lies next to its unknown band, so nothing is left out.
    """
    candidates = _true_edge_distances(truth, prediction)
    if candidates is None:
        return None
    y, x = np.unravel_index(int(np.argmax(candidates)), candidates.shape)
    return Click(int(x), int(y), "boundary")


def random_boundary_click(
    truth: np.ndarray, prediction: np.ndarray, rng: np.random.Generator, ignore: np.ndarray | None = None
) -> Click | None:
    """A labeler less exact than `boundary_click`: a random true-edge point at least 60 % as far
    from the predicted edge as the farthest one (`sample_training_click`'s rule)."""
    candidates = _true_edge_distances(truth, prediction)
    if candidates is None:
        return None
    ys, xs = np.nonzero(candidates >= 0.6 * candidates.max())
    i = int(rng.integers(len(xs)))
    return Click(int(xs[i]), int(ys[i]), "boundary")


def next_click(kind: str, truth: np.ndarray, prediction: np.ndarray, ignore: np.ndarray | None = None) -> Click | None:
    """Dispatch on the click kind used in evaluation: ``region`` or ``boundary``."""
    if kind == "region":
        return region_click(truth, prediction, ignore)
    if kind == "boundary":
        return boundary_click(truth, prediction, ignore)
    raise ValueError(f"unknown click kind {kind!r}; use 'region' or 'boundary'")


def sample_training_click(
    truth: np.ndarray, prediction: np.ndarray, rng: np.random.Generator, boundary_share: float = 0.4
) -> Click | None:
    """A random corrective click deep inside an error region (RITM), or on the true
    boundary near where the prediction's edge is farthest from it."""
    missed, taken = error_masks(truth, prediction)
    if not (missed.any() or taken.any()):
        return None
    if rng.random() < boundary_share:
        true_edge = boundary_of(truth)
        predicted_edge = boundary_of(prediction)
        if true_edge.any() and predicted_edge.any():
            dist = cv2.distanceTransform((~predicted_edge).astype(np.uint8), cv2.DIST_L2, 3)
            d = np.where(true_edge, dist, 0.0)
            far = d.max()
            if far > 2.0:
                ys, xs = np.nonzero(d >= 0.6 * far)
                i = rng.integers(len(xs))
                return Click(int(xs[i]), int(ys[i]), "boundary")
    # Weight the two error kinds by their size, then click deep inside the chosen one.
    sizes = np.array([missed.sum(), taken.sum()], dtype=np.float64)
    kind_index = int(rng.choice(2, p=sizes / sizes.sum()))
    error = (missed, taken)[kind_index]
    dist = _padded_distance(error)
    far = dist.max()
    ys, xs = np.nonzero(dist >= max(0.5 * far, min(far, 1.0)))
    i = rng.integers(len(xs))
    return Click(int(xs[i]), int(ys[i]), ("positive", "negative")[kind_index])
