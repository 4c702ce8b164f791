"""Load: the load generator against the running stack (a short run), and admission control: excess load
is shed quickly with 429/503 + Retry-After at the gateway and at the model server's bounded queue."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fewclick.bench import cli as bench_cli
from fewclick.bench.load import LoadSettings, Target, format_table, run_load, write_report
from fewclick.local.gateway import Gateway, GatewayConfig

from .support import CI, TOKEN, HardeningStack, b64, encode, scene, start_mini_stack

pytestmark = pytest.mark.timeout(600)

RGB, POINTS = scene()


@pytest.mark.slow
def test_load_generator_against_the_local_stack(hstack: HardeningStack, tmp_path: Path) -> None:
    settings = LoadSettings(users=2, seconds=4.0 if CI else 8.0, think_s=0.2, clicks_per_image=3, width=320, height=240)
    target = Target(hstack.url, TOKEN, f"{hstack.model.url}/stats", {"model server": hstack.model.process.pid})
    result = run_load(settings, target)
    json_path, png_path, summary = write_report(result, tmp_path, "smoke")

    assert summary["ok"] >= 2 and summary["throughput_rps"] > 0
    assert summary["timeouts"] == 0 and summary["connection_errors"] == {}
    assert not [status for status in summary["errors"] if status.startswith("5")], summary["errors"]
    assert summary["per_type"]["new image"]["latency_ms"]["p50"] > 0
    # New images are misses by construction; the clicks between them hit the session cache.
    if "click" in summary["per_type"]:
        assert summary["client_cache_hit_rate"] == 1.0
        assert 0 < summary["server_cache_hit_rate"] < 1
    assert summary["peak_rss_mb"]["model server"] > 50
    report = json.loads(json_path.read_text())
    assert report["summary"] == summary and len(report["samples"]) == summary["requests"]
    assert png_path.stat().st_size > 10_000
    table = format_table(summary)
    assert "latency ms p50" in table and f"answered / sent {summary['ok']} / {summary['requests']}" in table
    assert "peak RSS MB: model server " in table


def test_load_is_a_benchmark_kind() -> None:
    assert "load" in bench_cli.KINDS and "endpoint" in bench_cli.KINDS


def test_gateway_sheds_excess_with_retry_after() -> None:
    # One Lambda "instance" taking 0.4 s per request, at most 2 waiting, none waiting over 1 s.
    def slow_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        time.sleep(0.4)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    gateway = Gateway(GatewayConfig(token=None, max_queued=2, max_queue_wait_s=1.0), slow_handler)
    answers: list[tuple[int, dict[str, str], float]] = []
    lock = threading.Lock()

    def client() -> None:
        started = time.monotonic()
        response = gateway.invoke("POST", "/v1/segment", [], {}, b"{}", "127.0.0.1")
        with lock:
            answers.append((response.status, response.headers, time.monotonic() - started))

    threads = [threading.Thread(target=client) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    statuses = sorted(status for status, _, _ in answers)
    assert len(answers) == 10 and statuses.count(200) >= 1
    shed = [(status, headers) for status, headers, _ in answers if status != 200]
    assert shed and all(status in (429, 503) and int(headers["Retry-After"]) >= 1 for status, headers in shed)
    assert 429 in statuses  # the queue bound, answered at once
    # No one waited past the queue bound plus one request (plus scheduling slack on a busy machine).
    assert max(elapsed for _, _, elapsed in answers) < 1.0 + 0.4 + 2.0
    assert gateway.shed["queue_full"] >= 1 and gateway.queued == 0


def test_model_queue_bound_becomes_503_with_retry_after() -> None:
    # The model server takes 2 s per call and queues at most 1 request per replica: of 5 concurrent
    # new sessions, some are refused at once with OVERLOADED, which the proxy maps to 503 + Retry-After.
    # "At once" = well before one model call ends (a loaded CI machine adds a few hundred ms).
    stack = start_mini_stack(max_pending=1, delay_s=2.0, max_attempts=1)
    from fewclick_contract.api import ApiError, SegmentRequest

    outcomes: list[Any] = []
    lock = threading.Lock()

    def labeler(i: int) -> None:
        rgb = RGB.copy()
        rgb[0, 0] = i  # five different images, five new sessions
        request = SegmentRequest.model_validate({"image": {"base64": b64(encode(rgb))}, "extremePoints": POINTS})
        started = time.monotonic()
        try:
            stack.segmenter.segment(request)
            outcome: Any = 200
        except ApiError as exc:
            outcome = exc
        with lock:
            outcomes.append((outcome, time.monotonic() - started))

    try:
        threads = [threading.Thread(target=labeler, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        refused = [o for o, _ in outcomes if isinstance(o, ApiError)]
        assert len(outcomes) == 5 and 200 in [o for o, _ in outcomes]
        assert refused, "a full queue must refuse, not queue without bound"
        for exc in refused:
            assert (exc.status, exc.code.value) == (503, "ENDPOINT_UNAVAILABLE") and exc.retry_after
            assert "busy" in exc.message
        # Refusals are quick: they never waited for the work ahead of them.
        assert min(elapsed for o, elapsed in outcomes if isinstance(o, ApiError)) < 1.5
        assert stack.model.engine.stats()["overloaded"] == len(refused)
    finally:
        stack.stop()


def test_the_spawned_stack_takes_a_token_that_begins_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from fewclick.bench import load
    from fewclick.local import serve

    class Spawned(Exception):
        pass

    captured: list[list[str]] = []

    def fake_spawn(command: list[str], **_: Any) -> None:
        captured.append(command)
        raise Spawned

    # secrets.token_urlsafe draws from "-" and "_" too: one in 32 tokens begins with a dash.
    monkeypatch.setattr(load.secrets, "token_urlsafe", lambda _n: "-dash-first-token")
    monkeypatch.setattr(load, "spawn_serve", fake_spawn)
    with pytest.raises(Spawned), load.local_stack():
        pass
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    assert parser.parse_args(captured[0]).token == "-dash-first-token"
