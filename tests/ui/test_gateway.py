"""HTTP-level tests of the local API Gateway stand-in and the local labeling API (no browser, no model)."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fewclick.local import serve
from fewclick.local.gateway import TokenBucket, build_proxy_event
from fewclick.local.serve import LocalStack, ServeOptions

from .conftest import make_known_object
from .fake_proxy import FakeProxy

TOKEN = "test-token-123"


@pytest.fixture
def fake() -> FakeProxy:
    return FakeProxy()


def _stack(tmp_path: Path, fake: FakeProxy, **overrides: Any) -> LocalStack:
    images = tmp_path / "images"
    if not images.exists():
        make_known_object(images / "a.png")
    options = ServeOptions(port=0, images=images, out=tmp_path / "labels", token=TOKEN, **overrides)
    return LocalStack(options, lambda_handler=fake)


@pytest.fixture
def stack(tmp_path: Path, fake: FakeProxy) -> Iterator[LocalStack]:
    with _stack(tmp_path, fake) as running:
        yield running


def request(
    stack: LocalStack,
    method: str,
    path: str,
    body: bytes | str | None = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, str):
        body = body.encode()
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=all_headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def segment_body(image_path: Path) -> str:
    import base64

    return json.dumps(
        {
            "image": {"base64": base64.b64encode(image_path.read_bytes()).decode()},
            "extremePoints": [{"x": 90, "y": 120}, {"x": 250, "y": 120}, {"x": 170, "y": 70}, {"x": 170, "y": 175}],
        }
    )


# --- auth ---


def test_api_needs_the_bearer_token(stack: LocalStack, tmp_path: Path) -> None:
    body = segment_body(tmp_path / "images" / "a.png")
    status, headers, data = request(stack, "POST", "/v1/segment", body, token=None)
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert json.loads(data)["error"]["code"] == "UNAUTHORIZED"
    status, _, data = request(stack, "POST", "/v1/segment", body, token="wrong")
    assert status == 403 and json.loads(data)["error"]["code"] == "ACCESS_DENIED"
    status, _, data = request(stack, "POST", "/v1/segment", body, token="é")  # a Latin-1 header
    assert status == 403 and json.loads(data)["error"]["code"] == "ACCESS_DENIED"
    for path in ("/local/images", "/local/config", "/local/images/a.png", "/local/labels/a.png"):
        assert request(stack, "GET", path, token=None)[0] == 401, path
    status, _, data = request(stack, "POST", "/v1/segment", body)
    assert status == 200, data
    assert json.loads(data)["mask"]["size"] == [240, 320]


def test_static_ui_is_public_and_locked_down(stack: LocalStack) -> None:
    # The page must load without a token (it reads the token from the URL fragment), but may only run
    # its own scripts.
    status, headers, data = request(stack, "GET", "/", token=None)
    assert status == 200 and b"labeling" in data.lower()
    assert "script-src 'self'" in headers["content-security-policy"]
    status, headers, _ = request(stack, "GET", "/labeling-core.js", token=None)
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    for path in ("/../serve.py", "/%2e%2e/serve.py", "/nothing.js", "/labels.py"):
        assert request(stack, "GET", path, token=None)[0] == 404, path


def test_cors_preflight_and_headers(stack: LocalStack) -> None:
    status, headers, _ = request(
        stack,
        "OPTIONS",
        "/v1/segment",
        token=None,
        headers={"Origin": "https://labeling.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "Authorization" in headers["access-control-allow-headers"]
    assert "Retry-After" in headers["access-control-expose-headers"]
    status, headers, _ = request(stack, "GET", "/v1/openapi.json")
    assert status == 200 and headers["access-control-allow-origin"] == "*"


# --- limits ---


def test_body_limit_answers_413_without_reading_the_body(tmp_path: Path, fake: FakeProxy) -> None:
    with _stack(tmp_path, fake, max_body_bytes=64 * 1024) as stack:
        big = json.dumps({"image": {"base64": "A" * 100_000}, "extremePoints": []})
        status, headers, data = request(stack, "POST", "/v1/segment", big)
        assert status == 413 and json.loads(data)["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert headers.get("connection") == "close"
        assert fake.requests == [], "the Lambda must not run for a refused body"
        # A declared size over the limit is refused before a single body byte is sent.
        sock = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
        sock.sendall(
            b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Length: 999999999\r\n\r\n"
        )
        status_line = b""
        while b"\r\n" not in status_line and (chunk := sock.recv(200)):
            status_line += chunk
        assert status_line.startswith(b"HTTP/1.1 413")
        sock.close()
        # A negative or non-ASCII size would read to the end of the stream, past the limit: refused.
        for declared in (b"-1", b"-5", "\u00b2".encode("latin-1", "replace"), b"12abc"):
            sock = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
            sock.sendall(
                b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + b"\r\nContent-Length: "
                + declared
                + b"\r\n\r\n"
                + b"A" * 1000
            )
            reply = b""
            while chunk := sock.recv(4096):  # the gateway closes the connection after answering
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 400") and b"bad Content-Length" in reply, (declared, reply)
            sock.close()
        assert fake.requests == []
        # The local labeling API is limited too.
        assert request(stack, "PUT", "/local/labels/a.png", big)[0] == 413


def test_a_client_that_uploads_all_of_a_refused_body_still_reads_the_413(tmp_path: Path, fake: FakeProxy) -> None:
    # As browsers and http.client do: the whole body goes out before the answer is read. Closing on
    # the unread upload would reset the connection, and the client would see a network error.
    with _stack(tmp_path, fake, max_body_bytes=64 * 1024) as stack:
        body = b"A" * (8 * 1024 * 1024)
        with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 413") and b"PAYLOAD_TOO_LARGE" in reply, reply[:300]
        assert fake.requests == []


def test_throttling_answers_429_with_retry_after(tmp_path: Path, fake: FakeProxy) -> None:
    with _stack(tmp_path, fake, rate_per_s=0.1, burst=2) as stack:  # a token per 10 s: no refill mid-test
        statuses = [request(stack, "GET", "/v1/openapi.json") for _ in range(4)]
        assert [s for s, _, _ in statuses[:2]] == [200, 200]
        status, headers, data = statuses[2]
        assert status == 429 and json.loads(data)["error"]["code"] == "THROTTLED"
        assert int(headers["retry-after"]) >= 1
        assert "access-control-allow-origin" in headers  # a browser must be able to read the 429
        # Throttling guards the model API; the image list and saving are not counted.
        assert request(stack, "GET", "/local/images")[0] == 200


def test_token_bucket_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert bucket.take() == 0 and bucket.take() == 0
    assert bucket.take() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() == 0


# --- the proxy event ---


def test_requests_become_api_gateway_rest_proxy_events(stack: LocalStack, tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    original = stack.server.gateway.handler  # type: ignore[union-attr]

    def recording(event: dict[str, Any], context: Any) -> Any:
        events.append(event)
        assert context.get_remaining_time_in_millis() > 0 and context.aws_request_id
        return original(event, context)

    stack.server.gateway.handler = recording  # type: ignore[union-attr]
    status, _, _ = request(stack, "GET", "/v1/openapi.json?x=1&x=2")
    assert status == 200
    (event,) = events
    assert event["httpMethod"] == "GET" and event["path"] == "/v1/openapi.json"
    assert event["resource"] == "/v1/openapi.json"
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert event["requestContext"]["stage"] == "local" and event["requestContext"]["requestId"]
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["isBase64Encoded"] is False


def test_binary_body_is_base64_encoded_in_the_event() -> None:
    event = build_proxy_event(
        method="POST",
        path="/v1/segment",
        resource="/v1/segment",
        headers=[],
        query={},
        body=b"\xff\xfe",
        source_ip="127.0.0.1",
        stage="local",
        request_id="r",
    )
    assert event["isBase64Encoded"] is True and event["body"] == "//4="


def test_unknown_routes_and_a_failing_lambda(stack: LocalStack) -> None:
    assert request(stack, "GET", "/v1/nothing")[0] == 404
    assert request(stack, "GET", "/v1/segment")[0] == 405

    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("boom")

    stack.server.gateway.handler = broken  # type: ignore[union-attr]
    status, _, data = request(stack, "GET", "/v1/openapi.json")
    assert status == 502 and b"boom" not in data  # the trace goes to the log, not the client


# --- the local labeling API ---


def test_local_api_lists_serves_and_saves(stack: LocalStack, tmp_path: Path) -> None:
    status, _, data = request(stack, "GET", "/local/config")
    assert status == 200 and json.loads(data)["labels"] == ["object", "person", "car", "animal"]
    listing = json.loads(request(stack, "GET", "/local/images")[2])
    assert listing == {
        "images": [{"name": "a.png", "width": 320, "height": 240, "done": False, "objects": 0}],
        "done": 0,
        "total": 1,
    }
    status, headers, data = request(stack, "GET", "/local/images/a.png")
    assert status == 200 and headers["content-type"] == "image/png"
    assert data == (tmp_path / "images" / "a.png").read_bytes()
    assert request(stack, "GET", "/local/images/..%2Fa.png")[0] == 404
    assert request(stack, "GET", "/local/labels/missing.png")[0] == 404
    # An image saved with no objects counts as done (the labeler looked and found nothing).
    assert request(stack, "PUT", "/local/labels/a.png", json.dumps({"objects": []}))[0] == 200
    assert json.loads(request(stack, "GET", "/local/images")[2])["done"] == 1
    status, _, data = request(stack, "PUT", "/local/labels/a.png", "{not json")
    assert status == 400 and json.loads(data)["error"]["code"] == "BAD_JSON"
    # A save declared as a form is refused by name (the same rule as the segment API), the labels kept.
    status, _, data = request(
        stack, "PUT", "/local/labels/a.png", json.dumps({"objects": []}), headers={"Content-Type": "text/plain"}
    )
    error = json.loads(data)["error"]
    assert (status, error["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE") and "not 'text/plain'" in error["message"]
    assert json.loads(request(stack, "GET", "/local/images")[2])["done"] == 1


# --- serve's own checks ---


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_no_auth_is_refused_off_loopback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = serve.run(_args("--no-auth", "--host", "0.0.0.0", "--port", "0", "--out", str(tmp_path)))
    assert code == 2
    err = capsys.readouterr().err
    assert "--no-auth is refused on --host 0.0.0.0" in err and "loopback" in err
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("192.168.1.10")


@pytest.mark.parametrize(
    "argv", [("--rate", "0"), ("--burst", "0"), ("--max-body-mb", "-1"), ("--port", "70000"), ("--ready-timeout", "0")]
)
def test_serve_refuses_settings_that_cannot_work(argv: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # A zero rate would refuse every request; a zero burst none would pass: said at start, by name.
    with pytest.raises(SystemExit) as exit_info:
        _args(*argv)
    assert exit_info.value.code == 2
    assert f"argument {argv[0]}" in capsys.readouterr().err


def test_an_images_folder_without_images_is_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty, out = tmp_path / "empty", tmp_path / "labels"
    empty.mkdir()
    assert serve.run(_args("--images", str(empty), "--port", "0", "--out", str(out))) == 2  # README: bad input
    assert f"no PNG or JPEG images in {empty}" in capsys.readouterr().err
    assert serve.run(_args("--images", str(tmp_path / "missing"), "--port", "0", "--out", str(out))) == 2
    assert not out.exists()


def test_no_auth_on_loopback_needs_no_token(tmp_path: Path, fake: FakeProxy) -> None:
    make_known_object(tmp_path / "images" / "a.png")
    options = ServeOptions(port=0, images=tmp_path / "images", out=tmp_path / "labels", no_auth=True)
    with LocalStack(options, lambda_handler=fake) as stack:
        assert stack.token is None and "#token" not in stack.url
        assert request(stack, "GET", "/local/images", token=None)[0] == 200


def test_default_token_is_random_and_printed_in_the_url(tmp_path: Path, fake: FakeProxy) -> None:
    make_known_object(tmp_path / "images" / "a.png")
    options = ServeOptions(port=0, images=tmp_path / "images", out=tmp_path / "labels")
    with LocalStack(options, lambda_handler=fake) as one, LocalStack(options, lambda_handler=fake) as two:
        assert one.token and two.token and one.token != two.token and len(one.token) >= 24
        assert one.url.endswith(f"/#token={one.token}")


def test_default_images_are_real_photos_shipped_with_matplotlib() -> None:
    folder = serve.default_images_dir()
    assert all((folder / name).is_file() for name in serve.SAMPLE_IMAGES)


def test_busy_port_fails_fast_with_a_message(tmp_path: Path, fake: FakeProxy) -> None:
    with _stack(tmp_path, fake) as first:
        busy = ServeOptions(port=first.port, images=tmp_path / "images", out=tmp_path / "labels2", token=TOKEN)
        with pytest.raises(serve.ServeError, match="cannot listen"):
            LocalStack(busy, lambda_handler=fake).start()


# --- keys: session ids and Ground Truth task tokens ---


def test_task_token_key_from_the_flag_the_environment_or_generated(
    tmp_path: Path, fake: FakeProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "t" * 40
    monkeypatch.delenv(serve.TASK_TOKEN_KEY_ENV, raising=False)
    assert ServeOptions.from_args(_args("--task-token-key", key)).task_token_key == key
    assert ServeOptions.from_args(_args()).task_token_key is None
    monkeypatch.setenv(serve.TASK_TOKEN_KEY_ENV, key)  # keeps the key out of `ps`
    assert ServeOptions.from_args(_args()).task_token_key == key
    with pytest.raises(serve.ServeError, match="--task-token-key"):
        _stack(tmp_path, fake, task_token_key="too short")
    one, given = _stack(tmp_path, fake), _stack(tmp_path, fake, task_token_key=key)
    assert one.task_token_key_generated and len(one.task_token_key) >= 64
    assert not given.task_token_key_generated and given.task_token_key == key
    # A session-token key per run, 64 characters like the deployed secret.
    assert one.session_secret != given.session_secret and len(one.session_secret) >= 64


def test_gateway_verifies_task_tokens_with_the_runs_key(tmp_path: Path) -> None:
    from fewclick_contract.task_token import CONTEXT_IMAGE, TASK_SEGMENT_PATH, derive_key, mint_task_token

    events: list[dict[str, Any]] = []

    def recorder(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    image = "s3://fewclick-images/a.png"
    make_known_object(tmp_path / "images" / "a.png")
    options = ServeOptions(port=0, images=tmp_path / "images", out=tmp_path / "labels", token=TOKEN)
    body = json.dumps({"image": {"s3Uri": image}, "extremePoints": [{"x": 1, "y": 1}] * 4})
    with LocalStack(options, lambda_handler=recorder) as stack:
        good, _ = mint_task_token(derive_key(stack.task_token_key), image_uri=image, ttl_s=600)
        forged, _ = mint_task_token(derive_key("f" * 64), image_uri=image, ttl_s=600)
        assert request(stack, "POST", TASK_SEGMENT_PATH, body, token=forged)[0] == 401
        assert request(stack, "POST", TASK_SEGMENT_PATH, body, token=good)[0] == 200
    (event,) = events
    assert event["requestContext"]["authorizer"][CONTEXT_IMAGE] == image


def test_proxy_is_configured_with_the_runs_session_key() -> None:
    import importlib

    serve.load_proxy_handler()  # puts the Lambda asset root on sys.path, as `fewclick serve` does
    module = importlib.import_module(serve.PROXY_HANDLER_MODULE)
    previous = module._segmenter
    try:
        serve.load_proxy_handler("s" * 64)
        assert module.get_segmenter().config.session_secret == b"s" * 64
    finally:
        module._segmenter = previous


# --- requests http.server itself would have answered in HTML, or framed wrongly ---


def _raw(stack: LocalStack, data: bytes, *, timeout: float = 10) -> bytes:
    """Send ``data`` as is and read until the gateway closes the connection."""
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=timeout)
    try:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply
    finally:
        sock.close()


def _json_error(reply: bytes) -> dict[str, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), reply
    return json.loads(body)["error"]


def _post_head(length: bytes) -> bytes:
    return b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + length + b"\r\n\r\n"


def test_a_body_shorter_than_its_content_length_is_refused_and_the_connection_closed(
    stack: LocalStack, fake: FakeProxy
) -> None:
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    sock.sendall(_post_head(b"\r\nContent-Length: 100") + b'{"image":')
    sock.shutdown(socket.SHUT_WR)  # the client is done sending, 91 bytes short
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 400")
    assert _json_error(reply)["message"] == "the body ended after 9 of its Content-Length's 100 bytes"
    assert fake.requests == []
    assert request(stack, "GET", "/v1/openapi.json")[0] == 200  # the server is fine


def test_a_body_that_stalls_gets_408_instead_of_a_500(
    tmp_path: Path, fake: FakeProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fewclick.local import gateway

    monkeypatch.setattr(gateway._RequestHandler, "timeout", 1)  # 30 s when served
    with _stack(tmp_path, fake) as stack:
        reply = _raw(stack, _post_head(b"\r\nContent-Length: 100") + b'{"image":')
        assert reply.startswith(b"HTTP/1.1 408") and b"connection: close" in reply.lower()
        assert "stopped before its Content-Length (100 bytes) for 1 s" in _json_error(reply)["message"]
        assert fake.requests == []
        assert request(stack, "GET", "/v1/openapi.json")[0] == 200


def test_two_different_content_lengths_are_refused(stack: LocalStack, fake: FakeProxy) -> None:
    reply = _raw(stack, _post_head(b"\r\nContent-Length: 2\r\nContent-Length: 5") + b"{}{}{")
    assert reply.startswith(b"HTTP/1.1 400")
    assert _json_error(reply)["message"] == "conflicting Content-Length headers"
    assert fake.requests == []


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),  # a request line of four words
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
    ],
    ids=["bad-request-line", "url-too-long", "header-too-long", "too-many-headers"],
)
def test_http_servers_own_refusals_use_the_apis_json_errors(stack: LocalStack, data: bytes, status: int) -> None:
    reply = _raw(stack, data)
    assert reply.startswith(b"HTTP/1.1 %d" % status), reply[:200]
    assert _json_error(reply)["code"] == "VALIDATION_ERROR"
    assert request(stack, "GET", "/v1/openapi.json")[0] == 200


def test_methods_on_pages_and_on_the_local_api(stack: LocalStack) -> None:
    status, headers, data = request(stack, "HEAD", "/")
    assert status == 200 and int(headers["content-length"]) > 0 and data == b""
    # A path with nothing behind it is a 404 for every method, not "use GET".
    status, _, data = request(stack, "POST", "/v2/segment", "{}")
    assert status == 404 and json.loads(data)["error"]["code"] == "NOT_FOUND"
    assert request(stack, "POST", "/index.html", "{}")[0] == 405
    status, headers, data = request(stack, "DELETE", "/local/labels/a.png")
    assert status == 405 and headers["allow"] == "GET, PUT"
    status, headers, _ = request(stack, "POST", "/local/images")
    assert status == 405 and headers["allow"] == "GET"
