"""Shared pieces of the hardening tests: the local stack built from `fewclick.local.serve`'s own parts,
a fake S3 that boto3 really talks to, an HTTP client, and hostile inputs made cheaply.

The stack is composed here (not `LocalStack`) only so a test can hold each piece: kill and restart the
model server process, point the proxy at an allowed bucket on the fake S3. Every piece is the one
`fewclick serve` runs: `ModelServerProcess` (`fewclick model-server` as a child process), the SageMaker
Runtime stand-in, the real proxy `lambda_handler` loaded as the Lambda runtime loads it, the local
gateway (auth, body limit, throttling, admission control) and the label store.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

# tests/ is on sys.path under pytest (rootdir conftest), as `from conftest import dataset` relies on too.
from serving.helpers import FakePredictor

REPO_ROOT = Path(__file__).resolve().parents[2]
# CI=true (set by .ci/run): the short profile, fewer fuzz examples and shorter load runs.
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOKEN = "hardening-test-token"
ALLOWED_BUCKET = "fewclick-allowed"
FORBIDDEN_BUCKET_OBJECT = (ALLOWED_BUCKET, "private/secret.png")  # the fake S3 answers 403 for it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- images, good and bad ---


def scene(width: int = 160, height: int = 120) -> tuple[np.ndarray, list[dict[str, int]]]:
    """An RGB image with one bright rectangle, and the rectangle's 4 extreme points (API JSON)."""
    rgb = np.full((height, width, 3), 40, np.uint8)
    x0, y0, x1, y1 = width // 4, height // 4, 3 * width // 4, 3 * height // 4
    rgb[y0:y1, x0:x1] = (220, 60, 60)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    points = [{"x": x0, "y": cy}, {"x": x1 - 1, "y": cy}, {"x": cx, "y": y0}, {"x": cx, "y": y1 - 1}]
    return rgb, points


