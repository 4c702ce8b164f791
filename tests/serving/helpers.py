"""Test helpers: API Gateway REST proxy events, a Lambda context, a tiny fake predictor."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fewclick_contract.edge_refine import refine_probabilities


def rest_event(
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API (v1) proxy-integration event, as the deployed stage sends it."""
    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    hdrs = {"Content-Type": "application/json", "Host": "api.example.test", **(headers or {})}
    request_id = str(uuid.uuid4())
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": request_id,
            "accountId": "123456789012",
            "apiId": "testapi",
            "domainName": "api.example.test",
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
        },
        "body": text,
        "isBase64Encoded": False,
    }


@dataclass
class LambdaContext:
    function_name: str = "fewclick-proxy"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:fewclick-proxy"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/fewclick-proxy"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def call(handler: Any, method: str, path: str, body: Any = None, raw_body: str | None = None) -> tuple[int, Any, dict]:
    """Invoke the real lambda_handler; returns (status, parsed JSON body, headers)."""
    out = handler.lambda_handler(rest_event(method, path, body, raw_body=raw_body), LambdaContext())
    headers = out.get("headers") or {}
    for k, v in (out.get("multiValueHeaders") or {}).items():
        headers.setdefault(k, v[0] if isinstance(v, list) else v)
    return int(out["statusCode"]), json.loads(out["body"]) if out.get("body") else None, headers


def png_base64(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def png_bytes(rgb: np.ndarray) -> bytes:
    return base64.b64decode(png_base64(rgb))


class FakePredictor:
    """The predictor interface with no network: a filled ellipse through the boundary
    points, grown by positive and cut by negative clicks. Counts its calls. ``delay_s``
    makes each encode and predict call slow (to fill a model server's queue).

    Shared by the serving tests and the hardening mini stack (tests/hardening/support.py)."""

    def __init__(self, input_size: int = 64, model_version: str = "fake-1", delay_s: float = 0.0) -> None:
        self.input_size = input_size
        self.model_version = model_version
        self.delay_s = delay_s
        self.encodes = 0
        self.predicts = 0

    def encode(self, crop_rgb: np.ndarray) -> np.ndarray:
        assert crop_rgb.shape == (self.input_size, self.input_size, 3), crop_rgb.shape
        self.encodes += 1
        time.sleep(self.delay_s)
        return crop_rgb.astype(np.float32).mean(axis=2)

    def predict(self, feats: np.ndarray, clicks: Sequence[Any], previous: np.ndarray | None = None) -> np.ndarray:
        self.predicts += 1
        time.sleep(self.delay_s)
        s = self.input_size
        prob = np.zeros((s, s), np.float32)
        pts = np.array([(c.x, c.y) for c in clicks if c.kind == "boundary"], np.float32)
        if len(pts):
            (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
            centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
            axes = (max(1, round((x1 - x0) / 2)), max(1, round((y1 - y0) / 2)))
            cv2.ellipse(prob, centre, axes, 0, 0, 360, 0.9, -1)
        for c in clicks:
            if c.kind != "boundary":
                cv2.circle(prob, (round(c.x), round(c.y)), 3, 0.9 if c.kind == "positive" else 0.05, -1)
        return prob

    def predict_sequence(
        self, feats: np.ndarray, extreme_points: Sequence[Any], corrective_clicks: Sequence[Any], cache: dict
    ) -> np.ndarray:
        key = tuple(extreme_points) + tuple(corrective_clicks)
        previous = None
        for k in range(len(corrective_clicks) + 1):
            prefix = tuple(extreme_points) + tuple(corrective_clicks[:k])
            if prefix in cache:
                previous = cache[prefix]
                continue
            previous = self.predict(feats, prefix, previous)
            cache[prefix] = previous
        assert previous is not None and key in cache
        return previous

    def refine_edges(self, prob: np.ndarray, guide: np.ndarray) -> np.ndarray:
        return refine_probabilities(prob, guide)

    def describe(self) -> str:
        return "no network (a fake)"
