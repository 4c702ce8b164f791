"""End to end: real lambda_handler -> boto3 sagemaker-runtime -> runtime stand-in -> real
model server with the real predictor, on loopback. A labeling session on a synthetic image."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from fewclick.bench.synthetic import extreme_points, make_scene
from fewclick_contract.wire import (
    NEW_SESSION,
    NEW_SESSION_HEADER,
    WARM_CLICK_BUDGET_BYTES,
    WireResponse,
    parse_session_header,
)

from .conftest import BUCKET, ENDPOINT, Stack, free_port
from .helpers import call, png_base64, png_bytes

pytestmark = pytest.mark.timeout(300)

SEGMENT = "/v1/segment"


@dataclass
class Proxy:
    handler: Any
    s3: Stubber
    stack: Stack

    def segment(self, body: Any) -> tuple[int, Any, dict]:
        return call(self.handler, "POST", SEGMENT, body)

    def expect_s3_read(self, key: str, data: bytes, etag: str = "etag-1") -> None:
        self.s3.add_response(
            "get_object",
            {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentLength": len(data), "ETag": f'"{etag}"'},
            {"Bucket": BUCKET, "Key": key},
        )


@pytest.fixture()
def proxy(stack: Stack) -> Iterator[Proxy]:
    from fewclick_proxy import handler
    from fewclick_proxy.config import ProxyConfig
    from fewclick_proxy.endpoint_client import EndpointClient
    from fewclick_proxy.image_source import ImageSource
    from fewclick_proxy.segment import Segmenter

    cfg = ProxyConfig(
        endpoint_name=ENDPOINT,
        runtime_endpoint_url=stack.runtime.url,
        allowed_buckets=frozenset({BUCKET}),
        max_attempts=1,
        # Generous: the test machine may be starved by a training run.
        read_timeout_s=90.0,
    )
    s3 = boto3.client("s3", region_name="us-east-1")
    stubber = Stubber(s3)
    stubber.activate()
    # The real EndpointClient builds its own boto3 client from the config.
    handler.configure(Segmenter(cfg, ImageSource(cfg, lambda: s3), EndpointClient(cfg)))
    stack.runtime.clear_log()
    yield Proxy(handler, stubber, stack)
    stubber.assert_no_pending_responses()
    handler.configure(Segmenter(cfg, ImageSource(cfg, lambda: s3), EndpointClient(cfg)))


def _mask(body: dict) -> np.ndarray:
    from fewclick_proxy.masks import decode_rle

    return decode_rle(body["mask"])


def _sm_session(proxy: Proxy) -> str:
    """The SageMaker session id the proxy's last call used (or opened)."""
    ex = proxy.stack.runtime.exchanges[-1]
    if ex.session_header == NEW_SESSION:
        return parse_session_header(ex.response_headers[NEW_SESSION_HEADER])[0]
    return str(ex.session_header)