def encode(rgb: np.ndarray, fmt: str = ".png") -> bytes:
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# What the request tests (bad input, faults) send: the default scene, its size and PNG bytes, to this route.
SEGMENT = "/v1/segment"
RGB, POINTS = scene()
HEIGHT, WIDTH = RGB.shape[:2]
PNG = encode(RGB)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG header claiming ``width x height`` 8-bit grey pixels, with an IDAT holding the zlib stream of
    only its first rows. A few hundred bytes: the point is what a decoder would allocate, not what we do."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\0" * (min(width, 4096) + 1)
    data = b"".join(compressor.compress(row) for _ in range(4)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def session_token(fields: dict[str, Any]) -> str:
    """An unsigned `v1.` session token with arbitrary fields (what a client can forge without a secret)."""
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"v1.{payload}"


def decode_session_token(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


# --- HTTP ---


@dataclass
class Reply:
    status: int
    raw: bytes
    headers: dict[str, str]  # lower-case names
    elapsed_s: float

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    @property
    def code(self) -> str | None:
        body = self.json
        return body.get("error", {}).get("code") if isinstance(body, dict) else None

    @property
    def message(self) -> str:
        body = self.json
        return str(body.get("error", {}).get("message", "")) if isinstance(body, dict) else ""

    def __repr__(self) -> str:  # what an assertion failure shows
        return f"Reply({self.status}, {self.raw[:300]!r}, retry-after={self.headers.get('retry-after')})"


def call(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Reply:
    """One HTTP request on a fresh connection (a half-read connection from a refused request can't leak)."""
    target = urlsplit(base_url)
    conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    started = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        payload = resp.read()
        return Reply(resp.status, payload, {k.lower(): v for k, v in resp.getheaders()}, time.monotonic() - started)
    finally:
        conn.close()


# --- a fake S3 (path-style GetObject over HTTP, so boto3's real parsing and error mapping run) ---


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, bucket, key) as S3 would see them
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                bucket, _, key = path.lstrip("/").partition("/")
                fake.requests.append((self.command, bucket, key))
                if (bucket, key) == FORBIDDEN_BUCKET_OBJECT:
                    self._error(403, "AccessDenied", "Access Denied", head)
                    return
                data = fake.objects.get((bucket, key))
                if data is None:
                    self._error(404, "NoSuchKey", "The specified key does not exist.", head)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{zlib.crc32(data):08x}"')
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str, head: bool) -> None:
                body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the local stack ---


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class HardeningStack:
    images_dir: Path
    out_dir: Path
    s3: FakeS3
    model: Any = None  # fewclick.local.serve.ModelServerProcess
    runtime: Any = None  # fewclick.local.serve.RuntimeStandIn
    gateway: Any = None  # fewclick.local.gateway.Gateway
    server: Any = None  # fewclick.local.gateway.GatewayServer
    segmenter: Any = None  # the proxy's Segmenter, configured with the allowed bucket and the fake S3
    handler_module: Any = None
    model_port: int = 0
    _stoppers: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def start(self, ready_timeout_s: float = 300.0) -> HardeningStack:
        from fewclick.local.gateway import Gateway, GatewayConfig, GatewayServer
        from fewclick.local.labeling_api import LocalLabelApi
        from fewclick.local.labels import LabelStore
        from fewclick.local.serve import (
            ENDPOINT_NAME,
            PROXY_HANDLER_MODULE,
            UI_DIR,
            RuntimeStandIn,
            _proxy_environment,
            load_proxy_handler,
        )

        self.model_port = free_port()
        self._start_model()
        self.runtime = RuntimeStandIn(self.model.url)
        self._stoppers.append(self.runtime.stop)
        environment = _proxy_environment(self.runtime.url, verbose=False)
        saved = {name: os.environ.get(name) for name in environment}
        self._stoppers.append(lambda: _restore_environment(saved))
        os.environ.update(environment)
        handler = load_proxy_handler()
        self.handler_module = sys.modules[PROXY_HANDLER_MODULE]
        from fewclick_proxy.config import ProxyConfig
        from fewclick_proxy.endpoint_client import EndpointClient
        from fewclick_proxy.image_source import ImageSource
        from fewclick_proxy.segment import Segmenter

        config = ProxyConfig(
            endpoint_name=ENDPOINT_NAME,
            runtime_endpoint_url=self.runtime.url,
            allowed_buckets=frozenset({ALLOWED_BUCKET}),
        )
        self.segmenter = Segmenter(
            config, ImageSource(config, s3_client_factory=self.s3.client), EndpointClient(config)
        )
        self.reconfigure()
        store = LabelStore(self.images_dir, self.out_dir, ["object", "person"])
        # Generous throttling: the fuzzer must meet the proxy, not the token bucket (tested on its own).
        gateway_config = GatewayConfig(token=TOKEN, rate_per_s=10_000, burst=10_000, ui_dir=UI_DIR)
        self.gateway = Gateway(gateway_config, handler, LocalLabelApi(store, auth_required=True))
        self.server = GatewayServer(("127.0.0.1", 0), self.gateway)
        self._stoppers.append(self.server.stop)
        self.server.start()
        self.wait_model(ready_timeout_s)
        return self

    def _start_model(self) -> None:
        from fewclick.local.serve import ModelServerProcess

        self.model = ModelServerProcess(self.model_port, None, verbose=False)

    def wait_model(self, timeout_s: float = 300.0) -> None:
        self.model.wait_ready(timeout_s, threading.Event())

    def reconfigure(self) -> None:
        """Point the (module-global) proxy at this stack again; other test areas configure it too."""
        self.handler_module.configure(self.segmenter)

    def kill_model(self) -> None:
        """SIGKILL the model server process group: no goodbye, as when an instance dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.model.process.pid, signal.SIGKILL)
        self.model.process.wait(timeout=10)

    def restart_model(self, timeout_s: float = 300.0) -> None:
        """A new model server process on the same port (a replaced container behind the same endpoint)."""
        self._start_model()
        self.wait_model(timeout_s)

    def stop(self) -> None:
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()
        if self.model is not None:
            self.model.stop()


def label_payload(width: int, height: int, value: int) -> dict[str, Any]:
    """A save request with one object whose mask is a ``value``-wide band (so versions are tellable apart)."""
    from pycocotools import mask as mask_utils

    mask = np.zeros((height, width), np.uint8)
    mask[:, : max(1, min(width, value))] = 1
    rle = mask_utils.encode(np.asfortranarray(mask[:, :, None]))[0]
    return {
        "objects": [
            {
                "label": "object",
                "extremePoints": [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 0, "y": 1}, {"x": 1, "y": 1}],
                "clicks": [],
                "mask": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            }
        ]
    }


# --- an in-process stack with the serving tests' fake predictor (no network): for the cache and overload tests ---


@dataclass(frozen=True)
class TinyClick:
    x: float
    y: float
    kind: str


@dataclass
class MiniStack:
    """Model server (tiny predictor, chosen cache and queue bounds) + runtime stand-in + the real proxy."""

    model: Any
    runtime: Any
    handler_module: Any
    segmenter: Any

    def invoke(self, body: Any, path: str = SEGMENT) -> Reply:
        """The real lambda_handler with the local gateway's own API Gateway event (no HTTP server)."""
        from fewclick.local.gateway import LambdaContext, build_proxy_event, response_from_lambda

        self.handler_module.configure(self.segmenter)
        event = build_proxy_event(
            method="POST",
            path=path,
            resource=path,
            headers=[("Content-Type", "application/json"), ("Authorization", f"Bearer {TOKEN}")],
            query={},
            body=json.dumps(body).encode(),
            source_ip="127.0.0.1",
            stage="test",
            request_id="hardening",
        )
        started = time.monotonic()
        out = self.handler_module.lambda_handler(event, LambdaContext("hardening", time.monotonic() + 29))
        response = response_from_lambda(out)
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Reply(response.status, response.body, headers, time.monotonic() - started)

    def stop(self) -> None:
        self.runtime.stop()
        self.model.stop()


def start_mini_stack(
    *,
    max_sessions: int = 512,
    max_pending: int = 16,
    delay_s: float = 0.0,
    s3: FakeS3 | None = None,
    **proxy_config: Any,
) -> MiniStack:
    from fewclick_model.server import SessionCache, start_model_server

    from fewclick.local.sagemaker_runtime import start_runtime_stub

    predictor = FakePredictor(model_version="tiny-1", delay_s=delay_s)
    model = start_model_server(
        "127.0.0.1",
        0,
        predictor_factory=lambda device: predictor,
        devices=["cpu"],
        cache=SessionCache(max_sessions=max_sessions),
        max_pending=max_pending,
        click_factory=TinyClick,
        ready_timeout=60,
    )
    runtime = start_runtime_stub(model.url, endpoint_names={"fewclick-hardening"})
    from fewclick.local.serve import load_proxy_handler

    load_proxy_handler()
    handler_module = sys.modules["fewclick_proxy.handler"]
    from fewclick_proxy.config import ProxyConfig
    from fewclick_proxy.endpoint_client import EndpointClient
    from fewclick_proxy.image_source import ImageSource
    from fewclick_proxy.segment import Segmenter

    config = ProxyConfig(
        endpoint_name="fewclick-hardening",
        runtime_endpoint_url=runtime.url,
        allowed_buckets=frozenset({ALLOWED_BUCKET}),
        input_size=predictor.input_size,
        **proxy_config,
    )
    images = ImageSource(config, s3_client_factory=s3.client) if s3 is not None else ImageSource(config)
    segmenter = Segmenter(config, images, EndpointClient(config))
    return MiniStack(model, runtime, handler_module, segmenter)
