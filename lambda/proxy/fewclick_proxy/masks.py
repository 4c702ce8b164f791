"""Mask encodings of the API: COCO compressed RLE, outer polygons, PNG."""

from __future__ import annotations

import base64

import cv2
import numpy as np
from pycocotools import mask as mask_utils

THRESHOLD = 0.5


def binarize(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities) >= THRESHOLD


def encode_rle(mask: np.ndarray) -> dict[str, object]:
    """(H, W) bool -> {"size": [h, w], "counts": str}, pycocotools' compressed RLE."""
    m = np.asfortranarray(mask.astype(np.uint8)[:, :, None])
    rle = mask_utils.encode(m)[0]
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, object]) -> np.ndarray:
    counts = rle["counts"]
    obj = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(obj).astype(bool)


def polygons(mask: np.ndarray, epsilon_px: float = 1.0) -> list[list[list[int]]]:
    """Outer contours as [[x, y], ...], simplified by ``epsilon_px`` (sub-pixel detail
    is noise from the 8-bit probabilities). Holes are not returned: use the RLE for those."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out: list[list[list[int]]] = []
    for c in contours:
        approx = cv2.approxPolyDP(c, epsilon_px, True) if len(c) > 3 else c
        if len(approx) >= 3:
            out.append([[int(p[0][0]), int(p[0][1])] for p in approx])
    return out


def encode_png(mask: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")
