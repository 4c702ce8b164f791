"""End to end in headless Chromium: a Ground Truth task, from pre-annotation to consolidation.

What runs for real: the pre-annotation logic (mints the task token), the template build and its
Liquid rendering (python-liquid, autoescape, `grant_read_access` stubbed), the page (labeling core +
task glue), the local gateway (task-token verification), the real proxy `lambda_handler` with its
Segmenter and task scope, and the consolidation logic on the submitted answer. Stand-ins: Ground
Truth's crowd-form (a tiny local custom element that records what crowd-form would submit), S3 (a
dict), and the model (an ellipse from the extreme points, so the test needs no torch; the serving
tests drive the real model server). The page and the API run on different origins, as in Ground
Truth, so CORS is exercised too.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fewclick_contract.click_respect import missed_clicks
from fewclick_contract.labelmap import ANSWER_FIELD, ANSWER_FORMAT, class_color, hex_to_rgb
from fewclick_contract.task_token import TASK_SEGMENT_PATH, derive_key, mint_task_token
from tests.browser_support import CHROMIUM

from .helpers import IMAGE_BUCKET, JOB_ARN, JOB_NAME, SECRET, gt_environment

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)"),
]

IMAGE_KEY = "street/0001.png"
IMAGE_URI = f"s3://{IMAGE_BUCKET}/{IMAGE_KEY}"
OTHER_URI = f"s3://{IMAGE_BUCKET}/street/0002.png"
W, H = 200, 150
PERSON = [(40, 75), (100, 75), (70, 30), (70, 120)]  # left, right, top, bottom extreme points
CAR = [(120, 90), (185, 90), (152, 70), (152, 110)]
LABELER_TOKEN = "labeler-bearer-token"
SESSION_SECRET = b"browser-test-session-secret"

# Stand-in for https://assets.crowd.aws/crowd-html-elements.js: only crowd-form, behaving as the
# docs describe it (adds a Submit button when none is present; fires onsubmit, which may call
# preventDefault(); then submits its named inputs as {"<name>": "<value>"}).
CROWD_STUB = """
window.__crowdSubmissions = [];
class CrowdForm extends HTMLElement {
  connectedCallback() {
    if (this.querySelector("button[data-crowd-submit]")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Submit";
    button.dataset.crowdSubmit = "";
    button.addEventListener("click", () => this.submit());
    this.append(button);
  }
  submit() {
    const event = new Event("submit", { cancelable: true });
    this.dispatchEvent(event);  // runs the page's onsubmit handler
    if (event.defaultPrevented) return;
    const answer = {};
    for (const input of this.querySelectorAll("input[name]")) answer[input.name] = input.value;
    window.__crowdSubmissions.push(answer);
  }
}
customElements.define("crowd-form", CrowdForm);
"""


def make_image() -> bytes:
    rgb = np.full((H, W, 3), (90, 120, 90), np.uint8)
    cv2.ellipse(rgb, (70, 75), (30, 45), 0, 0, 360, (200, 40, 40), -1)
    cv2.rectangle(rgb, (120, 70), (185, 110), (40, 40, 200), -1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return png.tobytes()


class FakeS3:
    """get_object as boto3 answers it, for the one bucket the proxy may read."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        data = self.objects.get(f"s3://{Bucket}/{Key}")
        if data is None:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "no"}}, "GetObject")
        return {"Body": io.BytesIO(data), "ContentLength": len(data), "ETag": '"etag-1"'}


