"""`fewclick benchmark load`: N simulated labelers against the labeling API for a bounded time.

Each labeler does what a person does in the UI: a new image with its 4 extreme points, then a stream of
corrective clicks (placed by a robot labeler on the largest error of the mask it got back) separated by
think time, then the next image. A 404 SESSION_EXPIRED is answered by resending the image (as the UI
does), a 429/503 by waiting Retry-After and trying again (as the UI does, a few times).

Target: by default it starts the local stack itself (`fewclick serve` as a child process on loopback,
so the load generator's own CPU and memory stay out of the server's figures); with ``--url`` and
``--token`` it drives any deployment of the API (`fewclick benchmark endpoint` uses that).

Reported (a progress bar while it runs, then a summary in the README's terms): requests answered / sent,
throughput (answered/s), latency p50/p90/p99 per request type, errors by status and code, timeouts apart
from connection errors, the session-cache hit rate (from the model server's ``GET /stats`` when reachable,
and as the client sees it: clicks that did not need the image resent), peak RSS of the server processes.
Written: a JSON summary (with every request) and a PNG (latency histogram per request type, throughput
over time, server memory over time). A run in which no request was answered exits 1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import itertools
import json
import os
import platform
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fewclick_model import plots
from fewclick_model.cli_types import non_negative_float, non_negative_int, positive_float, positive_int
from fewclick_model.preflight import prepare_out_dir

from fewclick.bench.options import api_url, image_size
from fewclick.local.serve_process import child_pids, spawn_serve

REQUEST_TYPES = ("new image", "click", "resend image")
SEGMENT_PATH = "/v1/segment"
# The UI retries a busy server a few times (honouring Retry-After) before showing a banner.
MAX_RETRIES = 3
# Sample.code of a request that got no answer within the client timeout (status 0 too, like a refused
# connection, but a different finding: the server is there and too slow, not absent).
TIMEOUT_CODE = "TIMEOUT"


@dataclass(frozen=True)
class LoadSettings:
    users: int = 4
    seconds: float = 60.0
    think_s: float = 1.0  # mean think time between two clicks of one labeler (exponential)
    clicks_per_image: int = 5
    width: int = 640
    height: int = 480
    images: int = 8  # distinct synthetic images, shared by the labelers
    timeout_s: float = 60.0  # client-side, per request; a timeout is recorded as status 0, code TIMEOUT
    seed: int = 0


@dataclass
class Sample:
    t: float  # seconds since the run started, when the request was sent
    kind: str  # one of REQUEST_TYPES
    status: int  # HTTP status; 0 = no answer (code TIMEOUT, or the connection error's name)
    ms: float  # round trip as the client sees it
    model_ms: float | None = None
    code: str | None = None  # the API's error code
    user: int = 0


@dataclass
class LoadResult:
    settings: LoadSettings
    samples: list[Sample]
    duration_s: float
    environment: dict[str, Any] = field(default_factory=dict)
    server_stats: dict[str, Any] | None = None  # model server /stats delta over the run
    memory: dict[str, Any] = field(default_factory=dict)  # per process: peak RSS and the sampled series


# --- the target ---


@dataclass
class Target:
    base_url: str  # scheme://host[:port][/stage]; the API's paths are appended
    token: str | None
    stats_url: str | None = None  # the model server's /stats (local stack only)
    pids: dict[str, int] = field(default_factory=dict)  # name -> pid, for memory sampling


def _model_server_port(pid: int) -> int | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for flag, value in itertools.pairwise(argv):
        if flag == b"--port":
            return int(value)
    return None


@contextlib.contextmanager
def local_stack(
    torch_threads: int = 0,
    rate: float | None = None,
    burst: int | None = None,
    ready_timeout_s: float = 300.0,
) -> Iterator[Target]:
    """`fewclick serve` as a child process on a free loopback port; stopped (SIGINT) on exit."""
    token = secrets.token_urlsafe(16)
    out_dir = tempfile.mkdtemp(prefix="fewclick-load-labels-")
    # "--token=..." in one word: a URL-safe token may begin with "-", which argparse would take for a flag.
    command = [f"--token={token}", "--out", out_dir, "--ready-timeout", str(ready_timeout_s)]
    if rate is not None:
        command += ["--rate", str(rate)]
    if burst is not None:
        command += ["--burst", str(burst)]
    env = dict(os.environ)
    if torch_threads:
        env["FEWCLICK_TORCH_THREADS"] = str(torch_threads)
    spawned = spawn_serve(command, timeout=ready_timeout_s + 30, env=env)
    process = spawned.process
    try:
        if spawned.url is None:
            raise RuntimeError("fewclick serve did not start:\n" + "\n".join(spawned.lines[-30:]))
        base = spawned.url.split("#", 1)[0].rstrip("/")
        pids = {"fewclick serve": process.pid}
        stats_url = None
        for child in child_pids(process.pid):
            port = _model_server_port(child)
            if port is not None:
                pids["model server"] = child
                stats_url = f"http://127.0.0.1:{port}/stats"
        yield Target(base, token, stats_url, pids)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


# --- HTTP, one keep-alive connection per labeler (as a browser tab keeps one) ---


class ApiClient:
    def __init__(self, target: Target, timeout_s: float) -> None:
        split = urlsplit(target.base_url)
        self.https = split.scheme == "https"
        self.host = split.hostname or "127.0.0.1"
        self.port = split.port or (443 if self.https else 80)
        self.prefix = split.path.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json"}
        if target.token:
            self.headers["Authorization"] = f"Bearer {target.token}"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """(status, parsed JSON or None, lower-case headers); status 0 when no answer came."""
        data = json.dumps(body).encode()
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request("POST", self.prefix + path, body=data, headers=self.headers)
                resp = conn.getresponse()
                payload = resp.read()
                headers = {k.lower(): v for k, v in resp.getheaders()}
                if headers.get("connection", "").lower() == "close":
                    self.close()
                try:
                    parsed = json.loads(payload) if payload else None
                except ValueError:
                    parsed = None
                return resp.status, parsed, headers
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A keep-alive connection the server closed while we were thinking: reconnect once.
                self.close()
                if attempt == 1:
                    return 0, {"error": {"code": type(exc).__name__}}, {}
            except TimeoutError:
                # Checked before OSError, its base: the server took the connection but not the time.
                self.close()
                return 0, {"error": {"code": TIMEOUT_CODE}}, {}
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                return 0, {"error": {"code": type(exc).__name__}}, {}
        return 0, None, {}


# --- the simulated labelers ---


@dataclass(frozen=True)
class _Image:
    base64: str
    gt: np.ndarray
    extremes: list[dict[str, int]]


def _image_pool(settings: LoadSettings) -> list[_Image]:
    import cv2

    from fewclick.bench.synthetic import extreme_points, make_scene

    pool = []
    for i in range(settings.images):
        rgb, gt = make_scene(settings.height, settings.width, seed=settings.seed + i)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        extremes = [{"x": x, "y": y} for x, y in extreme_points(gt)]
        pool.append(_Image(base64.b64encode(buf.tobytes()).decode("ascii"), gt, extremes))
    return pool


def _decode_rle(rle: dict[str, Any]) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}).astype(bool)


class _Run:
    def __init__(self, settings: LoadSettings, target: Target, pool: list[_Image]) -> None:
        self.settings = settings
        self.target = target
        self.pool = pool
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.deadline = self.start + settings.seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def sleep(self, seconds: float) -> bool:
        """Sleep, but never past the deadline; False when the run is over."""
        time.sleep(max(0.0, min(seconds, self.remaining())))
        return self.remaining() > 0

    def send(self, client: ApiClient, user: int, kind: str, body: dict[str, Any]) -> tuple[int, Any]:
        """One logical request, retried on 429/503 after Retry-After; every attempt is a sample."""
        for _ in range(MAX_RETRIES + 1):
            sent = time.monotonic()
            status, payload, headers = client.post(SEGMENT_PATH, body)
            ms = (time.monotonic() - sent) * 1000.0
            model_ms = None
            code = None
            if status == 200 and isinstance(payload, dict):
                model_ms = float(payload.get("timings", {}).get("modelMs", 0.0))
            elif isinstance(payload, dict):
                code = str(payload.get("error", {}).get("code") or "") or None
            with self.lock:
                self.samples.append(Sample(sent - self.start, kind, status, ms, model_ms, code, user))
            if status in (429, 503) and self.remaining() > 0:
                try:
                    wait = float(headers.get("retry-after", "1"))
                except ValueError:
                    wait = 1.0
                if self.sleep(wait):
                    continue
            return status, payload
        return status, payload

    def labeler(self, user: int) -> None:
        from fewclick.bench.synthetic import robot_click

        rng = random.Random(self.settings.seed * 1000 + user)
        client = ApiClient(self.target, self.settings.timeout_s)
        # Labelers do not all start on the same millisecond.
        self.sleep(rng.uniform(0, min(self.settings.think_s, 2.0)))
        try:
            while self.remaining() > 0:
                image = self.pool[rng.randrange(len(self.pool))]
                new = {"image": {"base64": image.base64}, "extremePoints": image.extremes}
                status, payload = self.send(client, user, "new image", new)
                if status != 200:
                    self.sleep(1.0)
                    continue
                clicks: list[dict[str, Any]] = []
                for _ in range(self.settings.clicks_per_image):
                    if not self.sleep(rng.expovariate(1.0 / self.settings.think_s) if self.settings.think_s else 0):
                        break
                    pred = _decode_rle(payload["mask"])
                    placed = robot_click(pred, image.gt)
                    if placed is None:
                        break  # the mask is perfect: on to the next image
                    clicks.append({"x": placed[0], "y": placed[1], "type": placed[2]})
                    body = {"sessionId": payload["sessionId"], "extremePoints": image.extremes, "clicks": clicks}
                    status, answer = self.send(client, user, "click", body)
                    expired = isinstance(answer, dict) and answer.get("error", {}).get("code") == "SESSION_EXPIRED"
                    if status == 404 and expired:
                        status, answer = self.send(client, user, "resend image", {**body, "image": new["image"]})
                    if status != 200:
                        break
                    payload = answer
        finally:
            client.close()


# --- server-side figures ---


def _read_stats(url: str | None) -> dict[str, Any] | None:
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            stats: dict[str, Any] = json.loads(resp.read())
            return stats
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


class _MemorySampler:
    """RSS of the server processes every ``period_s``; peak = the kernel's high-water mark (VmHWM)."""

    def __init__(self, pids: dict[str, int], start: float, period_s: float = 0.5) -> None:
        self.pids = pids
        self.start = start
        self.period_s = period_s
        self.series: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self.peak_mb: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _MemorySampler:
        if self.pids:
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            for name, pid in self.pids.items():
                kb = _status_kb(pid).get("VmRSS")
                if kb is not None:
                    self.series[name].append((time.monotonic() - self.start, kb / 1024))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for name, pid in self.pids.items():
            hwm = _status_kb(pid).get("VmHWM")
            if hwm is not None:
                self.peak_mb[name] = hwm / 1024


