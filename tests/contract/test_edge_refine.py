import cv2
import numpy as np
import pytest

from fewclick_contract.crop import CropBox
from fewclick_contract.edge_refine import (
    REFINE_FACTOR,
    crop_side_for,
    network_input,
    prepare_crop,
    refine_probabilities,
)
from fewclick_contract.wire import MAX_INPUT_SIZE


def step_crop(side: int, edge_x: int) -> np.ndarray:
    crop = np.full((side, side, 3), 40, np.uint8)
    crop[:, edge_x:] = 200
    return crop


def crossing(row: np.ndarray) -> float:
    """Sub-pixel x where a rising profile crosses 0.5."""
    i = int(np.argmax(row >= 0.5))
    return i - 1 + (0.5 - row[i - 1]) / (row[i] - row[i - 1])


def test_only_boxes_larger_than_the_network_get_a_finer_crop() -> None:
    assert crop_side_for(CropBox(0, 0, 300, 400), 256) == 256 * REFINE_FACTOR
    assert crop_side_for(CropBox(0, 0, 200, 400), 256) == 256
    assert crop_side_for(CropBox(10, 10, 266, 266), 256) == 256
    # A configured network side whose double the wire cannot carry is served unrefined.
    assert crop_side_for(CropBox(0, 0, 2000, 2000), MAX_INPUT_SIZE // 2) == MAX_INPUT_SIZE
    assert crop_side_for(CropBox(0, 0, 2000, 2000), 768) == 768


def test_network_input_shrinks_a_fine_crop_and_keeps_a_network_sized_one() -> None:
    crop = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    assert network_input(crop, 256).shape == (256, 256, 3)
    same = crop[:256, :256]
    assert network_input(same, 256) is same


def test_a_crop_finer_than_the_network_keeps_its_grey_levels_as_the_guide() -> None:
    crop = step_crop(512, 300)
    small, guide = prepare_crop(crop, 256)
    assert small.shape == (256, 256, 3)
    assert guide is not None and guide.shape == (512, 512) and guide.dtype == np.uint8
    assert guide[0, 0] == 40 and guide[0, 400] == 200
    same, none = prepare_crop(crop[:256, :256], 256)
    assert none is None and same.shape == (256, 256, 3)


@pytest.mark.parametrize("image_edge", [252, 257])
def test_an_edge_a_few_pixels_off_moves_towards_the_image_edge(image_edge: int) -> None:
    _, guide = prepare_crop(step_crop(512, image_edge), 256)
    assert guide is not None
    truth = image_edge - 0.5  # between the last dark and the first bright pixel
    # The network's edge at 127 network px: 254.5 guide px once resampled.
    x = np.arange(256, dtype=np.float32)
    prob = np.tile(1 / (1 + np.exp(-(x - 127) / 1.5)), (256, 1)).astype(np.float32)
    plain = cv2.resize(prob, (512, 512), interpolation=cv2.INTER_LINEAR)
    refined = refine_probabilities(prob, guide)
    assert refined.shape == (512, 512)
    before, after = abs(crossing(plain[100]) - truth), abs(crossing(refined[100]) - truth)
    assert before >= 2.0
    assert after < 0.6 * before
    # Far from the edge nothing changes: confident pixels are the network's.
    assert np.array_equal(refined[:, :200], plain[:, :200])
    assert np.array_equal(refined[:, 320:], plain[:, 320:])


def test_a_guide_no_finer_than_the_network_is_plain_resampling() -> None:
    prob = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    guide = step_crop(64, 30)[..., 0]
    assert np.array_equal(refine_probabilities(prob, guide), prob)
    with pytest.raises(ValueError, match="guide"):
        refine_probabilities(prob, np.zeros((64, 32), np.uint8))
    with pytest.raises(ValueError, match="guide"):
        refine_probabilities(prob, np.zeros((64, 64, 3), np.uint8))
