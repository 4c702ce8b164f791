"""OpenCV GrabCut seeded with the same clicks: the classical method beside the model.

Seeds: outside the relaxed box of the extreme points is background; the box
is probable foreground; positive clicks are certain foreground, negative
clicks certain background (small discs); extreme points and boundary clicks
lie on the edge, so only their own pixel is marked probable foreground.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import cv2
import numpy as np

from fewclick_contract.crop import crop_box_for_clicks

from .simulator import Click

SEED_RADIUS = 5
ITERATIONS = 5


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
        pts = np.array([(c.x, c.y) for c in clicks], dtype=np.float64).reshape(-1, 2)
        box = crop_box_for_clicks(np.asarray(extreme_points), pts)
        x0, y0 = max(int(box.x0), 0), max(int(box.y0), 0)
        x1, y1 = min(int(np.ceil(box.x1)), w), min(int(np.ceil(box.y1)), h)
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
        with contextlib.suppress(cv2.error):
            cv2.grabCut(self._image[sy0:sy1, sx0:sx1], sub, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
        out = np.zeros((h, w), np.float32)
        out[sy0:sy1, sx0:sx1] = ((sub == cv2.GC_FGD) | (sub == cv2.GC_PR_FGD)).astype(np.float32)
        return out
