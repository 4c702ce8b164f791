"""The model server over HTTP with a fake predictor: hosting contract, sessions, errors, bounds."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from fewclick_model.server import SessionCache, start_model_server
from fewclick_model.server.sessions import SessionEntry

from fewclick_contract import wire
from fewclick_contract.edge_refine import prepare_crop

from .helpers import FakePredictor

pytestmark = pytest.mark.timeout(60)
S = 64
POINTS = [wire.WirePoint(x=8, y=32), wire.WirePoint(x=56, y=32), wire.WirePoint(x=32, y=6), wire.WirePoint(x=32, y=58)]


def _crop() -> wire.CropPixels:
    return wire.encode_crop(np.random.default_rng(0).integers(0, 255, (S, S, 3), dtype=np.uint8))


def _request(crop: bool = True, clicks: int = 0, crop_id: str = "crop-0001") -> bytes:
    req = wire.WireRequest(
        cropId=crop_id,
        crop=_crop() if crop else None,
        size=S,
        extremePoints=POINTS,
        clicks=[wire.WireClick(x=20 + i, y=30, kind="positive") for i in range(clicks)],
    )
    return wire.dump_request(req)


class Client:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, json.loads(data) if data else None, dict(resp.getheaders())
        finally:
            conn.close()

    def invoke(self, body: bytes, session: str | None = None) -> tuple[int, Any, dict[str, str]]:
        return self.request("POST", "/invocations", body, {wire.SESSION_HEADER: session} if session else None)


@pytest.fixture()
def server() -> Iterator[tuple[Any, Client, FakePredictor]]:
    fake = FakePredictor(S)
    handle = start_model_server("127.0.0.1", 0, predictor_factory=lambda device: fake, devices=["cpu"])
    yield handle, Client(handle.url), fake
    handle.stop()


def test_ping_waits_for_the_model() -> None:
    gate = threading.Event()
    fake = FakePredictor(S)

    def slow_factory(device: str) -> FakePredictor:
        gate.wait(10)
        return fake

    handle = start_model_server("127.0.0.1", 0, predictor_factory=slow_factory, devices=["cpu"], wait=False)
    try:
        client = Client(handle.url)
        assert client.request("GET", "/ping")[0] == 503
        status, body, _ = client.invoke(_request(), wire.NEW_SESSION)
        assert status == 503 and body["error"]["code"] == "NOT_READY"
        gate.set()
        handle.wait_ready(10)
        status, body, _ = client.request("GET", "/ping")
        assert status == 200 and body["modelVersion"] == "fake-1"
    finally:
        gate.set()
        handle.stop()


def test_session_lifecycle(server: tuple[Any, Client, FakePredictor]) -> None:
    handle, client, fake = server
    status, body, headers = client.invoke(_request(), wire.NEW_SESSION)
    assert status == 200, body
    sid, expires = wire.parse_session_header(headers[wire.SESSION_HEADER])
    assert expires is not None and body["sessionId"] == sid and body["cache"] == "miss"
    assert wire.decode_probabilities(body["probabilities"], S).shape == (S, S)
    encodes = fake.encodes

    # Warm clicks: no pixels, cache hit, one predict per new click (prefix cache).
    for k in (1, 2):
        predicts = fake.predicts
        status, body, headers = client.invoke(_request(crop=False, clicks=k), sid)
        assert status == 200 and body["cache"] == "hit" and wire.SESSION_HEADER not in headers
        assert fake.predicts - predicts == 1
    assert fake.encodes == encodes

    # A changed crop without pixels, then with pixels (same session id kept).
    status, body, _ = client.invoke(_request(crop=False, crop_id="crop-0002"), sid)
    assert status == 404 and body["error"]["code"] == "SESSION_EXPIRED"
    status, body, _ = client.invoke(_request(crop=True, crop_id="crop-0002"), sid)
    assert status == 200 and body["cache"] == "miss" and body["sessionId"] == sid

    # Evicted: SESSION_EXPIRED until pixels come again.
    assert handle.evict_session(sid)
    status, body, _ = client.invoke(_request(crop=False, crop_id="crop-0002"), sid)
    assert status == 404 and body["error"]["code"] == "SESSION_EXPIRED"
    stats = handle.engine.cache.stats()
    assert stats.hits == 2 and stats.misses >= 3


def test_previous_probabilities_are_used(server: tuple[Any, Client, FakePredictor]) -> None:
    _, client, fake = server
    status, body, headers = client.invoke(_request(), wire.NEW_SESSION)
    sid = wire.parse_session_header(headers[wire.SESSION_HEADER])[0]
    req = json.loads(_request(crop=False, clicks=1))
    req["previous"] = body["probabilities"]
    predicts = fake.predicts
    status, body, _ = client.invoke(json.dumps(req).encode(), sid)
    assert status == 200 and fake.predicts - predicts == 1


@pytest.mark.parametrize(
    ("body", "session", "status", "code"),
    [
        (b"not json", wire.NEW_SESSION, 400, "BAD_REQUEST"),
        (b"[1, 2]", wire.NEW_SESSION, 400, "BAD_REQUEST"),
        (json.dumps({"wire": "fewclick.wire/9"}).encode(), wire.NEW_SESSION, 400, "UNSUPPORTED_WIRE_VERSION"),
        (_request(crop=False), wire.NEW_SESSION, 400, "BAD_REQUEST"),  # a new session needs pixels
        (_request(crop=False), "never-seen-1", 404, "SESSION_EXPIRED"),
        (_request(), "bad_id!", 400, "BAD_REQUEST"),
        # A peer's NaN, infinity or absurd coordinate, and JSON nested past the parser: 400, not 500.
        (_request().replace(b'"x":8.0', b'"x":NaN', 1), wire.NEW_SESSION, 400, "BAD_REQUEST"),
        (_request().replace(b'"x":8.0', b'"x":Infinity', 1), wire.NEW_SESSION, 400, "BAD_REQUEST"),
        (_request().replace(b'"x":8.0', b'"x":1e308', 1), wire.NEW_SESSION, 400, "BAD_REQUEST"),
        (b"[" * 100_000, wire.NEW_SESSION, 400, "BAD_REQUEST"),
    ],
)
def test_invocation_errors(
    server: tuple[Any, Client, FakePredictor], body: bytes, session: str, status: int, code: str
) -> None:
    _, client, _ = server
    got, err, _ = client.invoke(body, session)
    assert (got, err["error"]["code"]) == (status, code)


def test_a_body_not_declared_as_json_is_refused_and_the_connection_kept(
    server: tuple[Any, Client, FakePredictor],
) -> None:
    handle, _, _ = server
    conn = http.client.HTTPConnection(handle.host, handle.port, timeout=30)
    try:
        body = _request()
        headers = {"Content-Type": "application/x-www-form-urlencoded", wire.SESSION_HEADER: wire.NEW_SESSION}
        conn.request("POST", "/invocations", body=body, headers=headers)
        resp = conn.getresponse()
        error = json.loads(resp.read())["error"]
        assert (resp.status, error["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
        assert "not 'application/x-www-form-urlencoded'" in error["message"]
        # The body was read, so the same connection carries the next request, and it runs.
        conn.request("POST", "/invocations", body=body, headers={**headers, "Content-Type": wire.CONTENT_TYPE})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    finally:
        conn.close()


def test_a_client_that_uploads_all_of_a_body_over_the_limit_still_reads_the_413(
    server: tuple[Any, Client, FakePredictor],
) -> None:
    import socket

    from fewclick_model.server.app import MAX_BODY_BYTES

    handle, _, fake = server
    warm_up = fake.predicts
    body = b"A" * (MAX_BODY_BYTES + 1024 * 1024)
    with socket.create_connection((handle.host, handle.port), timeout=30) as sock:
        # The whole body before the answer, as SageMaker's client and browsers send: a close on the unread
        # upload would reset the connection (a broken pipe here) instead of answering it.
        sock.sendall(f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"PAYLOAD_TOO_LARGE" in reply, reply[:300]
    assert fake.predicts == warm_up


def test_a_content_length_that_is_not_ascii_digits_is_answered(server: tuple[Any, Client, FakePredictor]) -> None:
    import socket

    handle, _, _ = server
    for declared in (b"\xb2", b"-1"):  # "²" passes str.isdigit() but not int()
        sock = socket.create_connection((handle.host, handle.port), timeout=5)
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: " + declared + b"\r\n\r\n{}")
        assert sock.recv(200).startswith(b"HTTP/1.1 411"), declared
        sock.close()


def test_wrong_crop_size_and_routes(server: tuple[Any, Client, FakePredictor]) -> None:
    _, client, _ = server
    req = json.loads(_request())
    req["crop"] = wire.encode_crop(np.zeros((32, 32, 3), np.uint8)).model_dump()
    status, err, _ = client.invoke(json.dumps(req).encode(), wire.NEW_SESSION)
    assert status == 400 and "64x64" in err["error"]["message"]
    assert client.request("GET", "/nope")[0] == 404
    assert client.request("POST", "/nope", b"{}")[0] == 404


def test_other_network_size_is_resampled(server: tuple[Any, Client, FakePredictor]) -> None:
    _, client, _ = server
    req = wire.WireRequest(
        cropId="crop-big-1", size=128, extremePoints=POINTS, crop=wire.encode_crop(np.zeros((128, 128, 3), np.uint8))
    )
    status, body, headers = client.invoke(wire.dump_request(req), wire.NEW_SESSION)
    assert status == 200 and wire.decode_probabilities(body["probabilities"], 128).shape == (128, 128)
    # The same crop id at another side without pixels is not answered from this session's crop.
    sid = wire.parse_session_header(headers[wire.SESSION_HEADER])[0]
    other = wire.WireRequest(cropId="crop-big-1", size=S, extremePoints=POINTS)
    status, body, _ = client.invoke(wire.dump_request(other), sid)
    assert status == 404 and body["error"]["code"] == "SESSION_EXPIRED"


def test_a_finer_crop_is_answered_at_its_side_with_edges_refined_on_it(
    server: tuple[Any, Client, FakePredictor],
) -> None:
    from fewclick_model.encoding import CropClick

    from fewclick_contract.edge_refine import prepare_crop, refine_probabilities

    _, client, _ = server
    fine = 2 * S
    # A bright disc a little off the fake network's ellipse: the refinement has an edge to find.
    crop = np.full((fine, fine, 3), 30, np.uint8)
    yy, xx = np.mgrid[:fine, :fine]
    crop[(xx - 66) ** 2 + (yy - 64) ** 2 < 50**2] = 220
    points = [wire.WirePoint(x=2 * p.x, y=2 * p.y) for p in POINTS]
    req = wire.WireRequest(cropId="crop-fine-1", size=fine, extremePoints=points, crop=wire.encode_crop(crop))
    status, body, headers = client.invoke(wire.dump_request(req), wire.NEW_SESSION)
    assert status == 200, body
    got = wire.decode_probabilities(body["probabilities"], fine)
    network = FakePredictor(S).predict(None, [CropClick(p.x, p.y, "boundary") for p in POINTS])
    _, guide = prepare_crop(crop, S)
    assert guide is not None
    expected = refine_probabilities(network, guide)
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-6
    resampled = cv2.resize(network, (fine, fine), interpolation=cv2.INTER_LINEAR)
    assert np.abs(got - resampled).max() > 0.1  # the edges really moved

    # A warm click on the same crop: no pixels sent, still answered at the finer side.
    session = wire.parse_session_header(headers[wire.SESSION_HEADER])[0]
    warm = wire.WireRequest(
        cropId="crop-fine-1",
        size=fine,
        extremePoints=points,
        clicks=[wire.WireClick(x=60, y=60, kind="positive")],
    )
    status, body, _ = client.invoke(wire.dump_request(warm), session)
    assert status == 200 and body["cache"] == "hit"
    assert wire.decode_probabilities(body["probabilities"], fine).shape == (fine, fine)


def test_cache_bounds() -> None:
    now = [0.0]
    cache = SessionCache(
        max_sessions=3, max_bytes=1000, idle_ttl_s=10, lifetime_s=100, monotonic=lambda: now[0], wall=lambda: now[0]
    )

    def entry(sid: str, nbytes: int) -> SessionEntry:
        return SessionEntry(sid, 0, "c", np.zeros(nbytes, np.uint8), {}, cache.new_expiry())

    for sid in "abc":
        cache.put(entry(sid, 100))
    assert cache.get("a") is not None  # a is now most recent
    cache.put(entry("d", 100))  # over the count: b (least recent) goes
    assert cache.peek("b") is None and cache.peek("a") is not None
    cache.put(entry("e", 700))  # over the bytes: oldest go until it fits
    assert cache.stats().bytes <= 1000 and cache.peek("e") is not None
    now[0] = 11.0  # idle TTL passed for everyone
    assert cache.get("e") is None
    cache.put(entry("f", 10))
    now[0] = 105.0
    cache.get("f")  # touched, but past the hard lifetime
    assert cache.get("f") is None
    # An entry bigger than the whole budget is kept while it is the active one.
    cache.put(entry("g", 5000))
    assert cache.peek("g") is not None


def test_mirror_and_precision_settings_are_checked_when_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from fewclick_model.inference_options import PredictorOptions
    from fewclick_model.server import cli

    def parse(*argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser(prog="serve")
        cli.add_arguments(parser)
        return parser.parse_args(list(argv))

    served = parse()
    assert (served.boundary_refiner, served.progressive_merge, served.cuda_graphs, served.frozen_graphs) == ("on",) * 4
    monkeypatch.setenv("FEWCLICK_MIRROR", "first")
    monkeypatch.setenv("FEWCLICK_PRECISION", "fp32")
    monkeypatch.setenv("FEWCLICK_BOUNDARY_REFINER", "off")
    monkeypatch.setenv("FEWCLICK_PROGRESSIVE_MERGE", "off")
    monkeypatch.setenv("FEWCLICK_CUDA_GRAPHS", "off")
    monkeypatch.setenv("FEWCLICK_FROZEN_GRAPHS", "off")
    args = parse()
    assert (args.mirror, args.precision) == ("first", "fp32")
    assert (args.boundary_refiner, args.progressive_merge, args.cuda_graphs, args.frozen_graphs) == ("off",) * 4
    # ... and each replica loads the predictor they describe.
    assert cli.predictor_options(args) == PredictorOptions(
        mirror="first",
        precision="fp32",
        boundary_refiner=False,
        progressive_merge=False,
        cuda_graphs=False,
        frozen_graphs=False,
    )
    assert cli.predictor_options(parse("--weights", "w.pt")).weights == "w.pt"
    assert parse("--mirror", "every").mirror == "every"  # a flag beats the environment
    # A typo in the container's environment stops the server at start, saying where it came from.
    monkeypatch.setenv("FEWCLICK_PRECISION", "fp16")
    with pytest.raises(SystemExit) as exit_info:
        parse()
    assert exit_info.value.code == 2
    assert "'fp16' (flag or FEWCLICK_PRECISION) is not one of auto, fp32, bf16" in capsys.readouterr().err
    monkeypatch.delenv("FEWCLICK_PRECISION")
    # Numbers too: a bad value (flag or environment) stops the start instead of silently becoming a default.
    assert (parse().port, parse().max_sessions, parse().session_ttl) == (8080, 512, 900.0)
    for env, value, says in (
        ("FEWCLICK_MAX_SESSIONS", "lots", "'lots' (flag or FEWCLICK_MAX_SESSIONS) is not an integer"),
        ("FEWCLICK_CACHE_MB", "-1", "'-1' (flag or FEWCLICK_CACHE_MB) is not within 1..inf"),
        ("SAGEMAKER_BIND_TO_PORT", "70000", "'70000' (flag or SAGEMAKER_BIND_TO_PORT) is not within 0..65535"),
    ):
        monkeypatch.setenv(env, value)
        with pytest.raises(SystemExit):
            parse()
        assert says in capsys.readouterr().err
        monkeypatch.delenv(env)
    with pytest.raises(SystemExit):
        parse("--max-pending", "0")
    assert parse("--max-sessions", "3", "--session-ttl", "2.5").max_sessions == 3


def test_the_served_predictor_merges_late_boundary_clicks_unless_told_not_to() -> None:
    from fewclick_model.inference_options import PredictorOptions
    from fewclick_model.server.app import default_predictor_factory

    assert default_predictor_factory(PredictorOptions(boundary_refiner=False))("cpu").progressive_merge
    options = PredictorOptions(boundary_refiner=False, progressive_merge=False)
    assert not default_predictor_factory(options)("cpu").progressive_merge


def test_the_served_predictor_replays_cuda_graphs_only_on_a_gpu_and_unless_told_not_to() -> None:
    from fewclick_model.cuda_graphs import GraphedCall
    from fewclick_model.frozen_graphs import FrozenCall
    from fewclick_model.inference_options import PredictorOptions
    from fewclick_model.server.app import default_predictor_factory

    served = default_predictor_factory(PredictorOptions(boundary_refiner=False))
    # Nothing to replay on a CPU: its passes run as frozen TorchScript graphs instead, unless told not to.
    assert isinstance(served("cpu")._graphed_decode, FrozenCall)
    op_by_op = default_predictor_factory(PredictorOptions(boundary_refiner=False, frozen_graphs=False))
    assert op_by_op("cpu")._graphed_decode is None
    if torch.cuda.is_available():
        assert isinstance(served("cuda")._graphed_decode, GraphedCall)
        eager = default_predictor_factory(PredictorOptions(boundary_refiner=False, cuda_graphs=False))
        assert eager("cuda")._graphed_decode is None


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU"))],
)
def test_the_served_model_answers_from_graphs_made_while_it_warms_up(device: str) -> None:
    """The committed model as `serve` runs it: on a GPU its CUDA graphs are captured, on a CPU its
    frozen TorchScript graphs traced, while the replica warms up on its own thread (so a labeler's
    first request pays for neither), and a session's clicks (a finer crop, so the edge refinement runs
    too) answer as a predictor running op by op does."""
    from fewclick_model.encoding import CropClick
    from fewclick_model.predictor import load_crop_predictor

    handle = start_model_server("127.0.0.1", 0, devices=[device])
    try:
        predictor = handle.engine.replicas[0].predictor
        assert ("CUDA graphs" if device == "cuda" else "frozen graphs") in predictor.describe()
        warmed = (predictor._graphed_decode.graphs, predictor._graphed_refiner.graphs)
        assert warmed[0] >= 1 and warmed[1] == 1  # warm-up
        if device == "cpu":
            assert predictor._graphed_encode.graphs == 1
        s = predictor.input_size
        fine = 2 * s
        rng = np.random.default_rng(3)
        crop = cv2.GaussianBlur(rng.integers(0, 255, (fine, fine, 3), dtype=np.uint8), (9, 9), 0)
        yy, xx = np.mgrid[:fine, :fine]
        crop[(xx - fine // 2) ** 2 + (yy - fine // 2) ** 2 < (fine // 3) ** 2] //= 3
        points = [(fine // 2, 40), (40, fine // 2), (fine // 2, fine - 40), (fine - 40, fine // 2)]
        wire_points = [wire.WirePoint(x=x, y=y) for x, y in points]
        clicks = [wire.WireClick(x=fine // 2 + 30, y=fine // 2, kind="boundary")]
        client = Client(handle.url)
        new = wire.WireRequest(
            cropId="crop-graphs-1", size=fine, extremePoints=wire_points, crop=wire.encode_crop(crop)
        )
        status, body, headers = client.invoke(wire.dump_request(new), wire.NEW_SESSION)
        assert status == 200, body
        first = wire.decode_probabilities(body["probabilities"], fine)
        session = wire.parse_session_header(headers[wire.SESSION_HEADER])[0]
        warm = wire.WireRequest(cropId="crop-graphs-1", size=fine, extremePoints=wire_points, clicks=clicks)
        status, body, _ = client.invoke(wire.dump_request(warm), session)
        assert status == 200 and body["cache"] == "hit", body
        clicked = wire.decode_probabilities(body["probabilities"], fine)
        # The labeler's requests ran the graphs the warm-up made, and made none.
        assert (predictor._graphed_decode.graphs, predictor._graphed_refiner.graphs) == warmed
    finally:
        handle.stop()

    op_by_op = load_crop_predictor(device=device, cuda_graphs=False, frozen_graphs=False)
    small, guide = prepare_crop(crop, s)
    assert guide is not None
    feats = op_by_op.encode(small)
    extremes = [CropClick(x / 2, y / 2, "boundary") for x, y in points]
    prob = op_by_op.predict_first(feats, extremes)
    np.testing.assert_allclose(first, op_by_op.refine_edges(prob, guide), atol=1 / 255 + 1e-4)
    kept = prob.astype(np.float16).astype(np.float32)  # as a session's prefix cache keeps it
    after = op_by_op.predict(feats, [*extremes, CropClick(clicks[0].x / 2, clicks[0].y / 2, "boundary")], kept)
    np.testing.assert_allclose(clicked, op_by_op.refine_edges(after, guide), atol=1 / 255 + 1e-4)


def _wait_until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_stop_answers_the_requests_already_in_and_refuses_new_ones() -> None:
    """SIGTERM (a scale-in, a redeploy): the running and the queued request both get their answer;
    one arriving during the stop gets a retryable 503, never a 500 or a dropped connection."""
    from fewclick_model.server.app import ModelHttpServer

    assert ModelHttpServer.request_queue_size >= 128  # a burst of connections waits for no SYN retry
    fake = FakePredictor(S, delay_s=0.4)  # each encode and predict: a cold request takes ~0.8 s
    handle = start_model_server("127.0.0.1", 0, predictor_factory=lambda device: fake, devices=["cpu"])
    answers: dict[str, int] = {}

    def call(name: str) -> None:
        answers[name] = Client(handle.url).invoke(_request(crop_id=f"crop-{name}"), wire.NEW_SESSION)[0]

    first = threading.Thread(target=call, args=("running1",))
    second = threading.Thread(target=call, args=("queued01",))
    first.start()
    second.start()
    _wait_until(lambda: handle.engine.replicas[0].pending == 2)  # one running, one queued
    stopping = threading.Thread(target=handle.stop)
    stopping.start()
    _wait_until(lambda: handle.server.closing)
    late = Client(handle.url).invoke(_request(crop_id="crop-late0001"), wire.NEW_SESSION)
    # OVERLOADED (retry shortly, elsewhere), not NOT_READY (the proxy waits 10 s for a loading model).
    assert late[0] == 503 and late[1]["error"]["code"] == "OVERLOADED"
    assert Client(handle.url).request("GET", "/ping")[0] == 503  # the platform routes new sessions elsewhere
    for thread in (first, second, stopping):
        thread.join(10)
    assert answers == {"running1": 200, "queued01": 200}


def test_a_request_given_up_on_while_it_runs_keeps_its_queue_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    from fewclick_model.server import engine

    monkeypatch.setattr(engine, "REQUEST_DEADLINE_S", 0.3)
    fake = FakePredictor(S, delay_s=0.5)
    handle = start_model_server("127.0.0.1", 0, predictor_factory=lambda device: fake, devices=["cpu"])
    try:
        status, body, _ = Client(handle.url).invoke(_request(), wire.NEW_SESSION)
        # It started, so it is "taking too long", not "did not start"; and it still holds its slot.
        assert status == 503 and "taking too long" in body["error"]["message"]
        assert handle.engine.replicas[0].pending == 1
        _wait_until(lambda: handle.engine.replicas[0].pending == 0)  # freed when the work ends
    finally:
        handle.stop()


def _read_until(process: Any, text: str) -> None:
    """Read the child's output until a line holds ``text``; it must still be running then."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            break
    assert process.poll() is None, "".join(lines)


