"""Synthetic labeling scenes for the serving tests and benchmarks: an object known exactly.

A textured background (smooth noise + gradient) with one filled ellipse of another
colour and texture; the ground-truth mask gives the 4 extreme points and lets a robot
labeler place corrective clicks where the prediction is wrong, like a person would.
"""

from __future__ import annotations

import cv2
import numpy as np

# The smallest side a scene can have: under it the ellipse's random centre and axes have no range
# to draw from (and an object of a few pixels says nothing about latency).
MIN_SIDE = 32


def make_scene(height: int = 480, width: int = 640, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB image and (H, W) bool mask of one ellipse."""
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"a synthetic scene needs at least {MIN_SIDE}x{MIN_SIDE} px, got {width}x{height}")
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    background = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    grain = rng.normal(0.0, 12.0, size=(height, width, 3)).astype(np.float32)
    ramp = np.linspace(-30, 30, width, dtype=np.float32)[None, :, None]
    image = np.clip(0.6 * background + grain + ramp + 40, 0, 255)

    mask = np.zeros((height, width), np.uint8)
    centre = (int(rng.integers(width // 3, 2 * width // 3)), int(rng.integers(height // 3, 2 * height // 3)))
    axes = (int(rng.integers(width // 10, width // 5)), int(rng.integers(height // 10, height // 5)))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    colour = rng.integers(60, 255, size=3).astype(np.float32)
    inside = mask.astype(bool)
    stripes = (np.sin(np.arange(width, dtype=np.float32) / 4.0) * 18.0)[None, :].repeat(height, 0)
    image[inside] = np.clip(0.75 * colour + 0.25 * image[inside] + stripes[inside][:, None], 0, 255)
    return image.astype(np.uint8), inside


def extreme_points(mask: np.ndarray) -> list[tuple[int, int]]:
    """Left-, right-, top- and bottom-most object pixels (the median one where several tie)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty mask")

    def pick(sel: np.ndarray) -> tuple[int, int]:
        idx = np.flatnonzero(sel)
        i = idx[len(idx) // 2]
        return int(xs[i]), int(ys[i])

    return [pick(xs == xs.min()), pick(xs == xs.max()), pick(ys == ys.min()), pick(ys == ys.max())]


def robot_click(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, str] | None:
    """The click a careful labeler makes: the interior-most point of the largest error
    region; positive where the object was missed, negative where background was taken."""
    best: tuple[float, int, int, str] | None = None
    for region, kind in ((gt & ~pred, "positive"), (pred & ~gt, "negative")):
        if not region.any():
            continue
        padded = np.pad(region.astype(np.uint8), 1)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        if best is None or dist[y, x] > best[0]:
            best = (float(dist[y, x]), int(x), int(y), kind)
    if best is None:
        return None
    return best[1], best[2], best[3]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