def _stats_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    delta = {k: after[k] - before[k] for k in ("cacheHits", "cacheMisses", "evictions", "overloaded")}
    delta.update(sessions=after["sessions"], maxSessions=after["maxSessions"], maxPending=after["maxPending"])
    return delta


def _watch(run: _Run, threads: list[threading.Thread], settings: LoadSettings, progress: bool) -> None:
    """Wait for the labelers under a progress bar over the run's seconds, with answered / error counts."""
    from tqdm import tqdm

    # Bounded: the deadline stops new requests; one in flight ends within its timeout.
    limit = run.start + settings.seconds + settings.timeout_s * (MAX_RETRIES + 2) + 30
    total = max(1, round(settings.seconds))
    # No rate in the bar: "1.00s/s" says nothing; the postfix carries the counts that matter.
    bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}<{remaining}{postfix}]"
    with tqdm(total=total, desc="load", bar_format=bar_format, disable=not progress) as bar:
        while any(t.is_alive() for t in threads) and time.monotonic() < limit:
            for thread in threads:
                thread.join(timeout=0.5 / len(threads))
            with run.lock:
                answered = sum(1 for s in run.samples if s.status == 200)
                errors = len(run.samples) - answered
            bar.set_postfix(answered=answered, errors=errors, refresh=False)
            # Past the deadline the bar stays full while the requests in flight finish.
            bar.update(min(total, round(time.monotonic() - run.start)) - bar.n)


