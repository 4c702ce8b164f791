"""Make the mask agree with every click where the labeler made it.

The network sees a 256 px crop, so on a large object its edge can land a few
image pixels off a boundary click, and now and then it leaves a positive click
outside (or a negative one inside) the mask. A labeler reads that as the tool
ignoring them, and the robot user clicks the same spot again. This pass runs on
the full-resolution probabilities after the crop is pasted back, in the model
library (evaluation) and in the proxy (served masks) alike, and changes only a
neighbourhood of each click whose constraint is broken:

- positive / negative: the logits near the click are raised / lowered with a
  Gaussian falloff until the click is inside / outside by a small margin. Where
  the network was unsure the change follows its probability landscape; where it
  was confident only a small blob flips.
- boundary (the extreme points and boundary clicks): where the edge misses the
  click by no more than the crop's resolution can explain (a few crop pixels),
  the mask's signed distance to its edge is bent with a Gaussian bump so the
  edge passes through the click, as a smooth stretch rather than a spike. A
  click farther off marks a part the network missed or invented (a leg, a gap);
  a geometric bump there would paint over background, so the network's own
  answer to the click stands. (Moving the edge along the network's probability
  levels for such clicks was tried: no better on held-out data, see the model card.)

Clicks are applied in order, so a later click wins where two disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from .crop import CropBox, paste_crop

# Widths are in crop pixels and converted with the crop's scale (image px per crop px).
REGION_SIGMA_CROP_PX = 3.0
BOUNDARY_MIN_SIGMA_CROP_PX = 3.0
# Farther than this from the edge, a boundary click is left to the network (see above).
BOUNDARY_MAX_SHIFT_CROP_PX = 4.0
# How far inside (outside) a positive (negative) click must end up, in logits.
REGION_MARGIN_LOGIT = 1.0
# Probabilities are clipped before logits: an 8-bit PNG cannot say more than this.
LOGIT_CLIP = 6.0
# A click already within this many image pixels of the edge is left alone.
BOUNDARY_TOLERANCE_PX = 1.5
CHANGED_IN = 0.75
CHANGED_OUT = 0.25


def _window(x: int, y: int, radius: int, height: int, width: int) -> tuple[slice, slice, int, int]:
    x0, y0 = max(x - radius, 0), max(y - radius, 0)
    x1, y1 = min(x + radius + 1, width), min(y + radius + 1, height)
    return slice(y0, y1), slice(x0, x1), x - x0, y - y0


def _gaussian(shape: tuple[int, int], cx: int, cy: int, sigma: float) -> np.ndarray:
    ys = np.arange(shape[0], dtype=np.float32)[:, None] - cy
    xs = np.arange(shape[1], dtype=np.float32)[None, :] - cx
    return np.exp(-(xs * xs + ys * ys) / np.float32(2.0 * sigma * sigma))


def _honor_region(prob: np.ndarray, x: int, y: int, positive: bool, sigma: float) -> None:
    p = float(prob[y, x])
    if (p > 0.5) == positive:
        return
    rows, cols, cx, cy = _window(x, y, int(np.ceil(3 * sigma)), *prob.shape)
    window = np.clip(prob[rows, cols], 1.0 / (1.0 + np.exp(LOGIT_CLIP)), 1.0 / (1.0 + np.exp(-LOGIT_CLIP)))
    logits = np.log(window / (1.0 - window))
    target = REGION_MARGIN_LOGIT if positive else -REGION_MARGIN_LOGIT
    logits += _gaussian(logits.shape, cx, cy, sigma) * np.float32(target - logits[cy, cx])
    prob[rows, cols] = 1.0 / (1.0 + np.exp(-logits))


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Positive inside, negative outside; |value| is the distance to the other side."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    return inside - outside


def _honor_boundary(prob: np.ndarray, x: int, y: int, min_sigma: float, max_shift: float) -> None:
    height, width = prob.shape
    # First a window large enough to see the nearest edge, then the one the bump needs.
    reach = int(np.ceil(max_shift + 3 * min_sigma))
    rows, cols, cx, cy = _window(x, y, reach, height, width)
    mask = prob[rows, cols] > 0.5
    if mask.all() or not mask.any():
        return  # no edge in sight: nothing to bend
    phi = _signed_distance(mask)
    depth = float(phi[cy, cx])  # inside: > 0, outside: < 0; ~0.5-1 px next to the edge
    if abs(depth) <= BOUNDARY_TOLERANCE_PX:
        return
    if abs(depth) > max_shift:
        return
    sigma = max(min_sigma, abs(depth))
    rows, cols, cx, cy = _window(x, y, int(np.ceil(3 * sigma)), height, width)
    window = prob[rows, cols]
    mask = window > 0.5
    phi = _signed_distance(mask)
    # Aim half a pixel inside, so the clicked pixel is on the mask's edge.
    phi += _gaussian(phi.shape, cx, cy, sigma) * np.float32(0.5 - phi[cy, cx])
    bent = phi > 0
    window[bent & ~mask] = CHANGED_IN
    window[~bent & mask] = CHANGED_OUT


Constraint = tuple[float, float, str]


def served_constraints(
    extreme_points: Iterable[Sequence[float]], clicks: Iterable[Constraint], include_extreme_points: bool = True
) -> list[Constraint]:
    """What the served masks honor: the extreme points (boundary evidence, like a
    boundary click) then the corrective clicks in order. Held-out training data
    chose including the extreme points (mIoU with them alone and after 5 clicks up)."""
    extremes = [(float(p[0]), float(p[1]), "boundary") for p in extreme_points] if include_extreme_points else []
    return extremes + [(float(x), float(y), kind) for x, y, kind in clicks]


def honor_clicks(prob: np.ndarray, clicks: Sequence[Constraint], image_px_per_crop_px: float) -> np.ndarray:
    """A copy of ``prob`` (H, W) in which every click's constraint holds at 0.5.

    ``clicks`` are (x, y, kind) in image pixels, kind ``boundary``, ``positive`` or
    ``negative``, in the order they were made (extreme points first).
    """
    out = np.array(prob, dtype=np.float32, copy=True)
    height, width = out.shape
    scale = max(float(image_px_per_crop_px), 1.0)
    for cx, cy, kind in clicks:
        x, y = round(cx), round(cy)
        if not (0 <= x < width and 0 <= y < height):
            continue
        if kind == "boundary":
            _honor_boundary(out, x, y, BOUNDARY_MIN_SIGMA_CROP_PX * scale, BOUNDARY_MAX_SHIFT_CROP_PX * scale)
        elif kind in ("positive", "negative"):
            _honor_region(out, x, y, kind == "positive", REGION_SIGMA_CROP_PX * scale)
        else:
            raise ValueError(f"unknown click kind {kind!r}")
    return out


def served_probabilities(
    crop_prob: np.ndarray,
    box: CropBox,
    height: int,
    width: int,
    constraints: Sequence[Constraint],
    network_size: int,
) -> np.ndarray:
    """The network's crop probabilities pasted back at full resolution with every constraint
    honored: what a labeler is shown (the proxy) and what evaluation scores (the predictor).

    The constraints' tolerances are in network pixels, so `network_size` is required: the
    probabilities may come at a finer side (`fewclick_contract.edge_refine`).
    """
    return honor_clicks(paste_crop(crop_prob, box, height, width), constraints, box.width / network_size)
