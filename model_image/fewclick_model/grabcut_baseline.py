"""OpenCV GrabCut seeded with the same clicks: the classical method beside the model.

Seeds (GrabCut's own rectangle initialisation, with the rectangle the labeler gave):
the extreme points are the object's top-, left-, bottom- and right-most pixels, so
outside their tight box is certain background; the box is probable foreground;
positive clicks are certain foreground, negative clicks certain background (small
discs); a boundary click lies on the edge, so only its own pixel is marked foreground,
and one outside the box widens it. The network's crop margin (`crop.relaxed_box`) is
not used here: on large objects it reached the image's border and left GrabCut
almost no background to learn from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import cv2
import numpy as np

from .simulator import Click

SEED_RADIUS = 5
ITERATIONS = 5
RNG_SEED = 0


class GrabCutPredictor:
    """Same interface as `FewClickPredictor` (set_image / predict), no network."""

    model_version = "opencv-grabcut"

    def __init__(self) -> None:
        self._image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        self._image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)

    def predict(self, extreme_points: np.ndarray, clicks: Sequence[Click] = ()) -> np.ndarray:
        if self._image is None:
            raise RuntimeError("call set_image first")
        h, w = self._image.shape[:2]
        # The object lies within its extreme points' box; positive and boundary clicks are on it too.
        on_object = [np.asarray(extreme_points, dtype=np.float64).reshape(-1, 2)]
        on_object += [np.array([[c.x, c.y]], dtype=np.float64) for c in clicks if c.kind != "negative"]
        points = np.concatenate(on_object)
        x0, y0 = max(int(points[:, 0].min()), 0), max(int(points[:, 1].min()), 0)
        x1, y1 = min(int(points[:, 0].max()) + 1, w), min(int(points[:, 1].max()) + 1, h)
        seeds = np.full((h, w), cv2.GC_BGD, np.uint8)
        seeds[y0:y1, x0:x1] = cv2.GC_PR_FGD
        for x, y in np.asarray(extreme_points):
            seeds[int(y), int(x)] = cv2.GC_PR_FGD
        for c in clicks:
            if c.kind == "positive":
                cv2.circle(seeds, (c.x, c.y), SEED_RADIUS, cv2.GC_FGD, -1)
            elif c.kind == "negative":
                cv2.circle(seeds, (c.x, c.y), SEED_RADIUS, cv2.GC_BGD, -1)
            else:
                seeds[c.y, c.x] = cv2.GC_FGD
        # Work on the box plus a border of background, so big images stay affordable.
        pad = 10
        sx0, sy0, sx1, sy1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)
        sub = seeds[sy0:sy1, sx0:sx1].copy()
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        # Degenerate seeds (no background sample) make GrabCut raise: the seeds are then the answer.
        # Its colour models start from k-means with OpenCV's global generator: seeded per call, so an
        # instance's answer does not depend on which instances ran before it.
        cv2.setRNGSeed(RNG_SEED)
        with contextlib.suppress(cv2.error):
            cv2.grabCut(self._image[sy0:sy1, sx0:sx1], sub, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
        out = np.zeros((h, w), np.float32)
        out[sy0:sy1, sx0:sx1] = ((sub == cv2.GC_FGD) | (sub == cv2.GC_PR_FGD)).astype(np.float32)
        return out
