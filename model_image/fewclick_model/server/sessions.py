"""Per-session state of the model server: the crop's features (with its mirror image's), the
click-prefix cache, and the crop's grey levels when it came finer than the network (edge refinement).

Bounded three ways, because a labeler who walks away must not pin GPU memory:
- LRU by count (`max_sessions`),
- memory (`max_bytes`, from `feats.nbytes`, whatever arrays the prefix cache holds and the guide),
- time: an idle TTL (touched on every click) and a hard lifetime, which is the
  Expires the container announced to SageMaker when it opened the session.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_SESSIONS = 512
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_IDLE_TTL_S = 15 * 60.0
DEFAULT_LIFETIME_S = 2 * 60 * 60.0


def estimate_nbytes(obj: Any, _depth: int = 0) -> int:
    """Bytes held by arrays/tensors inside ``obj`` (dicts, lists, tuples, dataclass-like).

    The predictor owns the prefix cache's layout; counting by duck typing (`nbytes`,
    or `element_size() * nelement()`) keeps the server independent of it.
    """
    if _depth > 6 or obj is None:
        return 0
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, dict):
        return sum(estimate_nbytes(v, _depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(estimate_nbytes(v, _depth + 1) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(estimate_nbytes(v, _depth + 1) for v in vars(obj).values())
    return 0


@dataclass
class SessionEntry:
    session_id: str
    replica: int
    crop_id: str
    feats: Any
    prefix_cache: dict[Any, Any] = field(default_factory=dict)
    expires_at: float = 0.0  # wall-clock (time.time) hard expiry, announced to SageMaker
    last_used: float = 0.0  # monotonic
    nbytes: int = 0
    # The crop's grey levels when it came finer than the network's input: the edge refinement's guide.
    guide: Any = None
    size: int = 0  # the side the crop came at (the answers' side)

    def measure(self) -> int:
        self.nbytes = estimate_nbytes(self.feats) + estimate_nbytes(self.prefix_cache) + estimate_nbytes(self.guide)
        return self.nbytes


@dataclass
class CacheStats:
    sessions: int
    bytes: int
    hits: int
    misses: int
    evictions: int


class SessionCache:
    """Thread-safe LRU of `SessionEntry` keyed by session id.

    Entries are only mutated on their replica's inference thread; the lock guards the
    map and the byte total, which request threads and other replicas also touch.
    """

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        idle_ttl_s: float = DEFAULT_IDLE_TTL_S,
        lifetime_s: float = DEFAULT_LIFETIME_S,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.max_sessions = max(1, max_sessions)
        self.max_bytes = max(1, max_bytes)
        self.idle_ttl_s = idle_ttl_s
        self.lifetime_s = lifetime_s
        self._monotonic = monotonic
        self._wall = wall
        self._entries: OrderedDict[str, SessionEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @staticmethod
    def new_session_id() -> str:
        # uuid4 text matches SageMaker's session id pattern ([a-zA-Z0-9](-*[a-zA-Z0-9])*)
        # and is unguessable, which matters: the id is the only key to a session.
        return str(uuid.uuid4())

    def new_expiry(self) -> float:
        return self._wall() + self.lifetime_s

    def _expired(self, entry: SessionEntry) -> bool:
        return self._monotonic() - entry.last_used > self.idle_ttl_s or self._wall() >= entry.expires_at

    def _drop(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            self._bytes -= entry.nbytes
            self.evictions += 1

    def peek(self, session_id: str) -> SessionEntry | None:
        """The live entry, without touching LRU order or counters (for routing)."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None or self._expired(entry):
                return None
            return entry

    def get(self, session_id: str) -> SessionEntry | None:
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                return None
            if self._expired(entry):
                self._drop(session_id)
                return None
            entry.last_used = self._monotonic()
            self._entries.move_to_end(session_id)
            return entry

    def put(self, entry: SessionEntry) -> None:
        """Insert or replace; then evict expired, then least-recently-used, to fit the bounds."""
        entry.measure()
        entry.last_used = self._monotonic()
        with self._lock:
            old = self._entries.pop(entry.session_id, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[entry.session_id] = entry
            self._bytes += entry.nbytes
            self._enforce(keep=entry.session_id)

    def remeasure(self, entry: SessionEntry) -> None:
        """After the prefix cache grew: account for it and evict others if needed."""
        before = entry.nbytes
        entry.measure()
        with self._lock:
            if self._entries.get(entry.session_id) is entry:
                self._bytes += entry.nbytes - before
                self._enforce(keep=entry.session_id)

    def _enforce(self, keep: str) -> None:
        for sid in [s for s, e in self._entries.items() if s != keep and self._expired(e)]:
            self._drop(sid)
        while len(self._entries) > 1 and (len(self._entries) > self.max_sessions or self._bytes > self.max_bytes):
            oldest = next(iter(self._entries))
            if oldest == keep:
                # The active session alone is over budget: keep it, it is in use right now.
                break
            self._drop(oldest)

    def record(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def evict(self, session_id: str) -> bool:
        with self._lock:
            present = session_id in self._entries
            self._drop(session_id)
            return present

    def shrink(self, fraction: float = 0.5) -> int:
        """Drop the oldest share of sessions (after a device out-of-memory error)."""
        with self._lock:
            n = int(len(self._entries) * fraction)
            for sid in list(self._entries)[:n]:
                self._drop(sid)
            return n

    def count_on(self, replica: int) -> int:
        with self._lock:
            return sum(1 for e in self._entries.values() if e.replica == replica)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._entries), self._bytes, self.hits, self.misses, self.evictions)
