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

from .conftest import (
    KnownObject,
    click_image,
    held_route,
    make_known_object,
    open_labeler,
    screenshot,
    settle,
    wait_until_shown,
)
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
    wait_until_shown(page, 1)
    assert page.text_content("[data-role=progress]") == "1/2 done"
    page.click("#prev")
    wait_until_shown(page, 0, "window.fewclick.labeler.doc.objects.length === 2")
    screenshot(page, "two-objects-reopened")


def test_navigation_saves_unsaved_work(stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    click_image(page, *obj.outside, modifier="Shift")  # Shift-click: negative, like the right button
    settle(page)
    assert page.evaluate("() => window.fewclick.labeler.doc.objects[0].points[4].type") == "negative"
    page.keyboard.press("ArrowRight")
    wait_until_shown(page, 1)
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
    wait_until_shown(page, 1)
    first_mask(page, obj)
    assert page.evaluate("() => window.fewclick.save()") is True
    assert len(_saved_objects(tmp_path, "b.png")) == 1

    # b.png comes back as bytes no browser can decode: the labeler shows nothing, so nothing is saved.
    page.evaluate("() => window.fewclick.go(0)")
    wait_until_shown(page, 0)
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
    wait_until_shown(page, 1)
    (saved,) = _saved_objects(tmp_path, "a.png")
    assert [c["type"] for c in saved["fewclick"]["clicks"]] == ["negative"]  # the edit was saved before moving on


def test_space_presses_a_focused_button_and_pans_from_the_image(stack: LocalStack, page: Any) -> None:
    open_labeler(page, stack.url)
    # Seen after the labeler's own listener: whether it cancelled Space's default action.
    page.evaluate("() => window.addEventListener('keydown', (e) => { window.__spacePrevented = e.defaultPrevented; })")
    page.focus("[data-role=boundary-mode]")
    page.keyboard.press("Space")
    assert page.get_attribute("[data-role=boundary-mode]", "aria-pressed") == "true"
    assert page.evaluate("() => window.__spacePrevented") is False
    page.focus("#help-toggle")  # the page's buttons too
    page.keyboard.press("Space")
    assert page.is_visible("#help")
    # With the image focused, Space is the pan modifier: no page scroll.
    page.focus("[data-role=click-layer]")
    page.keyboard.press("Space")
    assert page.evaluate("() => window.__spacePrevented") is True


# The stage's and the image's rectangles in client pixels, and the scale.
GEOMETRY_JS = """() => {
  const l = window.fewclick.labeler;
  const s = l.ui.stage.getBoundingClientRect();
  const a = l.imageToClient(-0.5, -0.5);
  const b = l.imageToClient(l.image.width - 0.5, l.image.height - 0.5);
  return { stage: [s.left, s.top, s.right, s.bottom], image: [a.x, a.y, b.x, b.y], scale: l.view.scale };
}"""


def test_a_smaller_window_refits_the_image_or_keeps_it_within_reach(stack: LocalStack, page: Any) -> None:
    open_labeler(page, stack.url)
    page.evaluate(f"() => {{ window.__geometry = {GEOMETRY_JS}; }}")
    fitted = page.evaluate("() => window.__geometry()")
    # A fitted view follows the stage: the whole image inside the smaller one.
    page.set_viewport_size({"width": 800, "height": 500})
    page.wait_for_function(
        """() => { const { stage: s, image: i } = window.__geometry();
                   return i[0] >= s[0] && i[1] >= s[1] && i[2] <= s[2] && i[3] <= s[3]; }""",
        timeout=5_000,
    )
    refitted = page.evaluate("() => window.__geometry()")
    assert refitted["scale"] < fitted["scale"]

    # Panned by the labeler (middle button) into the stage's bottom-right corner: the view is theirs now.
    stage, image = refitted["stage"], refitted["image"]
    start = (image[0] + 10, image[1] + 10)
    page.mouse.move(*start)
    page.mouse.down(button="middle")
    page.mouse.move(stage[2] - 70, stage[3] - 70, steps=4)
    page.mouse.up(button="middle")
    panned = page.evaluate("() => window.__geometry()")
    assert panned["image"][0] == pytest.approx(stage[2] - 80, abs=2)
    # The window shrinks past the image's corner: it is pulled back within reach, neither refitted nor lost.
    page.set_viewport_size({"width": 600, "height": 400})
    page.wait_for_function(
        """() => { const { stage: s, image: i } = window.__geometry();
                   return Math.min(s[2], i[2]) - Math.max(s[0], i[0]) >= 40
                       && Math.min(s[3], i[3]) - Math.max(s[1], i[1]) >= 40; }""",
        timeout=5_000,
    )
    kept = page.evaluate("() => window.__geometry()")
    assert kept["scale"] == panned["scale"]
    stage, image = kept["stage"], kept["image"]
    x = (max(stage[0], image[0]) + min(stage[2], image[2])) / 2
    y = (max(stage[1], image[1]) + min(stage[3], image[3])) / 2
    pixel = page.evaluate("([x, y]) => window.fewclick.labeler.clientToImage(x, y)", [x, y])
    page.mouse.click(x, y)
    assert page.evaluate("() => window.fewclick.labeler.doc.objects[0].points[0]") == {**pixel, "type": "extreme"}


def test_moving_on_is_refused_while_an_object_is_unfinished(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    page.keyboard.press("n")
    left, right, top, bottom = obj.extreme_points
    second = [(left[0] + 20, left[1]), (right[0] - 20, right[1]), (top[0], top[1] + 15), (bottom[0], bottom[1] - 15)]
    for x, y in second[:2]:
        click_image(page, x, y)
    status = "() => document.querySelector('[data-role=save-status]')"
    unfinished = "Unfinished object #2 (2 of 4 extreme points): finish it"

    # Next, →, and the image list: each refused, said in words, nothing saved or lost.
    page.click("#next")
    page.wait_for_function(f"() => ({status})().dataset.kind === 'error'")
    text = page.text_content("[data-role=save-status]") or ""
    assert text.startswith("Not moved on") and unfinished in text and "or delete it" in text
    page.focus("[data-role=click-layer]")
    page.keyboard.press("ArrowRight")
    page.select_option("#image-select", "1")
    assert page.evaluate("() => [window.fewclick.state.index, window.fewclick.state.shown]") == [0, 0]
    assert page.input_value("#image-select") == "0"
    assert not (tmp_path / "labels" / "annotations.json").exists()
    # The message stays through other changes (selecting the first object), and so does the object.
    page.click("[data-role=objects] li[data-index='0'] .fc-object-name")
    assert page.evaluate("() => window.fewclick.labeler.doc.selected") == 0
    assert unfinished in (page.text_content("[data-role=save-status]") or "")
    assert page.evaluate("() => window.fewclick.labeler.doc.objects[1].points.length") == 2

    # Saved (the finished object only): still refused, and leaving the page still asks.
    page.keyboard.press("Control+s")
    page.wait_for_function(f"() => ({status})().textContent.startsWith('Saved')")
    page.click("#next")
    page.wait_for_function(f"() => ({status})().textContent.startsWith('Not moved on')")
    assert page.evaluate("() => window.fewclick.state.index") == 0
    leaving = """() => { const e = new Event('beforeunload', { cancelable: true });
                         dispatchEvent(e); return e.defaultPrevented; }"""
    assert page.evaluate(leaving) is True

    # Finished: the warning goes, and Next saves both objects before moving on.
    page.click("[data-role=objects] li[data-index='1'] .fc-object-name")
    settle(page)  # the longer status may have wrapped the header, moving the image
    for x, y in second[2:]:
        click_image(page, x, y)
    settle(page)
    assert page.text_content("[data-role=save-status]") == "Unsaved changes"
    page.click("#next")
    wait_until_shown(page, 1)
    assert len(_saved_objects(tmp_path, "a.png")) == 2


def test_an_extreme_point_on_an_earlier_one_is_refused_and_a_double_click_adds_one_point(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    points = (
        "() => { const d = window.fewclick.labeler.doc; return d.objects[d.selected].points.map((p) => [p.x, p.y]); }"
    )
    left, right, top, bottom = obj.extreme_points

    def double_click(x: int, y: int) -> None:
        point = page.evaluate("([x, y]) => window.fewclick.labeler.imageToClient(x, y)", [x, y])
        page.mouse.dblclick(point["x"], point["y"])
        settle(page)

    # A double-click is one point, an extreme one and a corrective one alike.
    double_click(*left)
    click_image(page, *right)
    click_image(page, *top)
    double_click(*bottom)
    double_click(*obj.inside)
    assert page.evaluate(points) == [list(p) for p in (left, right, top, bottom, obj.inside)]
    assert mask_count(page) == 2
    assert all(len({(p["x"], p["y"]) for p in r["extremePoints"]}) == 4 for r in fake.requests)

    # Another object: its first extreme point clicked 4 times, then 2 px off, is still one point.
    page.keyboard.press("n")
    # settle() after each click: the banner moves the image, and the next click must find its pixel again.
    for _ in range(4):
        click_image(page, *left)
        settle(page)
    assert page.evaluate(points) == [list(left)]
    hidden, kind, text = banner(page)
    assert not hidden and kind == "info"
    assert "Extreme point 2 not added" in text and "within 2 px of extreme point 1" in text
    click_image(page, left[0] + 2, left[1] - 2)
    settle(page)
    assert page.evaluate(points) == [list(left)]
    assert len(fake.requests) == 2


def test_a_refused_page_takes_the_token_pasted_into_the_same_tab(stack: LocalStack, page: Any) -> None:
    assert stack.token
    page.goto(stack.url.replace(stack.token, "wrong"))
    page.wait_for_function("() => !document.getElementById('page-banner').hidden")
    assert "Not authorised (403)" in (page.text_content("#page-banner-text") or "")
    page.evaluate("() => { window.__sameDocument = true; }")
    page.goto(stack.url)  # the printed URL, pasted: only the fragment changes, the page does not load again
    page.wait_for_function("() => window.fewclick && window.fewclick.labeler.image")
    assert page.evaluate("() => window.__sameDocument") is True
    assert page.is_hidden("#page-banner")
    assert "token=" not in page.url


def test_a_refused_click_is_sent_again_with_the_token_pasted_into_the_same_tab(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    assert stack.token
    # The page loaded while its token was still good (its /local requests carry the right one); the
    # segment API already refuses the tab's token.
    page.route(
        "**/local/**",
        lambda route: route.continue_(headers={**route.request.headers, "authorization": f"Bearer {stack.token}"}),
    )
    open_labeler(page, stack.url.replace(stack.token, "stale"))
    first_mask(page, obj)
    hidden, kind, text = banner(page)
    assert not hidden and kind == "error" and "Not authorised (403" in text
    assert "failed" in (page.text_content("[data-role=objects]") or "")
    page.unroute("**/local/**")

    page.goto(stack.url)
    page.wait_for_function("() => window.fewclick.labeler.masks.size === 1")
    settle(page)
    assert banner(page)[0]
    assert page.evaluate("() => window.fewclick.save()") is True  # the new token saves too
    assert len(_saved_objects(tmp_path, "a.png")) == 1


def test_a_refused_click_is_requested_again_after_undo_and_redo(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    objects = "[data-role=objects]"
    error = "() => document.querySelector('[data-role=banner]').dataset.kind === 'error'"

    fake.failures.append((403, "ACCESS_DENIED", {}))
    click_image(page, *obj.inside)
    page.wait_for_function(error)
    assert "failed" in (page.text_content(objects) or "")
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+Shift+z")
    settle(page)
    assert mask_count(page) == 2 and "failed" not in (page.text_content(objects) or "")
    assert banner(page)[0]

    # The same click made again after an undo is a new attempt too.
    fake.failures.append((403, "ACCESS_DENIED", {}))
    settle(page)
    click_image(page, *obj.outside, modifier="Shift")
    page.wait_for_function(error)
    page.keyboard.press("Control+z")
    settle(page)  # the banner went: the image moved with the stage
    click_image(page, *obj.outside, modifier="Shift")
    settle(page)
    assert mask_count(page) == 3 and "failed" not in (page.text_content(objects) or "")

    page.click("#save")
    page.wait_for_function("() => document.querySelector('[data-role=save-status]').textContent.startsWith('Saved')")
    (saved,) = _saved_objects(tmp_path, "a.png")
    assert [c["type"] for c in saved["fewclick"]["clicks"]] == ["positive", "negative"]


def _ring_pixels(page: Any, x: int, y: int) -> int:
    """Pixels of the missed-click ring's colour on the points layer, 9-15 screen px around image pixel (x, y)."""
    return int(
        page.evaluate(
            """([x, y]) => {
                 const labeler = window.fewclick.labeler;
                 const top = labeler.ui.top;
                 const rect = top.getBoundingClientRect();
                 const p = labeler.imageToClient(x, y);
                 const dpr = top.width / rect.width;
                 const cx = (p.x - rect.left) * dpr, cy = (p.y - rect.top) * dpr, r = 16 * dpr;
                 const data = top.getContext('2d').getImageData(cx - r, cy - r, 2 * r, 2 * r).data;
                 let n = 0;
                 for (let j = 0; j < 2 * r; j += 1) for (let i = 0; i < 2 * r; i += 1) {
                   const d = Math.hypot(i - r, j - r) / dpr;
                   const k = 4 * (j * 2 * r + i);
                   const ringColour = data[k] > 200 && data[k + 1] > 170 && data[k + 2] < 90 && data[k + 3] > 200;
                   if (d >= 9 && d <= 15 && ringColour) n += 1;
                 }
                 return n;
               }""",
            [x, y],
        )
    )


def test_a_click_the_mask_does_not_follow_is_ringed_and_explained(
    stack: LocalStack, fake: FakeProxy, page: Any, tmp_path: Path
) -> None:
    """The API's missedClicks reach the labeler: the click is ringed, its object says so, and the hint
    says what to do. The fake proxy ignores boundary clicks, so one deep inside the object stays off the
    mask's edge."""
    obj = make_known_object(tmp_path / "images" / "a.png")
    open_labeler(page, stack.url)
    first_mask(page, obj)
    assert _ring_pixels(page, *obj.inside) == 0

    click_image(page, *obj.inside, modifier="Alt")  # a boundary click
    settle(page)
    assert fake.requests[-1]["clicks"] == [{"x": obj.inside[0], "y": obj.inside[1], "type": "boundary"}]
    assert "1 not followed" in (page.text_content("[data-role=objects]") or "")
    hint = page.text_content("[data-role=hint]") or ""
    assert hint.startswith("Ringed: 1 boundary click off the mask's edge.") and "add a positive click" in hint
    assert _ring_pixels(page, *obj.inside) > 20
    screenshot(page, "missed-click")
    # In boundary mode the hint still says so: its advice is a region click, which that mode would not make.
    page.keyboard.press("b")
    page.wait_for_function("() => document.querySelector('[data-role=hint]').textContent.startsWith('Boundary mode')")
    assert "Ringed: 1 boundary click" in (page.text_content("[data-role=hint]") or "")
    page.keyboard.press("b")

    # A positive click elsewhere: the boundary click is still missed (index 0), the positive one is followed.
    click_image(page, *obj.boundary)
    settle(page)
    assert page.evaluate("() => window.fewclick.labeler.missedClicks(window.fewclick.labeler.doc.objects[0])") == [0]
    assert _ring_pixels(page, *obj.inside) > 20 and _ring_pixels(page, *obj.boundary) == 0

    # Back to the extreme points alone: nothing to ring, the usual hint.
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    settle(page)
    assert "not followed" not in (page.text_content("[data-role=objects]") or "")
    assert "Left-click: add to the object" in (page.text_content("[data-role=hint]") or "")
    assert _ring_pixels(page, *obj.inside) == 0
    page.keyboard.press("Control+Shift+z")
    page.keyboard.press("Control+Shift+z")
    settle(page)
    assert "2 clicks, 1 not followed" in (page.text_content("[data-role=objects]") or "")

    # Saved, left and reopened: the store names the saved mask's missed clicks, so the ring stays.
    page.keyboard.press("Control+s")
    page.wait_for_function("() => document.querySelector('[data-role=save-status]').textContent.startsWith('Saved')")
    page.keyboard.press("ArrowRight")
    wait_until_shown(page, 1)
    page.keyboard.press("ArrowLeft")
    wait_until_shown(page, 0, "window.fewclick.labeler.doc.objects.length === 1")
    settle(page)
    assert "2 clicks, 1 not followed" in (page.text_content("[data-role=objects]") or "")
    assert _ring_pixels(page, *obj.inside) > 20
