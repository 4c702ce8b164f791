"""Hostile and broken requests against the running local stack, each with its documented 4xx.

Every case checks the status, the error code, that the message says what is wrong, and that the stack
is still up afterwards: a warm click on a session opened before the case still gets its mask.
"""

from __future__ import annotations

import http.client
import json
import resource
import socket
from dataclasses import dataclass
from typing import Any

import pytest

from .support import (
    ALLOWED_BUCKET,
    HEIGHT,
    PNG,
    POINTS,
    RGB,
    SEGMENT,
    TOKEN,
    WIDTH,
    HardeningStack,
    Reply,
    b64,
    call,
    decode_session_token,
    encode,
    png_bomb,
    session_token,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

JPEG = encode(RGB, ".jpg")


def body_with(image: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"extremePoints": POINTS, **fields}
    if image is not None:
        body["image"] = image
    return body


def inline(data: bytes) -> dict[str, str]:
    return {"image": {"base64": b64(data)}}


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    code: str
    says: str  # the message must contain this (case-insensitive): it names what is wrong
    body: Any = None
    raw: bytes | None = None


GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"  # noqa: E501
# A JPEG whose start-of-frame segment is garbage: the header itself is unreadable.
JPEG_BAD_HEADER = JPEG[:2] + b"\xff\xc0\x00\x11" + bytes(range(200, 255)) + JPEG[-200:]
# A PNG whose IHDR chunk fails its CRC (one byte of the width flipped).
PNG_BAD_CRC = PNG[:18] + bytes([PNG[18] ^ 0xFF]) + PNG[19:]

CASES = [
    # --- not JSON, or not the right JSON ---
    Case("malformed JSON", 400, "INVALID_JSON", "not valid JSON", raw=b'{"extremePoints": [,'),
    Case("empty body", 400, "INVALID_JSON", "empty", raw=b""),
    Case("not UTF-8", 400, "INVALID_JSON", "UTF-8", raw=b'{"x": "\xff\xfe\xfa"}'),
    Case("nested 100k deep", 400, "INVALID_JSON", "nested too deeply", raw=b"[" * 100_000 + b"]" * 100_000),
    Case("a JSON array", 400, "VALIDATION_ERROR", "valid dictionary", body=[1, 2, 3]),
    Case("unknown field", 400, "VALIDATION_ERROR", "extrepoints", body={**body_with(**inline(PNG)), "extrePoints": []}),
    Case("neither image nor session", 400, "VALIDATION_ERROR", "either image or sessionId", body=body_with()),
    # --- wrong types ---
    Case(
        "x as a string",
        400,
        "VALIDATION_ERROR",
        "extremePoints.0.x",
        body=body_with(**inline(PNG)) | {"extremePoints": [{"x": "12", "y": 5}, *POINTS[1:]]},
    ),
    Case(
        "x as a boolean",
        400,
        "VALIDATION_ERROR",
        "extremePoints.0.x",
        body=body_with(**inline(PNG)) | {"extremePoints": [{"x": True, "y": 5}, *POINTS[1:]]},
    ),
    Case(
        "x fractional",
        400,
        "VALIDATION_ERROR",
        "extremePoints.0.x",
        body=body_with(**inline(PNG)) | {"extremePoints": [{"x": 1.5, "y": 5}, *POINTS[1:]]},
    ),
    Case("clicks as an object", 400, "VALIDATION_ERROR", "clicks", body=body_with(**inline(PNG), clicks={"x": 1})),
    Case(
        "unknown click type",
        400,
        "VALIDATION_ERROR",
        "clicks.0.type",
        body=body_with(**inline(PNG), clicks=[{"x": 1, "y": 1, "type": "middle"}]),
    ),
    Case("image as a number", 400, "VALIDATION_ERROR", "image", body=body_with() | {"image": 42}),
    Case("output not a list", 400, "VALIDATION_ERROR", "output", body=body_with(**inline(PNG), output="rle")),
    # --- points ---
    Case(
        "3 extreme points",
        400,
        "VALIDATION_ERROR",
        "at least 4",
        body=body_with(**inline(PNG)) | {"extremePoints": POINTS[:3]},
    ),
    Case(
        "5 extreme points",
        400,
        "VALIDATION_ERROR",
        "at most 4",
        body=body_with(**inline(PNG)) | {"extremePoints": [*POINTS, POINTS[0]]},
    ),
    Case(
        "point right of the image",
        400,
        "POINT_OUTSIDE_IMAGE",
        f"extremePoints[1] ({WIDTH}, ",
        body=body_with(**inline(PNG)) | {"extremePoints": [POINTS[0], {"x": WIDTH, "y": 5}, *POINTS[2:]]},
    ),
    Case(
        "negative point",
        400,
        "POINT_OUTSIDE_IMAGE",
        "extremePoints[0] (-1, 5) is outside",
        body=body_with(**inline(PNG)) | {"extremePoints": [{"x": -1, "y": 5}, *POINTS[1:]]},
    ),
    Case(
        "huge coordinate",
        400,
        "POINT_OUTSIDE_IMAGE",
        "outside",
        body=body_with(**inline(PNG)) | {"extremePoints": [{"x": 10**30, "y": 5}, *POINTS[1:]]},
    ),
    Case(
        "click outside",
        400,
        "POINT_OUTSIDE_IMAGE",
        "clicks[0]",
        body=body_with(**inline(PNG), clicks=[{"x": 5, "y": HEIGHT + 7, "type": "positive"}]),
    ),
    Case(
        "10,000 clicks",
        413,
        "TOO_MANY_CLICKS",
        "at most 100",
        body=body_with(**inline(PNG), clicks=[{"x": 1, "y": 1, "type": "positive"}] * 10_000),
    ),
    # --- images that are not (readable, allowed, sane) images ---
    Case("truncated PNG", 400, "IMAGE_UNDECODABLE", "PNG or JPEG", body=body_with(**inline(PNG[: len(PNG) // 2]))),
    Case("PNG with a bad CRC", 400, "IMAGE_UNDECODABLE", "PNG or JPEG", body=body_with(**inline(PNG_BAD_CRC))),
    Case("truncated JPEG", 400, "IMAGE_UNDECODABLE", "PNG or JPEG", body=body_with(**inline(JPEG[: len(JPEG) // 3]))),
    Case("corrupt JPEG header", 400, "IMAGE_UNDECODABLE", "PNG or JPEG", body=body_with(**inline(JPEG_BAD_HEADER))),
    Case("a GIF", 400, "IMAGE_UNDECODABLE", "PNG or JPEG", body=body_with(**inline(GIF))),
    Case("a text file", 400, "IMAGE_UNDECODABLE", "PNG or JPEG", body=body_with(**inline(b"name,value\nx,1\n" * 20))),
    Case(
        "not base64", 400, "IMAGE_UNDECODABLE", "not valid base64", body=body_with({"base64": "@@@@ not base64 @@@@"})
    ),
    Case(
        "50,000 x 50,000 PNG bomb",
        413,
        "IMAGE_TOO_LARGE",
        "too large",
        body=body_with(**inline(png_bomb(50_000, 50_000))),
    ),
    Case(
        "inline image over the limit",
        413,
        "IMAGE_TOO_LARGE",
        "limited to",
        body=body_with({"base64": "A" * 6_200_000}),
    ),
    # --- S3 references: allow-list and path tricks ---
    Case(
        "bucket not allowed",
        403,
        "BUCKET_NOT_ALLOWED",
        "'other-bucket' is not allowed",
        body=body_with({"s3Uri": "s3://other-bucket/images/scene.png"}),
    ),
    Case(
        "allowed bucket as a prefix",
        403,
        "BUCKET_NOT_ALLOWED",
        f"'{ALLOWED_BUCKET}.evil' is not allowed",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}.evil/images/scene.png"}),
    ),
    Case(
        "dot-dot out of the bucket",
        400,
        "VALIDATION_ERROR",
        "not a plain object key",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}/../other-bucket/x.png"}),
    ),
    Case(
        "empty path segment",
        400,
        "VALIDATION_ERROR",
        "not a plain object key",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}//etc/passwd"}),
    ),
    Case(
        "query string",
        400,
        "VALIDATION_ERROR",
        "not a plain object key",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}/images/scene.png?versionId=1"}),
    ),
    Case(
        "control character",
        400,
        "VALIDATION_ERROR",
        "not a plain object key",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}/images/\x00scene.png"}),
    ),
    Case(
        "upper-case bucket",
        400,
        "VALIDATION_ERROR",
        "s3Uri",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET.upper()}/images/scene.png"}),
    ),
    Case(
        "percent-encoded dot-dot",
        400,
        "IMAGE_NOT_FOUND",
        "no object at",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}/%2e%2e/other-bucket/x.png"}),
    ),
    Case(
        "S3 object that is not an image",
        400,
        "IMAGE_UNDECODABLE",
        "PNG or JPEG",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}/images/not-an-image.png"}),
    ),
    Case(
        "S3 object the API may not read",
        403,
        "ACCESS_DENIED",
        "may not read",
        body=body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}/private/secret.png"}),
    ),
    # --- forged session ids (unsigned tokens are readable and writable by any client) ---
    Case("garbage session id", 400, "VALIDATION_ERROR", "sessionId", body=body_with(sessionId="garbage")),
    Case(
        "session claiming a 10^5 x 10^5 image",
        400,
        "VALIDATION_ERROR",
        "sessionId",
        body=body_with(sessionId=session_token({"sm": "a1", "img": "x", "h": 10**5, "w": 10**5, "crop": "c"})),
    ),
    Case(
        "session id with CR/LF",
        400,
        "VALIDATION_ERROR",
        "sessionId",
        body=body_with(sessionId=session_token({"sm": "a\r\nX-Evil: 1", "img": "x", "h": 9, "w": 9, "crop": "c"})),
    ),
]