def _clicks_inside(gt: np.ndarray) -> list[dict]:
    """Two positives deep inside the object and a negative at its bounding-box corner
    (outside an ellipse, well inside the relaxed crop box)."""
    import cv2

    dist = cv2.distanceTransform(np.pad(gt.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    ys, xs = np.nonzero(gt)
    y2, x2 = (y + int(ys.min())) // 2, (x + int(xs.min())) // 2
    assert gt[y2, x2]
    return [
        {"x": int(x), "y": int(y), "type": "positive"},
        {"x": int(xs.min()), "y": int(ys.min()), "type": "negative"},
        {"x": int(x2), "y": int(y2), "type": "positive"},
    ]


def test_openapi_route(proxy: Proxy) -> None:
    status, body, _ = call(proxy.handler, "GET", "/v1/openapi.json")
    assert status == 200
    assert "/v1/segment" in body["paths"]
    assert "SegmentRequest" in body["components"]["schemas"]


def test_labeling_session_with_inline_image(proxy: Proxy) -> None:
    rgb, gt = make_scene(300, 400, seed=3)
    extremes = [{"x": x, "y": y} for x, y in extreme_points(gt)]
    status, body, _ = proxy.segment({"image": {"base64": png_base64(rgb)}, "extremePoints": extremes})
    assert status == 200, body
    assert body["mask"]["size"] == [300, 400]
    assert _mask(body).shape == (300, 400)
    assert body["timings"]["totalMs"] >= body["timings"]["modelMs"] > 0
    first = proxy.stack.runtime.exchanges[-1]
    assert first.session_header == NEW_SESSION
    assert "crop" in json.loads(first.request_body)
    assert WireResponse.model_validate_json(first.response_body).cache == "miss"

    # Corrective clicks with only the sessionId: warm, points only, cache hits. The clicks
    # are fixed inside the crop (an untrained network's mask, hovering around 0.5, would
    # send a robot labeler anywhere, including past the crop edge).
    clicks: list[dict] = []
    session = body["sessionId"]
    for click in _clicks_inside(gt):
        clicks.append(click)
        status, body, _ = proxy.segment({"sessionId": session, "extremePoints": extremes, "clicks": clicks})
        assert status == 200, body
        ex = proxy.stack.runtime.exchanges[-1]
        assert ex.session_header not in (None, NEW_SESSION)
        wire_req = json.loads(ex.request_body)
        assert "crop" not in wire_req and len(wire_req["clicks"]) == len(clicks)
        assert len(ex.request_body) <= WARM_CLICK_BUDGET_BYTES
        assert len(ex.response_body) <= WARM_CLICK_BUDGET_BYTES
        assert WireResponse.model_validate_json(ex.response_body).cache == "hit"
        session = body["sessionId"]
        assert _mask(body).shape == gt.shape

    # Extra encodings on request.
    status, body, _ = proxy.segment(
        {"sessionId": session, "extremePoints": extremes, "clicks": clicks, "output": ["rle", "polygon", "png"]}
    )
    assert status == 200
    assert isinstance(body["polygons"], list) and isinstance(body["png"], str)
    for poly in body["polygons"]:
        assert all(0 <= x < 400 and 0 <= y < 300 for x, y in poly)

    # The server evicts the session: the proxy has no pixels -> 404, the UI resends the image.
    assert proxy.stack.model.evict_session(_sm_session(proxy))
    status, err, _ = proxy.segment({"sessionId": session, "extremePoints": extremes, "clicks": clicks})
    assert status == 404 and err["error"]["code"] == "SESSION_EXPIRED"
    status, body, _ = proxy.segment(
        {"image": {"base64": png_base64(rgb)}, "sessionId": session, "extremePoints": extremes, "clicks": clicks}
    )
    assert status == 200, body
    assert proxy.stack.runtime.exchanges[-1].session_header == NEW_SESSION  # rebuilt in a fresh session

    # A click far outside the cached crop needs pixels the proxy does not have.
    far = {"x": 2, "y": 2, "type": "negative"}
    n_calls = len(proxy.stack.runtime.exchanges)
    status, err, _ = proxy.segment({"sessionId": body["sessionId"], "extremePoints": extremes, "clicks": [far]})
    assert status == 404 and err["error"]["code"] == "SESSION_EXPIRED"
    assert len(proxy.stack.runtime.exchanges) == n_calls  # refused without calling the model


def test_s3_session_recovers_transparently(proxy: Proxy) -> None:
    rgb, gt = make_scene(240, 320, seed=5)
    data = png_bytes(rgb)
    key = "images/scene-5.png"
    extremes = [{"x": x, "y": y} for x, y in extreme_points(gt)]
    proxy.expect_s3_read(key, data)
    status, body, _ = proxy.segment({"image": {"s3Uri": f"s3://{BUCKET}/{key}"}, "extremePoints": extremes})
    assert status == 200, body
    session = body["sessionId"]

    # Warm click: no S3 read (the stubber would fail on an unexpected call).
    click = {"x": extremes[0]["x"] + 20, "y": extremes[0]["y"], "type": "positive"}
    status, body, _ = proxy.segment({"sessionId": session, "extremePoints": extremes, "clicks": [click]})
    assert status == 200, body

    # Model-server cache lost: the proxy re-reads S3 and retries in a new session.
    assert proxy.stack.model.evict_session(_sm_session(proxy))
    proxy.expect_s3_read(key, data)
    status, body, _ = proxy.segment({"sessionId": body["sessionId"], "extremePoints": extremes, "clicks": [click]})
    assert status == 200, body
    last_two = proxy.stack.runtime.exchanges[-2:]
    assert last_two[0].status == 424 and last_two[1].session_header == NEW_SESSION

    # SageMaker itself drops the session (past Expires): recovered the same way.
    proxy.stack.runtime.expire_session(_sm_session(proxy))
    proxy.expect_s3_read(key, data)
    status, body, _ = proxy.segment({"sessionId": body["sessionId"], "extremePoints": extremes, "clicks": [click]})
    assert status == 200, body

    # The crop grows: S3 is re-read, the session keeps its id, the endpoint re-encodes.
    proxy.expect_s3_read(key, data)
    sm_before = _sm_session(proxy)
    grow = [click, {"x": 1, "y": 1, "type": "negative"}]
    status, body, _ = proxy.segment({"sessionId": body["sessionId"], "extremePoints": extremes, "clicks": grow})
    assert status == 200, body
    ex = proxy.stack.runtime.exchanges[-1]
    assert "crop" in json.loads(ex.request_body)
    assert ex.session_header != NEW_SESSION and sm_before != NEW_SESSION

    # A request that already spent 15 s of its 26 s (a slow first read, say) does not start a re-read
    # that could outlast API Gateway's 29 s: 503 + Retry-After, and S3 is not called (the stubber
    # would fail on a read it was not given).
    from fewclick_contract.api import ApiError, ErrorCode, SegmentRequest

    assert proxy.stack.model.evict_session(_sm_session(proxy))
    req = SegmentRequest.model_validate({"sessionId": body["sessionId"], "extremePoints": extremes, "clicks": grow})
    with pytest.raises(ApiError) as caught:
        proxy.handler._segmenter.segment(req, started=time.perf_counter() - 15)
    assert caught.value.code == ErrorCode.ENDPOINT_UNAVAILABLE and caught.value.retry_after
    assert "no time left to re-read the image" in caught.value.message


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"image": {"base64": "AAAA"}, "extremePoints": [{"x": 1, "y": 1}] * 3}, 400, "VALIDATION_ERROR"),
        ({"extremePoints": [{"x": 1, "y": 1}] * 4}, 400, "VALIDATION_ERROR"),
        ({"image": {"base64": "###not base64###"}, "extremePoints": [{"x": 1, "y": 1}] * 4}, 400, "IMAGE_UNDECODABLE"),
        ({"image": {"base64": "aGVsbG8gd29ybGQ="}, "extremePoints": [{"x": 1, "y": 1}] * 4}, 400, "IMAGE_UNDECODABLE"),
        (
            {"image": {"s3Uri": "s3://other-bucket/a.png"}, "extremePoints": [{"x": 1, "y": 1}] * 4},
            403,
            "BUCKET_NOT_ALLOWED",
        ),
        (
            {"image": {"s3Uri": f"s3://{BUCKET}/a/../b.png"}, "extremePoints": [{"x": 1, "y": 1}] * 4},
            400,
            "VALIDATION_ERROR",
        ),
        ({"sessionId": "garbage", "extremePoints": [{"x": 1, "y": 1}] * 4}, 400, "VALIDATION_ERROR"),
        (
            {
                "image": {"base64": "AAAA"},
                "extremePoints": [{"x": 1, "y": 1}] * 4,
                "clicks": [{"x": 1, "y": 1, "type": "positive"}] * 101,
            },
            413,
            "TOO_MANY_CLICKS",
        ),
    ],
)
def test_request_errors(proxy: Proxy, body: dict, status: int, code: str) -> None:
    got_status, err, _ = proxy.segment(body)
    assert (got_status, err["error"]["code"]) == (status, code), err
    assert proxy.stack.runtime.exchanges == []


