"""Copy-paste augmentation: another instance's object pasted against the one being learned, or the
one being learned pasted onto another instance's photo.

Why: with ~1,100 training instances the network is limited by its data (model card), and its
largest remaining error is a mask that spills past an edge and will not be cut back, most often
where the object meets something it resembles. Pasting a second object so that it touches or
overlaps the target's edge (Ghiasi et al., "Simple Copy-Paste", 2021) makes new edges between
objects from the data we have: in front, it occludes part of the target (the target's mask loses
those pixels); behind, it replaces background next to the target's edge.

Measured, and off by default (`fewclick train --paste-share`, 0): it lost on the held-out instances
both as a fine-tune of the served weights and from ImageNet on (the model card).

The other way round (`swap_background`, `fewclick train --background-share`): the target keeps its
own pixels and a band of its surroundings, and the rest of the photo comes from another instance's,
so the same object is seen in new context rather than beside new edges. Measured too, and off by
default: a matched pair of fine-tunes lost the extreme points' mask by 0.7-1.0 (the model card).
"""

from __future__ import annotations

import cv2
import numpy as np

# The pasted object's larger side, relative to the target's.
SCALE_RANGE = (0.3, 1.0)
# A paste that leaves less of the target than this share is not used (the target must stay the target).
MIN_KEPT_SHARE = 0.5
# Soft alpha at the pasted object's edge (px), so the seam is not a one-pixel step no photo has.
EDGE_SIGMA_PX = 1.0
# A target on a new background keeps a band of its own surroundings up to this share of its size, so
# the seam between the two photos is not always its own edge: a seam that always was would be a cue
# the network could learn to look for, and no served photo has it.
MAX_KEPT_BAND = 0.1
# The new background is scaled to cover the image, then up to this much more, and cut at random.
BACKGROUND_ZOOM = (1.0, 1.5)


def touches_border(mask: np.ndarray) -> bool:
    """Whether the object runs off its image: cut by the frame, its straight edge would be pasted too."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _object_cut(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return image[y0:y1, x0:x1], mask[y0:y1, x0:x1]


def paste_object(
    image: np.ndarray,
    mask: np.ndarray,
    donor_image: np.ndarray,
    donor_mask: np.ndarray,
    rng: np.random.Generator,
    min_object_px: int = 16,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``image`` with the donor's object pasted across the target's edge, and the target's mask after
    it (smaller when the donor lies in front); None when the paste would leave too little target."""
    if not mask.any() or not donor_mask.any() or touches_border(donor_mask):
        return None
    cut_image, cut_mask = _object_cut(donor_image, donor_mask)
    ys, xs = np.nonzero(mask)
    target_extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    scale = rng.uniform(*SCALE_RANGE) * target_extent / max(cut_mask.shape)
    w = max(2, round(cut_mask.shape[1] * scale))
    h = max(2, round(cut_mask.shape[0] * scale))
    # Premultiplied by the mask before resizing and blurring, so the donor's background never bleeds
    # into the pasted edge (a dark or coloured halo the network could learn to look for).
    matte = cut_mask.astype(np.float32)
    premultiplied = cut_image.astype(np.float32) * matte[..., None]
    premultiplied = cv2.GaussianBlur(
        cv2.resize(premultiplied, (w, h), interpolation=cv2.INTER_AREA), (0, 0), EDGE_SIGMA_PX
    )
    alpha = cv2.GaussianBlur(cv2.resize(matte, (w, h), interpolation=cv2.INTER_AREA), (0, 0), EDGE_SIGMA_PX)
    # Centred near a random point of the target's edge (within 0.3 of its own size, so that a roundish
    # object covers that point), so the two objects meet there.
    edge = mask.astype(np.uint8) - cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    ey, ex = np.nonzero(edge)
    k = int(rng.integers(len(ex)))
    cx = ex[k] + rng.uniform(-0.3, 0.3) * w
    cy = ey[k] + rng.uniform(-0.3, 0.3) * h
    x0, y0 = round(cx - w / 2), round(cy - h / 2)
    H, W = mask.shape
    # The part of the pasted window inside the image.
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    window = alpha[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    colour = premultiplied[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    in_front = bool(rng.random() < 0.5)
    target = mask.copy()
    region = target[iy0:iy1, ix0:ix1]
    if in_front:
        target[iy0:iy1, ix0:ix1] = region & ~(window > 0.5)
    else:  # behind: only where the target is not
        window = window * ~region
        colour = colour * ~region[..., None]
    kept = int(target.sum())
    if kept < min_object_px or kept < MIN_KEPT_SHARE * mask.sum():
        return None
    out = image.astype(np.float32, copy=True)
    out[iy0:iy1, ix0:ix1] = colour + (1.0 - window[..., None]) * out[iy0:iy1, ix0:ix1]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), target


def covering_cut(background: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random window of ``background``, scaled to cover ``shape`` and sometimes mirrored."""
    h, w = shape
    bh, bw = background.shape[:2]
    scale = max(h / bh, w / bw) * rng.uniform(*BACKGROUND_ZOOM)
    size = (max(w, int(np.ceil(bw * scale))), max(h, int(np.ceil(bh * scale))))
    resized = cv2.resize(background, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0 = int(rng.integers(resized.shape[0] - h + 1))
    x0 = int(rng.integers(resized.shape[1] - w + 1))
    cut = resized[y0 : y0 + h, x0 : x0 + w]
    return cut[:, ::-1] if rng.random() < 0.5 else cut


def swap_background(
    image: np.ndarray, mask: np.ndarray, background: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``image`` with everything but the target and a band of its own surroundings (0 to
    ``MAX_KEPT_BAND`` of its size) taken from ``background``; the target's mask is unchanged and its
    pixels are exactly its own."""
    if not mask.any():
        return image
    ys, xs = np.nonzero(mask)
    extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    band = round(rng.uniform(0, MAX_KEPT_BAND) * extent)
    kept = mask.astype(np.uint8)
    if band > 0:
        kept = cv2.dilate(kept, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1)))
    # Soft only outside what is kept: the seam fades over a pixel or two, the target is untouched.
    alpha = np.maximum(cv2.GaussianBlur(kept.astype(np.float32), (0, 0), EDGE_SIGMA_PX), kept)[..., None]
    new = covering_cut(background, mask.shape, rng).astype(np.float32)
    out = alpha * image.astype(np.float32) + (1.0 - alpha) * new
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
