import numpy as np
import pytest

from fewclick_contract.crop import crop_box_for_clicks, extract_crop, paste_crop, relaxed_box


def test_points_round_trip_between_image_and_crop() -> None:
    pts = np.array([[350, 100], [300, 150], [360, 199], [419, 160]])
    box = crop_box_for_clicks(pts)
    assert np.allclose(box.to_image(box.to_crop(pts, 256), 256), pts)
    inside = box.to_crop(pts, 256)
    assert (inside > 0).all() and (inside < 256).all()


def test_crop_then_paste_reproduces_the_object() -> None:
    img = np.zeros((480, 640), np.float32)
    img[100:200, 300:420] = 1.0
    box = relaxed_box(np.array([[300, 100], [419, 199]]))
    back = paste_crop(extract_crop(img, box, 256), box, 480, 640) > 0.5
    truth = img > 0.5
    iou = (back & truth).sum() / (back | truth).sum()
    assert iou > 0.98


def test_a_click_outside_the_crop_grows_it_and_one_inside_does_not() -> None:
    pts = np.array([[100, 100], [50, 150], [100, 200], [150, 150]])
    box = crop_box_for_clicks(pts)
    assert crop_box_for_clicks(pts, np.array([[100, 150]])) == box
    grown = crop_box_for_clicks(pts, np.array([[400, 150]]))
    assert grown.x1 > 400 and grown.contains(np.array([[400, 150]]))[0]


def test_objects_near_the_border_are_zero_padded_and_huge_images_are_area_resampled() -> None:
    img = np.full((100, 100, 3), 200, np.uint8)
    box = relaxed_box(np.array([[0, 0], [20, 20]]))
    crop = extract_crop(img, box, 64)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[40, 40].tolist() == [200, 200, 200]
    big = np.full((3000, 3000, 3), 7, np.uint8)
    assert extract_crop(big, relaxed_box(np.array([[0, 0], [2999, 2999]])), 64)[32, 32].tolist() == [7, 7, 7]


def test_empty_points_are_refused() -> None:
    with pytest.raises(ValueError):
        relaxed_box(np.zeros((0, 2)))