def test_points_outside_image_and_bad_json(proxy: Proxy) -> None:
    rgb, _ = make_scene(100, 120, seed=1)
    pts = [{"x": 10, "y": 10}, {"x": 50, "y": 50}, {"x": 120, "y": 20}, {"x": 30, "y": 90}]
    status, err, _ = proxy.segment({"image": {"base64": png_base64(rgb)}, "extremePoints": pts})
    assert status == 400 and err["error"]["code"] == "POINT_OUTSIDE_IMAGE"
    assert "120x100" in err["error"]["message"]
    status, err, _ = call(proxy.handler, "POST", SEGMENT, raw_body="{not json")
    assert status == 400 and err["error"]["code"] == "INVALID_JSON"
    status, err, _ = call(proxy.handler, "GET", "/v1/nothing")
    assert status == 404 and err["error"]["code"] == "NOT_FOUND"
    assert proxy.stack.runtime.exchanges == []


@pytest.mark.parametrize("where", ["extremePoints", "clicks"])
@pytest.mark.parametrize("huge", [10**309, -(10**309)], ids=["past-max", "past-min"])
def test_a_coordinate_past_float_range_is_outside_the_image_not_a_server_error(
    proxy: Proxy, where: str, huge: int
) -> None:
    """JSON integers are unbounded: one past float64's range is still just a point outside the image."""
    rgb, _ = make_scene(100, 120, seed=1)
    pts = [{"x": 10, "y": 10}, {"x": 50, "y": 50}, {"x": 100, "y": 20}, {"x": 30, "y": 90}]
    clicks = [{"x": 20, "y": 20, "type": "positive"}]
    (pts if where == "extremePoints" else clicks)[0]["x"] = huge
    raw = json.dumps({"image": {"base64": png_base64(rgb)}, "extremePoints": pts, "clicks": clicks})
    status, err, _ = call(proxy.handler, "POST", SEGMENT, raw_body=raw)
    assert (status, err["error"]["code"]) == (400, "POINT_OUTSIDE_IMAGE"), err
    assert err["error"]["message"].startswith(f"{where}[0] (") and "120x100" in err["error"]["message"]
    assert proxy.stack.runtime.exchanges == []


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ({"base64": "abc"}, "image.base64: String should have at least 8 characters"),
        ({"s3Uri": "nope"}, "image.s3Uri: String should match pattern"),
        ({"base64": "abc", "s3Uri": "s3://b/k.png"}, "image: give either base64 or s3Uri, not both"),
        ({}, "image: must be an object with base64 (the image's bytes) or s3Uri"),
        ("AAAA", "image: must be an object with base64 (the image's bytes) or s3Uri"),
    ],
)
def test_a_bad_image_is_reported_against_the_shape_the_caller_sent(proxy: Proxy, image: object, message: str) -> None:
    """Not against the other branch of the union (it said "image.S3Image.s3Uri: Field required" for a
    base64 string that was only too short)."""
    status, err, _ = proxy.segment({"image": image, "extremePoints": [{"x": 1, "y": 1}] * 4})
    assert (status, err["error"]["code"]) == (400, "VALIDATION_ERROR")
    assert err["error"]["message"].startswith(message), err
    assert "S3Image" not in err["error"]["message"] and "Base64Image" not in err["error"]["message"]


