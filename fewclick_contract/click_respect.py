"""Whether a mask follows a click: the one test behind "clicks respected".

The evaluation counts it for the robot's clicks (the model card's "clicks respected" column), and
the proxy reports the clicks an answer does not follow (`SegmentResponse.missedClicks`), so the
labeling UI can mark them: a labeler whose boundary click the edge did not reach should see that
at once and add a region click there, rather than click the same spot again.

- positive: the click's pixel is in the mask; negative: it is not;
- boundary: an edge pixel lies within `RESPECTED_WITHIN_PX` of the click. Edge pixels are the
  mask's pixels that touch the background or the image frame (an object cut by the frame ends
  there) and the background pixels beside the mask. The background's own frame pixels are no
  edge: counting them made a click on the frame "followed" however far the mask stayed from it.

Only a window around each click is read, so checking 100 clicks on a 50 MP mask costs
microseconds, not a pass over the image per click.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

RESPECTED_WITHIN_PX = 3.0
_REACH = int(RESPECTED_WITHIN_PX)  # the farthest pixel offset that can be within the tolerance


def click_respected(x: int, y: int, kind: str, mask: np.ndarray) -> bool:
    """Does the (H, W) ``mask`` follow a ``kind`` click at pixel (``x``, ``y``)?"""
    if kind == "positive":
        return bool(mask[y, x])
    if kind == "negative":
        return not bool(mask[y, x])
    if kind != "boundary":
        raise ValueError(f"unknown click kind {kind!r}")
    return _boundary_followed(x, y, mask)


def missed_clicks(mask: np.ndarray, clicks: Iterable[tuple[int, int, str]]) -> list[int]:
    """Indices of the (x, y, kind) ``clicks`` that ``mask`` does not follow, in order."""
    return [i for i, (x, y, kind) in enumerate(clicks) if not click_respected(x, y, kind, mask)]


def _boundary_followed(x: int, y: int, mask: np.ndarray) -> bool:
    height, width = mask.shape[:2]
    # The window the tolerance reaches, plus one pixel each side: whether a pixel is an edge pixel
    # depends on its 8 neighbours. Outside the image reads as background (the frame ends the mask).
    r = _REACH + 1
    window = np.zeros((2 * r + 1, 2 * r + 1), dtype=bool)
    y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, height), max(x - r, 0), min(x + r + 1, width)
    window[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)] = mask[y0:y1, x0:x1]
    inside_image = np.zeros_like(window)
    inside_image[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)] = True

    # 3x3 erosion and dilation of the inner (2r-1)^2 pixels, from the nine shifted views.
    n = 2 * r - 1
    shifted = [window[dy : dy + n, dx : dx + n] for dy in range(3) for dx in range(3)]
    eroded = np.logical_and.reduce(shifted)
    dilated = np.logical_or.reduce(shifted)
    core = window[1:-1, 1:-1]
    edge = ((core & ~eroded) | (dilated & ~core)) & inside_image[1:-1, 1:-1]
    ys, xs = np.nonzero(edge)
    if len(xs) == 0:
        return False
    # The core's centre is the click.
    return bool(np.hypot(xs - _REACH, ys - _REACH).min() <= RESPECTED_WITHIN_PX)
