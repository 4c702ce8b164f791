from pathlib import Path

import numpy as np
from fewclick_model.encoding import CropClick
from fewclick_model.predictor import load_crop_predictor
from fewclick_model.progressive_merge import FIRST_MERGED_CLICK, merge_near_click

from .synthetic import TINY_CROP_EXTREMES


def square(side: int, x0: int, y0: int, x1: int, y1: int, value: float = 0.9) -> np.ndarray:
    out = np.full((side, side), 0.1, np.float32)
    out[y0:y1, x0:x1] = value
    return out


def test_only_the_flips_that_reach_the_click_change() -> None:
    previous = square(64, 10, 10, 40, 40)
    answer = previous.copy()
    answer[10:40, 40:50] = 0.8  # grows on the right, where the click is
    answer[50:60, 10:20] = 0.7  # an invented blob far from it
    answer[20:30, 20:30] = 0.2  # a hole far from it
    merged = merge_near_click(previous, answer, (49.0, 25.0))
    assert np.array_equal(merged[10:40, 40:50], answer[10:40, 40:50])
    assert np.array_equal(merged[50:60, 10:20], previous[50:60, 10:20])
    assert np.array_equal(merged[20:30, 20:30], previous[20:30, 20:30])
    assert merged.dtype == np.float32


def test_a_flip_counts_when_it_comes_within_reach_of_the_click() -> None:
    previous = square(64, 10, 10, 40, 40)
    answer = previous.copy()
    answer[10:40, 40:44] = 0.8  # ends 6 px short of a click at x = 49
    assert np.array_equal(merge_near_click(previous, answer, (49.0, 25.0)), answer)
    far = merge_near_click(previous, answer, (60.0, 60.0))  # nothing flips near this one...
    assert np.array_equal(far, answer)  # ...so the network's whole answer stands


def test_soft_probabilities_come_along_at_the_kept_regions_edge() -> None:
    previous = square(64, 10, 10, 40, 40)
    answer = previous.copy()
    answer[10:40, 40:50] = 0.8
    answer[10:40, 50:52] = 0.4  # the new edge's soft rim, not a flip itself
    answer[0:5, 0:5] = 0.3  # a soft change elsewhere, not a flip either
    merged = merge_near_click(previous, answer, (45.0, 25.0))
    assert np.array_equal(merged[10:40, 50:52], answer[10:40, 50:52])
    assert np.array_equal(merged[0:5, 0:5], previous[0:5, 0:5])


def test_the_predictor_merges_from_the_sixth_corrective_boundary_click_on(tiny_weights: Path) -> None:
    served = load_crop_predictor(tiny_weights, device="cpu")
    plain = load_crop_predictor(tiny_weights, device="cpu", progressive_merge=False)
    assert served.progressive_merge and not plain.progressive_merge
    assert "progressive merge" in served.describe() and "progressive merge" not in plain.describe()
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    feats = plain.encode(crop)
    extremes = list(TINY_CROP_EXTREMES)
    # An untrained network's answers flip in many places: a useful test of what survives.
    previous = np.where(np.arange(64)[None, :] < 32, 0.9, 0.1).repeat(64, 0).astype(np.float32)
    earlier = [CropClick(10 + 8 * k, 20, "boundary") for k in range(FIRST_MERGED_CLICK - 1)]
    fifth = [*extremes, *earlier]  # the first five corrective clicks keep the network's whole answer
    assert np.array_equal(served.predict(feats, fifth, previous), plain.predict(feats, fifth, previous))
    sixth = [*fifth, CropClick(45, 40, "boundary")]
    answer = plain.predict(feats, sixth, previous)
    merged = served.predict(feats, sixth, previous)
    assert np.array_equal(merged, merge_near_click(previous, answer, (45, 40)))
    assert not np.array_equal(merged, answer) and not np.array_equal(merged, previous)  # it kept some of each
    region = [*fifth, CropClick(45, 40, "positive")]  # region clicks are never merged
    assert np.array_equal(served.predict(feats, region, previous), plain.predict(feats, region, previous))