def test_a_body_with_a_byte_order_mark_is_told_so(proxy: Proxy) -> None:
    status, err, _ = call(proxy.handler, "POST", SEGMENT, raw_body='\ufeff{"extremePoints": []}')
    assert (status, err["error"]["code"]) == (400, "INVALID_JSON")
    assert "byte-order mark" in err["error"]["message"]


def test_endpoint_down_is_503_with_retry_after(proxy: Proxy, stack: Stack) -> None:
    from fewclick_proxy.config import ProxyConfig
    from fewclick_proxy.endpoint_client import EndpointClient
    from fewclick_proxy.image_source import ImageSource
    from fewclick_proxy.segment import Segmenter

    rgb, gt = make_scene(120, 160, seed=2)
    body = {"image": {"base64": png_base64(rgb)}, "extremePoints": [{"x": x, "y": y} for x, y in extreme_points(gt)]}

    # Nothing listens where the runtime should be.
    cfg = ProxyConfig(
        endpoint_name=ENDPOINT,
        runtime_endpoint_url=f"http://127.0.0.1:{free_port()}",
        max_attempts=1,
        connect_timeout_s=1.0,
    )
    proxy.handler.configure(Segmenter(cfg, ImageSource(cfg), EndpointClient(cfg)))
    status, err, headers = proxy.segment(body)
    assert status == 503 and err["error"]["code"] == "ENDPOINT_UNAVAILABLE"
    assert int(headers["Retry-After"]) > 0

    # The runtime is up but its model container is gone.
    stack.runtime.set_model_url(f"http://127.0.0.1:{free_port()}")
    try:
        cfg = ProxyConfig(endpoint_name=ENDPOINT, runtime_endpoint_url=stack.runtime.url, max_attempts=1)
        proxy.handler.configure(Segmenter(cfg, ImageSource(cfg), EndpointClient(cfg)))
        status, err, headers = proxy.segment(body)
        assert status == 503 and err["error"]["code"] == "ENDPOINT_UNAVAILABLE"
        assert int(headers["Retry-After"]) > 0
    finally:
        stack.runtime.set_model_url(stack.model.url)


