"""Hole punching: a training target with a hole through it, showing what lies behind.

Why: on the served network's held-out instances, most boundary clicks it leaves unanswered on davis
lie on the edge of a hole in the object (71 of 93 missed clicks, the model card), and many of
GrabCut's do too (a cross, scissors' handles). coco_mval, two thirds of the training instances, has
almost none (3 of 800 masks: COCO's polygons seldom draw them), so the network rarely learns to open
a hole a click points at. Here a blob inside the object (round, or a slit like the gap between two
limbs) is replaced by the same photo's background from elsewhere (what a hole shows is the scene
behind the object), and the target loses it.

Measured, and off by default (`fewclick train --hole-share`, 0): matched pairs of fine-tunes in two
seeds gained ~0.2 after 5 boundary clicks on held-out davis, short of the rule's 0.3, and a fine-tune
of the served weights lost coco (the model card). The holes davis's robot clicks are mostly slivers
and specks a few pixels wide, not the round holes punched here.
"""

from __future__ import annotations

import cv2
import numpy as np

from .copy_paste import EDGE_SIGMA_PX, covering_cut

# A hole is centred this deep inside the object at least (image px), or it is not punched.
MIN_DEPTH_PX = 6.0
# Object kept all round the hole, relative to the depth at its centre: a hole, not a bite out of the edge.
RIM_SHARE = 0.2
# The hole's long semi-axis relative to the room at its centre (depth less rim); over 1 it must fit the
# object's shape there (checked), which lets slits run along an elongated object.
LONG_AXIS_RANGE = (0.5, 1.6)
# Short axis over long: from a slit to a round hole.
ASPECT_RANGE = (0.15, 1.0)
# Its narrower side at least this many image px (thinner gaps vanish in the network's crop).
MIN_WIDTH_PX = 3.0
# Tries at a shape that fits, and at a shift of the photo whose pixels there are background.
SHAPE_TRIES = 5
SHIFT_TRIES = 12


def _blob(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """An ellipse inside the object with ``RIM_SHARE`` of object around it, or None."""
    # Measured to the frame as well (a background border around the image): a hole stays inside the
    # picture, and an object filling it still has a finite depth.
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    ys, xs = np.nonzero(depth >= MIN_DEPTH_PX)
    if len(xs) == 0:
        return None
    # Deeper centres are likelier: that is where a hole has room.
    weights = depth[ys, xs].astype(np.float64)
    k = int(rng.choice(len(xs), p=weights / weights.sum()))
    cx, cy, d = int(xs[k]), int(ys[k]), float(depth[ys[k], xs[k]])
    rim = RIM_SHARE * d
    inner = depth > rim
    long_axis = (d - rim) * rng.uniform(*LONG_AXIS_RANGE)
    short_axis = long_axis * rng.uniform(*ASPECT_RANGE)
    angle = rng.uniform(0, 180)
    for _ in range(SHAPE_TRIES):
        if short_axis < MIN_WIDTH_PX / 2:
            return None
        blob = np.zeros(mask.shape, np.uint8)
        cv2.ellipse(blob, (cx, cy), (round(long_axis), round(short_axis)), angle, 0, 360, 1, -1)
        blob_mask = blob > 0
        if blob_mask.any() and not (blob_mask & ~inner).any():
            return blob_mask
        long_axis, short_axis = 0.7 * long_axis, 0.7 * short_axis
    return None


def _background_behind(
    image: np.ndarray, mask: np.ndarray, blob: np.ndarray, rng: np.random.Generator
) -> np.ndarray | None:
    """The photo shifted so that the blob's pixels come from its background, or None."""
    h, w = mask.shape
    ys, xs = np.nonzero(blob)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    span = max(y1 - y0, x1 - x0)
    # A halo around the object is not background enough: its colours bleed across the object's edge.
    near_object = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    for _ in range(SHIFT_TRIES):
        dx, dy = (rng.uniform(-1, 1, 2) * rng.uniform(1, 4) * max(span, 8)).round().astype(int)
        if x0 + dx < 0 or x1 + dx > w or y0 + dy < 0 or y1 + dy > h:
            continue
        if near_object[ys + dy, xs + dx].any():  # the object itself seen through its hole: a wrong label
            continue
        matrix = np.float32([[1, 0, dx], [0, 1, dy]])
        # out(p) = image(p + shift), so the hole shows the background at the shifted place.
        return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    return None


def punch_hole(
    image: np.ndarray, mask: np.ndarray, donor_image: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """``image`` with a hole through the object showing background, and the mask without it; None
    when the object has no room for one. The background comes from the same photo where some of it
    fits the hole, else from ``donor_image`` (another instance's photo) when given."""
    blob = _blob(mask, rng)
    if blob is None:
        return None
    behind = _background_behind(image, mask, blob, rng)
    if behind is None:
        if donor_image is None:
            return None
        behind = covering_cut(donor_image, mask.shape, rng)
    # Soft at its edge like any edge in a photo (a one-pixel step no photo has would be a cue).
    alpha = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), EDGE_SIGMA_PX)[..., None]
    out = alpha * behind.astype(np.float32) + (1.0 - alpha) * image.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask & ~(alpha[..., 0] > 0.5)