def run_load(settings: LoadSettings, target: Target, progress: bool = True) -> LoadResult:
    pool = _image_pool(settings)
    before = _read_stats(target.stats_url)
    run = _Run(settings, target, pool)
    with _MemorySampler(target.pids, run.start) as memory:
        threads = [
            threading.Thread(target=run.labeler, args=(u,), name=f"labeler-{u}", daemon=True)
            for u in range(settings.users)
        ]
        for thread in threads:
            thread.start()
        _watch(run, threads, settings, progress)
        duration = time.monotonic() - run.start
    after = _read_stats(target.stats_url)
    return LoadResult(
        settings=settings,
        samples=sorted(run.samples, key=lambda s: s.t),
        duration_s=duration,
        environment={
            "target": target.base_url,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        server_stats=_stats_delta(before, after),
        memory={
            "peak_rss_mb": memory.peak_mb,
            "series": {k: [[round(t, 2), round(mb, 1)] for t, mb in v] for k, v in memory.series.items()},
        },
    )


# --- the report ---


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    arr = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in (50, 90, 99)}


def summarize(result: LoadResult) -> dict[str, Any]:
    samples = result.samples
    ok = [s for s in samples if s.status == 200]
    per_type: dict[str, Any] = {}
    for kind in REQUEST_TYPES:
        rows = [s for s in samples if s.kind == kind]
        if not rows:
            continue
        good = [s for s in rows if s.status == 200]
        per_type[kind] = {
            "requests": len(rows),
            "ok": len(good),
            "latency_ms": _percentiles([s.ms for s in good]),
            "model_ms": _percentiles([s.model_ms for s in good if s.model_ms is not None]),
        }
    # Requests that got no answer are counted apart below (timeouts, connection errors), not as a status.
    errors = Counter(f"{s.status} {s.code or ''}".strip() for s in samples if s.status not in (0, 200))
    clicks = [s for s in samples if s.kind == "click"]
    click_ok = sum(1 for s in clicks if s.status == 200)
    click_expired = sum(1 for s in clicks if s.code == "SESSION_EXPIRED")
    stats = result.server_stats
    server_hit_rate = None
    if stats and (stats["cacheHits"] + stats["cacheMisses"]):
        server_hit_rate = stats["cacheHits"] / (stats["cacheHits"] + stats["cacheMisses"])
    return {
        "users": result.settings.users,
        "seconds": round(result.duration_s, 1),
        "requests": len(samples),
        "ok": len(ok),
        "throughput_rps": round(len(ok) / result.duration_s, 2) if result.duration_s else 0.0,
        "per_type": per_type,
        "errors": dict(sorted(errors.items())),
        "timeouts": sum(1 for s in samples if s.status == 0 and s.code == TIMEOUT_CODE),
        # No answer for another reason (refused, reset, DNS, TLS), by the exception's name.
        "connection_errors": dict(
            sorted(Counter(s.code or "?" for s in samples if s.status == 0 and s.code != TIMEOUT_CODE).items())
        ),
        # Clicks answered from the session cache, as the client sees it (no image resend needed).
        "client_cache_hit_rate": round(click_ok / (click_ok + click_expired), 3) if click_ok + click_expired else None,
        # The model server's own count (new images are misses by construction).
        "server_cache_hit_rate": round(server_hit_rate, 3) if server_hit_rate is not None else None,
        "server_stats": stats,
        "peak_rss_mb": {k: round(v, 1) for k, v in result.memory.get("peak_rss_mb", {}).items()},
    }


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.0f} %"


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{n} x {name}" for name, n in counter.items())


