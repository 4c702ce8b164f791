"""The SageMaker Runtime side: one InvokeEndpoint per click, errors mapped to API errors.

A container error reaches boto3 as ``ModelError`` (HTTP 424) carrying the container's
status and body in ``OriginalStatusCode`` / ``OriginalMessage``; the body is a
`fewclick_contract.wire.WireError`, whose code decides what the proxy does next.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from fewclick_contract.api import ApiError, ErrorCode
from fewclick_contract.wire import (
    CONTENT_TYPE,
    NEW_SESSION,
    WireErrorCode,
    WireRequest,
    WireRequestTooLarge,
    WireResponse,
    dump_request,
    parse_session_header,
)

from .config import ProxyConfig


class SessionExpiredAtEndpoint(Exception):
    """The endpoint no longer holds this session's crop: resend with pixels."""


# API Gateway answers 504 after 29 s whatever the Lambda still does. The whole request (the S3 read, every
# endpoint attempt and pause, a session rebuilt after it expired) must end before that, leaving the proxy
# time to decode, paste and encode: one deadline per request, this long after it began.
REQUEST_BUDGET_S = 26.0
# An attempt that would have less than this to wait for the model is not started (503 + Retry-After).
MIN_ATTEMPT_S = 1.0
# SageMaker's own answers that mean "not now" before any container saw the request: worth one more try.
_TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ThrottlingException",
        "TooManyRequestsException",
        "Throttling",
        "InternalFailure",
    }
)


