"""A local stand-in for the API Gateway REST API in front of the proxy Lambda.

It does what the deployed gateway does for us, so the proxy runs locally exactly as deployed:

- the same routes (``POST /v1/segment``, ``GET /v1/openapi.json``), each HTTP request turned into an
  API Gateway REST *proxy* event and handed to the real ``lambda_handler`` in-process;
- Bearer-token auth (401 without a token, 403 with a wrong one), a request-body limit (413), stage
  throttling as a token bucket (429 + Retry-After) and CORS, all answered before the Lambda runs, as
  the deployed gateway answers them before invoking it;
- besides that, for `fewclick serve` only: the labeling UI's static files (public: they hold no data, and
  the page reads its token from the URL fragment, which browsers never send) and the local labeling API
  under ``/local/`` (behind the same token).

Error bodies use the API's shape, ``{"error": {"code", "message"}}``, so the UI handles one format.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import math
import mimetypes
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from fewclick_model.server.http_server import JsonRefusals, conflicting, content_length, linger_close

from fewclick_contract.api import ErrorCode
from fewclick_contract.task_token import (
    TASK_SEGMENT_PATH,
    TaskTokenError,
    authorizer_context,
    bearer_token,
    verify_task_token,
)

LOG = logging.getLogger("fewclick.gateway")

# Lambda's synchronous invoke payload limit: the deployed gateway passes bigger bodies, but the
# Lambda then refuses them, so the local stack refuses at the same size.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
# Default stage throttling; generous for one labeler, small enough that a runaway client is visible.
DEFAULT_RATE_PER_S = 20.0
DEFAULT_BURST = 40
# API Gateway gives up on an integration after 29 s; the Lambda context reports time left against it.
INTEGRATION_TIMEOUT_S = 29.0
# Admission control in front of the one in-process Lambda "instance" (see Gateway.invoke): at most this many
# requests wait for it, none longer than this. Past either, the request is shed with Retry-After rather than
# parked on a socket, so overload shows up as quick 429/503 answers, not as timeouts and threads piling up.
DEFAULT_MAX_QUEUED = 8
DEFAULT_MAX_QUEUE_WAIT_S = 10.0

# (method, path) -> API Gateway resource path; anything else under /v1 is not a route.
API_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/segment"): "/v1/segment",
    ("GET", "/v1/openapi.json"): "/v1/openapi.json",
    # Ground Truth task route: task-token auth instead of the Bearer token (see check_task_token).
    ("POST", TASK_SEGMENT_PATH): TASK_SEGMENT_PATH,
}
API_PREFIX = "/v1/"
LOCAL_PREFIX = "/local/"

# The UI may only load its own files: no CDN, no inline script, nothing from another origin.
UI_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
UI_SUFFIXES = {".html", ".js", ".css", ".png", ".svg", ".ico", ".json", ".md"}

LambdaHandler = Callable[[dict[str, Any], Any], Mapping[str, Any]]


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> HttpResponse:
        return cls(
            status,
            json.dumps(payload).encode("utf-8"),
            {"Content-Type": "application/json", **(headers or {})},
        )

    @classmethod
    def error(cls, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        return cls.json(status, {"error": {"code": code, "message": message}}, headers)


def allowed_methods(path: str) -> list[str]:
    """The methods some route takes at ``path`` (for 405 answers and their Allow header)."""
    if path.startswith(API_PREFIX):
        return sorted({m for (m, p) in API_ROUTES if p == path})
    if path.startswith(LOCAL_PREFIX):
        return ["GET", "PUT"]
    return ["GET"]


def method_not_allowed(method: str, path: str) -> HttpResponse:
    allowed = allowed_methods(path)
    return HttpResponse.error(
        405,
        ErrorCode.METHOD_NOT_ALLOWED,
        f"{method} is not allowed on {path}; it takes {', '.join(allowed) or 'nothing'}",
        {"Allow": ", ".join(allowed)},
    )


class LocalApi(Protocol):
    """The ``/local/`` routes (image list, image bytes, labels) that `fewclick serve` adds."""

    def handle(self, method: str, path: str, query: Mapping[str, list[str]], body: bytes) -> HttpResponse: ...


@dataclass
class GatewayConfig:
    # None disables auth (allowed on loopback only; `fewclick serve` enforces that).
    token: str | None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate_per_s: float = DEFAULT_RATE_PER_S
    burst: int = DEFAULT_BURST
    cors_origin: str = "*"
    stage: str = "local"
    ui_dir: Path | None = None
    # HMAC key of Ground Truth task tokens (fewclick_contract.task_token.derive_key); None = the
    # task route refuses every request, as a deployment without the labeling stack has no such route.
    task_token_key: bytes | None = None
    max_queued: int = DEFAULT_MAX_QUEUED
    max_queue_wait_s: float = DEFAULT_MAX_QUEUE_WAIT_S


class TokenBucket:
    """API Gateway's stage throttling: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(rate_per_s, 1e-6)
        self.capacity = max(float(burst), 1.0)
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0.0 when the request may go ahead, else the seconds until a token is free."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as ``context``; Powertools reads these attributes."""

    aws_request_id: str
    deadline: float
    function_name: str = "fewclick-proxy-local"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:fewclick-proxy-local"
    memory_limit_in_mb: int = 1024
    log_group_name: str = "/aws/lambda/fewclick-proxy-local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def build_proxy_event(
    *,
    method: str,
    path: str,
    resource: str,
    headers: list[tuple[str, str]],
    query: Mapping[str, list[str]],
    body: bytes,
    source_ip: str,
    stage: str,
    request_id: str,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API proxy-integration event (payload format 1.0) for one HTTP request."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value  # REST events keep the last value of a repeated header here
        multi.setdefault(name, []).append(value)
    try:
        text: str | None = body.decode("utf-8") if body else None
        is_base64 = False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": dict(query) or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "domainName": "localhost",
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            # What a Lambda authorizer's context becomes in the deployed event (task-token route).
            **({"authorizer": dict(authorizer)} if authorizer is not None else {}),
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def response_from_lambda(result: Mapping[str, Any]) -> HttpResponse:
    """Turn the Lambda's proxy response into HTTP, as API Gateway does (502 when it is malformed)."""
    if not isinstance(result, Mapping) or not isinstance(result.get("statusCode"), int):
        return HttpResponse.error(502, ErrorCode.INTERNAL_ERROR, "the proxy Lambda returned a malformed response")
    headers: dict[str, str] = {}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(str(v) for v in values)
    for name, value in (result.get("headers") or {}).items():
        headers[name] = str(value)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
    return HttpResponse(int(result["statusCode"]), body, headers)


