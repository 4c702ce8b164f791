"""Label storage of `fewclick serve`: COCO + label maps, validation, and saves that survive a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from fewclick.local.labels import TMP_PREFIX, LabelStore, LabelStoreError, atomic_write_bytes, rle_counts_total

from .conftest import REPO_ROOT, extreme_points


def rle(mask: np.ndarray) -> dict[str, Any]:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def saved_object(mask: np.ndarray, label: str = "object", clicks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "label": label,
        "extremePoints": [{"x": x, "y": y} for x, y in extreme_points(mask)],
        "clicks": clicks or [],
        "mask": rle(mask),
        "modelVersion": "test",
    }


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((40, 60, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "b.jpg"), np.full((30, 20, 3), 90, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_save_writes_coco_and_label_map(images: Path, tmp_path: Path) -> None:
    store = LabelStore(images, tmp_path / "out", labels=["object", "cat"])
    assert [e.name for e in store.images()] == ["a.png", "b.jpg"]  # only readable PNG/JPEG
    first, second = box(40, 60, 5, 30, 5, 40), box(40, 60, 20, 35, 30, 55)
    click = [{"x": 10, "y": 10, "type": "positive"}]
    result = store.save("a.png", {"objects": [saved_object(first, clicks=click), saved_object(second, "dog")]})
    assert result["objects"] == 2
    coco = COCO(str(tmp_path / "out" / "annotations.json"))  # pycocotools reads it as is
    (image,) = coco.dataset["images"]
    assert (image["file_name"], image["width"], image["height"]) == ("a.png", 60, 40)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
    assert [coco.cats[a["category_id"]]["name"] for a in anns] == ["object", "dog"]  # "dog" added, not lost
    assert np.array_equal(coco.annToMask(anns[0]).astype(bool), first)
    assert anns[0]["area"] == int(first.sum()) and anns[0]["bbox"] == [5.0, 5.0, 35.0, 25.0]
    assert anns[0]["fewclick"]["clicks"] == click and anns[0]["fewclick"]["missedClicks"] == []
    label_map = cv2.imread(str(tmp_path / "out" / "label_maps" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert label_map.dtype == np.uint8
    assert np.all(label_map[second] == 2) and np.all(label_map[first & ~second] == 1)
    assert np.all(label_map[~(first | second)] == 0)

    # Reloading gives the objects back, in order, ready to edit.
    loaded = store.load("a.png")
    assert loaded["saved"] and [o["label"] for o in loaded["objects"]] == ["object", "dog"]
    assert loaded["objects"][0]["clicks"] == click and loaded["objects"][0]["mask"] == rle(first)

    # Saving again replaces the image's objects (ids stay unique across images).
    store.save("b.jpg", {"objects": [saved_object(box(30, 20, 1, 9, 1, 9))]})
    store.save("a.png", {"objects": [saved_object(first)]})
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert len(data["annotations"]) == 2 and len({a["id"] for a in data["annotations"]}) == 2
    assert store.listing()["done"] == 2


def test_the_store_names_the_clicks_a_saved_mask_does_not_follow(images: Path, tmp_path: Path) -> None:
    """Worked out from the mask, whatever the page sends: a reopened object stays ringed, and the COCO
    record shows a reviewer which masks were accepted against their own clicks."""
    store = LabelStore(images, tmp_path / "out")
    mask = box(40, 60, 5, 30, 5, 40)
    clicks = [
        {"x": 10, "y": 10, "type": "positive"},  # inside: followed
        {"x": 50, "y": 35, "type": "positive"},  # outside: missed
        {"x": 20, "y": 4, "type": "boundary"},  # 1 px off the edge: followed
        {"x": 20, "y": 17, "type": "boundary"},  # 12 px inside: missed
        {"x": 52, "y": 10, "type": "negative"},  # outside: followed
    ]
    store.save("a.png", {"objects": [saved_object(mask, clicks=clicks)]})
    (ann,) = json.loads((tmp_path / "out" / "annotations.json").read_text())["annotations"]
    assert ann["fewclick"]["missedClicks"] == [1, 3]
    assert store.load("a.png")["objects"][0]["missedClicks"] == [1, 3]
    # An annotations.json written before the store recorded them reopens ringed too: worked out on load.
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    del coco["annotations"][0]["fewclick"]["missedClicks"]
    (tmp_path / "out" / "annotations.json").write_text(json.dumps(coco))
    assert LabelStore(images, tmp_path / "out").load("a.png")["objects"][0]["missedClicks"] == [1, 3]
    # The page cannot set it: the saved object's schema has no such field.
    with pytest.raises(LabelStoreError, match="missedClicks"):
        store.save("a.png", {"objects": [{**saved_object(mask, clicks=clicks), "missedClicks": []}]})


def test_many_objects_use_a_16_bit_label_map(images: Path, tmp_path: Path) -> None:
    store = LabelStore(images, tmp_path / "out")
    objects = []
    for i in range(300):
        mask = np.zeros((40, 60), bool)
        mask[i // 60 * 2, i % 60] = True
        objects.append(saved_object(mask))
    store.save("a.png", {"objects": objects})
    label_map = cv2.imread(str(tmp_path / "out" / "label_maps" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert label_map.dtype == np.uint16 and label_map.max() == 300


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"objects": [{"label": "x"}]}, "extremePoints"),
        ({"objects": "nope"}, "objects"),
        ({"objects": [], "extra": 1}, "extra"),
    ],
)
def test_bad_payloads_are_refused(images: Path, tmp_path: Path, payload: Any, message: str) -> None:
    store = LabelStore(images, tmp_path / "out")
    with pytest.raises(LabelStoreError, match=message) as info:
        store.save("a.png", payload)
    assert info.value.status == 400
    assert not (tmp_path / "out" / "annotations.json").exists()


def test_masks_and_points_must_fit_the_image(images: Path, tmp_path: Path) -> None:
    store = LabelStore(images, tmp_path / "out")
    wrong_size = saved_object(box(30, 20, 1, 5, 1, 5))
    with pytest.raises(LabelStoreError, match="mask size"):
        store.save("a.png", {"objects": [wrong_size]})
    outside = saved_object(box(40, 60, 1, 5, 1, 5))
    outside["extremePoints"][0] = {"x": 60, "y": 3}
    with pytest.raises(LabelStoreError, match="outside the image"):
        store.save("a.png", {"objects": [outside]})
    garbage = saved_object(box(40, 60, 1, 5, 1, 5))
    garbage["mask"]["counts"] = "zzzz"
    with pytest.raises(LabelStoreError, match="COCO RLE"):
        store.save("a.png", {"objects": [garbage]})
    with pytest.raises(LabelStoreError) as info:
        store.save("../a.png", {"objects": []})
    assert info.value.status == 404


@pytest.mark.parametrize("seed", range(5))
def test_the_rle_check_adds_up_pycocotools_runs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((70, 90)) < rng.uniform(0.05, 0.95)  # many runs, both ways, some long
    mask[:, :40] = seed % 2 == 0
    assert rle_counts_total(rle(mask)["counts"], 70 * 90) == 70 * 90


def test_the_rle_check_stops_at_the_first_run_no_mask_can_hold() -> None:
    """A long run of continuation characters (each "o" says "more follows") is refused at its 8th
    character, and runs are refused once they pass the mask's size, so a 6 MB body of either is
    refused after reading only that much of it."""
    with pytest.raises(ValueError, match="longer than 7 characters"):
        rle_counts_total("o" * 1_000_000 + "0", 100 * 100)
    with pytest.raises(ValueError, match="more than the mask's 10000 pixels"):
        rle_counts_total("1" * 1_000_000, 100 * 100)  # every run 1 pixel long, a million of them


def test_saving_a_mask_of_endless_continuation_characters_is_a_clear_400(images: Path, tmp_path: Path) -> None:
    store = LabelStore(images, tmp_path / "out")
    garbage = saved_object(box(40, 60, 1, 5, 1, 5))
    garbage["mask"]["counts"] = "o" * 1_000_000 + "0"
    with pytest.raises(LabelStoreError, match="COCO RLE") as info:
        store.save("a.png", {"objects": [garbage]})
    assert info.value.status == 400
    assert not (tmp_path / "out" / "annotations.json").exists()


def test_unreadable_annotations_stop_the_start_instead_of_being_overwritten(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "annotations.json").write_text("{ half a file")
    with pytest.raises(LabelStoreError, match="not valid JSON"):
        LabelStore(images, out)
    assert (out / "annotations.json").read_text() == "{ half a file"


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.json"
    atomic_write_bytes(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("os.fsync", failing_fsync)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"], "the temporary file must be removed"


CRASHING_SAVE = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    from fewclick.local import labels

    images, out, payload = map(Path, sys.argv[1:4])
    store = labels.LabelStore(images, out)
    real_fdopen = os.fdopen

    class HalfThenKilled:
        # Writes half of the new annotations.json to disk, then the process dies (SIGKILL: no cleanup).
        def __init__(self, handle):
            self.handle = handle
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False
        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            os.fsync(self.handle.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        if "annotations.json" in os.readlink(f"/proc/self/fd/{fd}"):
            return HalfThenKilled(handle)
        return handle

    os.fdopen = fdopen
    store.save("a.png", json.loads(payload.read_text()))
    print("not killed")
    """
)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to find the file being written")
def test_save_survives_a_crash_mid_write(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = LabelStore(images, out)
    store.save("a.png", {"objects": [saved_object(box(40, 60, 5, 30, 5, 40))]})
    before = (out / "annotations.json").read_bytes()

    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"objects": [saved_object(box(40, 60, 1, 39, 1, 59), "person")]}))
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_SAVE)
    result = subprocess.run(
        [sys.executable, str(script), str(images), str(out), str(payload)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -9, result.stdout + result.stderr  # killed mid-write
    leftovers = list(out.glob(TMP_PREFIX + "*.tmp"))
    assert leftovers, "the crash should have left its half-written temporary file"
    assert leftovers[0].stat().st_size < len(before) * 2

    # The labels file is the previous save, whole; a restart clears the leftovers and carries on.
    assert (out / "annotations.json").read_bytes() == before
    restarted = LabelStore(images, out)
    assert not list(out.glob(TMP_PREFIX + "*.tmp"))
    assert [o["label"] for o in restarted.load("a.png")["objects"]] == ["object"]
    restarted.save("a.png", json.loads(payload.read_text()))
    assert [o["label"] for o in restarted.load("a.png")["objects"]] == ["person"]


def test_a_photo_rotated_by_exif_is_labelled_at_the_size_it_is_seen(tmp_path: Path) -> None:
    """Phones store a portrait shot landscape with an EXIF rotation; the proxy (and the browser)
    apply it, so the masks come back at the rotated size and must save as they are."""
    from fewclick_proxy.image_source import decode_image
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    stored = Image.fromarray(np.full((40, 60, 3), 90, np.uint8))  # stored 60 wide, 40 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    stored.save(folder / "phone.jpg", exif=exif.tobytes())
    seen = decode_image((folder / "phone.jpg").read_bytes(), 10**7)
    assert seen.shape[:2] == (60, 40)  # what the proxy segments

    store = LabelStore(folder, tmp_path / "out")
    (entry,) = store.images()
    assert (entry.width, entry.height) == (40, 60)
    store.save("phone.jpg", {"objects": [saved_object(box(60, 40, 10, 50, 5, 30))]})  # the proxy's mask size
    with pytest.raises(LabelStoreError, match="mask size"):
        store.save("phone.jpg", {"objects": [saved_object(box(40, 60, 5, 30, 10, 50))]})  # the stored size