def _errors_text(summary: dict[str, Any]) -> str:
    """Like the README's errors column ("5 x 429 THROTTLED"), then the requests that got no answer by cause."""
    refused = summary.get("connection_errors") or {}
    return (
        f"by status {_counts(summary['errors']) or 'none'}; timeouts {summary['timeouts']}; "
        f"connection errors {sum(refused.values())}" + (f" ({_counts(refused)})" if refused else "")
    )


def format_table(summary: dict[str, Any]) -> str:
    """The summary in the terms and units of the README's load table."""

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = [
        f"{summary['users']} labelers, {summary['seconds']} s: answered / sent {summary['ok']} / "
        f"{summary['requests']}, throughput {summary['throughput_rps']} answered/s",
        f"{'request type':<13} {'answered / sent':>15} | {'latency ms p50':>14} {'p90':>8} {'p99':>8} | "
        f"{'model ms p50':>12} {'p90':>8}",
    ]
    for kind, row in summary["per_type"].items():
        lat, mod = row["latency_ms"], row["model_ms"]
        lines.append(
            f"{kind:<13} {row['ok']:>7} / {row['requests']:<5} | {f(lat['p50']):>14} {f(lat['p90']):>8} "
            f"{f(lat['p99']):>8} | {f(mod['p50']):>12} {f(mod['p90']):>8}"
        )
    lines.append(f"errors: {_errors_text(summary)}")
    lines.append(
        f"cache hit (client / server): {_percent(summary['client_cache_hit_rate'])} / "
        f"{_percent(summary['server_cache_hit_rate'])}"
    )
    peak = summary["peak_rss_mb"]
    rss = ", ".join(f"{name} {mb:.0f}" for name, mb in peak.items()) if peak else "n/a (remote target)"
    lines.append(f"peak RSS MB: {rss}")
    return "\n".join(lines)