class Gateway:
    """Routing, auth, limits and the Lambda invocation; independent of the HTTP server for testing."""

    def __init__(self, config: GatewayConfig, handler: LambdaHandler, local_api: LocalApi | None = None) -> None:
        self.config = config
        self.handler = handler
        self.local_api = local_api
        self.bucket = TokenBucket(config.rate_per_s, config.burst)
        # One warm Lambda instance: the proxy's resolver keeps the current event on a module-level app
        # object, which is not safe to share between threads, so invocations take turns.
        self._lambda_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self.queued = 0  # requests waiting for the Lambda right now
        self.shed: dict[str, int] = {"queue_full": 0, "queue_timeout": 0}

    def cors_headers(self) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": self.config.cors_origin,
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Allow-Methods": "GET, POST, PUT, OPTIONS",
            "Access-Control-Expose-Headers": "Retry-After",
            "Access-Control-Max-Age": "600",
        }

    def check_auth(self, authorization: str | None) -> HttpResponse | None:
        if self.config.token is None:
            return None
        if not authorization:
            return HttpResponse.error(
                401, ErrorCode.UNAUTHORIZED, "missing Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"}
            )
        scheme, _, presented = authorization.partition(" ")
        # Constant-time compare: the token is the only secret between the page and the stack.
        # As bytes: a str compare refuses non-ASCII text with a TypeError (a header can carry Latin-1).
        presented_bytes = presented.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented_bytes, self.config.token.encode()):
            return HttpResponse.error(
                403, ErrorCode.ACCESS_DENIED, "the token is not valid for this server", {"WWW-Authenticate": "Bearer"}
            )
        return None

    def check_task_token(self, authorization: str | None) -> tuple[HttpResponse | None, dict[str, Any] | None]:
        """The deployed task-token authorizer's job: (refusal, None) or (None, authorizer context).

        Same verification code as the Lambda authorizer (fewclick_contract.task_token); like API
        Gateway after a Lambda authorizer says "Unauthorized", every failure is a 401.
        """
        token = bearer_token(authorization)
        if self.config.task_token_key is None or token is None:
            return HttpResponse.error(401, ErrorCode.UNAUTHORIZED, "a Ground Truth task token is required"), None
        try:
            claims = verify_task_token(self.config.task_token_key, token)
        except TaskTokenError as exc:
            return HttpResponse.error(401, ErrorCode.UNAUTHORIZED, f"task token refused ({exc.reason})"), None
        return None, dict(authorizer_context(claims))

    def too_large(self, length: int) -> HttpResponse | None:
        if length > self.config.max_body_bytes:
            return HttpResponse.error(
                413,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"request body is {length} bytes; the limit is {self.config.max_body_bytes} bytes",
            )
        return None

    def throttle(self) -> HttpResponse | None:
        wait = self.bucket.take()
        if wait <= 0:
            return None
        seconds = max(1, math.ceil(wait))
        return HttpResponse.error(
            429, ErrorCode.THROTTLED, f"too many requests; retry in {seconds} s", {"Retry-After": str(seconds)}
        )

    def invoke(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        query: Mapping[str, list[str]],
        body: bytes,
        source_ip: str,
        authorizer: Mapping[str, Any] | None = None,
    ) -> HttpResponse:
        resource = API_ROUTES.get((method, path))
        if resource is None:
            known = [m for (m, p) in API_ROUTES if p == path]
            if known:
                return method_not_allowed(method, path)
            return HttpResponse.error(404, ErrorCode.NOT_FOUND, f"no route {method} {path}")
        request_id = str(uuid.uuid4())
        event = build_proxy_event(
            method=method,
            path=path,
            resource=resource,
            headers=headers,
            query=query,
            body=body,
            source_ip=source_ip,
            stage=self.config.stage,
            request_id=request_id,
            authorizer=authorizer,
        )
        context = LambdaContext(aws_request_id=request_id, deadline=time.monotonic() + INTEGRATION_TIMEOUT_S)
        with self._queue_lock:
            if self.queued >= self.config.max_queued:
                self.shed["queue_full"] += 1
                # What Lambda's concurrency limit answers through API Gateway: throttled, try again shortly.
                return HttpResponse.error(
                    429, ErrorCode.THROTTLED, "the API is at its concurrency limit; retry in 1 s", {"Retry-After": "1"}
                )
            self.queued += 1
        try:
            admitted = self._lambda_lock.acquire(timeout=self.config.max_queue_wait_s)
        finally:
            with self._queue_lock:
                self.queued -= 1
        if not admitted:
            with self._queue_lock:
                self.shed["queue_timeout"] += 1
            return HttpResponse.error(
                503,
                ErrorCode.ENDPOINT_UNAVAILABLE,
                f"the API is busy (queued over {self.config.max_queue_wait_s:g} s); retry in 2 s",
                {"Retry-After": "2"},
            )
        try:
            result = self.handler(event, context)
        except Exception:
            # API Gateway answers 502 when the function errors; the trace goes to our log, not the client.
            LOG.error("proxy Lambda raised:\n%s", traceback.format_exc())
            return HttpResponse.error(502, ErrorCode.INTERNAL_ERROR, "the proxy Lambda failed; see the server log")
        finally:
            self._lambda_lock.release()
        return response_from_lambda(result)

    def static(self, path: str) -> HttpResponse:
        ui_dir = self.config.ui_dir
        if ui_dir is None:
            return HttpResponse.error(404, ErrorCode.NOT_FOUND, "no UI is served here")
        relative = "index.html" if path in ("", "/") else unquote(path).lstrip("/")
        root = ui_dir.resolve()
        target = (root / relative).resolve()
        # resolve() + is_relative_to: "../" or a symlink cannot reach outside the UI folder.
        if not target.is_relative_to(root) or target.suffix not in UI_SUFFIXES or not target.is_file():
            return HttpResponse.error(404, ErrorCode.NOT_FOUND, f"no file {path}")
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix == ".js":
            content_type = "text/javascript"  # module scripts are refused under any other type
        headers = {
            "Content-Type": content_type + ("; charset=utf-8" if content_type.startswith("text/") else ""),
            # Development server: edits to the UI show up on reload.
            "Cache-Control": "no-store",
            "Content-Security-Policy": UI_CSP,
        }
        return HttpResponse(200, target.read_bytes(), headers)


