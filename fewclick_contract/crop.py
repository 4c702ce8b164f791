"""Crop geometry: which part of the image the network sees, and how points map.

The proxy, the model server, training and evaluation all call these functions,
so the crop a model was trained on is exactly the crop it is served.

Coordinates: points are integer pixel indices (x right, y down) in the full
image; crop coordinates are float pixel indices in the ``size`` x ``size``
network input. One affine matrix maps image indices to crop indices and is
used for both directions (`cv2.warpAffine` with and without WARP_INVERSE_MAP).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Relaxed box (DEXTR): the object's box grows by this share of its longer side
# plus a few pixels, so context around the boundary is visible.
MARGIN_RATIO = 0.12
MARGIN_MIN_PX = 6.0
# A box smaller than this (a few-pixel object) is blown up to it: the network
# needs some context to tell object from background.
MIN_SIDE_PX = 24.0
# A click this close to the crop edge (as a share of the crop side) grows the
# crop, so the network sees context around it.
GROW_INNER_BORDER = 0.03


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned box in continuous image coordinates ([x0, x1) x [y0, y1))."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def affine(self, size: int) -> np.ndarray:
        """2x3 matrix mapping image pixel indices to crop pixel indices."""
        sx = size / self.width
        sy = size / self.height
        # Pixel centres sit at index + 0.5 in continuous coordinates.
        return np.array(
            [[sx, 0.0, (0.5 - self.x0) * sx - 0.5], [0.0, sy, (0.5 - self.y0) * sy - 0.5]],
            dtype=np.float64,
        )

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Image pixel indices (N, 2) -> crop pixel indices (N, 2), float."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        a = self.affine(size)
        return pts @ a[:, :2].T + a[:, 2]

    def to_image(self, points: np.ndarray, size: int) -> np.ndarray:
        """Crop pixel indices (N, 2) -> image pixel indices (N, 2), float."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        a = self.affine(size)
        return (pts - a[:, 2]) / np.diag(a[:, :2])

    def contains(self, points: np.ndarray, inner_border: float = 0.0) -> np.ndarray:
        """Whether each image point lies inside the box shrunk by ``inner_border`` of its sides."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) + 0.5
        bx = inner_border * self.width
        by = inner_border * self.height
        return (
            (pts[:, 0] >= self.x0 + bx)
            & (pts[:, 0] <= self.x1 - bx)
            & (pts[:, 1] >= self.y0 + by)
            & (pts[:, 1] <= self.y1 - by)
        )

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


def relaxed_box(points: np.ndarray, margin_ratio: float = MARGIN_RATIO) -> CropBox:
    """The box around ``points`` (image pixel indices), relaxed by the margin."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
        raise ValueError("a crop needs at least one point")
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0) + 1.0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w = max(x1 - x0, MIN_SIDE_PX)
    h = max(y1 - y0, MIN_SIDE_PX)
    margin = margin_ratio * max(w, h) + MARGIN_MIN_PX
    w, h = w + 2 * margin, h + 2 * margin
    return CropBox(float(cx - w / 2), float(cy - h / 2), float(cx + w / 2), float(cy + h / 2))


def crop_box_for_clicks(extreme_points: np.ndarray, click_points: np.ndarray | None = None) -> CropBox:
    """The crop for a labeling state: the extreme points' relaxed box, grown to
    take in every click that falls outside it (or too near its edge).

    A pure function of the points, so the proxy can tell whether a session's
    cached crop still holds without asking the model.
    """
    box = relaxed_box(extreme_points)
    if click_points is None or len(click_points) == 0:
        return box
    clicks = np.asarray(click_points, dtype=np.float64).reshape(-1, 2)
    if bool(np.all(box.contains(clicks, GROW_INNER_BORDER))):
        return box
    return relaxed_box(np.concatenate([np.asarray(extreme_points, dtype=np.float64).reshape(-1, 2), clicks]))


def extract_crop(image: np.ndarray, box: CropBox, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The network input: ``image`` (H, W[, C]) resampled onto the box, zero outside the image."""
    scale = min(box.width, box.height) / size
    if interpolation == cv2.INTER_LINEAR and scale > 2.0:
        # Shrinking a lot with bilinear sampling aliases; area averaging does not.
        x0, y0 = max(int(np.floor(box.x0)), 0), max(int(np.floor(box.y0)), 0)
        x1 = min(int(np.ceil(box.x1)), image.shape[1])
        y1 = min(int(np.ceil(box.y1)), image.shape[0])
        if x1 > x0 and y1 > y0:
            f = 1.0 / scale
            small = cv2.resize(image[y0:y1, x0:x1], None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            # Re-express the box in the shrunk sub-image's pixel grid.
            sx = small.shape[1] / (x1 - x0)
            sy = small.shape[0] / (y1 - y0)
            sub_box = CropBox((box.x0 - x0) * sx, (box.y0 - y0) * sy, (box.x1 - x0) * sx, (box.y1 - y0) * sy)
            image, box = small, sub_box
    return cv2.warpAffine(
        image,
        box.affine(size),
        (size, size),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def paste_crop(crop_values: np.ndarray, box: CropBox, image_height: int, image_width: int) -> np.ndarray:
    """Resample crop-space values (size, size) back onto the full image; zero outside the box.

    Only the box's rectangle is resampled, so large images cost no more than small ones.
    """
    size = crop_values.shape[0]
    out = np.zeros((image_height, image_width), dtype=crop_values.dtype)
    x0, y0 = max(int(np.floor(box.x0)), 0), max(int(np.floor(box.y0)), 0)
    x1 = min(int(np.ceil(box.x1)), image_width)
    y1 = min(int(np.ceil(box.y1)), image_height)
    if x1 <= x0 or y1 <= y0:
        return out
    a = box.affine(size).copy()
    # Shift so the destination grid starts at the rectangle's corner.
    a[0, 2] += a[0, 0] * x0
    a[1, 2] += a[1, 1] * y0
    out[y0:y1, x0:x1] = cv2.warpAffine(
        crop_values,
        a,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out