class _Transient(Exception):
    """An attempt that failed before the model did any work; ``error`` is what the caller gets if it is the last."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class EndpointResult:
    response: WireResponse
    session_id: str
    request_bytes: int
    response_bytes: int


def _throttled(message: str, retry_after: int = 1) -> ApiError:
    return ApiError(ErrorCode.THROTTLED, message, retry_after=retry_after)


def _unavailable(message: str, retry_after: int) -> ApiError:
    return ApiError(ErrorCode.ENDPOINT_UNAVAILABLE, message, retry_after=retry_after)


def _failed(message: str) -> ApiError:
    return ApiError(ErrorCode.ENDPOINT_ERROR, message, retry_after=1)


def map_client_error(exc: Any) -> Exception:
    """botocore ClientError -> SessionExpiredAtEndpoint or ApiError."""
    response = getattr(exc, "response", {}) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    message = str(response.get("Error", {}).get("Message", ""))
    if code == "ModelError":
        original_status = int(response.get("OriginalStatusCode") or 0)
        wire_code = ""
        # Not every ModelError body is ours (a crashed container answers plain text).
        with contextlib.suppress(ValueError, KeyError, TypeError):
            wire_code = str(json.loads(response.get("OriginalMessage") or "{}")["error"]["code"])
        if wire_code == WireErrorCode.SESSION_EXPIRED:
            return SessionExpiredAtEndpoint()
        if wire_code == WireErrorCode.NOT_READY:
            return _unavailable("the model is loading; retry shortly", 10)
        if wire_code == WireErrorCode.OVERLOADED or original_status in (429, 503):
            return _unavailable("the model is busy; retry shortly", 2)
        if wire_code == WireErrorCode.PAYLOAD_TOO_LARGE:
            return ApiError(ErrorCode.PAYLOAD_TOO_LARGE, "the model request is too large")
        if "timed out" in message:
            return _unavailable("the model did not answer in time; retry shortly", 2)
        return _failed(f"the model failed ({wire_code or original_status or 'no status'})")
    if code == "ValidationError" and "session" in message.lower():
        # SageMaker itself dropped the session (past its Expires, or the instance went away).
        return SessionExpiredAtEndpoint()
    if code == "ModelNotReadyException":
        return _unavailable("the model is not ready; retry shortly", 10)
    if code in ("ThrottlingException", "TooManyRequestsException", "Throttling"):
        return _throttled("too many requests to the model; retry shortly")
    if code in ("ServiceUnavailable", "ServiceUnavailableException"):
        return _unavailable("the model endpoint is unavailable; retry shortly", 5)
    return _failed(f"the model endpoint failed ({code or 'unknown error'})")


class EndpointClient:
    def __init__(self, config: ProxyConfig, client: Any = None) -> None:
        self.config = config
        self._client = client
        self._injected = client is not None
        # Clients that wait less than the configured read timeout, by whole seconds (`_client_for`).
        self._shorter: dict[int, Any] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._build_client(self.config.read_timeout_s)
        return self._client

    def _build_client(self, read_timeout_s: float) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=self.config.runtime_endpoint_url,
            config=Config(
                connect_timeout=self.config.connect_timeout_s,
                read_timeout=read_timeout_s,
                # Retries are ours (see `invoke`): botocore's standard mode also retries a read
                # timeout, which doubles a hung or overloaded model's queue and, at 2 x 20 s, outlasts
                # API Gateway's 29 s.
                retries={"total_max_attempts": 1, "mode": "standard"},
                tcp_keepalive=True,
            ),
        )

    def _client_for(self, read_timeout_s: float) -> Any:
        """A client whose read timeout is at most ``read_timeout_s``: botocore has no per-call timeout,
        so a request that spent part of its budget (a slow S3 read) gets a client that waits less.
        Whole seconds keep it to a handful of clients per container; an injected client is used as is."""
        if self._injected or read_timeout_s >= self.config.read_timeout_s:
            return self.client
        seconds = max(1, int(read_timeout_s))
        if seconds not in self._shorter:
            self._shorter[seconds] = self._build_client(float(seconds))
        return self._shorter[seconds]

    def _read_timeout_within(self, deadline: float) -> float:
        left = deadline - time.perf_counter() - self.config.connect_timeout_s
        if left < MIN_ATTEMPT_S:
            raise _unavailable("the request ran out of time before the model could answer; retry shortly", 2)
        return min(self.config.read_timeout_s, left)

    def invoke(self, request: WireRequest, session_id: str | None, deadline: float | None = None) -> EndpointResult:
        """``session_id`` None opens a new stateful session (NEW_SESSION). ``deadline``: the request's
        (`time.perf_counter()` clock; default `REQUEST_BUDGET_S` from now): no attempt waits past it.

        Up to ``max_attempts`` tries, but only for failures before the model did any work (connection
        refused or reset, SageMaker's own 503/429), and only while a full attempt still fits before the
        deadline. A read timeout is never retried: the model is hung or its queue is long, and a
        second copy of the request would only lengthen it. Never a ModelError either (the container's answer).
        """
        try:
            body = dump_request(request)
        except WireRequestTooLarge as exc:
            raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, str(exc)) from None
        if deadline is None:
            deadline = time.perf_counter() + REQUEST_BUDGET_S
        attempt = 0
        while True:
            attempt += 1
            client = self._client_for(self._read_timeout_within(deadline))
            try:
                return self._invoke_once(client, request, body, session_id)
            except _Transient as exc:
                pause = random.uniform(0.05, 0.1) * 2**attempt  # jittered backoff: 0.1-0.2 s, then 0.2-0.4 s
                worst_next = self.config.connect_timeout_s + self.config.read_timeout_s
                if attempt >= self.config.max_attempts or time.perf_counter() + pause + worst_next > deadline:
                    raise exc.error from None
                time.sleep(pause)

    def _invoke_once(self, client: Any, request: WireRequest, body: bytes, session_id: str | None) -> EndpointResult:
        from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            resp = client.invoke_endpoint(
                EndpointName=self.config.endpoint_name,
                Body=body,
                ContentType=CONTENT_TYPE,
                Accept=CONTENT_TYPE,
                SessionId=session_id or NEW_SESSION,
            )
            data = resp["Body"].read()
        except ClientError as exc:
            mapped = map_client_error(exc)
            code = str((getattr(exc, "response", {}) or {}).get("Error", {}).get("Code", ""))
            if code in _TRANSIENT_CODES and isinstance(mapped, ApiError):
                raise _Transient(mapped) from None
            raise mapped from None
        except ReadTimeoutError:
            raise _unavailable("the model did not answer in time; retry shortly", 2) from None
        except (BotoConnectionError, HTTPClientError):
            # Refused, reset or closed connections (HTTPClientError covers ConnectionClosedError).
            raise _Transient(_unavailable("the model endpoint is unreachable; retry shortly", 5)) from None
        try:
            parsed = WireResponse.model_validate_json(data)
        except ValidationError:
            raise _failed("the model answered something unreadable") from None
        if parsed.cropId != request.cropId:
            raise _failed("the model answered for another crop")
        new_session = resp.get("NewSessionId")
        sid = parse_session_header(new_session)[0] if new_session else (session_id or parsed.sessionId)
        return EndpointResult(parsed, sid, len(body), len(data))