def test_the_request_budget_ends_before_the_lambda_does(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """A function timeout below API Gateway's 29 s must not let Lambda kill a request mid-call (the
    caller would get API Gateway's bare 502): the budget is what the context has left, less a margin."""
    from fewclick_proxy.segment import Segmenter

    from .helpers import LambdaContext, rest_event

    class ShortLived(LambdaContext):
        def __init__(self, remaining_ms: int) -> None:
            super().__init__()
            self.remaining_ms = remaining_ms

        def get_remaining_time_in_millis(self) -> int:
            return self.remaining_ms

    rgb, gt = make_scene(120, 160, seed=2)
    body = {"image": {"base64": png_base64(rgb)}, "extremePoints": [{"x": x, "y": y} for x, y in extreme_points(gt)]}
    out = proxy.handler.lambda_handler(rest_event("POST", SEGMENT, body), ShortLived(500))
    err = json.loads(out["body"])["error"]
    assert (out["statusCode"], err["code"]) == (503, "ENDPOINT_UNAVAILABLE"), err
    assert "too little of this call's time is left" in err["message"]
    assert proxy.stack.runtime.exchanges == []

    budgets: list[float] = []
    segment = Segmenter.segment

    def noted(self: Segmenter, req: object, started: float | None = None, budget_s: float = 26.0) -> object:
        budgets.append(budget_s)
        return segment(self, req, started, budget_s)  # type: ignore[arg-type]

    monkeypatch.setattr(Segmenter, "segment", noted)
    out = proxy.handler.lambda_handler(rest_event("POST", SEGMENT, body), ShortLived(6_000))
    assert out["statusCode"] == 200, out["body"]
    assert 4.9 < budgets[-1] <= 5.1  # 6 s left, less the 1 s to answer
    assert proxy.handler.lambda_handler(rest_event("POST", SEGMENT, body), ShortLived(60_000))["statusCode"] == 200
    assert budgets[-1] > 26  # then API Gateway's 29 s is the bound (the segmenter caps at its 26 s)


def test_served_masks_honor_every_click_where_it_was_made(proxy: Proxy) -> None:
    """Click consistency runs in the proxy: positives inside, negatives outside, the
    extreme points on the edge, whatever the network made of them."""
    from fewclick_model.evaluate import click_respected
    from fewclick_model.simulator import Click

    rgb, gt = make_scene(300, 400, seed=5)
    points = extreme_points(gt)
    extremes = [{"x": x, "y": y} for x, y in points]
    ys, xs = np.nonzero(gt)
    # A positive on background just outside the object's box corner: the network has
    # every reason to leave it out, the labeler said otherwise.
    clicks = [*_clicks_inside(gt), {"x": int(xs.max()) + 4, "y": int(ys.max()) + 4, "type": "positive"}]
    status, body, _ = proxy.segment({"image": {"base64": png_base64(rgb)}, "extremePoints": extremes, "clicks": clicks})
    assert status == 200, body
    mask = _mask(body)
    for c in clicks:
        assert click_respected(Click(c["x"], c["y"], c["type"]), mask), c
    assert body["missedClicks"] == []
    for x, y in points:
        assert click_respected(Click(int(x), int(y), "boundary"), mask), (x, y)


def _emf_values(printed: str, name: str) -> list[float]:
    """The values of metric ``name`` in the EMF lines Powertools printed."""
    values = []
    for line in printed.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            record = json.loads(line)
            if name in record:
                values.append(float(record[name][0] if isinstance(record[name], list) else record[name]))
    return values


def test_the_answer_names_the_clicks_its_mask_does_not_follow(proxy: Proxy, capsys: pytest.CaptureFixture) -> None:
    """A boundary click deep inside the object (a labeler's slip) is far from any edge the network
    draws; the answer says so by index, and every click it does not name is followed by the mask.
    The proxy's NewestClickMissed metric (the dashboard's share of clicks not followed) says 1."""
    import cv2

    rgb, gt = make_scene(300, 400, seed=5)
    extremes = [{"x": x, "y": y} for x, y in extreme_points(gt)]
    dist = cv2.distanceTransform(gt.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    assert dist[y, x] > 20
    clicks = [*_clicks_inside(gt), {"x": int(x), "y": int(y), "type": "boundary"}]
    status, body, _ = proxy.segment({"image": {"base64": png_base64(rgb)}, "extremePoints": extremes, "clicks": clicks})
    assert status == 200, body
    mask = _mask(body)
    # Independent of the contract's window test: distance to the mask's inner edge over the whole image
    # (one-sided, frame not counted: a slightly looser rule, so the clicks here sit far from the 3 px limit).
    edge = mask ^ cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    edge_distance = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    followed = [
        bool(mask[c["y"], c["x"]])
        if c["type"] == "positive"
        else not mask[c["y"], c["x"]]
        if c["type"] == "negative"
        else edge_distance[c["y"], c["x"]] <= 3.0
        for c in clicks
    ]
    assert body["missedClicks"] == [i for i, ok in enumerate(followed) if not ok] == [3]
    assert _emf_values(capsys.readouterr().out, "NewestClickMissed") == [1.0]

    # Without the slip every click is followed, and the metric says 0; no clicks, no metric.
    status, body, _ = proxy.segment({"sessionId": body["sessionId"], "extremePoints": extremes, "clicks": clicks[:3]})
    assert status == 200 and body["missedClicks"] == []
    status, body, _ = proxy.segment({"sessionId": body["sessionId"], "extremePoints": extremes})
    assert status == 200 and body["missedClicks"] == []
    assert _emf_values(capsys.readouterr().out, "NewestClickMissed") == [0.0]


def test_a_large_object_travels_at_twice_the_network_side_and_a_small_one_does_not(proxy: Proxy) -> None:
    from fewclick_contract.edge_refine import REFINE_FACTOR
    from fewclick_contract.wire import DEFAULT_INPUT_SIZE, decode_probabilities, image_dimensions

    fine = DEFAULT_INPUT_SIZE * REFINE_FACTOR
    rgb, gt = make_scene(900, 1200, seed=2)
    ys, xs = np.nonzero(gt)
    assert min(np.ptp(xs), np.ptp(ys)) > DEFAULT_INPUT_SIZE  # the scene really is a large object
    extremes = [{"x": x, "y": y} for x, y in extreme_points(gt)]
    status, body, _ = proxy.segment({"image": {"base64": png_base64(rgb)}, "extremePoints": extremes})
    assert status == 200, body
    cold = proxy.stack.runtime.exchanges[-1]
    wire_req = json.loads(cold.request_body)
    assert wire_req["size"] == fine
    assert image_dimensions(base64.b64decode(wire_req["crop"]["data"])) == (fine, fine)
    answer = WireResponse.model_validate_json(cold.response_body)
    assert decode_probabilities(answer.probabilities, fine).shape == (fine, fine)
    # The refined mask still finds the object, at full resolution.
    mask = _mask(body)
    assert mask.shape == gt.shape
    assert (mask & gt).sum() / (mask | gt).sum() > 0.5

    # A warm click stays within the click budget both ways at the finer side.
    click = _clicks_inside(gt)[:1]
    status, body, _ = proxy.segment({"sessionId": body["sessionId"], "extremePoints": extremes, "clicks": click})
    assert status == 200, body
    warm = proxy.stack.runtime.exchanges[-1]
    assert json.loads(warm.request_body)["size"] == fine
    assert len(warm.request_body) <= WARM_CLICK_BUDGET_BYTES
    assert len(warm.response_body) <= WARM_CLICK_BUDGET_BYTES

    small_rgb, small_gt = make_scene(300, 400, seed=3)
    small_extremes = [{"x": x, "y": y} for x, y in extreme_points(small_gt)]
    status, body, _ = proxy.segment({"image": {"base64": png_base64(small_rgb)}, "extremePoints": small_extremes})
    assert status == 200, body
    assert json.loads(proxy.stack.runtime.exchanges[-1].request_body)["size"] == DEFAULT_INPUT_SIZE


def test_the_stand_in_run_by_fewclick_serve_keeps_no_bodies(stack: Stack) -> None:
    """`fewclick serve` runs the runtime stand-in for hours: it must not keep every request's pixels."""
    import urllib.request

    from fewclick.local.serve import ENDPOINT_NAME, RuntimeStandIn
    from fewclick_contract.wire import WirePoint, WireRequest, dump_request, encode_crop

    quiet = RuntimeStandIn(stack.model.url)  # exactly what `fewclick serve` starts
    try:
        rgb, _ = make_scene(256, 256, seed=3)
        points = [WirePoint(x=128, y=20), WirePoint(x=20, y=128), WirePoint(x=128, y=236), WirePoint(x=236, y=128)]
        body = dump_request(WireRequest(cropId="quiet-stub-1", size=256, crop=encode_crop(rgb), extremePoints=points))
        req = urllib.request.Request(
            f"{quiet.url}/endpoints/{ENDPOINT_NAME}/invocations",
            data=body,
            headers={"Content-Type": "application/json", "X-Amzn-SageMaker-Session-Id": NEW_SESSION},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200 and b"probabilities" in resp.read()
        assert quiet._handle.exchanges == []
    finally:
        quiet.stop()


@pytest.mark.parametrize("header", ["-1", "abc", "1e3", "²"])
def test_the_stand_in_refuses_a_content_length_that_is_no_byte_count(stack: Stack, header: str) -> None:
    """A bad header is a 400 ValidationError; it was a bare int() (500 and a traceback), and a
    negative count read the stream to its end past the payload limit. The stand-in serves on."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(stack.runtime.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("POST", f"/endpoints/{ENDPOINT}/invocations")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", header)
        conn.endheaders()
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 400
    assert resp.getheader("x-amzn-ErrorType", "").startswith("ValidationError:")
    assert "Content-Length" in body["message"]
    # The next caller is served as usual (here: told its empty request is no model input).
    client = stack.runtime.client()
    with pytest.raises(client.exceptions.ModelError):
        client.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}", ContentType="application/json")
