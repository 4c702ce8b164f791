"""HTTP side of the model server: the SageMaker hosting contract on a ThreadingHTTPServer.

- ``GET /ping``: 200 once the model is loaded and warmed up, 503 before (SageMaker
  waits for 200 before routing traffic; a load failure stays 503 and the CLI exits).
- ``POST /invocations``: a `fewclick_contract.wire.WireRequest`; the session comes in
  the ``X-Amzn-SageMaker-Session-Id`` header (``NEW_SESSION`` opens one).
- ``GET /stats``: cache and queue counters (load tests, operators); SageMaker never routes it.

Why the standard library server: the work per request is one small JSON body and a
PNG, and the heavy part runs on the engine's inference threads, so an ASGI stack would
add dependencies and an event loop without removing any latency. HTTP/1.1 keep-alive
is on (SageMaker reuses connections); every response has a Content-Length.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from fewclick_contract.media_type import json_content_type_problem
from fewclick_contract.wire import SAGEMAKER_MAX_PAYLOAD_BYTES, SESSION_HEADER, WireError, WireErrorCode

from ..inference_options import PredictorOptions
from .engine import DEFAULT_MAX_PENDING, ClickFactory, InferenceEngine, PredictorFactory, shutting_down
from .http_server import JsonRefusals, QuietThreadingHTTPServer, conflicting, content_length, linger_close
from .sessions import SessionCache

# How long a stop waits for requests already in: a click takes milliseconds, a 100-click replay
# seconds; a platform that kills sooner simply cuts it short.
DRAIN_TIMEOUT_S = 25.0
LOG = logging.getLogger("fewclick.model_server")

# Slack over SageMaker's own 6 MB limit for JSON framing; anything larger is refused
# before it is read into memory.
MAX_BODY_BYTES = SAGEMAKER_MAX_PAYLOAD_BYTES + 64 * 1024


class _Handler(JsonRefusals, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fewclick-model-server"
    # Headers and body go out in separate writes; with Nagle on, the body can wait for the
    # peer's delayed ACK (tens of ms per request).
    disable_nagle_algorithm = True
    # A client that stops sending mid-request must not hold a thread forever.
    timeout = 65
    server: ModelHttpServer

    def log_message(self, format: str, *args: object) -> None:
        LOG.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, *, close: bool = False) -> None:
        """``close``: the answer to a request whose body was refused unread, after which the connection
        cannot be framed: it closes, reading and dropping what the client still uploads first
        (`linger_close`), so a client that sends its whole body before reading gets this answer."""
        if close:
            self.close_connection = True
        self.send_response(status)
        for k, v in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if close:
            linger_close(self.connection)

    def _send_error(self, status: int, code: WireErrorCode, message: str, *, close: bool = False) -> None:
        self._send(status, WireError.of(code, message).model_dump_json().encode(), close=close)

    def parse_request(self) -> bool:
        # A bare CR inside a header line is a line break to the header parser, so
        # "Session-Id: abc<CR>Content-Length: 9" would become a second, smuggled header; SageMaker
        # never sends one, so such a request is refused (RFC 9112, 2.2) rather than guessed at.
        raw = self.rfile
        lines: list[bytes] = []

        class _Tap:
            def readline(self, limit: int = -1) -> bytes:
                line = raw.readline(limit)
                lines.append(line)
                return line

            def __getattr__(self, name: str) -> object:
                return getattr(raw, name)

        self.rfile = _Tap()  # type: ignore[assignment]
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = raw
        if parsed and any(b"\r" in line.rstrip(b"\r\n") for line in lines):
            self.refuse(400, "a header line holds a bare CR")
            return False
        return parsed

    def refuse(self, status: int, message: str) -> None:
        self._send_error(status, WireErrorCode.BAD_REQUEST, message, close=True)

    def refuse_method(self) -> None:
        # This server takes GET, HEAD and POST (`JsonRefusals`): say so in the contract's JSON and Allow.
        body = WireError.of(WireErrorCode.BAD_REQUEST, f"{self.command} is not allowed; GET, HEAD or POST")
        self._send(
            405,
            body.model_dump_json().encode(),
            {"Content-Type": "application/json", "Allow": "GET, HEAD, POST"},
            close=True,
        )

    def _framing_error(self) -> str | None:
        """What makes this request's body boundary ambiguous, or None. SageMaker sends one
        Content-Length; a second one, or Transfer-Encoding beside it, would let a body hide a second
        request on a kept-alive connection."""
        if self.headers.get("Transfer-Encoding") is not None:
            return "Transfer-Encoding is not supported: send the body with one Content-Length"
        for name in ("Content-Length", SESSION_HEADER):
            if conflicting(self.headers, name):
                return f"conflicting {name} headers"
        return None

    def do_GET(self) -> None:
        engine = self.server.engine
        problem = self._framing_error()
        if problem is None and (content_length(self.headers.get("Content-Length")) or 0) > 0:
            problem = f"{self.command} takes no body"
        if problem is not None:
            self.refuse(400, problem)
            return
        path = self.path.split("?", 1)[0]
        if path == "/ping":
            if self.server.closing:
                # Stopping: the platform should route new sessions elsewhere.
                self._send(503, json.dumps({"status": "stopping"}).encode())
            elif engine.ready:
                body = {"status": "ok", "modelVersion": engine.model_version}
                self._send(200, json.dumps(body).encode())
            else:
                state = "failed" if engine.load_error is not None else "loading"
                self._send(503, json.dumps({"status": state}).encode())
            return
        if path == "/stats":
            # Introspection for load tests and operators. Not part of the hosting contract and not reachable
            # through SageMaker, which only forwards /ping and /invocations; it holds counters only.
            self._send(200, json.dumps(engine.stats()).encode())
            return
        self._send_error(404, WireErrorCode.BAD_REQUEST, f"no route GET {self.path[:100]}")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        # After the body is read, so the refused request leaves the connection reusable.
        problem = json_content_type_problem(self.headers.get("Content-Type"))
        if problem is not None:
            self._send_error(415, WireErrorCode.UNSUPPORTED_MEDIA_TYPE, problem)
            return
        # Admitted only once the body is in: a client still uploading (or stalled mid-body) holds
        # no inference, so a SIGTERM's drain does not wait out its read timeout.
        if not self.server.admit():
            # Stopping (SIGTERM): in-flight requests are being answered; a new one is told to retry
            # elsewhere, and this connection is not kept.
            self.close_connection = True
            refusal = shutting_down()
            self._send_error(503, refusal.code, refusal.message)
            return
        try:
            result = self.server.engine.invoke(body, self.headers.get(SESSION_HEADER))
            self._send(result.status, result.body, result.headers)
        finally:
            self.server.release()

    def _read_body(self) -> bytes | None:
        """The /invocations body, or None once a refusal is sent (and the connection marked closed:
        after a refusal before or during the body, the stream cannot be framed)."""
        if self.path.split("?", 1)[0] != "/invocations":
            self.refuse(404, f"no route POST {self.path[:100]}")
            return None
        problem = self._framing_error()
        if problem is not None:
            self.refuse(400, problem)
            return None
        length = content_length(self.headers.get("Content-Length"))
        if length is None:
            self.refuse(411, "Content-Length required")
            return None
        if length > MAX_BODY_BYTES:
            # Not reading the body means the connection cannot be reused.
            self._send_error(413, WireErrorCode.PAYLOAD_TOO_LARGE, "request body over 6 MB", close=True)
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            # The client closed before its Content-Length: a cut body is not run as if whole.
            self.refuse(400, f"the body ended after {len(body)} of {length} bytes")
            return None
        return body


class ModelHttpServer(QuietThreadingHTTPServer):
    logger = LOG

    def __init__(self, address: tuple[str, int], engine: InferenceEngine) -> None:
        self.engine = engine
        self._closing = False
        self._active = 0  # POSTs between admit() and their answer's last byte
        self._idle = threading.Condition()
        super().__init__(address, _Handler)

    @property
    def closing(self) -> bool:
        return self._closing

    def admit(self) -> bool:
        with self._idle:
            if self._closing:
                return False
            self._active += 1
            return True

    def release(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Refuse new requests, then wait until every admitted one has been answered."""
        with self._idle:
            self._closing = True
            return self._idle.wait_for(lambda: self._active == 0, timeout)


