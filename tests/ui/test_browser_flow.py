"""The labeling flow in a real browser against the real local stack (`fewclick serve` as a subprocess).

Chromium -> local gateway -> the proxy Lambda's handler -> boto3 -> SageMaker runtime stand-in -> model
server: nothing is faked. The test image holds one object whose mask is known exactly, so the saved label
can be scored.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from .conftest import (
    REPO_ROOT,
    KnownObject,
    click_image,
    iou,
    open_labeler,
    screenshot,
    settle,
)

# What the model server loads: FEWCLICK_WEIGHTS when set (it reads the same variable), else the committed file.
WEIGHTS = Path(
    os.environ.get("FEWCLICK_WEIGHTS") or REPO_ROOT / "model_image" / "fewclick_model" / "weights" / "fewclick-lite0.pt"
)
MIN_IOU = 0.8

# Alpha of the overlay canvas at the centres of the given image pixels (one round trip for all).
OVERLAY_ALPHA_JS = """(pixels) => {
  const labeler = window.fewclick.labeler;
  const canvas = document.querySelector('[data-role=mask-layer]');
  const rect = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const ctx = canvas.getContext('2d');
  return pixels.map(([x, y]) => {
    const p = labeler.imageToClient(x, y);
    return ctx.getImageData(Math.round((p.x - rect.left) * dpr), Math.round((p.y - rect.top) * dpr), 1, 1).data[3];
  });
}"""


def shown_mask(page: Any) -> np.ndarray:
    """The mask the UI holds for the selected object (the server's answer), decoded here."""
    rle = page.evaluate("() => window.fewclick.labeler.exportObjects().objects[0].mask")
    return mask_utils.decode(rle).astype(bool)


def assert_overlay_shows(page: Any, mask: np.ndarray, samples: int = 40) -> None:
    """The overlay canvas is painted exactly where the mask is: sampled inside and outside it."""
    rng = np.random.default_rng(0)
    for want, region in ((True, mask), (False, ~mask)):
        ys, xs = np.nonzero(region)
        picked = rng.choice(len(xs), size=min(samples, len(xs)), replace=False)
        pixels = [[int(xs[i]), int(ys[i])] for i in picked]
        alphas = page.evaluate(OVERLAY_ALPHA_JS, pixels)
        wrong = [(p, a) for p, a in zip(pixels, alphas, strict=True) if (a > 0) != want]
        assert not wrong, f"overlay alpha wrong at (pixel, alpha) {wrong[:5]}; inside the mask: {want}"


def current_points(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(
        "() => { const d = window.fewclick.labeler.doc; return d.objects[d.selected].points.map(p => ({...p})); }"
    )


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_label_known_object_end_to_end(
    serve_factory: Any, page: Any, known_object: KnownObject, tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    serve = serve_factory("--images", str(known_object.path.parent), "--out", str(out))
    model_pids = serve.children()
    assert model_pids, "fewclick serve should run the model server as a child process"

    open_labeler(page, serve.url)
    assert "token=" not in page.url, "the token must leave the address bar"
    assert page.text_content("[data-role=progress]") == "0/1 done"

    # 1. The 4 extreme points: numbered dots, then the mask.
    for x, y in known_object.extreme_points:
        click_image(page, x, y)
    settle(page)
    points = current_points(page)
    assert [p["type"] for p in points] == ["extreme"] * 4
    assert page.evaluate("() => window.fewclick.labeler.masks.size") == 1, "no mask after the 4th extreme point"
    # Whatever the network answered (an untrained one may answer anything), the overlay must show it.
    assert_overlay_shows(page, shown_mask(page))
    if WEIGHTS.exists():
        assert shown_mask(page)[known_object.inside[1], known_object.inside[0]], "the mask misses the object"
    latency = page.text_content("[data-role=latency]") or ""
    assert latency.startswith("Last click:") and " ms" in latency, latency
    screenshot(page, "1-extreme-points")

    # 2. Corrective clicks: negative (right button), positive (left), boundary (Alt).
    click_image(page, *known_object.outside, button="right")
    settle(page)
    click_image(page, *known_object.inside)
    settle(page)
    click_image(page, *known_object.boundary, modifier="Alt")
    settle(page)
    assert [p["type"] for p in current_points(page)[4:]] == ["negative", "positive", "boundary"]
    banner_hidden = page.evaluate("() => document.querySelector('[data-role=banner]').hidden")
    assert banner_hidden, page.text_content("[data-role=banner]")
    screenshot(page, "2-refined")
    if os.environ.get("FEWCLICK_DOCS_SCREENSHOT"):
        shutil.copyfile(screenshot(page, "docs"), REPO_ROOT / "docs" / "ui-screenshot.png")

    # 3. Undo the boundary click: its mask comes back from the cache, with no request.
    page.keyboard.press("Control+z")
    settle(page)
    assert [p["type"] for p in current_points(page)[4:]] == ["negative", "positive"]
    assert_overlay_shows(page, shown_mask(page))

    # 4. Save.
    page.click("#save")
    page.wait_for_function("() => document.querySelector('[data-role=save-status]').textContent.startsWith('Saved')")
    assert page.text_content("[data-role=save-status]") == "Saved 1 object(s)"
    assert page.text_content("[data-role=progress]") == "1/1 done"
    shown = page.evaluate("() => window.fewclick.labeler.exportObjects().objects[0].mask")
    screenshot(page, "3-saved")

    coco = json.loads((out / "annotations.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["red_ellipse.png"]
    (ann,) = coco["annotations"]
    assert ann["segmentation"] == shown, "the saved mask is not the one on screen"
    assert ann["fewclick"]["objectIndex"] == 1
    assert [c["type"] for c in ann["fewclick"]["clicks"]] == ["negative", "positive"]
    assert [(p["x"], p["y"]) for p in ann["fewclick"]["extremePoints"]] == known_object.extreme_points
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    assert categories[ann["category_id"]] == "object"
    saved = mask_utils.decode(ann["segmentation"]).astype(bool)
    label_map = cv2.imread(str(out / "label_maps" / "red_ellipse.png"), cv2.IMREAD_UNCHANGED)
    assert label_map.dtype == np.uint8 and label_map.shape == known_object.mask.shape
    assert np.array_equal(label_map == 1, saved) and set(np.unique(label_map)) <= {0, 1}

    # 5. Reopening shows the saved object, clicks included, ready to be edited.
    page.reload()
    page.wait_for_function("() => window.fewclick && window.fewclick.labeler.image")
    settle(page)
    assert [p["type"] for p in current_points(page)] == ["extreme"] * 4 + ["negative", "positive"]
    assert_overlay_shows(page, saved)

    # 6. Ctrl-C stops everything: exit code 0 and no model server left behind.
    assert serve.interrupt() == 0, "\n".join(serve.output)
    assert not [pid for pid in model_pids if Path(f"/proc/{pid}").exists()], "the model server outlived serve"

    score = iou(saved, known_object.mask)
    if not WEIGHTS.exists():
        # An untrained network cannot be scored; say so loudly rather than pass or lower the bar.
        pytest.xfail(f"IoU {score:.2f} < {MIN_IOU}? unknown: no trained weights at {WEIGHTS}")
    print(f"saved mask IoU with the known object: {score:.3f} (weights {WEIGHTS})")
    assert score >= MIN_IOU, f"saved mask IoU with the known object is {score:.3f} (< {MIN_IOU})"


def test_a_photo_over_the_inline_limit_is_segmented_by_name(serve_factory: Any, page: Any, tmp_path: Path) -> None:
    """A phone photo's base64 is over the API's 4.5 MB inline limit: the page names it by S3 URI and
    the proxy reads it from the images folder (`fewclick/local/image_bucket.py`), as it reads S3 on AWS."""
    import base64
    import urllib.error
    import urllib.request

    from fewclick_contract.api import MAX_INLINE_IMAGE_BYTES

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (1800, 2400, 3), dtype=np.uint8)  # noise: JPEG cannot shrink it
    cv2.ellipse(photo, (1200, 900), (500, 350), 0, 0, 360, (0, 0, 255), -1)
    cv2.imwrite(str(images / "photo.jpg"), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = (images / "photo.jpg").read_bytes()
    assert len(base64.b64encode(data)) > MAX_INLINE_IMAGE_BYTES
    serve = serve_factory("--images", str(images), "--out", str(tmp_path / "labels"))

    def call(path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            serve.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {serve.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, config = call("/local/config")
    assert status == 200 and config["imageBucket"]
    points = [{"x": 1200, "y": 550}, {"x": 700, "y": 900}, {"x": 1200, "y": 1249}, {"x": 1699, "y": 900}]
    status, body = call(
        "/v1/segment", {"image": {"s3Uri": f"s3://{config['imageBucket']}/photo.jpg"}, "extremePoints": points}
    )
    assert status == 200, body
    assert body["mask"]["size"] == [1800, 2400]
    # Another bucket, or a name that is not in the folder, is refused as on AWS.
    status, body = call(
        "/v1/segment", {"image": {"s3Uri": "s3://someone-elses-bucket/photo.jpg"}, "extremePoints": points}
    )
    assert (status, body["error"]["code"]) == (403, "BUCKET_NOT_ALLOWED")
    status, body = call(
        "/v1/segment", {"image": {"s3Uri": f"s3://{config['imageBucket']}/../x.jpg"}, "extremePoints": points}
    )
    assert status == 400, body

    # The page does the same: four extreme points give a mask, with no banner.
    open_labeler(page, serve.url)
    for x, y in ((p["x"], p["y"]) for p in points):
        click_image(page, x, y)
    settle(page)
    assert page.evaluate("() => window.fewclick.labeler.masks.size") == 1
    assert page.evaluate("() => document.querySelector('[data-role=banner]').hidden")