def plot(result: LoadResult, path: Path) -> None:
    fig, axes = plots.subplots(3, figsize=(16, 4.2))
    ax = axes[0]
    good = [s for s in result.samples if s.status == 200]
    if good:
        bins = plots.log_bins((s.ms for s in good), floor=1.0)
        plots.log_histograms(ax, ((kind, [s.ms for s in good if s.kind == kind]) for kind in REQUEST_TYPES), bins)
    ax.set_xlabel("round trip ms (log scale), answered requests")
    ax.set_ylabel("requests")
    ax.set_title("latency per request type")

    ax = axes[1]
    seconds = int(np.ceil(result.duration_s)) or 1
    edges = np.arange(seconds + 1)
    ends = {
        "ok": [s.t + s.ms / 1000 for s in result.samples if s.status == 200],
        "shed (429/503)": [s.t + s.ms / 1000 for s in result.samples if s.status in (429, 503)],
        "other errors": [s.t + s.ms / 1000 for s in result.samples if s.status not in (200, 429, 503)],
    }
    bottom = np.zeros(seconds)
    for label, times in ends.items():
        counts, _ = np.histogram(times, bins=edges)
        ax.bar(edges[:-1], counts, width=1.0, bottom=bottom, align="edge", label=label)
        bottom += counts
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("responses per second")
    ax.set_title("throughput over time")
    ax.legend()

    ax = axes[2]
    for name, series in result.memory.get("series", {}).items():
        if series:
            ax.plot([t for t, _ in series], [mb for _, mb in series], label=name)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("RSS MB")
    ax.set_title("server memory")
    if result.memory.get("series"):
        ax.legend()
    title = (
        f"FewClick load: {result.settings.users} labelers, {result.settings.seconds:g} s, "
        f"think {result.settings.think_s:g} s, {result.settings.width}x{result.settings.height} images"
    )
    plots.save(fig, path, title=title, dpi=100)


