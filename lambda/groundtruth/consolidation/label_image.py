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


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb32 = rgb.astype(np.uint32)
    return (rgb32[..., 0] << 16) | (rgb32[..., 1] << 8) | rgb32[..., 2]


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
    packed = _pack(rgba[..., :3])
    # Fully transparent pixels are unpainted: background, whatever their RGB.
    packed[rgba[..., 3] == 0] = _pack(np.array(hex_to_rgb(BACKGROUND_COLOR), np.uint8))
    lookup = {int(_pack(np.array(hex_to_rgb(color), np.uint8))): index for color, index in color_to_class.items()}
    uniques, inverse = np.unique(packed, return_inverse=True)
    classes = np.empty(len(uniques), np.uint8)
    for i, value in enumerate(uniques.tolist()):
        if value not in lookup:
            raise LabelImageError(f"label map has colour #{value:06x}, which is no class of this task")
        classes[i] = lookup[value]
    return classes[inverse.reshape(packed.shape)]


def encode_label_png(classes: np.ndarray, class_count: int) -> bytes:
    """(H, W) class indices -> RGB PNG in the palette (what the output manifest's label-ref points at)."""
    palette = np.array([hex_to_rgb(class_color(i)) for i in range(class_count + 1)], np.uint8)
    rgb = palette[classes]
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def majority_vote(maps: list[np.ndarray], class_count: int) -> tuple[np.ndarray, float]:
    """Per-pixel majority over workers -> (classes, confidence).

    Ties go to the lower class index, so background wins a 1-1 split: a pixel is only labeled when
    more workers put it in a class than in any other (conservative masks). Counting class by class
    keeps memory at O(workers x pixels) whatever the number of classes.

    Confidence (one number per image, as Ground Truth reports it) is the mean share of workers that
    agree with the result, over the pixels any worker labeled; 0.0 for a single worker, as Ground
    Truth does when NumberOfHumanWorkersPerDataObject is 1.
    """
    if not maps:
        raise ValueError("no label maps to consolidate")
    stack = np.stack(maps)
    best_count = np.zeros(stack.shape[1:], np.uint8)
    best_class = np.zeros(stack.shape[1:], np.uint8)
    for k in range(class_count + 1):
        count = (stack == k).sum(axis=0, dtype=np.uint8)
        better = count > best_count
        best_count[better] = count[better]
        best_class[better] = k
    if len(maps) == 1:
        return best_class, 0.0
    touched = (stack != 0).any(axis=0)
    if not touched.any():
        return best_class, 1.0
    confidence = float(best_count[touched].mean() / len(maps))
    return best_class, round(confidence, 4)