@dataclass
class ModelServerHandle:
    """A running model server (see `start_model_server`)."""

    server: ModelHttpServer
    engine: InferenceEngine
    thread: threading.Thread
    loader: threading.Thread

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until /ping would answer 200; raise if loading failed or timed out."""
        self.loader.join(timeout)
        if self.engine.load_error is not None:
            raise RuntimeError("model server failed to load the model") from self.engine.load_error
        if not self.engine.ready:
            raise TimeoutError("model server not ready in time")

    def evict_session(self, session_id: str) -> bool:
        """Drop a session's cache (tests and benchmarks simulate expiry with this)."""
        return self.engine.cache.evict(session_id)

    def stop(self, drain_s: float = DRAIN_TIMEOUT_S) -> bool:
        """Stop gracefully: new requests get a retryable 503, the ones already in (running or queued)
        are answered, then the listener and the inference threads go. False when requests were still
        running after ``drain_s`` (their inference threads may never end: see `cli.run`)."""
        drained = self.server.drain(drain_s)
        if not drained:
            LOG.warning("requests still running after %.0f s: stopping anyway", drain_s)
        self.server.shutdown()
        self.server.server_close()
        self.engine.close()
        self.thread.join(timeout=5)
        return drained


def detect_devices(device: str | None = None) -> list[str]:
    """One entry per model replica: every visible GPU, else the CPU once."""
    if device and device != "auto":
        return [device]
    try:
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return ["cpu"]