def write_report(result: LoadResult, out_dir: Path, name: str) -> tuple[Path, Path, dict[str, Any]]:
    summary = summarize(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / f"{name}.json", out_dir / f"{name}.png"
    report = {
        "summary": summary,
        "settings": asdict(result.settings),
        "environment": result.environment,
        "memory": result.memory,
        "samples": [asdict(s) for s in result.samples],
    }
    json_path.write_text(json.dumps(report, indent=1))
    plot(result, png_path)
    return json_path, png_path, summary


def read_report(path: Path) -> LoadResult:
    """A run back from its JSON report (to re-plot or re-summarize it)."""
    report = json.loads(Path(path).read_text())
    return LoadResult(
        settings=LoadSettings(**report["settings"]),
        samples=[Sample(**s) for s in report["samples"]],
        duration_s=float(report["summary"]["seconds"]),
        environment=report.get("environment", {}),
        server_stats=report["summary"].get("server_stats"),
        memory=report.get("memory", {}),
    )


# --- CLI ---


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `fewclick benchmark endpoint` (same load generator)."""
    parser.add_argument("--users", type=positive_int, default=4, help="simulated labelers (default: 4)")
    parser.add_argument(
        "--think", type=non_negative_float, default=1.0, help="mean think time between clicks, s (default: 1)"
    )
    parser.add_argument("--clicks", type=non_negative_int, default=5, help="corrective clicks per image (default: 5)")
    parser.add_argument(
        "--image-size", type=image_size, default=(640, 480), help="WxH of the synthetic images (default: 640x480)"
    )
    parser.add_argument(
        "--request-timeout", type=positive_float, default=60.0, help="client timeout per request, s (default: 60)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/load"), help="where the JSON and PNG go")


def settings_from_args(args: argparse.Namespace, seconds: float) -> LoadSettings:
    """The options as parsed: argparse has range-checked each, so nothing is coerced here."""
    width, height = args.image_size
    return LoadSettings(
        users=args.users,
        seconds=seconds,
        think_s=args.think,
        clicks_per_image=args.clicks,
        width=width,
        height=height,
        timeout_s=args.request_timeout,
        seed=args.seed,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_load_arguments(parser)
    parser.add_argument("--seconds", type=positive_float, default=60.0, help="length of the run (default: 60)")
    parser.add_argument(
        "--url", type=api_url, default=None, help="API base URL, http(s)://... (default: start the local stack)"
    )
    parser.add_argument("--token", default=None, help="Bearer token for --url")
    parser.add_argument(
        "--stats-url", type=api_url, default=None, help="a model server's /stats, for the cache hit rate"
    )
    parser.add_argument(
        "--torch-threads",
        type=non_negative_int,
        default=0,
        help="local stack: model server intra-op threads (0: its default)",
    )
    parser.add_argument("--rate", type=positive_float, default=None, help="local stack: gateway throttling, requests/s")
    parser.add_argument("--burst", type=positive_int, default=None, help="local stack: gateway throttling burst")


def run_against(
    settings: LoadSettings, target_factory: Callable[[], contextlib.AbstractContextManager[Target]]
) -> LoadResult:
    with target_factory() as target:
        return run_load(settings, target)


def nothing_answered(summary: dict[str, Any]) -> str | None:
    """Why the run measured nothing (no request got a 200), or None when some were answered."""
    if summary["ok"]:
        return None
    return f"no request was answered ({summary['requests']} sent: {_errors_text(summary)})"


def check_reachable(base_url: str, timeout_s: float) -> None:
    """OSError naming ``--url`` when nothing there takes a connection.

    A run against it measured only connection errors and wrote that over the last real report. A server
    that takes the connection but is slow to answer passes: its timeouts are what a run should find.
    """
    client = ApiClient(Target(base_url, None), timeout_s)
    try:
        socket.create_connection((client.host, client.port), timeout=timeout_s).close()
    except OSError as exc:
        raise OSError(
            f"--url {base_url}: cannot connect to {client.host}:{client.port} ({exc.strerror or exc})"
        ) from None


def run(args: argparse.Namespace) -> int:
    if args.url:
        # First: an unreachable URL leaves no trace, not even the --out folder.
        check_reachable(args.url, min(args.request_timeout, 10.0))
    prepare_out_dir(args.out)  # before the run: an unwritable --out would lose its results
    settings = settings_from_args(args, args.seconds)
    if args.url:

        @contextlib.contextmanager
        def remote() -> Iterator[Target]:
            yield Target(args.url, args.token, args.stats_url)

        factory: Callable[[], contextlib.AbstractContextManager[Target]] = remote
    else:

        def factory() -> contextlib.AbstractContextManager[Target]:
            return local_stack(args.torch_threads, args.rate, args.burst)

    print(f"load: {settings.users} labelers for {settings.seconds:g} s against {args.url or 'the local stack'}")
    result = run_against(settings, factory)
    json_path, png_path, summary = write_report(result, args.out, f"load-{settings.users}u")
    print(format_table(summary))
    print(f"wrote {json_path} and {png_path}")
    failure = nothing_answered(summary)
    if failure is not None:
        print(f"fewclick benchmark load: {failure}", file=sys.stderr)
        return 1
    return 0
