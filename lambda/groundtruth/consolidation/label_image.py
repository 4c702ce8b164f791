"""Label-map PNGs <-> class-index arrays (Pillow + numpy; no AWS).

Workers' PNGs paint class ``i`` in `fewclick_contract.labelmap.class_color(i)` over a white
background (the template does it pixel-exactly: no anti-aliasing, alpha 255). Decoding maps colours
back to the job's class indices; a colour that is neither the background nor a known class means
the answer was not produced by our template, and it is refused rather than guessed at.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Mapping

import numpy as np
from PIL import Image

from fewclick_contract.labelmap import BACKGROUND_COLOR, class_color, hex_to_rgb

# A label map is as large as its image; the proxy accepts images up to 50 MP.
MAX_PIXELS = 50_000_000


class LabelImageError(ValueError):
    pass


def _le_rgb(color: str) -> np.uint32:
    """``#rrggbb`` as the low 24 bits of an RGBA pixel read as a little-endian uint32 (R lowest)."""
    r, g, b = hex_to_rgb(color)
    return np.uint32(r | (g << 8) | (b << 16))


def decode_label_png(data_b64: str, color_to_class: Mapping[str, int], size: tuple[int, int]) -> np.ndarray:
    """Base64 PNG -> (H, W) uint8 class indices. ``size`` is the (height, width) the answer claims."""
    try:
        raw = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise LabelImageError("pngImageData is not base64") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw), formats=("PNG",))
            if image.width * image.height > MAX_PIXELS:
                raise LabelImageError(f"label map is {image.width}x{image.height}, over {MAX_PIXELS} pixels")
            rgba = np.asarray(image.convert("RGBA"))
    except LabelImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LabelImageError("pngImageData is not a readable PNG") from None
    if (rgba.shape[0], rgba.shape[1]) != size:
        raise LabelImageError(f"label map is {rgba.shape[1]}x{rgba.shape[0]} but the image is {size[1]}x{size[0]}")
    # Memory: a 50 MP answer must fit the Lambda beside the other workers' maps. The RGBA bytes seen
    # as one little-endian uint32 per pixel (A<<24 | B<<16 | G<<8 | R, no copy), one masked copy,
    # then one boolean pass per class: ~11 bytes a pixel (uint32 channel copies and np.unique's
    # int64 inverse took ~45, over 2 GB for one 49 MP answer).
    pixels = np.ascontiguousarray(rgba).view("<u4")[..., 0]
    rgb = pixels & np.uint32(0x00FFFFFF)
    background = _le_rgb(BACKGROUND_COLOR)
    # Fully transparent pixels are unpainted: background, whatever their RGB.
    rgb[(pixels >> np.uint32(24)) == 0] = background
    classes = np.zeros(rgb.shape, np.uint8)
    known = rgb == background
    for color, index in color_to_class.items():
        if index == 0:
            continue
        match = rgb == _le_rgb(color)
        classes[match] = index
        known |= match
    if not known.all():
        r, g, b = rgba[np.unravel_index(int(np.argmin(known)), known.shape)][:3]
        raise LabelImageError(
            f"label map has colour #{int(r):02x}{int(g):02x}{int(b):02x}, which is no class of this task"
        )
    return classes


def encode_label_png(classes: np.ndarray, class_count: int) -> bytes:
    """(H, W) class indices -> RGB PNG in the palette (what the output manifest's label-ref points at)."""
    palette = np.array([hex_to_rgb(class_color(i)) for i in range(class_count + 1)], np.uint8)
    rgb = palette[classes]
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def majority_vote(maps: list[np.ndarray], class_count: int) -> tuple[np.ndarray, float]:
    """Per-pixel majority over workers -> (classes, confidence).

    Ties go to the background, between any two classes: a pixel is only labeled when more workers
    put it in a class than in any other (conservative masks; a tie between two classes used to go to
    the one listed first). Counting class by class keeps memory at O(workers x pixels) whatever the
    number of classes.

    Confidence (one number per image, as Ground Truth reports it) is the mean share of workers that
    agree with the result, over the pixels any worker labeled; 0.0 for a single worker, as Ground
    Truth does when NumberOfHumanWorkersPerDataObject is 1.
    """
    if not maps:
        raise ValueError("no label maps to consolidate")
    stack = np.stack(maps)
    background = (stack == 0).sum(axis=0, dtype=np.uint8)
    best_count = background.copy()
    best_class = np.zeros(stack.shape[1:], np.uint8)
    tied = np.zeros(stack.shape[1:], bool)
    for k in range(1, class_count + 1):
        count = (stack == k).sum(axis=0, dtype=np.uint8)
        better = count > best_count
        tied = (tied & ~better) | ((count == best_count) & (count > 0))
        best_count[better] = count[better]
        best_class[better] = k
    best_class[tied] = 0
    best_count[tied] = background[tied]
    if len(maps) == 1:
        return best_class, 0.0
    touched = (stack != 0).any(axis=0)
    if not touched.any():
        return best_class, 1.0
    confidence = float(best_count[touched].mean() / len(maps))
    return best_class, round(confidence, 4)
