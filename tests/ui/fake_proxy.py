"""A stand-in for the proxy Lambda that fails on demand, for the UI's error-path tests.

The real stack never expires a session or goes down when a test asks it to; this handler speaks the
same API (fewclick_contract.api) and can be told to. Its mask is the ellipse inscribed in the extreme
points' box, with disks added/removed at positive/negative clicks: enough to see masks change. It
ignores boundary clicks, so one off the ellipse's edge comes back in `missedClicks` (the real
proxy's test, `fewclick_contract.click_respect`).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import deque
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from fewclick_contract.api import OPENAPI_PATH, SegmentRequest, openapi_schema
from fewclick_contract.click_respect import missed_clicks


def _response(status: int, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(payload),
        "isBase64Encoded": False,
    }


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return _response(status, {"error": {"code": code, "message": message}}, headers)


class FakeProxy:
    def __init__(self) -> None:
        self.sessions: dict[str, tuple[int, int]] = {}
        # Responses to give instead of a mask, oldest first: (status, code, headers).
        self.failures: deque[tuple[int, str, dict[str, str]]] = deque()
        self.expire_next_session_request = False
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["path"] == OPENAPI_PATH:
            return _response(200, openapi_schema())
        body = json.loads(event["body"] or "{}")
        with self._lock:
            self.requests.append(body)
            if self.failures:
                status, code, headers = self.failures.popleft()
                return _error(status, code, "injected by the test", headers)
            if self.expire_next_session_request and body.get("sessionId"):
                self.expire_next_session_request = False
                self.sessions.pop(body["sessionId"], None)
                return _error(404, "SESSION_EXPIRED", "session expired; send the image again")
        request = SegmentRequest.model_validate(body)
        if request.image is not None:
            data = base64.b64decode(getattr(request.image, "base64", ""))
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                return _error(400, "IMAGE_UNDECODABLE", "not a PNG/JPEG")
            size = (int(image.shape[0]), int(image.shape[1]))
            session_id = str(uuid.uuid4())
            self.sessions[session_id] = size
        else:
            assert request.sessionId is not None
            session_id = request.sessionId
            if session_id not in self.sessions:
                return _error(404, "SESSION_EXPIRED", "unknown session; send the image again")
            size = self.sessions[session_id]
        height, width = size
        mask = np.zeros((height, width), np.uint8)
        xs = [p.x for p in request.extremePoints]
        ys = [p.y for p in request.extremePoints]
        center = ((min(xs) + max(xs)) // 2, (min(ys) + max(ys)) // 2)
        axes = (max(1, (max(xs) - min(xs)) // 2), max(1, (max(ys) - min(ys)) // 2))
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, -1)
        radius = max(3, min(axes) // 4)
        for click in request.clicks:
            if click.type == "positive":
                cv2.circle(mask, (click.x, click.y), radius, 1, -1)
            elif click.type == "negative":
                cv2.circle(mask, (click.x, click.y), radius, 0, -1)
        rle = mask_utils.encode(np.asfortranarray(mask))
        return _response(
            200,
            {
                "sessionId": session_id,
                "mask": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "missedClicks": missed_clicks(mask.astype(bool), [(c.x, c.y, c.type) for c in request.clicks]),
                "modelVersion": "fake-ellipse",
                "timings": {"modelMs": 1.0, "totalMs": 2.0},
            },
        )