def available_cpus() -> int:
    """CPUs this process may use: affinity mask and cgroup v2 quota (containers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def configure_torch(devices: Sequence[str], threads: int | None = None) -> None:
    """Process-wide torch settings for serving, set once before the first model load.

    ``threads`` overrides the intra-op thread count: on a machine shared with other
    CPU-heavy work (a training run), fewer threads than cores avoids oversubscription,
    which makes OpenMP workers spin and costs up to 10x.
    """
    import torch

    # Sigmoid tails and guidance maps produce denormals; on CPU they are ~10x slower.
    torch.set_flush_denormal(True)
    cpus = available_cpus()
    if threads:
        torch.set_num_threads(max(1, threads))
    elif all(d == "cpu" for d in devices):
        # One CPU replica on a dedicated instance: its intra-op pool may use every core;
        # request threads mostly wait on it, so they need no cores of their own.
        torch.set_num_threads(cpus)
    else:
        # On GPU the CPU only launches kernels and does pre/post-processing.
        torch.set_num_threads(min(4, cpus))
        torch.backends.cudnn.benchmark = True  # fixed S x S input: autotune once


def default_predictor_factory(options: PredictorOptions | None = None) -> PredictorFactory:
    """Each replica's predictor, built as ``options`` say (default: as served)."""
    options = options or PredictorOptions()

    def factory(device: str):
        predictor = options.load(device)
        LOG.info("model %s on %s", predictor.model_version, predictor.describe())
        return predictor

    return factory


def start_model_server(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    predictor_factory: PredictorFactory | None = None,
    options: PredictorOptions | None = None,
    devices: Sequence[str] | None = None,
    cache: SessionCache | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
    click_factory: ClickFactory | None = None,
    wait: bool = True,
    ready_timeout: float = 300.0,
    tune_torch: bool = False,
    torch_threads: int | None = None,
) -> ModelServerHandle:
    """Bind (port 0 picks a free one), serve in a daemon thread, load the model.

    With ``wait`` it returns once the model answers /ping with 200. ``tune_torch``
    applies `configure_torch` (process-wide: leave it off inside test processes).
    """
    devs = list(devices) if devices else detect_devices()
    if tune_torch:
        configure_torch(devs, torch_threads)
    engine = InferenceEngine(
        predictor_factory or default_predictor_factory(options),
        devs,
        cache=cache,
        max_pending=max_pending,
        click_factory=click_factory,
    )
    server = ModelHttpServer((host, port), engine)
    # A short poll interval makes stop() quick (tests start and stop many servers).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="model-server", daemon=True
    )
    thread.start()

    def _load() -> None:
        # A failure is recorded on the engine and reported by wait_ready() and /ping.
        with contextlib.suppress(BaseException):
            engine.load()

    loader = threading.Thread(target=_load, name="model-loader", daemon=True)
    loader.start()
    handle = ModelServerHandle(server, engine, thread, loader)
    if wait:
        try:
            handle.wait_ready(ready_timeout)
        except BaseException:
            handle.stop()
            raise
    return handle