def test_a_stop_while_the_model_loads_exits_at_once(tmp_path: Path) -> None:
    """A load that hangs (here: weights on a FIFO nobody writes) must not keep the container alive."""
    import os
    import signal
    import subprocess
    import sys

    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [sys.executable, "-m", "fewclick.cli", "model-server", "--port", "0", "--weights", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Until the log says it is loading (torch's import alone takes seconds on a busy machine).
        _read_until(process, "loading the model")
        time.sleep(0.5)  # the loader is now blocked opening the FIFO
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


_STOP_THAT_HANGS = """
import sys, threading, types
from fewclick_model.server import app, cli

class Handle:
    url = "http://127.0.0.1:0"
    loader = types.SimpleNamespace(is_alive=lambda: False)
    engine = types.SimpleNamespace(ready=True, model_version="fake", load_error=None)

    def wait_ready(self, timeout=None):
        pass

    def stop(self, drain_s=25.0):
        threading.Event().wait()  # a drain or a device that never returns

app.start_model_server = lambda *args, **kwargs: Handle()
cli.STOP_DEADLINE_S = 1.0
sys.exit(cli.main(["--device", "cpu", "--port", "0", "--log-level", "INFO"]))
"""


def test_a_stop_that_hangs_still_ends_the_process() -> None:
    """Whatever blocks a stop (a stuck device, a thread joined at exit), the process ends
    `STOP_DEADLINE_S` after the signal, exit status 1: an orphan would keep its port and a core."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", _STOP_THAT_HANGS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _read_until(process, "ready: model fake")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 1
        assert time.monotonic() - started >= 1.0  # the stop had its time first
        assert "still stopping after 1 s; exiting" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


# --- message framing: one reading of where a request ends, or a refusal ---------------------------


def _raw(handle: Any, data: bytes, *, shut: bool = False) -> list[bytes]:
    """Send ``data`` as is (``shut``: then close the sending side) and return the status lines of
    every answer the server gives before it closes the connection."""
    import socket

    sock = socket.create_connection((handle.host, handle.port), timeout=10)
    try:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    finally:
        sock.close()
    return [line for line in reply.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


SMUGGLED = b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "body", "status"),
    [
        # A second request hidden in the first one's body must never run (/stats would answer 200).
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED), SMUGGLED, b"400"),
        (
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n",
            b"{}" + SMUGGLED,
            b"400",
        ),
        (
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            b"{}" + SMUGGLED,
            b"400",
        ),
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-A: b\rContent-Length: 2\r\n\r\n", b"{}" + SMUGGLED, b"400"),
        (b"HELLO\r\n\r\n", SMUGGLED, b"400"),  # a garbage request line: JSON 400, not a bare HTML page
        (b"DELETE /ping HTTP/1.1\r\nHost: x\r\n\r\n", SMUGGLED, b"405"),
    ],
    ids=["get-with-a-body", "two-content-lengths", "chunked-and-length", "bare-cr-in-a-header", "garbage", "delete"],
)
def test_an_ambiguous_request_is_refused_and_nothing_behind_it_runs(
    server: tuple[Any, Client, FakePredictor], head: bytes, body: bytes, status: bytes
) -> None:
    handle, client, _ = server
    statuses = _raw(handle, head + body)
    assert statuses and statuses[0].startswith(b"HTTP/1.1 " + status), statuses
    assert len(statuses) == 1, statuses  # the connection closed: the smuggled GET /stats never ran
    assert client.request("GET", "/ping")[0] == 200


def test_a_body_cut_short_is_refused_not_run(server: tuple[Any, Client, FakePredictor]) -> None:
    handle, client, _ = server
    body = _request()
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\n%s: %s\r\nContent-Length: %d\r\n\r\n" % (
        wire.SESSION_HEADER.encode(),
        wire.NEW_SESSION.encode(),
        len(body) + 1000,
    )
    assert _raw(handle, head + body, shut=True) == [b"HTTP/1.1 400 Bad Request"]
    assert handle.engine.stats()["sessions"] == 0  # nothing was run
    assert client.request("GET", "/ping?probe=1")[0] == 200  # a query string is no other route


def test_a_stop_does_not_wait_for_a_client_still_uploading(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request counts towards the stop's drain once its body is in: a client stalled mid-body
    (65 s read timeout) used to hold the drain for its 25 s, then exit 1."""
    import socket

    from fewclick_model.server import app

    reading = threading.Event()
    read_body = app._Handler._read_body

    def read_body_noted(self: Any) -> bytes | None:
        reading.set()  # the headers are in; the body read is about to block
        return read_body(self)

    monkeypatch.setattr(app._Handler, "_read_body", read_body_noted)
    fake = FakePredictor(S)
    handle = start_model_server("127.0.0.1", 0, predictor_factory=lambda device: fake, devices=["cpu"])
    sock = socket.create_connection((handle.host, handle.port), timeout=10)
    try:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert reading.wait(10)
        started = time.monotonic()
        assert handle.stop() is True  # drained: nothing was admitted
        assert time.monotonic() - started < 5
    finally:
        sock.close()