@pytest.fixture(scope="module")
def warm_session(session_stack: HardeningStack) -> dict[str, Any]:
    """A live session and its click request: the follow-up that proves the stack is still up."""
    session_stack.reconfigure()
    first = call(session_stack.url, "POST", SEGMENT, body_with(**inline(PNG)))
    assert first.status == 200, first
    click = {
        "sessionId": first.json["sessionId"],
        "extremePoints": POINTS,
        "clicks": [{"x": WIDTH // 2, "y": HEIGHT // 2, "type": "positive"}],
    }
    return click


def assert_still_up(stack: HardeningStack, warm_click: dict[str, Any]) -> None:
    reply = call(stack.url, "POST", SEGMENT, warm_click)
    assert reply.status == 200, f"the stack did not answer a valid click after the bad request: {reply}"
    assert reply.json["mask"]["size"] == [HEIGHT, WIDTH]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_gets_its_documented_error(
    case: Case, hstack: HardeningStack, warm_session: dict[str, Any]
) -> None:
    reply = call(hstack.url, "POST", SEGMENT, case.body, raw=case.raw)
    assert (reply.status, reply.code) == (case.status, case.code), reply
    assert case.says.lower() in reply.message.lower(), reply
    assert reply.headers["content-type"].startswith("application/json")
    assert "Traceback" not in reply.raw.decode("utf-8", "replace")
    assert_still_up(hstack, warm_session)


def test_bomb_is_refused_without_allocating(hstack: HardeningStack, warm_session: dict[str, Any]) -> None:
    # The proxy runs in this process: its peak RSS must not jump by the bomb's 2.5 GB of pixels.
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reply = call(hstack.url, "POST", SEGMENT, body_with(**inline(png_bomb(50_000, 50_000))))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024
    assert reply.status == 413 and reply.code == "IMAGE_TOO_LARGE", reply
    assert "50000x50000" in reply.message or "too large" in reply.message
    assert reply.elapsed_s < 5.0
    assert grown_mb < 200, f"peak RSS grew by {grown_mb:.0f} MB for a refused image"
    assert_still_up(hstack, warm_session)


def test_path_tricks_never_reach_another_bucket(hstack: HardeningStack, warm_session: dict[str, Any]) -> None:
    hstack.s3.requests.clear()
    for uri in (
        "s3://other-bucket/x.png",
        f"s3://{ALLOWED_BUCKET}.evil/x.png",
        f"s3://{ALLOWED_BUCKET}/../other-bucket/x.png",
        f"s3://{ALLOWED_BUCKET}/%2e%2e/other-bucket/x.png",
        f"s3://{ALLOWED_BUCKET}/a/%2F..%2F/x.png",
    ):
        reply = call(hstack.url, "POST", SEGMENT, body_with({"s3Uri": uri}))
        assert 400 <= reply.status < 500, (uri, reply)
    # Only the allowed bucket was ever asked for, and encoded characters were asked for literally.
    assert {bucket for _, bucket, _ in hstack.s3.requests} <= {ALLOWED_BUCKET}
    assert ("GET", ALLOWED_BUCKET, "%2e%2e/other-bucket/x.png") in hstack.s3.requests
    assert_still_up(hstack, warm_session)


def test_s3_image_works(hstack: HardeningStack) -> None:
    reply = call(hstack.url, "POST", SEGMENT, body_with({"s3Uri": f"s3://{ALLOWED_BUCKET}/images/scene.png"}))
    assert reply.status == 200, reply
    assert reply.json["mask"]["size"] == [HEIGHT, WIDTH]


def test_session_token_with_inflated_size_is_refused(hstack: HardeningStack, warm_session: dict[str, Any]) -> None:
    # A real session whose token claims a 100x larger image: without the check the proxy would paste the
    # model's answer into a (100 H) x (100 W) array for a request that otherwise looks warm.
    fields = decode_session_token(warm_session["sessionId"])
    forged = session_token({**fields, "h": fields["h"] * 1000, "w": fields["w"] * 1000})
    reply = call(hstack.url, "POST", SEGMENT, {**warm_session, "sessionId": forged})
    assert (reply.status, reply.code) == (400, "VALIDATION_ERROR"), reply
    assert_still_up(hstack, warm_session)


def test_oversized_body_is_refused_before_it_is_read(hstack: HardeningStack, warm_session: dict[str, Any]) -> None:
    # 7 MB announced (Lambda's limit is 6 MB): the gateway answers 413 from the headers and drops the
    # connection, so the client never has to upload the rest.
    announced = 7 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", hstack.server.port), timeout=30) as sock:
        sock.sendall(
            f"POST {SEGMENT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {announced}\r\n\r\n".encode()
            + b'{"image": {"base64": "'
            + b"A" * 65536
        )
        chunks = []
        # The gateway ends its side after the answer and drops the rest of the upload until this side
        # closes (lingering), so the answer arrives whole and without a reset.
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        head = b"".join(chunks).decode("latin-1")
    status_line, _, rest = head.partition("\r\n")
    assert " 413 " in status_line, head
    assert "PAYLOAD_TOO_LARGE" in rest and f"limit is {6 * 1024 * 1024} bytes" in rest
    assert_still_up(hstack, warm_session)


def test_unknown_methods_get_json_405(hstack: HardeningStack) -> None:
    for method in ("DELETE", "PATCH", "TRACE", "GET"):
        reply: Reply = call(hstack.url, method, SEGMENT)
        assert reply.status == 405, (method, reply)
        assert reply.code == "METHOD_NOT_ALLOWED" and reply.headers.get("allow") == "POST"


@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        ("application/x-www-form-urlencoded", "not 'application/x-www-form-urlencoded'"),  # curl -d alone
        ("text/plain;charset=UTF-8", "not 'text/plain'"),  # a cross-site form post, no preflight
        ("application/json; charset=utf-16", "not charset 'utf-16'"),
    ],
)
def test_a_body_not_declared_as_json_gets_415(
    content_type: str, says: str, hstack: HardeningStack, warm_session: dict[str, Any]
) -> None:
    # The request itself is a valid click: only its declared type is wrong.
    reply = call(hstack.url, "POST", SEGMENT, warm_session, headers={"Content-Type": content_type})
    assert (reply.status, reply.code) == (415, "UNSUPPORTED_MEDIA_TYPE"), reply
    assert says in reply.message and "application/json" in reply.message, reply
    assert_still_up(hstack, warm_session)


def test_a_body_without_a_content_type_is_taken_as_json(hstack: HardeningStack, warm_session: dict[str, Any]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", hstack.server.port, timeout=120)
    try:
        body = json.dumps(warm_session).encode()
        conn.putrequest("POST", SEGMENT)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert json.loads(resp.read())["mask"]["size"] == [HEIGHT, WIDTH]
    finally:
        conn.close()
