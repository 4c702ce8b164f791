from pathlib import Path

import numpy as np
from fewclick_model.data import list_instances, load_instance
from fewclick_model.pack import pack_folder, pack_instance

from .synthetic import write_folder


def test_packed_folder_keeps_names_objects_and_a_window_around_them(tmp_path: Path) -> None:
    source = write_folder(tmp_path / "src", 3, seed=4)
    assert pack_folder(source, tmp_path / "packed", min_extent=320, quality=95) == 3
    for (image, mask), (packed_image, packed_mask) in zip(
        list_instances(source), list_instances(tmp_path / "packed"), strict=True
    ):
        original, packed = load_instance(image, mask), load_instance(packed_image, packed_mask)
        assert original.name == packed.name
        # Small objects are not resized: the mask is the original one, cut to the window.
        assert packed.mask.sum() == original.mask.sum()
        ys, xs = np.nonzero(packed.mask)
        assert packed.mask.shape[0] > ys.max() - ys.min() + 1 and packed.mask.shape[1] > xs.max() - xs.min() + 1


def test_large_objects_are_downscaled_to_the_minimum_extent() -> None:
    image = np.full((900, 1200, 3), 40, np.uint8)
    mask = np.zeros((900, 1200), bool)
    mask[100:800, 200:1000] = True  # 800 px wide
    packed = pack_instance(image, mask, min_extent=200, quality=90)
    assert packed is not None
    _, _, scale = packed
    assert scale == 200 / 800
    assert pack_instance(image, np.zeros_like(mask), 200, 90) is None