def _content_length(value: str | None) -> int | None:
    """The header's byte count (`content_length`, the model server's reading); 0 when absent: unlike
    SageMaker's container contract, a body-less GET or preflight here carries none."""
    return 0 if not value else content_length(value)


class _RequestHandler(JsonRefusals, BaseHTTPRequestHandler):
    server: GatewayServer
    protocol_version = "HTTP/1.1"  # keep-alive: the UI makes a request per click
    # Idle keep-alive connections close after this, so no handler thread lingers after shutdown.
    timeout = 30
    server_version = "fewclick-local-gateway"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"gateway: {self.address_string()} {format % args}\n")

    def do_OPTIONS(self) -> None:
        # Preflights carry no Authorization header by design, so they are answered before auth.
        self._send(HttpResponse(204, b"", {}))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_HEAD(self) -> None:
        # The UI's pages answer HEAD as GET without the body (`_send`); no API route takes it.
        path = urlsplit(self.path).path
        if path.startswith(API_PREFIX) or path.startswith(LOCAL_PREFIX):
            self.refuse_method()
        else:
            self._dispatch("GET")

    def refuse_method(self) -> None:
        # No route takes DELETE, PATCH, TRACE, QUERY or any other method (`JsonRefusals`): the API's
        # JSON 405 and Allow.
        self._send(method_not_allowed(self.command, urlsplit(self.path).path), drain=True)

    def refuse(self, status: int, message: str) -> None:
        self._send(HttpResponse.error(status, ErrorCode.VALIDATION_ERROR, message), close=True)

    def _dispatch(self, method: str) -> None:
        gateway = self.server.gateway
        split = urlsplit(self.path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        try:
            if not (path.startswith(API_PREFIX) or path.startswith(LOCAL_PREFIX)):
                page = gateway.static(path)
                if method != "GET" and page.status != 404:  # nothing there is a 404 for every method
                    page = method_not_allowed(method, path)
                self._send(page, drain=method != "GET")
                return
            authorizer: dict[str, Any] | None = None
            if path == TASK_SEGMENT_PATH:
                denied, authorizer = gateway.check_task_token(self.headers.get("Authorization"))
            else:
                denied = gateway.check_auth(self.headers.get("Authorization"))
            if denied is not None:
                self._send(denied, drain=True)
                return
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                # API Gateway needs the size up front too; a body we cannot size cannot be limited.
                self.refuse(411, "send a Content-Length")
                return
            if conflicting(self.headers, "Content-Length"):
                self.refuse(400, "conflicting Content-Length headers")
                return
            length = _content_length(self.headers.get("Content-Length"))
            if length is None:
                # A negative length would read to the end of the stream, past every limit.
                self.refuse(400, "bad Content-Length")
                return
            refused = gateway.too_large(length)
            if refused is not None:
                # Answer without reading the body into memory (that is the point of the limit), then drop
                # the connection (lingering: `_send`).
                self._send(refused, close=True)
                return
            if path.startswith(API_PREFIX):
                throttled = gateway.throttle()
                if throttled is not None:
                    self._send(throttled, drain=True)
                    return
            body = self._read_body(length)
            if body is None:
                return
            if path.startswith(API_PREFIX):
                response = gateway.invoke(
                    method, path, self.headers.items(), query, body, self.client_address[0], authorizer=authorizer
                )
            elif gateway.local_api is None:
                response = HttpResponse.error(404, ErrorCode.NOT_FOUND, "no local labeling API here")
            else:
                response = gateway.local_api.handle(
                    method, path, query, body, content_type=self.headers.get("Content-Type")
                )
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception:
            LOG.error("gateway error:\n%s", traceback.format_exc())
            response = HttpResponse.error(500, ErrorCode.INTERNAL_ERROR, "the local gateway failed; see the server log")
        self._send(response)

    def _read_body(self, length: int) -> bytes | None:
        """The declared ``length`` bytes, or None once a refusal is sent: a client that stops short
        of its Content-Length gets 400 (it closed) or 408 (it went quiet for `timeout` seconds), and
        the connection closes, since what follows on it can no longer be framed."""
        if not length:
            return b""
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            message = f"the body stopped before its Content-Length ({length} bytes) for {self.timeout} s"
            self.refuse(408, message)
            return None
        if len(body) < length:
            message = f"the body ended after {len(body)} of its Content-Length's {length} bytes"
            self.refuse(400, message)
            return None
        return body

    def _send(self, response: HttpResponse, *, close: bool = False, drain: bool = False) -> None:
        if drain:
            # A refused request's (small) body must be consumed, or it is read as the next request.
            length = _content_length(self.headers.get("Content-Length"))
            if length is None:
                length, close = 0, True
            if length > self.server.gateway.config.max_body_bytes:
                close = True
            elif length:
                self.rfile.read(length)
        headers = {**self.server.gateway.cors_headers(), **response.headers}
        try:
            self.send_response(response.status, HTTPStatus(response.status).phrase)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if close:
            # What the client still sends (a refused body) is read and dropped before the close, so the
            # answer reaches a client that uploads everything before reading.
            linger_close(self.connection)


class GatewayServer(ThreadingHTTPServer):
    """The HTTP server; one daemon thread per connection (a labeler's clicks must not queue behind a save)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: Gateway, *, verbose: bool = False) -> None:
        self.gateway = gateway
        self.verbose = verbose
        super().__init__(address, _RequestHandler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="fewclick-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()
