"""The labeling UI in a real browser against a proxy that fails on demand (tests/ui/fake_proxy.py).

The real stack is covered by test_browser_flow.py; here the gateway, the local labeling API and the UI
are real, and the proxy Lambda is replaced so sessions expire and servers go down when the test says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fewclick.local.serve import LocalStack, ServeOptions

from .conftest import KnownObject, click_image, held_route, make_known_object, open_labeler, screenshot, settle
from .fake_proxy import FakeProxy

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


@pytest.fixture
def fake() -> FakeProxy:
    return FakeProxy()


@pytest.fixture
def stack(tmp_path: Path, fake: FakeProxy) -> Iterator[LocalStack]:
    make_known_object(tmp_path / "images" / "a.png")
    make_known_object(tmp_path / "images" / "b.png", seed=3)
    options = ServeOptions(port=0, images=tmp_path / "images", out=tmp_path / "labels", labels=["object", "ball"])
    with LocalStack(options, lambda_handler=fake) as running:
        yield running


def first_mask(page: Any, obj: KnownObject) -> None:
    for x, y in obj.extreme_points:
        click_image(page, x, y)
    settle(page)


def banner(page: Any) -> tuple[bool, str, str]:
    return page.evaluate(
        """() => { const b = document.querySelector('[data-role=banner]');
                   return [b.hidden, b.dataset.kind || '', b.textContent]; }"""
    )


def mask_count(page: Any) -> int:
    return int(page.evaluate("() => window.fewclick.labeler.masks.size"))


def test_expired_session_is_resent_automatically(stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    assert "image" in fake.requests[0] and "sessionId" not in fake.requests[0]

    fake.expire_next_session_request = True
    click_image(page, *obj.inside)
    page.wait_for_function("() => document.querySelector('[data-role=banner]').dataset.kind === 'info'")
    hidden, kind, text = banner(page)
    assert not hidden and kind == "info" and "Session expired" in text and "sent again" in text
    screenshot(page, "session-expired")
    settle(page)
    expired, resent = fake.requests[-2:]
    assert "sessionId" in expired and "image" not in expired
    # Resent with the image and the same clicks (and the session id, so the model session is kept).
    assert "image" in resent and resent["clicks"] == expired["clicks"] == [
        {"x": obj.inside[0], "y": obj.inside[1], "type": "positive"}
    ]
    assert mask_count(page) == 2
    assert "image re-sent" in (page.text_content("[data-role=latency]") or "")


def test_server_down_shows_a_retry_banner(stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)

    page.route("**/v1/segment", lambda route: route.abort("connectionrefused"))
    click_image(page, *obj.inside)
    # Automatic retries first (said in words), then a banner with a Retry button: never silent.
    page.wait_for_function("() => document.querySelector('[data-role=banner]').dataset.kind === 'busy'")
    page.wait_for_function("() => document.querySelector('[data-role=banner]').dataset.kind === 'error'")
    hidden, _, text = banner(page)
    assert not hidden and "Cannot reach the segmentation server" in text
    assert page.is_visible("[data-role=banner] button:has-text('Retry')")
    assert "failed" in (page.text_content("[data-role=objects]") or "")
    screenshot(page, "server-down")

    # Saving now would lose the refinement: refused, in words.
    page.click("#save")
    page.wait_for_function("() => document.querySelector('[data-role=save-status]').dataset.kind === 'error'")
    assert "no mask" in (page.text_content("[data-role=save-status]") or "")

    page.unroute("**/v1/segment")
    page.click("[data-role=banner] button:has-text('Retry')")
    settle(page)
    assert banner(page)[0], "the banner should go once the server answers"
    assert mask_count(page) == 2


def test_busy_server_is_retried_after_retry_after(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    fake.failures.append((503, "ENDPOINT_UNAVAILABLE", {"Retry-After": "1"}))
    for x, y in obj.extreme_points:
        click_image(page, x, y)
    page.wait_for_function("() => document.querySelector('[data-role=banner]').dataset.kind === 'busy'")
    assert "Retrying in 1 s" in banner(page)[2]
    settle(page)
    assert banner(page)[0] and mask_count(page) == 1


def test_objects_labels_undo_redo_and_save(stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    # A second object, labelled "ball", inside the first one's box.
    page.keyboard.press("n")
    page.select_option("[data-role=objects] li.fc-selected select", "ball")
    left, right, top, bottom = obj.extreme_points
    small = [(left[0] + 20, left[1]), (right[0] - 20, right[1]), (top[0], top[1] + 15), (bottom[0], bottom[1] - 15)]
    for x, y in small:
        click_image(page, x, y)
    settle(page)
    assert page.locator("[data-role=objects] li").count() == 2

    # Boundary mode toggle (B), then undo/redo by keyboard.
    page.keyboard.press("b")
    assert page.get_attribute("[data-role=boundary-mode]", "aria-pressed") == "true"
    click_image(page, *obj.boundary)
    settle(page)
    page.keyboard.press("b")
    types = "() => { const d = window.fewclick.labeler.doc; return d.objects[d.selected].points.map(p => p.type); }"
    assert page.evaluate(types)[-1] == "boundary"
    page.keyboard.press("Control+z")
    assert len(page.evaluate(types)) == 4
    page.keyboard.press("Control+Shift+z")
    assert page.evaluate(types)[-1] == "boundary"

    # Reset, then undo the reset.
    page.click("button:has-text('Reset object')")
    assert page.evaluate(types) == []
    page.keyboard.press("Control+z")
    assert len(page.evaluate(types)) == 5

    # Opacity slider changes the overlay.
    page.fill("input[aria-label='Mask opacity']", "0.9")
    assert page.evaluate("() => window.fewclick.labeler.opacity") == pytest.approx(0.9)

    page.keyboard.press("Control+s")
    page.wait_for_function("() => document.querySelector('[data-role=save-status]').textContent.startsWith('Saved')")
    out = tmp_path / "labels"
    coco = json.loads((out / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [names[a["category_id"]] for a in coco["annotations"]] == ["object", "ball"]
    label_map = cv2.imread(str(out / "label_maps" / "a.png"), cv2.IMREAD_UNCHANGED)
    # Pixel value = object index; the second object lies over the first.
    assert set(np.unique(label_map)) == {0, 1, 2}
    second = mask_utils.decode(coco["annotations"][1]["segmentation"]).astype(bool)
    assert np.all(label_map[second] == 2)

    # Next image: the progress moves, and coming back shows both objects again.
    page.click("#next")
    page.wait_for_function("() => window.fewclick.state.index === 1 && window.fewclick.labeler.image")
    assert page.text_content("[data-role=progress]") == "1/2 done"
    page.click("#prev")
    page.wait_for_function(
        "() => window.fewclick.state.index === 0 && window.fewclick.labeler.doc.objects.length === 2"
    )
    screenshot(page, "two-objects-reopened")


def test_navigation_saves_unsaved_work(stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    click_image(page, *obj.outside, modifier="Shift")  # Shift-click: negative, like the right button
    settle(page)
    assert page.evaluate("() => window.fewclick.labeler.doc.objects[0].points[4].type") == "negative"
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.fewclick.state.index === 1 && window.fewclick.labeler.image")
    coco = json.loads((tmp_path / "labels" / "annotations.json").read_text())
    assert len(coco["annotations"]) == 1 and coco["annotations"][0]["fewclick"]["clicks"][0]["type"] == "negative"


def test_zoom_and_pan_keep_clicks_on_their_pixels(stack: LocalStack, page: Any, tmp_path: Path) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    scale0 = page.evaluate("() => window.fewclick.labeler.view.scale")
    centre = page.evaluate("([x, y]) => window.fewclick.labeler.imageToClient(x, y)", list(obj.inside))
    page.mouse.move(centre["x"], centre["y"])
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => window.fewclick.labeler.view.scale > {scale0 * 1.5}")
    # The pixel under the cursor stays under the cursor.
    after = page.evaluate("([x, y]) => window.fewclick.labeler.imageToClient(x, y)", list(obj.inside))
    assert abs(after["x"] - centre["x"]) < 5 and abs(after["y"] - centre["y"]) < 5
    # Pan with the middle button.
    tx0 = page.evaluate("() => window.fewclick.labeler.view.tx")
    page.mouse.down(button="middle")
    page.mouse.move(centre["x"] - 120, centre["y"], steps=4)
    page.mouse.up(button="middle")
    assert page.evaluate("() => window.fewclick.labeler.view.tx") == pytest.approx(tx0 - 120, abs=2)
    # Pan with space + drag.
    page.keyboard.down(" ")
    page.mouse.move(centre["x"], centre["y"])
    page.mouse.down()
    page.mouse.move(centre["x"], centre["y"] + 50, steps=4)
    page.mouse.up()
    page.keyboard.up(" ")
    assert page.evaluate("() => window.fewclick.labeler.doc.objects.length") == 0, "a pan must not click"
    click_image(page, *obj.extreme_points[0])
    point = page.evaluate("() => window.fewclick.labeler.doc.objects[0].points[0]")
    assert (point["x"], point["y"]) == obj.extreme_points[0]


def test_rle_decoder_matches_pycocotools(stack: LocalStack, page: Any) -> None:
    rng = np.random.default_rng(1)
    cases = []
    for height, width in [(1, 1), (7, 5), (64, 97), (300, 200)]:
        mask = rng.random((height, width)) > 0.5
        mask[height // 3 : height // 2, :] = True  # long runs, so counts need several characters
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        cases.append(
            {"size": [height, width], "counts": rle["counts"].decode(), "expected": mask.ravel().astype(int).tolist()}
        )
    cases.append(
        {
            "size": [3, 4],
            "counts": mask_utils.encode(np.zeros((3, 4), np.uint8, order="F"))["counts"].decode(),
            "expected": [0] * 12,
        }
    )
    page.goto(stack.url)
    mismatches = page.evaluate(
        """async (cases) => {
             const core = await import('/labeling-core.js');
             return cases.map(c => {
               const m = core.rleToMask({size: c.size, counts: c.counts});
               return Array.from(m.data).findIndex((v, i) => v !== c.expected[i]);
             });
           }""",
        cases,
    )
    assert mismatches == [-1] * len(cases)


def _saved_objects(tmp_path: Path, image: str) -> list[dict[str, Any]]:
    coco = json.loads((tmp_path / "labels" / "annotations.json").read_text())
    (image_id,) = [i["id"] for i in coco["images"] if i["file_name"] == image]
    return [a for a in coco["annotations"] if a["image_id"] == image_id]


def test_a_save_never_writes_one_images_objects_under_another(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    """The navigation moves before the next image has arrived: a save then (Ctrl-S) or after that image
    failed to load must write the objects on screen under the image on screen, or nothing."""
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    page.keyboard.press("Control+s")
    page.wait_for_function("() => document.querySelector('[data-role=save-status]').textContent.startsWith('Saved')")

    # b.png's pixels are held back: while it loads, a save is refused.
    held: list[Any] = []
    page.route("**/local/images/b.png", lambda route: held.append(route))
    page.evaluate("() => { window.__going = window.fewclick.go(1); }")
    page.wait_for_function("() => window.fewclick.state.loading")
    assert page.evaluate("() => window.fewclick.save()") is False
    assert "still loading" in page.text_content("[data-role=save-status]")
    assert not (tmp_path / "labels" / "label_maps" / "b.png").exists()

    # The load fails: the navigation goes back to a.png, which the labeler still shows, and a save
    # after an edit writes to a.png, never b.png.
    held_route(page, held).abort()
    page.wait_for_function("() => !window.fewclick.state.loading && window.fewclick.state.index === 0")
    click_image(page, *obj.outside, modifier="Shift")
    settle(page)
    assert page.evaluate("() => window.fewclick.save()") is True
    assert [len(a["fewclick"]["clicks"]) for a in _saved_objects(tmp_path, "a.png")] == [1]
    assert not (tmp_path / "labels" / "label_maps" / "b.png").exists()


def _edit_while_the_first_save_travels(page: Any, stack: LocalStack, tmp_path: Path) -> Any:
    """a.png's first mask, a save whose PUT is held (returned, to be let go), and a negative click
    made while it travels; later saves pass."""
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    held: list[Any] = []
    page.route(
        "**/local/labels/a.png",
        lambda route: held.append(route) if route.request.method == "PUT" and not held else route.continue_(),
    )
    page.evaluate("() => { window.__saving = window.fewclick.save(); }")
    page.wait_for_function("() => document.querySelector('[data-role=save-status]').textContent.startsWith('Saving')")
    click_image(page, *obj.outside, modifier="Shift")
    settle(page)
    return held_route(page, held)


def test_edits_made_while_a_save_travels_stay_unsaved(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    held_save = _edit_while_the_first_save_travels(page, stack, tmp_path)
    held_save.continue_()
    assert page.evaluate("() => window.__saving") is True
    # Stored: the 4 extreme points only; the negative click is still an unsaved change.
    assert [a["fewclick"]["clicks"] for a in _saved_objects(tmp_path, "a.png")] == [[]]
    assert page.evaluate("() => window.fewclick.labeler.dirty") is True


def test_deleting_another_object_keeps_the_selection_and_clicks_stop_at_the_apis_limit(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    open_labeler(page, stack.url)
    # Objects built directly (points of any kind): what is tested is the document's bookkeeping.
    page.evaluate(
        """() => {
          const l = window.fewclick.labeler;
          window.__object = (clicks) => {
            const corners = [[60, 20], [20, 60], [60, 100], [100, 60]];
            const extreme = corners.map(([x, y]) => ({ x, y, type: "extreme" }));
            const more = Array.from({ length: clicks }, (_, i) => ({ x: 50 + (i % 10), y: 50, type: "positive" }));
            return Object.freeze({ ...l._makeObject("object"), points: Object.freeze([...extreme, ...more]) });
          };
        }"""
    )
    ids = page.evaluate(
        """() => { const l = window.fewclick.labeler;
                   l._commit({ objects: [0, 1, 2].map(() => window.__object(0)), selected: 1 });
                   return l.doc.objects.map((o) => o.id); }"""
    )
    assert len(set(ids)) == 3
    page.evaluate("() => window.fewclick.labeler.deleteObject(0)")  # not the selected one
    selected = page.evaluate("() => { const d = window.fewclick.labeler.doc; return d.objects[d.selected].id; }")
    assert selected == ids[1]

    # An object with the API's 100 corrective clicks takes no 101st: a banner says why.
    from fewclick_contract.api import MAX_CLICKS

    core = (Path(__file__).resolve().parents[2] / "fewclick" / "ui" / "labeling-core.js").read_text()
    assert f"export const MAX_CORRECTIVE_CLICKS = {MAX_CLICKS};" in core  # one limit, both sides
    page.evaluate(
        """(limit) => { const l = window.fewclick.labeler;
                        l._commit({ objects: [window.__object(limit)], selected: 0 }); }""",
        MAX_CLICKS,
    )
    count = "() => { const d = window.fewclick.labeler.doc; return d.objects[d.selected].points.length; }"
    assert page.evaluate(count) == 4 + MAX_CLICKS
    page.evaluate("() => window.fewclick.labeler._addClick({x: 55, y: 55}, {})")
    assert page.evaluate(count) == 4 + MAX_CLICKS
    hidden, _, text = banner(page)
    assert not hidden and f"at most {MAX_CLICKS} corrective clicks" in text


def test_a_late_answer_for_the_previous_image_lends_no_session_to_the_next(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    held: list[Any] = []
    page.route("**/v1/segment", lambda route: held.append(route))
    # A flag raised once the page has handled the answer (its promise settled): the assertion below
    # is a negative one, so it must not run before there was anything to get wrong.
    page.evaluate(
        """() => { const client = window.fewclick.labeler.client; const segment = client.segment.bind(client);
                   client.segment = async (request) => {
                     try { return await segment(request); } finally { window.__answered = true; } }; }"""
    )
    for x, y in obj.extreme_points:
        click_image(page, x, y)
    page.wait_for_function("() => window.fewclick.labeler.inflight !== null")
    request = held_route(page, held)
    # Another image opens in the labeler while that request is still out.
    page.evaluate(
        """async () => { const l = window.fewclick.labeler;
                         await l.open({ url: window.fewclick.state.objectUrl, width: 320, height: 240,
                                        getApiImage: async () => ({ base64: "" }) }); }"""
    )
    request.continue_()
    page.wait_for_function("() => window.__answered === true")
    page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 0))")  # the continuation after it
    page.unroute("**/v1/segment")
    assert page.evaluate("() => window.fewclick.labeler.sessionId") is None


def test_an_image_that_cannot_be_shown_never_has_its_labels_overwritten(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    """Until the labeler holds an image's saved objects, a save must not write (an empty list) over them."""
    obj = make_known_object(tmp_path / "images" / "b.png", seed=3)
    open_labeler(page, stack.url)
    page.evaluate("() => window.fewclick.go(1)")
    page.wait_for_function("() => window.fewclick.state.shown === 1 && window.fewclick.labeler.image")
    first_mask(page, obj)
    assert page.evaluate("() => window.fewclick.save()") is True
    assert len(_saved_objects(tmp_path, "b.png")) == 1

    # b.png comes back as bytes no browser can decode: the labeler shows nothing, so nothing is saved.
    page.evaluate("() => window.fewclick.go(0)")
    page.wait_for_function("() => window.fewclick.state.shown === 0 && window.fewclick.labeler.image")
    page.route(
        "**/local/images/b.png", lambda route: route.fulfill(status=200, content_type="image/png", body=b"not an image")
    )
    page.evaluate("() => window.fewclick.go(1).catch(() => {})")
    page.wait_for_function("() => window.fewclick.state.index === 1 && !window.fewclick.state.loading")
    assert page.evaluate("() => window.fewclick.state.shown") == -1
    page.evaluate("() => window.fewclick.save()")
    assert len(_saved_objects(tmp_path, "b.png")) == 1


def test_moving_on_during_a_save_saves_the_edits_made_meanwhile(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    held_save = _edit_while_the_first_save_travels(page, stack, tmp_path)
    page.evaluate("() => { window.__going = window.fewclick.go(1); }")  # "Next", before that PUT is answered
    held_save.continue_()
    page.wait_for_function("() => window.fewclick.state.shown === 1 && window.fewclick.labeler.image")
    (saved,) = _saved_objects(tmp_path, "a.png")
    assert [c["type"] for c in saved["fewclick"]["clicks"]] == ["negative"]  # the edit was saved before moving on
