"""Inference: wire request in, wire response out; model replicas, session routing, cache.

Affinity design (why sessions always find their cache):
SageMaker's stateful sessions route every request of a session to the same *instance*.
Inside the container there is exactly ONE server process holding one `SessionCache`,
so any request thread can find any session. The model runs as one replica per device
(one per GPU, or a single CPU replica whose intra-op threads use all cores), and each
replica is driven by exactly one inference thread. A session's entry records its
replica (its features live on that device), and every request of the session is run on
that replica's thread. Consequences:
- no cross-process routing, no hashing: the entry *is* the route;
- the clicks of one session are serialised (a double click cannot race its own cache);
- the GPU is used by one thread at a time, which is the fastest way to run a small
  batch-1 network; HTTP parsing and PNG work run concurrently in request threads;
- a bounded queue per replica (`max_pending`) turns overload into a quick 503
  OVERLOADED (with Retry-After at the proxy) instead of a 60 s SageMaker timeout.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import cv2
import numpy as np
from pydantic import ValidationError

from fewclick_contract.edge_refine import prepare_crop
from fewclick_contract.wire import (
    NEW_SESSION,
    SAGEMAKER_MAX_PAYLOAD_BYTES,
    SESSION_HEADER,
    WIRE_ERROR_STATUS,
    WIRE_VERSION,
    WireError,
    WireErrorCode,
    WireRequest,
    WireResponse,
    decode_crop,
    decode_probabilities,
    encode_probabilities,
    format_session_header,
)

from .sessions import SessionCache, SessionEntry

LOG = logging.getLogger("fewclick.model_server")

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9])*$")
DEFAULT_MAX_PENDING = 16
# SageMaker gives a container 60 s per invocation; answer before it gives up.
REQUEST_DEADLINE_S = 55.0


class CropPredictor(Protocol):
    """What the server needs from `fewclick_model.predictor` (see docs/LAYOUT.md)."""

    input_size: int
    model_version: str

    def encode(self, crop_rgb: np.ndarray) -> Any: ...

    def predict(self, feats: Any, clicks: Sequence[Any], previous: np.ndarray | None = None) -> np.ndarray: ...

    def predict_sequence(
        self, feats: Any, extreme_points: Sequence[Any], corrective_clicks: Sequence[Any], cache: dict
    ) -> np.ndarray: ...

    def refine_edges(self, prob: np.ndarray, guide: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str: ...


PredictorFactory = Callable[[str], CropPredictor]
ClickFactory = Callable[[float, float, str], Any]


class WireFailure(Exception):
    def __init__(self, code: WireErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def shutting_down() -> WireFailure:
    """The answer while the server stops: OVERLOADED, not NOT_READY ("still loading", which the proxy
    answers with a 10 s wait): a retry soon reaches another instance."""
    return WireFailure(WireErrorCode.OVERLOADED, "the model server is shutting down; retry shortly")


@dataclass
class InvokeResult:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Replica:
    index: int
    device: str
    predictor: CropPredictor
    executor: ThreadPoolExecutor
    pending: int = 0


def default_click_factory() -> ClickFactory:
    from fewclick_model.predictor import CropClick  # the model library's own click type

    return lambda x, y, kind: CropClick(x, y, kind)


class InferenceEngine:
    def __init__(
        self,
        predictor_factory: PredictorFactory,
        devices: Sequence[str],
        cache: SessionCache | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        click_factory: ClickFactory | None = None,
    ) -> None:
        self._factory = predictor_factory
        self.devices = list(devices) or ["cpu"]
        self.cache = cache or SessionCache()
        self.max_pending = max(1, max_pending)
        self._click_factory = click_factory
        self.replicas: list[Replica] = []
        self._ready = threading.Event()
        self.load_error: BaseException | None = None
        self._lock = threading.Lock()
        self.model_version = "unloaded"
        self.input_size = 0
        self.overloaded = 0  # requests refused with OVERLOADED (queue full or not started in time)

    # --- lifecycle -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def load(self) -> None:
        """Load one predictor per device and warm each up; /ping turns 200 after this."""
        try:
            if self._click_factory is None:
                self._click_factory = default_click_factory()
            for i, device in enumerate(self.devices):
                t0 = time.perf_counter()
                predictor = self._factory(device)
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{i}")
                replica = Replica(i, device, predictor, executor)
                # The first call pays for lazy init (cuDNN autotune, allocator growth);
                # a labeler's first click should not.
                executor.submit(self._warm_up, replica).result()
                self.replicas.append(replica)
                LOG.info(
                    "replica %d on %s loaded %s in %.1fs",
                    i,
                    device,
                    predictor.model_version,
                    time.perf_counter() - t0,
                )
            self.model_version = self.replicas[0].predictor.model_version
            self.input_size = int(self.replicas[0].predictor.input_size)
            self._ready.set()
        except BaseException as exc:
            self.load_error = exc
            LOG.exception("model load failed")
            raise

    def _warm_up(self, replica: Replica) -> None:
        assert self._click_factory is not None
        s = int(replica.predictor.input_size)
        with _inference_mode():
            feats = replica.predictor.encode(np.zeros((s, s, 3), dtype=np.uint8))
            pts = [(s / 2, s / 4), (s / 2, 3 * s / 4), (s / 4, s / 2), (3 * s / 4, s / 2)]
            clicks = [self._click_factory(x, y, "boundary") for x, y in pts]
            first = replica.predictor.predict(feats, clicks, None)
            # A corrective boundary click too, so a boundary refiner's first real click is warm.
            replica.predictor.predict(feats, [*clicks, self._click_factory(s / 3, s / 4, "boundary")], first)

    def close(self) -> None:
        # After the HTTP side drained (`ModelServerHandle.stop`) nothing is queued; whatever still is
        # gets cancelled and answered 503 (retryable), never a 500.
        for r in self.replicas:
            r.executor.shutdown(wait=False, cancel_futures=True)

    # --- request handling ----------------------------------------------------------------

    def invoke(self, body: bytes, session_header: str | None) -> InvokeResult:
        """Never raises: every outcome is a wire response or a wire error."""
        try:
            return self._invoke(body, session_header)
        except WireFailure as f:
            return _error(f.code, f.message)
        except Exception:
            LOG.exception("invocation failed")
            return _error(WireErrorCode.INTERNAL, "the model server failed; see its log")

    def _invoke(self, body: bytes, session_header: str | None) -> InvokeResult:
        if not self.ready:
            raise WireFailure(WireErrorCode.NOT_READY, "the model is still loading")
        if len(body) > SAGEMAKER_MAX_PAYLOAD_BYTES:
            raise WireFailure(WireErrorCode.PAYLOAD_TOO_LARGE, "request body over 6 MB")
        req = _parse_request(body)

        header = (session_header or "").strip()
        is_new = header == NEW_SESSION or (not header and not req.sessionId)
        if is_new:
            session_id = self.cache.new_session_id()
        else:
            session_id = header or str(req.sessionId)
            if len(session_id) > 256 or not SESSION_ID_RE.fullmatch(session_id):  # "$" passes a trailing "\n"
                raise WireFailure(WireErrorCode.BAD_REQUEST, "malformed session id")
            if req.sessionId and header and req.sessionId != header:
                raise WireFailure(WireErrorCode.BAD_REQUEST, "sessionId in body and header differ")
        if is_new and req.crop is None:
            raise WireFailure(WireErrorCode.BAD_REQUEST, "a new session needs the crop pixels")

        replica = self._route(session_id)
        with self._lock:
            if replica.pending >= self.max_pending:
                self.overloaded += 1
                raise WireFailure(WireErrorCode.OVERLOADED, "inference queue is full; retry shortly")
            replica.pending += 1

        def release(_: object = None) -> None:
            with self._lock:
                replica.pending -= 1

        try:
            future = replica.executor.submit(self._run, replica, session_id, req, is_new)
        except RuntimeError:  # the executor was shut down: the server is stopping
            release()
            raise shutting_down() from None
        # The slot is free when the work is, not when this request stops waiting for it: a request
        # given up on while it runs still occupies the replica, so the queue bound stays true.
        future.add_done_callback(release)
        try:
            response, expires_at = future.result(timeout=REQUEST_DEADLINE_S)
        except FutureTimeout:
            with self._lock:
                self.overloaded += 1
            if future.cancel():
                raise WireFailure(WireErrorCode.OVERLOADED, "inference did not start in time") from None
            raise WireFailure(WireErrorCode.OVERLOADED, "inference is taking too long; retry shortly") from None
        except CancelledError:
            raise shutting_down() from None

        headers = {"Content-Type": "application/json"}
        if is_new:
            expires = datetime.fromtimestamp(expires_at, tz=UTC)
            headers[SESSION_HEADER] = format_session_header(session_id, expires)
        return InvokeResult(200, response.model_dump_json().encode(), headers)

    def stats(self) -> dict[str, Any]:
        """Counters for load tests and operators (`GET /stats`): no session ids, no image data."""
        cache = self.cache.stats()
        with self._lock:
            pending = [r.pending for r in self.replicas]
            overloaded = self.overloaded
        return {
            "modelVersion": self.model_version,
            "ready": self.ready,
            "sessions": cache.sessions,
            "cacheBytes": cache.bytes,
            "cacheHits": cache.hits,
            "cacheMisses": cache.misses,
            "evictions": cache.evictions,
            "maxSessions": self.cache.max_sessions,
            "pending": pending,
            "maxPending": self.max_pending,
            "overloaded": overloaded,
        }

    def _route(self, session_id: str) -> Replica:
        entry = self.cache.peek(session_id)
        if entry is not None and entry.replica < len(self.replicas):
            return self.replicas[entry.replica]
        # A new (or re-created) session goes to the replica with the least work.
        return min(self.replicas, key=lambda r: (r.pending, self.cache.count_on(r.index)))

    def _run(self, replica: Replica, session_id: str, req: WireRequest, is_new: bool) -> tuple[WireResponse, float]:
        t0 = time.perf_counter()
        try:
            with _inference_mode():
                prob, entry, hit = self._predict(replica, session_id, req, is_new)
        except _OutOfMemory:
            # Cached features of idle sessions are the only thing we can give back.
            LOG.warning("out of device memory; dropping half the session cache and retrying")
            self.cache.shrink(0.5)
            _empty_device_cache()
            with _inference_mode():
                prob, entry, hit = self._predict(replica, session_id, req, is_new)
        if entry.guide is not None and entry.guide.shape[0] == req.size:
            # The crop came finer than the network: answer at its side, edges snapped onto it.
            prob = replica.predictor.refine_edges(prob, entry.guide)
        elif prob.shape != (req.size, req.size):
            prob = cv2.resize(prob.astype(np.float32), (req.size, req.size), interpolation=cv2.INTER_LINEAR)
        model_ms = (time.perf_counter() - t0) * 1000.0
        response = WireResponse(
            wire=WIRE_VERSION,
            sessionId=session_id,
            cropId=req.cropId,
            size=req.size,
            probabilities=encode_probabilities(prob),
            modelVersion=replica.predictor.model_version,
            modelMs=round(model_ms, 3),
            cache="hit" if hit else "miss",
        )
        return response, entry.expires_at

    def _predict(
        self, replica: Replica, session_id: str, req: WireRequest, is_new: bool
    ) -> tuple[np.ndarray, SessionEntry, bool]:
        predictor = replica.predictor
        s = int(predictor.input_size)
        entry = None if is_new else self.cache.get(session_id)
        # The side too: the same crop id at another side is another network input (a peer's bug, or
        # a crafted request), never answered from this one's features.
        hit = (
            entry is not None
            and entry.crop_id == req.cropId
            and entry.size == req.size
            and entry.replica == replica.index
        )
        self.cache.record(hit)
        if not hit:
            if req.crop is None:
                reason = "unknown or expired session" if entry is None else "the crop changed"
                raise WireFailure(WireErrorCode.SESSION_EXPIRED, f"{reason}: resend with crop pixels")
            try:
                crop = decode_crop(req.crop, req.size)
            except ValueError as exc:
                raise WireFailure(WireErrorCode.BAD_REQUEST, str(exc)) from None
            small, guide = prepare_crop(crop, s)
            feats = _guard_oom(lambda: predictor.encode(small))
            expires_at = entry.expires_at if entry is not None else self.cache.new_expiry()
            entry = SessionEntry(
                session_id,
                replica.index,
                req.cropId,
                feats,
                _new_prefix_cache(),
                expires_at,
                guide=guide,
                size=req.size,
            )
            self.cache.put(entry)
        assert entry is not None

        scale = s / req.size
        make = self._click_factory
        assert make is not None
        extreme = [make(p.x * scale, p.y * scale, "boundary") for p in req.extremePoints]
        corrective = [make(c.x * scale, c.y * scale, c.kind) for c in req.clicks]
        if req.previous is not None:
            try:
                prev = decode_probabilities(req.previous, req.size)
            except ValueError as exc:
                raise WireFailure(WireErrorCode.BAD_REQUEST, f"previous: {exc}") from None
            if prev.shape != (s, s):
                prev = cv2.resize(prev, (s, s), interpolation=cv2.INTER_LINEAR)
            prob = _guard_oom(lambda: predictor.predict(entry.feats, extreme + corrective, prev))
        else:
            prob = _guard_oom(lambda: predictor.predict_sequence(entry.feats, extreme, corrective, entry.prefix_cache))
        self.cache.remeasure(entry)
        return np.asarray(prob, dtype=np.float32), entry, hit


def _new_prefix_cache() -> dict:
    try:
        # The model library's bounded cache (it drops the oldest prefixes itself).
        from fewclick_model.predictor import PrefixCache

        return PrefixCache()
    except ImportError:
        return {}


def _parse_request(body: bytes) -> WireRequest:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WireFailure(WireErrorCode.BAD_REQUEST, "body is not JSON") from None
    except RecursionError:  # "[[[[..." nested past the parser's stack
        raise WireFailure(WireErrorCode.BAD_REQUEST, "body nests too deeply") from None
    if not isinstance(raw, dict):
        raise WireFailure(WireErrorCode.BAD_REQUEST, "body must be a JSON object")
    if raw.get("wire", WIRE_VERSION) != WIRE_VERSION:
        raise WireFailure(
            WireErrorCode.UNSUPPORTED_WIRE_VERSION,
            f"this server speaks {WIRE_VERSION}, got {str(raw.get('wire'))[:40]!r}",
        )
    try:
        return WireRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WireFailure(WireErrorCode.BAD_REQUEST, f"{where}: {first['msg']}") from None


def _error(code: WireErrorCode, message: str) -> InvokeResult:
    return InvokeResult(
        WIRE_ERROR_STATUS[code],
        WireError.of(code, message).model_dump_json().encode(),
        {"Content-Type": "application/json"},
    )


class _OutOfMemory(Exception):
    pass


def _guard_oom(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
            raise _OutOfMemory() from exc
        raise


def _inference_mode() -> Any:
    try:
        import torch

        return torch.inference_mode()
    except ImportError:  # fake predictors in tests need no torch
        import contextlib

        return contextlib.nullcontext()


def _empty_device_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
