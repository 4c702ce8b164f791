"""Clicks -> guidance maps, the network's view of the labeler's intent.

Channels (all in crop pixels, values in [0, 1]):
0. boundary evidence: the 4 extreme points and every boundary click ("the edge is here"),
1. positive clicks (inside the object),
2. negative clicks (background),
3. the previous prediction's probabilities, so a click refines instead of restarting,
4. only for networks built with it (`FewClickNet(newest_click=True)`, `fewclick train
   --newest-click`): the newest corrective click alone, whatever its kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

ClickKind = Literal["boundary", "positive", "negative"]
CLICK_KINDS: tuple[ClickKind, ...] = ("boundary", "positive", "negative")
GUIDANCE_CHANNELS = 4
# Channels 0-2 merge clicks by max, so the newest correction is one bump among many: the network
# cannot tell the click the labeler just made (the error it points at) from the ones already
# followed. The optional extra channel says which one it is.
NEWEST_CLICK_CHANNEL = GUIDANCE_CHANNELS
# Every click list a predictor receives starts with the object's 4 extreme points.
EXTREME_POINTS = 4

# Gaussian widths as a share of the crop side: ~10 px at 256 for boundary points (DEXTR),
# tighter for region clicks, which mark one spot rather than a stretch of edge.
BOUNDARY_SIGMA = 0.035
REGION_SIGMA = 0.025
# Heatmap tails below this are zeroed: denormal floats make CPU convolutions 10x slower.
TAIL_CUTOFF = 1e-3
# The maps combine clicks by max, so a boundary click the labeler repeats at the same spot (within
# REPEAT_RADIUS_PX crop pixels) would be invisible to the network: only its own last answer would
# change. Networks trained with repeats (`fewclick train --repeat-share`) see a repeated click drawn
# up to REPEAT_CAP times as strong ("I insist"); the weights record the cap they were trained with.
REPEAT_RADIUS_PX = 2.0
REPEAT_CAP = 3


@dataclass(frozen=True)
class CropClick:
    """A click in crop pixel coordinates."""

    x: float
    y: float
    kind: ClickKind


def _splat_gaussians(points: np.ndarray, size: int, sigma: float) -> np.ndarray:
    out = np.zeros((size, size), dtype=np.float32)
    if len(points) == 0:
        return out
    radius = int(np.ceil(sigma * np.sqrt(-2.0 * np.log(TAIL_CUTOFF))))
    for x, y in points:
        cx, cy = round(float(x)), round(float(y))
        x0, x1 = max(cx - radius, 0), min(cx + radius + 1, size)
        y0, y1 = max(cy - radius, 0), min(cy + radius + 1, size)
        if x1 <= x0 or y1 <= y0:
            continue
        xs = np.arange(x0, x1, dtype=np.float32) - np.float32(x)
        ys = np.arange(y0, y1, dtype=np.float32) - np.float32(y)
        g = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / np.float32(2.0 * sigma * sigma))
        np.maximum(out[y0:y1, x0:x1], g, out=out[y0:y1, x0:x1])
    out[out < TAIL_CUTOFF] = 0.0
    return out


def repeat_counts(points: np.ndarray) -> np.ndarray:
    """For each (x, y) of ``points`` (N, 2), how many of them (itself included) lie within
    `REPEAT_RADIUS_PX` of it: 1 for a click made once."""
    d = np.hypot(points[:, None, 0] - points[None, :, 0], points[:, None, 1] - points[None, :, 1])
    return (d <= REPEAT_RADIUS_PX).sum(axis=1)


def _strengthen_repeats(boundary_map: np.ndarray, corrective: Sequence[CropClick], size: int, cap: int) -> None:
    points = np.array([(c.x, c.y) for c in corrective if c.kind == "boundary"], dtype=np.float32).reshape(-1, 2)
    if len(points) < 2:
        return
    for point, count in zip(points, repeat_counts(points), strict=True):
        if count > 1:
            stronger = min(int(count), cap) * _splat_gaussians(point[None], size, BOUNDARY_SIGMA * size)
            np.maximum(boundary_map, stronger, out=boundary_map)


def encode_guidance(
    clicks: Sequence[CropClick],
    size: int,
    previous: np.ndarray | None = None,
    repeat_cap: int = 1,
    newest_click: bool = False,
) -> np.ndarray:
    """Guidance maps (guidance_channels(newest_click), size, size) float32 for one crop (the
    extreme points first, then the corrective clicks in the order they were made).
    ``repeat_cap`` > 1 draws a corrective boundary click repeated n times n-fold (at most
    ``repeat_cap``), for networks trained so; 1 draws every click alike. ``newest_click`` adds
    the channel holding the last corrective click (empty before the first)."""
    if repeat_cap < 1:
        raise ValueError(f"repeat_cap must be >= 1, got {repeat_cap}")
    by_kind = {kind: np.array([(c.x, c.y) for c in clicks if c.kind == kind], dtype=np.float32) for kind in CLICK_KINDS}
    maps = np.empty((guidance_channels(newest_click), size, size), dtype=np.float32)
    maps[0] = _splat_gaussians(by_kind["boundary"].reshape(-1, 2), size, BOUNDARY_SIGMA * size)
    if repeat_cap > 1:
        _strengthen_repeats(maps[0], clicks[EXTREME_POINTS:], size, repeat_cap)
    maps[1] = _splat_gaussians(by_kind["positive"].reshape(-1, 2), size, REGION_SIGMA * size)
    maps[2] = _splat_gaussians(by_kind["negative"].reshape(-1, 2), size, REGION_SIGMA * size)
    if previous is None:
        maps[3] = 0.0
    else:
        prev = np.asarray(previous, dtype=np.float32)
        if prev.shape != (size, size):
            raise ValueError(f"previous mask has shape {prev.shape}, expected {(size, size)}")
        maps[3] = np.where(prev < TAIL_CUTOFF, 0.0, prev)
    if newest_click:
        maps[NEWEST_CLICK_CHANNEL] = 0.0
        if len(clicks) > EXTREME_POINTS:
            last = clicks[-1]
            # Each kind's own width, so the channel marks the same spot its kind's channel does.
            sigma = (BOUNDARY_SIGMA if last.kind == "boundary" else REGION_SIGMA) * size
            maps[NEWEST_CLICK_CHANNEL] = _splat_gaussians(np.array([[last.x, last.y]], dtype=np.float32), size, sigma)
    return maps


def guidance_channels(newest_click: bool) -> int:
    """How many guidance maps a network reads: `GUIDANCE_CHANNELS`, plus one with the newest click's."""
    return GUIDANCE_CHANNELS + int(newest_click)