class FakeEndpoint:
    """The model endpoint's contract (fewclick_contract.wire) with an ellipse for a model."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.calls = 0
        self.failing = False  # the model answers 502 while set

    def invoke(self, request: Any, session_id: str | None, deadline: float | None = None) -> Any:
        from fewclick_proxy.endpoint_client import EndpointResult, SessionExpiredAtEndpoint

        from fewclick_contract.api import ApiError, ErrorCode
        from fewclick_contract.wire import WireResponse, encode_probabilities

        self.calls += 1
        if self.failing:
            raise ApiError(ErrorCode.ENDPOINT_ERROR, "the model failed (test)")
        if request.crop is None and session_id not in self.sessions:
            raise SessionExpiredAtEndpoint()
        session = session_id or str(uuid.uuid4())
        self.sessions.add(session)
        size = request.size
        xs = [p.x for p in request.extremePoints]
        ys = [p.y for p in request.extremePoints]
        prob = np.zeros((size, size), np.float32)
        center = (round((min(xs) + max(xs)) / 2), round((min(ys) + max(ys)) / 2))
        axes = (max(1, round((max(xs) - min(xs)) / 2)), max(1, round((max(ys) - min(ys)) / 2)))
        cv2.ellipse(prob, center, axes, 0, 0, 360, 1.0, -1)
        for click in request.clicks:
            cv2.circle(prob, (round(click.x), round(click.y)), 6, 1.0 if click.kind == "positive" else 0.0, -1)
        response = WireResponse(
            sessionId=session,
            cropId=request.cropId,
            size=size,
            probabilities=encode_probabilities(prob),
            modelVersion="ellipse-test",
            modelMs=1.0,
            cache="miss" if request.crop is not None else "hit",
        )
        return EndpointResult(response=response, session_id=session, request_bytes=1, response_bytes=1)


class PageServer(ThreadingHTTPServer):
    """Plays Ground Truth's worker site: serves the rendered task page and the presigned image."""

    daemon_threads = True

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, bytes]] = {}

        class Handler(BaseHTTPRequestHandler):
            server: PageServer

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path not in self.server.files:
                    self.send_error(404)
                    return
                content_type, body = self.server.files[path]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The local API (gateway + real proxy handler) and the task page, on two origins."""
    for name, value in {
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "fewclick-proxy-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ALLOWED_ORIGINS", raising=False)
    import fewclick_proxy.handler as proxy_handler
    from fewclick_proxy.config import ProxyConfig
    from fewclick_proxy.image_source import ImageSource
    from fewclick_proxy.segment import Segmenter

    from fewclick.groundtruth.template import build_template
    from fewclick.local.gateway import Gateway, GatewayConfig, GatewayServer

    key = derive_key(SECRET)
    image = make_image()
    config = ProxyConfig(
        endpoint_name="fewclick-test", allowed_buckets=frozenset({IMAGE_BUCKET}), session_secret=SESSION_SECRET
    )
    endpoint = FakeEndpoint()
    s3 = FakeS3({IMAGE_URI: image, OTHER_URI: image})
    previous = proxy_handler._segmenter
    proxy_handler.configure(Segmenter(config, ImageSource(config, lambda: s3), endpoint))
    gateway = GatewayServer(
        ("127.0.0.1", 0),
        Gateway(
            GatewayConfig(token=LABELER_TOKEN, task_token_key=key, rate_per_s=1000, burst=1000),
            proxy_handler.lambda_handler,
        ),
    )
    gateway.start()
    api_url = f"http://127.0.0.1:{gateway.port}/"

    # Ground Truth's side: the pre-annotation Lambda's logic mints the task input for the data object.
    from gt_common.jobs import JobInfo
    from pre_annotation.logic import build_response

    response, _ = build_response(
        {"version": "2018-10-16", "labelingJobArn": JOB_ARN, "dataObject": {"source-ref": IMAGE_URI}},
        job=JobInfo(name=JOB_NAME, labels=("person", "car"), task_window_s=3600),
        key=key,
        image_buckets=frozenset({IMAGE_BUCKET}),
        max_ttl_s=86400,
    )
    task_input = response["taskInput"]
    pages = PageServer()
    pages.files["/images/street.png"] = ("image/png", image)
    presigned = f"{pages.url}/images/street.png?X-Amz-Expires=900&X-Amz-Signature=test"
    env = gt_environment(lambda uri: presigned if uri == IMAGE_URI else "about:blank")
    html = env.from_string(build_template(api_url)).render(task={"input": task_input})
    pages.files["/task.html"] = ("text/html; charset=utf-8", html.encode("utf-8"))
    yield {"page": f"{pages.url}/task.html", "api": api_url, "task_input": task_input, "key": key, "endpoint": endpoint}
    pages.stop()
    gateway.stop()
    proxy_handler._segmenter = previous


def _decode(rle: dict[str, Any]) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def test_worker_completes_a_task_end_to_end(stack: dict[str, Any], tmp_path: Path, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route(
            "https://assets.crowd.aws/**",
            lambda route: route.fulfill(status=200, content_type="application/javascript", body=CROWD_STUB),
        )
        page.goto(stack["page"])
        page.wait_for_function("() => window.fewclickTask && window.fewclickTask.labeler.image")

        def click(x: int, y: int) -> None:
            point = page.evaluate("([x, y]) => window.fewclickTask.labeler.imageToClient(x, y)", [x, y])
            page.mouse.click(point["x"], point["y"])

        def wait_settled(objects: int) -> None:
            page.wait_for_function(
                "(n) => { const e = window.fewclickTask.labeler.exportObjects();"
                " return e.objects.length === n && !e.incomplete && !e.withoutMask; }",
                arg=objects,
            )

        for x, y in PERSON:
            click(x, y)
        wait_settled(1)
        click(70, 40)  # a corrective (positive) click
        page.wait_for_function(
            "() => { const e = window.fewclickTask.labeler.exportObjects();"
            " return e.objects.length === 1 && e.objects[0].clicks.length === 1 && !e.withoutMask; }"
        )
        page.evaluate("() => { window.fewclickTask.labeler.newObject('car'); }")
        for x, y in CAR[:2]:
            click(x, y)
        # Submitting with an unfinished object is refused (crowd-form's onsubmit, preventDefault).
        page.click("crowd-form button[data-crowd-submit]")
        assert page.evaluate("() => window.__crowdSubmissions.length") == 0
        assert page.locator("#fc-status").get_attribute("data-kind") == "error"
        for x, y in CAR[2:]:
            click(x, y)
        wait_settled(2)
        # A boundary click (Alt) in the middle of the car: the fake model's ellipse keeps its edge far
        # from it, so the answer names it as not followed.
        page.keyboard.down("Alt")
        click(152, 90)
        page.keyboard.up("Alt")
        page.wait_for_function(
            "() => { const e = window.fewclickTask.labeler.exportObjects();"
            " return e.objects.length === 2 && e.objects[1].clicks.length === 1 && !e.withoutMask; }"
        )
        masks = page.evaluate("() => window.fewclickTask.labeler.exportObjects().objects.map(o => o.mask)")
        page.click("crowd-form button[data-crowd-submit]")
        page.wait_for_function("() => window.__crowdSubmissions.length === 1")
        submission = page.evaluate("() => window.__crowdSubmissions[0]")
        page.screenshot(path=str(tmp_path / "task.png"))

        # A click the model fails on: the status says the object has no mask (not "ready to submit").
        stack["endpoint"].failing = True
        click(60, 50)
        page.wait_for_function("() => document.querySelector('#fc-status').textContent.includes('no mask')")
        assert page.locator("#fc-status").get_attribute("data-kind") == "error"
        stack["endpoint"].failing = False
        page.keyboard.press("Control+z")
        page.wait_for_function("() => document.querySelector('#fc-status').textContent.includes('ready to submit')")

        # A task token that expired mid-task: the worker is told what a worker can do (there is no
        # link with a token to open, as the stand-alone page says).
        refusal = {"error": {"code": "UNAUTHORIZED", "message": "the task token has expired; reopen the task"}}
        page.route(
            f"**{TASK_SEGMENT_PATH}",
            lambda route: route.fulfill(status=401, content_type="application/json", body=json.dumps(refusal)),
        )
        click(70, 45)
        page.wait_for_function(
            "() => (document.querySelector('[data-role=banner]') || {}).textContent?.includes('release the task')"
        )
        banner = page.text_content("[data-role=banner]") or ""
        assert "take it again from your worker portal" in banner and "carries the token" not in banner
        page.unroute(f"**{TASK_SEGMENT_PATH}")
        page.keyboard.press("Control+z")
        page.wait_for_function("() => document.querySelector('#fc-status').textContent.includes('ready to submit')")

        # The same page (same origin as a worker) cannot use the token beyond its task.
        statuses = page.evaluate(
            """async ([api, path, token, other, expired, labelerRoute, own]) => {
                const body = (uri) => JSON.stringify({image: {s3Uri: uri},
                  extremePoints: [{x: 1, y: 5}, {x: 9, y: 5}, {x: 5, y: 1}, {x: 5, y: 9}]});
                const call = async (url, auth, uri) => (await fetch(url, {method: "POST",
                  headers: {"Content-Type": "application/json", Authorization: `Bearer ${auth}`},
                  body: body(uri)})).status;
                return {
                  own: await call(api + path, token, own),
                  otherImage: await call(api + path, token, other),
                  tampered: await call(api + path, token.slice(0, -2) + "xx", other),
                  expired: await call(api + path, expired, other),
                  labelerRoute: await call(api + labelerRoute, token, other),
                };
            }""",
            [
                stack["api"].rstrip("/"),
                TASK_SEGMENT_PATH,
                stack["task_input"]["token"],
                OTHER_URI,
                mint_task_token(stack["key"], image_uri=OTHER_URI, ttl_s=60, now=time.time() - 120)[0],
                "/v1/segment",
                IMAGE_URI,
            ],
        )
        assert errors == []
    finally:
        context.close()

    # Every refusal is readable cross-origin (CORS on errors too) and has the right status.
    assert statuses == {"own": 200, "otherImage": 403, "tampered": 401, "expired": 401, "labelerRoute": 403}
    assert stack["endpoint"].calls >= 3

    # The submission is what crowd-form would send: {"fewclick": "<answer JSON>"}.
    assert set(submission) == {ANSWER_FIELD}
    answer = json.loads(submission[ANSWER_FIELD])
    assert answer["format"] == ANSWER_FORMAT
    assert answer["inputImageProperties"] == {"height": H, "width": W}
    assert [o["label"] for o in answer["objects"]] == ["person", "car"]
    assert answer["objects"][0]["extremePoints"] == [{"x": x, "y": y} for x, y in PERSON]
    assert answer["objects"][0]["clicks"] == [{"x": 70, "y": 40, "type": "positive"}]
    assert answer["objects"][0]["modelVersion"] == "ellipse-test"
    assert answer["objects"][1]["clicks"] == [{"x": 152, "y": 90, "type": "boundary"}]
    # Which clicks each submitted mask does not follow, as the API answered: checked here on the masks
    # themselves with the contract's own test.
    assert [o["missedClicks"] for o in answer["objects"]] == [[], [0]]
    for obj, rle in zip(answer["objects"], masks, strict=True):
        clicks = [(c["x"], c["y"], c["type"]) for c in obj["clicks"]]
        assert missed_clicks(_decode(rle), clicks) == obj["missedClicks"]

    # The label map is exactly the masks the API returned, later objects on top.
    expected = np.zeros((H, W), np.uint8)
    expected[_decode(masks[0])] = 1
    expected[_decode(masks[1])] = 2
    assert (expected == 1).sum() > 1000 and (expected == 2).sum() > 1000

    # ... and the consolidation Lambda's logic reads it back to the same classes.
    from consolidation.label_image import encode_label_png
    from consolidation.logic import ConsolidationEvent, consolidate_entry

    event = ConsolidationEvent.parse(
        {
            "labelingJobArn": JOB_ARN,
            "labelAttributeName": JOB_NAME,
            "labelCategories": ["person", "car"],
            "payload": {"s3Uri": "s3://b/p.json"},
        }
    )
    entry = {
        "datasetObjectId": "0",
        "dataObject": {"s3Uri": IMAGE_URI},
        "annotations": [{"workerId": "w1", "annotationData": {"content": json.dumps(submission)}}],
    }
    result = consolidate_entry(entry, event, read_text=lambda uri: "")
    assert result.rejected == []
    assert np.array_equal(result.classes, expected)
    png = np.asarray(cv2.imdecode(np.frombuffer(encode_label_png(result.classes, 2), np.uint8), cv2.IMREAD_COLOR))
    assert tuple(png[75, 70][::-1]) == hex_to_rgb(class_color(1))
