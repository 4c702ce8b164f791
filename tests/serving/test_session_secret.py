"""Session-token signing key: env override, Secrets Manager in AWS, and no serving without a key in Lambda."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from fewclick_proxy import handler
from fewclick_proxy.config import ProxyConfig
from fewclick_proxy.endpoint_client import EndpointResult
from fewclick_proxy.image_source import ImageSource
from fewclick_proxy.segment import Segmenter
from fewclick_proxy.session_secret import (
    MIN_SECRET_BYTES,
    SessionSecretUnavailable,
    fetch_secret_string,
    resolve_session_secret,
)
from fewclick_proxy.session_token import decode_token

from fewclick_contract.api import ApiError, SegmentRequest
from fewclick_contract.wire import WireRequest, WireResponse, encode_probabilities

from .helpers import call, png_base64

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ProxySessionSecret-AbCdEf"
SECRET = "k" * 64
SIZE = 64


def _secrets_client() -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


# --- resolving the key ---------------------------------------------------------------------------


def test_env_override_wins_and_nothing_is_fetched() -> None:
    cfg = ProxyConfig.from_env({"SESSION_TOKEN_SECRET": SECRET, "SESSION_TOKEN_SECRET_ARN": SECRET_ARN})

    def no_fetch(arn: str) -> str:
        raise AssertionError("the env override must not read Secrets Manager")

    assert resolve_session_secret(cfg, no_fetch).session_secret == SECRET.encode()


def test_arn_is_read_from_secrets_manager() -> None:
    cfg = ProxyConfig.from_env({"SESSION_TOKEN_SECRET_ARN": SECRET_ARN, "AWS_LAMBDA_FUNCTION_NAME": "proxy"})
    assert cfg.in_lambda and cfg.session_secret is None and cfg.session_secret_arn == SECRET_ARN
    client = _secrets_client()
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"SecretString": SECRET}, {"SecretId": SECRET_ARN})
        resolved = resolve_session_secret(cfg, lambda arn: fetch_secret_string(arn, lambda: client))
        stub.assert_no_pending_responses()
    assert resolved.session_secret == SECRET.encode()


@pytest.mark.parametrize(("code", "retry_after"), [("ThrottlingException", 5), ("AccessDeniedException", 5)])
def test_unreadable_secret_is_a_retryable_503(code: str, retry_after: int) -> None:
    client = _secrets_client()
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", code, http_status_code=400)
        with pytest.raises(SessionSecretUnavailable) as exc:
            fetch_secret_string(SECRET_ARN, lambda: client)
    assert exc.value.status == 503 and exc.value.retry_after == retry_after and code in exc.value.detail
    assert SECRET_ARN not in exc.value.message  # operator details stay in the log


def test_short_secrets_are_refused_in_lambda() -> None:
    short = "s" * (MIN_SECRET_BYTES - 1)
    in_lambda = ProxyConfig(in_lambda=True, session_secret_arn=SECRET_ARN)
    with pytest.raises(SessionSecretUnavailable):
        resolve_session_secret(in_lambda, lambda arn: short)
    with pytest.raises(SessionSecretUnavailable):
        resolve_session_secret(ProxyConfig(in_lambda=True, session_secret=short.encode()))
    # Locally (tests, `fewclick serve`) any non-empty override is accepted.
    assert resolve_session_secret(ProxyConfig(session_secret=b"s")).session_secret == b"s"


def test_no_key_is_refused_in_lambda_only() -> None:
    with pytest.raises(SessionSecretUnavailable) as exc:
        resolve_session_secret(ProxyConfig.from_env({"AWS_LAMBDA_FUNCTION_NAME": "proxy"}))
    assert "SESSION_TOKEN_SECRET_ARN" in exc.value.detail
    local = ProxyConfig.from_env({})
    assert resolve_session_secret(local) is local and local.session_secret is None


# --- the handler -----------------------------------------------------------------------------------


@pytest.fixture
def fresh_handler() -> Iterator[None]:
    """The handler as on a cold start (no segmenter yet); the previous one is put back afterwards."""
    previous = handler._segmenter
    handler._segmenter = None
    yield
    handler._segmenter = previous


def _segment_body() -> dict[str, Any]:
    rgb = np.zeros((40, 50, 3), np.uint8)
    points = [{"x": 10, "y": 20}, {"x": 40, "y": 20}, {"x": 25, "y": 5}, {"x": 25, "y": 35}]
    return {"image": {"base64": png_base64(rgb)}, "extremePoints": points}


def test_lambda_without_a_key_answers_503_and_logs_why(fresh_handler: None, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(handler.logger, "error", lambda msg, extra: errors.append((msg, extra)))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "FewClick-Api-ProxyFunction")
    monkeypatch.delenv("SESSION_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("SESSION_TOKEN_SECRET_ARN", raising=False)
    status, body, headers = call(handler, "POST", "/v1/segment", _segment_body())
    assert status == 503 and body["error"]["code"] == "ENDPOINT_UNAVAILABLE"
    assert "not configured" in body["error"]["message"] and headers.get("Retry-After") == "60"
    ((message, extra),) = errors
    assert "refusing to serve" in message and "SESSION_TOKEN_SECRET_ARN" in extra["reason"]
    # Even a malformed request gets the 503: nothing is served before the key is there.
    status, body, _ = call(handler, "POST", "/v1/segment", raw_body="{not json")
    assert status == 503
    assert handler._segmenter is None  # not cached: fixing the configuration needs no cold start


def test_lambda_reads_the_secret_once_per_cold_start(fresh_handler: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from fewclick_proxy import session_secret

    reads: list[str] = []
    monkeypatch.setattr(session_secret, "fetch_secret_string", lambda arn: reads.append(arn) or SECRET)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "FewClick-Api-ProxyFunction")
    monkeypatch.setenv("SESSION_TOKEN_SECRET_ARN", SECRET_ARN)
    monkeypatch.delenv("SESSION_TOKEN_SECRET", raising=False)
    first = handler.get_segmenter()
    assert handler.get_segmenter() is first and reads == [SECRET_ARN]
    assert first.config.session_secret == SECRET.encode()


# --- signed tokens through the segmenter ----------------------------------------------------------


class _Endpoint:
    """Answers every wire request with a centred square: enough for the proxy to build a session id."""

    def invoke(self, request: WireRequest, session_id: str | None, deadline: float | None = None) -> EndpointResult:
        prob = np.zeros((SIZE, SIZE), np.float32)
        prob[16:48, 16:48] = 0.9
        response = WireResponse(
            sessionId=session_id or "sm-new",
            cropId=request.cropId,
            size=SIZE,
            probabilities=encode_probabilities(prob),
            modelVersion="fake",
            modelMs=1.0,
            cache="miss" if request.crop is not None else "hit",
        )
        return EndpointResult(response, session_id or "sm-new", 100, 100)


def _segmenter(secret: bytes | None) -> Segmenter:
    cfg = ProxyConfig(input_size=SIZE, session_secret=secret)
    return Segmenter(cfg, ImageSource(cfg), _Endpoint())  # type: ignore[arg-type]


def _tamper(session_id: str) -> str:
    version, payload, mac = session_id.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields["img"] = "s3://fewclick-images/someone-elses.png#etag"
    forged = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{version}.{forged}.{mac}"


def test_signed_session_round_trip_and_tampering() -> None:
    key = SECRET.encode()
    segmenter = _segmenter(key)
    first = segmenter.segment(SegmentRequest.model_validate(_segment_body())).response
    assert first.sessionId.count(".") == 2  # signed
    token = decode_token(first.sessionId, key)
    assert (token.h, token.w) == (40, 50)

    warm = dict(_segment_body(), sessionId=first.sessionId)
    del warm["image"]
    again = segmenter.segment(SegmentRequest.model_validate(warm)).response
    assert decode_token(again.sessionId, key).sm == token.sm

    # Tampered, unsigned, or signed with another key: 404 SESSION_EXPIRED (the UI resends the image).
    other = _segmenter(b"o" * 64).segment(SegmentRequest.model_validate(_segment_body())).response.sessionId
    unsigned = first.sessionId.rsplit(".", 1)[0]
    for bad in (_tamper(first.sessionId), unsigned, other):
        with pytest.raises(ApiError) as exc:
            segmenter.segment(SegmentRequest.model_validate(dict(warm, sessionId=bad)))
        assert (exc.value.status, exc.value.code.value) == (404, "SESSION_EXPIRED")
    # Not a session id at all: 400 VALIDATION_ERROR.
    with pytest.raises(ApiError) as exc:
        segmenter.segment(SegmentRequest.model_validate(dict(warm, sessionId="v9.garbage")))
    assert (exc.value.status, exc.value.code.value) == (400, "VALIDATION_ERROR")


def test_config_dataclass_keeps_the_key_out_of_repr() -> None:
    # The resolved config is logged nowhere today; make sure a future debug log would not leak the key.
    cfg = dataclasses.replace(ProxyConfig(), session_secret=SECRET.encode())
    assert SECRET not in repr(cfg)


# --- the cold-start read is bounded --------------------------------------------------------------


def test_a_stalled_secrets_manager_costs_the_cold_start_two_short_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production client (`default_secrets_client`) against a loopback Secrets Manager that never
    answers: two attempts, each cut by the read timeout, well inside the request's budget, then a
    retryable 503. (Its earlier `max_attempts: 3` meant four 7-second attempts, past API Gateway's 29 s.)"""
    import socket
    import threading
    import time

    from fewclick_proxy.endpoint_client import REQUEST_BUDGET_S
    from fewclick_proxy.session_secret import default_secrets_client

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_stall() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept_and_stall, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    for name, value in {
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        started = time.monotonic()
        with pytest.raises(SessionSecretUnavailable) as raised:
            fetch_secret_string(SECRET_ARN, default_secrets_client)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert len(accepted) == 2
    assert elapsed < 11 < REQUEST_BUDGET_S
    assert raised.value.status == 503 and raised.value.retry_after == 5
    assert "unreachable (ReadTimeoutError)" in raised.value.detail
