import numpy as np
import pytest
from fewclick_model.encoding import GUIDANCE_CHANNELS, TAIL_CUTOFF, CropClick, encode_guidance


def test_each_click_kind_lands_in_its_own_channel_at_its_pixel() -> None:
    clicks = [CropClick(10, 20, "boundary"), CropClick(40, 30, "positive"), CropClick(50, 60, "negative")]
    maps = encode_guidance(clicks, 64)
    assert maps.shape == (GUIDANCE_CHANNELS, 64, 64)
    for channel, (x, y) in enumerate([(10, 20), (40, 30), (50, 60)]):
        assert maps[channel, y, x] == pytest.approx(1.0)
        peak = np.unravel_index(np.argmax(maps[channel]), maps[channel].shape)
        assert peak == (y, x)
        others = [c for c in range(3) if c != channel]
        assert maps[others, y, x].max() < 0.5


def test_heatmap_tails_are_cut_so_no_denormals_reach_the_network() -> None:
    maps = encode_guidance([CropClick(5, 5, "boundary")], 128)
    nonzero = maps[maps > 0]
    assert nonzero.min() >= TAIL_CUTOFF
    assert maps[0, 120, 120] == 0.0


def test_previous_mask_is_the_fourth_channel_and_shape_is_checked() -> None:
    prev = np.full((32, 32), 0.75, dtype=np.float32)
    maps = encode_guidance([], 32, prev)
    assert np.allclose(maps[3], 0.75)
    assert not maps[:3].any()
    with pytest.raises(ValueError, match="previous mask"):
        encode_guidance([], 32, np.zeros((16, 16), np.float32))


def test_clicks_outside_the_crop_are_ignored_not_crashing() -> None:
    maps = encode_guidance([CropClick(-100, 500, "positive")], 64)
    assert not maps.any()
