"""A local stand-in for the SageMaker Runtime HTTP API (InvokeEndpoint), over a model server.

boto3's real ``sagemaker-runtime`` client can talk to it (``endpoint_url=<stub url>``,
any credentials, any region): it speaks the REST-JSON wire protocol botocore expects,
so the proxy's real code path -- serialisation, SessionId header, NewSessionId
parsing, modelled errors and retries -- runs locally and in tests.

What it reproduces (from botocore's sagemaker-runtime service model and the SageMaker
stateful-sessions guide):
- ``POST /endpoints/{EndpointName}/invocations`` -> the container's ``POST /invocations``,
  forwarding Content-Type, Accept, CustomAttributes and ``X-Amzn-SageMaker-Session-Id``;
- a container that opens a session answers ``X-Amzn-SageMaker-Session-Id: <id>; Expires=..``,
  which the runtime returns to the client as ``X-Amzn-SageMaker-New-Session-Id``
  (``NewSessionId``); ``X-Amzn-SageMaker-Closed-Session-Id`` passes through;
- a non-2xx container answer becomes HTTP 424 ``ModelError`` with ``OriginalStatusCode``
  and ``OriginalMessage`` (the container's body), as SageMaker reports it;
- an unreachable container -> 503 ``ServiceUnavailable``; an unknown endpoint name or a
  session the stub was told to expire -> 400 ``ValidationError``.
It does not check SigV4 signatures, and it routes every session to its one container.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from fewclick_model.server.http_server import QuietThreadingHTTPServer, content_length

from fewclick_contract.wire import (
    CLOSED_SESSION_HEADER,
    NEW_SESSION,
    NEW_SESSION_HEADER,
    SAGEMAKER_MAX_PAYLOAD_BYTES,
    SESSION_HEADER,
)

LOG = logging.getLogger("fewclick.runtime_stub")

_INVOKE_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
_FORWARDED_HEADERS = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes", SESSION_HEADER)
# SageMaker gives the container 60 s before answering ModelError itself.
CONTAINER_TIMEOUT_S = 60.0
ACCOUNT = "000000000000"


@dataclass
class Exchange:
    """One InvokeEndpoint call as the stub saw it (tests assert payload sizes on these)."""

    endpoint: str
    session_header: str | None
    request_body: bytes
    status: int
    response_body: bytes
    response_headers: dict[str, str]
    container_ms: float


# Exchanges kept for tests and benchmarks to inspect (each holds its bodies: ~0.8 MB for a new crop).
DEFAULT_LOG_SIZE = 1000


@dataclass
class _StubState:
    model_url: str
    endpoint_names: frozenset[str] | None
    region: str
    expired: set[str] = field(default_factory=set)
    log: deque[Exchange] = field(default_factory=lambda: deque(maxlen=DEFAULT_LOG_SIZE))
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fewclick-sagemaker-runtime-stub"
    # Headers and body go out in separate writes; with Nagle on, the body can wait for the
    # peer's delayed ACK (tens of ms per request).
    disable_nagle_algorithm = True
    timeout = 75
    server: _StubServer

    def log_message(self, format: str, *args: object) -> None:
        LOG.debug("%s - %s", self.address_string(), format % args)

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        headers = {"x-amzn-RequestId": str(uuid.uuid4()), **headers}
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _aws_error(self, status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        # botocore's rest-json parser takes the code from x-amzn-ErrorType (text before ':')
        # and the modelled members (Message, OriginalStatusCode, ...) from the JSON body.
        body = json.dumps({"message": message, "Message": message, **(extra or {})}).encode()
        self._reply(
            status,
            body,
            {
                "Content-Type": "application/json",
                "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazonaws.sagemaker/",
            },
        )

    def do_POST(self) -> None:
        state = self.server.state
        match = _INVOKE_PATH.match(urlsplit(self.path).path)
        header = self.headers.get("Content-Length")
        # Absent: an empty body, as botocore never omits it for a body it sends. Malformed or
        # negative: refused, as a bare int() raised (a 500 and a traceback) or read past the limit.
        length = 0 if header is None else content_length(header)
        if length is None:
            self.close_connection = True
            self._aws_error(400, "ValidationError", f"Content-Length must be a byte count, not {header!r}")
            return
        if match is None:
            self.close_connection = True
            self._aws_error(404, "UnknownOperationException", "unknown operation")
            return
        if length > SAGEMAKER_MAX_PAYLOAD_BYTES:
            self.close_connection = True
            limit = SAGEMAKER_MAX_PAYLOAD_BYTES
            self._aws_error(413, "ValidationError", f"Request payload exceeds {limit} bytes")
            return
        body = self.rfile.read(length)
        endpoint = unquote(match.group(1))
        if state.endpoint_names is not None and endpoint not in state.endpoint_names:
            self._aws_error(400, "ValidationError", f"Endpoint {endpoint} of account {ACCOUNT} not found.")
            return
        session = self.headers.get(SESSION_HEADER)
        with state.lock:
            expired = session is not None and session in state.expired
        if expired:
            self._aws_error(400, "ValidationError", f"Session {session} is not valid or has expired.")
            return

        t0 = time.perf_counter()
        try:
            status, resp_body, resp_headers = self._forward(body)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError):
                self._aws_error(
                    424,
                    "ModelError",
                    "Your invocation timed out while waiting for a response from container primary.",
                )
            else:
                self._aws_error(503, "ServiceUnavailable", f"The endpoint {endpoint} is unavailable ({exc}).")
            return
        container_ms = (time.perf_counter() - t0) * 1000.0

        if 200 <= status < 300:
            headers = {
                "Content-Type": resp_headers.get("content-type", "application/json"),
                "x-Amzn-Invoked-Production-Variant": "AllTraffic",
            }
            created = resp_headers.get(NEW_SESSION_HEADER.lower()) or resp_headers.get(SESSION_HEADER.lower())
            if session == NEW_SESSION and created:
                headers[NEW_SESSION_HEADER] = created
            closed = resp_headers.get(CLOSED_SESSION_HEADER.lower())
            if closed:
                headers[CLOSED_SESSION_HEADER] = closed
            # Logged before replying: a caller that reads the log right after its call returns
            # must find the exchange there.
            self._record(Exchange(endpoint, session, body, 200, resp_body, headers, container_ms))
            self._reply(200, resp_body, headers)
            return
        text = resp_body.decode("utf-8", errors="replace")
        kind = "client" if status < 500 else "server"
        message = (
            f'Received {kind} error ({status}) from primary with message "{text}". See '
            f"https://{state.region}.console.aws.amazon.com/cloudwatch/home?region={state.region}"
            f"#logEventViewer:group=/aws/sagemaker/Endpoints/{endpoint} in account {ACCOUNT} "
            "for more information."
        )
        extra = {
            "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
            "OriginalStatusCode": status,
            "OriginalMessage": text,
            "LogStreamArn": (f"arn:aws:logs:{state.region}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}"),
        }
        self._record(Exchange(endpoint, session, body, 424, resp_body, {}, container_ms))
        self._aws_error(424, "ModelError", message, extra)

    def _record(self, exchange: Exchange) -> None:
        with self.server.state.lock:
            self.server.state.log.append(exchange)

    def _forward(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        target = urlsplit(self.server.state.model_url)
        conn = http.client.HTTPConnection(
            target.hostname or "127.0.0.1", target.port or 8080, timeout=CONTAINER_TIMEOUT_S
        )
        try:
            headers = {h: v for h in _FORWARDED_HEADERS if (v := self.headers.get(h)) is not None}
            conn.request("POST", "/invocations", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()


class _StubServer(QuietThreadingHTTPServer):
    logger = LOG

    def __init__(self, address: tuple[str, int], state: _StubState) -> None:
        self.state = state
        super().__init__(address, _Handler)


@dataclass
class RuntimeStubHandle:
    """A running stand-in (see `start_runtime_stub`)."""

    server: _StubServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def exchanges(self) -> list[Exchange]:
        with self.server.state.lock:
            return list(self.server.state.log)

    def clear_log(self) -> None:
        with self.server.state.lock:
            self.server.state.log.clear()

    def expire_session(self, session_id: str) -> None:
        """Make SageMaker itself refuse the session (as after its Expires)."""
        with self.server.state.lock:
            self.server.state.expired.add(session_id)

    def set_model_url(self, model_url: str) -> None:
        self.server.state.model_url = model_url

    def client(self, region: str | None = None) -> Any:
        """A real boto3 sagemaker-runtime client pointed here (dummy credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=self.url,
            region_name=region or self.server.state.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_runtime_stub(
    model_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    endpoint_names: set[str] | None = None,
    region: str = "us-east-1",
    log_size: int = DEFAULT_LOG_SIZE,
) -> RuntimeStubHandle:
    """Serve the stand-in in a daemon thread (port 0 picks a free port).

    ``endpoint_names``: the names that exist (None: any name is accepted). ``log_size``: how many
    exchanges `exchanges` keeps (0: none; a long-running `fewclick serve` keeps none, or a labeling
    session's request bodies would pile up in memory).
    """
    state = _StubState(
        model_url.rstrip("/"),
        frozenset(endpoint_names) if endpoint_names else None,
        region,
        log=deque(maxlen=log_size),
    )
    server = _StubServer((host, port), state)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sagemaker-runtime-stub", daemon=True
    )
    thread.start()
    return RuntimeStubHandle(server, thread)
