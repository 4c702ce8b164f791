"""`fewclick benchmark load` without the local stack: its options are range-checked by argparse, the URL
must be http(s) with a host, a run nothing answers exits 1 saying why, timeouts are told apart from
connection errors, a progress bar runs, and the summary reads like the README's load table."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fewclick.bench import load
from fewclick.bench.load import LoadResult, LoadSettings, Sample, format_table, summarize
from fewclick.cli import TRACEBACK_ENV, main
from tests.cli_support import argparse_refusal

from .support import free_port

pytestmark = pytest.mark.timeout(120)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    load.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--users", "0", "must be at least 1, got 0"),
        ("--users", "-5", "must be at least 1, got -5"),
        ("--seconds", "0", "must be more than 0, got 0"),
        ("--seconds", "-1", "must be more than 0, got -1"),
        ("--clicks", "-1", "must be 0 or more, got -1"),
        ("--think", "-1", "must be 0 or more"),
        ("--request-timeout", "0", "must be more than 0, got 0"),
        ("--torch-threads", "-1", "must be 0 or more"),
        ("--rate", "0", "must be more than 0"),
        ("--burst", "0", "must be at least 1"),
        ("--image-size", "0x0", "must be at least 32 px"),
        ("--image-size", "100000x64", "must be at most 65500 px (JPEG's largest side), got 100000"),
        ("--image-size", "10000x10000", "10000x10000 is 100000000 pixels; the API decodes at most 50000000"),
        ("--image-size", "640", "expected WxH, e.g. 640x480, got '640'"),
        ("--image-size", "axb", "expected a whole number of pixels, got 'a'"),
        ("--url", "localhost:8000", "expected http://HOST[:PORT][/STAGE] or https://..., got 'localhost:8000'"),
        ("--url", "ftp://x", "got 'ftp://x'"),
        ("--url", "http://", "got 'http://'"),
        ("--url", "http://host:99999", "Port out of range"),
        ("--url", "https://host/prod?x=1", "takes no ?query or #fragment"),
    ],
)
def test_load_options_out_of_range_are_refused_by_argparse(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["benchmark", "load", option, value]
    err = argparse_refusal(argv, capsys).splitlines()[-1]
    assert err.startswith(f"fewclick benchmark load: error: argument {option}: ") and message in err


def test_settings_are_the_options_as_given() -> None:
    args = _parse(["--users", "3", "--think", "0", "--clicks", "0", "--image-size", "64X48", "--request-timeout", "2"])
    settings = load.settings_from_args(args, 7.0)
    assert (settings.users, settings.think_s, settings.clicks_per_image) == (3, 0.0, 0)
    assert (settings.width, settings.height, settings.timeout_s, settings.seconds) == (64, 48, 2.0, 7.0)
    assert _parse([]).image_size == (640, 480)


def test_the_url_is_kept_with_its_stage() -> None:
    args = _parse(["--url", "https://abc.execute-api.eu-west-1.amazonaws.com/prod/"])
    assert args.url == "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    assert _parse(["--url", "http://127.0.0.1:8000"]).url == "http://127.0.0.1:8000"


def _tiny_run(url: str, out: Path, *extra: str) -> list[str]:
    return [
        "--url",
        url,
        "--users",
        "1",
        "--seconds",
        "1",
        "--image-size",
        "64x48",
        "--think",  # the labeler's first request within 0.1 s
        "0.1",
        "--out",
        str(out),
        *extra,
    ]


def test_nothing_listening_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to measure a second of connection errors and write that over the last real report."""
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    out = tmp_path / "load"
    out.mkdir()
    earlier = out / "load-1u.json"
    earlier.write_text('{"summary": "an earlier, real run"}')
    port = free_port()  # bound and closed: nothing listens there
    assert main(["benchmark", "load", *_tiny_run(f"http://127.0.0.1:{port}", out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == (
        f"fewclick benchmark: error: --url http://127.0.0.1:{port}: cannot connect to 127.0.0.1:{port} "
        "(Connection refused)"
    )
    assert "Traceback" not in captured.err and "answered=0" not in captured.err  # no run, no progress bar
    assert [p.name for p in out.iterdir()] == ["load-1u.json"] and "earlier" in earlier.read_text()
    assert main(["benchmark", "load", *_tiny_run(f"http://127.0.0.1:{port}", tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Takes connections (the kernel's backlog does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_server_that_never_answers_is_counted_as_timeouts(
    silent_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It takes the connection, so it is reachable: slow, not absent, and the run says so.
    assert load.run(_parse(_tiny_run(silent_server, tmp_path, "--request-timeout", "0.3"))) == 1
    summary = json.loads((tmp_path / "load-1u.json").read_text())["summary"]
    assert summary["timeouts"] == summary["requests"] >= 1 and summary["connection_errors"] == {}
    assert f"timeouts {summary['timeouts']}; connection errors 0" in capsys.readouterr().err


class _FakeApi(BaseHTTPRequestHandler):
    """Answers every segment request with an empty mask of the image's size (64x48 here)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        from pycocotools import mask as mask_utils

        rle = mask_utils.encode(np.asfortranarray(np.zeros((48, 64), np.uint8)))
        body = json.dumps(
            {
                "sessionId": "s-1",
                "mask": {"size": [48, 64], "counts": rle["counts"].decode("ascii")},
                "timings": {"modelMs": 1.5},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/prod"
    finally:
        server.shutdown()
        server.server_close()


def test_an_answered_run_exits_0_with_the_readme_summary(
    fake_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _tiny_run(fake_api, tmp_path, "--clicks", "1", "--seconds", "0.6")
    assert load.run(_parse(argv)) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "load-1u.json").read_text())["summary"]
    assert summary["ok"] == summary["requests"] > 0
    assert f"answered / sent {summary['ok']} / {summary['requests']}" in out and "answered/s" in out


def test_summary_wording_and_units_follow_the_readme_table() -> None:
    samples = [Sample(0.1 * i, "new image" if i % 6 == 0 else "click", 200, 50.0 + i, 38.0) for i in range(12)]
    samples += [
        Sample(1.3, "click", 429, 1.0, None, "THROTTLED"),
        Sample(1.4, "click", 0, 300.0, None, load.TIMEOUT_CODE),
        Sample(1.5, "new image", 0, 1.0, None, "ConnectionResetError"),
    ]
    result = LoadResult(
        LoadSettings(users=4, seconds=12.0),
        samples,
        duration_s=12.0,
        server_stats={
            "cacheHits": 10,
            "cacheMisses": 2,
            "evictions": 0,
            "overloaded": 0,
            "sessions": 2,
            "maxSessions": 512,
            "maxPending": 16,
        },
        memory={"peak_rss_mb": {"fewclick serve": 117.04, "model server": 351.4}},
    )
    summary = summarize(result)
    assert summary["errors"] == {"429 THROTTLED": 1}  # unanswered requests are counted apart
    assert summary["timeouts"] == 1 and summary["connection_errors"] == {"ConnectionResetError": 1}
    table = format_table(summary)
    assert "4 labelers, 12.0 s: answered / sent 12 / 15, throughput 1.0 answered/s" in table
    assert "answered / sent" in table.splitlines()[1] and "latency ms p50" in table.splitlines()[1]
    assert "errors: by status 1 x 429 THROTTLED; timeouts 1; connection errors 1 (1 x ConnectionResetError)" in table
    assert "cache hit (client / server): 100 % / 83 %" in table
    assert "peak RSS MB: fewclick serve 117, model server 351" in table
    assert "{" not in table  # no raw dicts
    remote = summarize(LoadResult(LoadSettings(), samples[:1], duration_s=1.0))
    assert "cache hit (client / server): n/a / n/a" in format_table(remote)
    assert "peak RSS MB: n/a (remote target)" in format_table(remote)


def test_an_unwritable_out_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*_: Any, **__: Any) -> None:
        raise AssertionError("the load must not run when its results cannot be written")

    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.setattr(load, "run_against", must_not_run)
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main(["benchmark", "load", "--out", str(taken / "load")]) == 2
    err = capsys.readouterr().err
    assert "is not a writable folder" in err and "Traceback" not in err
