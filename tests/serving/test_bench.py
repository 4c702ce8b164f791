"""The latency benchmark runs end to end (tiny sizes) and writes its report; bad input is one line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from fewclick.bench import latency
from fewclick.cli import TRACEBACK_ENV, build_parser, main
from tests.cli_support import argparse_refusal

pytestmark = pytest.mark.timeout(120)


def test_benchmark_cli_is_registered() -> None:
    argv = ["benchmark", "latency", "--sessions", "1", "--out", "x"]
    args = build_parser(argv).parse_args(argv)
    assert args.kind == "latency" and args.sessions == 1 and args._run is not None


def test_latency_benchmark_smoke(tmp_path: Path, aws_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    latency.add_arguments(parser)
    args = parser.parse_args(
        [
            "--sessions",
            "1",
            "--clicks",
            "1",
            "--warmup",
            "0",
            "--height",
            "160",
            "--width",
            "200",
            "--device",
            "cpu",
            "--torch-threads",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert latency.run(args) == 0
    out = capsys.readouterr().out
    assert "new image" in out and "warm click" in out
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["summary"]["warm click"]["cache_hit_rate"] == 1.0
    assert report["summary"]["warm click"]["wire_request_kb_max"] < 100
    assert (tmp_path / "latency_hist.png").stat().st_size > 1000


# --- bad input: one line from `fewclick`, before the model server starts where it can be ---


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--sessions", "0", "must be at least 1, got 0"),
        ("--sessions", "-1", "must be at least 1, got -1"),
        ("--clicks", "-1", "must be 0 or more, got -1"),
        ("--warmup", "-1", "must be 0 or more, got -1"),
        ("--torch-threads", "-1", "must be 0 or more, got -1"),
        ("--height", "0", "must be at least 32 px"),
        ("--width", "8", "must be at least 32 px"),
        ("--height", "100000", "must be at most 65500 px (JPEG's largest side), got 100000"),
        ("--width", "100000", "must be at most 65500 px"),
        ("--device", "bogus", "expected auto, cpu, cuda or cuda:N, got 'bogus'"),
    ],
)
def test_latency_options_out_of_range_are_refused_by_argparse(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["benchmark", "latency", option, value]
    assert f"argument {option}: {message}" in argparse_refusal(argv, capsys)


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("fewclick benchmark: error: ")
    assert len(err.strip().splitlines()) == 2  # the error, then how to see the traceback
    return err


@pytest.fixture
def no_traceback_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)


def test_weights_the_model_server_cannot_load_are_one_line(
    tmp_path: Path,
    aws_env: None,
    no_traceback_env: None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = tmp_path / "nonexistent.pt"
    argv = ["benchmark", "latency", "--weights", str(missing), "--device", "cpu", "--torch-threads", "1"]
    err = _one_line_error([*argv, "--out", str(tmp_path / "out")], capsys)
    assert f"the model server could not load the model: weights file {missing} does not exist" in err
    # The model server's own logged traceback of the failed load is left out too (it was one of three).
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("fewclick.model_server")]


def test_a_scene_past_the_apis_pixel_limit_is_refused_before_anything_runs(
    tmp_path: Path, no_traceback_env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*_: Any, **__: Any) -> None:
        raise AssertionError("a scene the API would refuse must not be drawn (10^10 px ran OpenCV out of memory)")

    monkeypatch.setattr(latency, "run_benchmark", must_not_run)
    out = tmp_path / "out"
    err = _one_line_error(["benchmark", "latency", "--height", "10000", "--width", "10000", "--out", str(out)], capsys)
    assert "--width/--height: 10000x10000 is 100000000 pixels; the API decodes at most 50000000" in err
    assert not out.exists()


def test_a_scene_past_the_apis_inline_limit_is_one_line(
    tmp_path: Path,
    aws_env: None,
    no_traceback_env: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within the pixel limit a scene's JPEG can still be too large to send inline (from ~10 MP); here the
    limit shrinks to a small scene's size, so the test needs no 10 MP scene."""
    import fewclick_contract.api

    monkeypatch.setattr(fewclick_contract.api, "MAX_INLINE_IMAGE_BYTES", 10_000)
    argv = ["benchmark", "latency", "--sessions", "1", "--clicks", "0", "--warmup", "0", "--height", "160"]
    argv += ["--width", "200", "--device", "cpu", "--torch-threads", "1", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    # Under the progress bar of the requests it had begun.
    assert "Traceback" not in err and err.splitlines()[-2] == (
        "fewclick benchmark: error: --width/--height 200x160: the API refuses it: inline images are limited to "
        "10000 bytes"
    )


def test_a_gpu_the_machine_lacks_is_refused_before_the_model_server_starts(
    tmp_path: Path, no_traceback_env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from fewclick_model import server

    def must_not_start(*_: Any, **__: Any) -> None:
        raise AssertionError("the model server must not start on a device the machine lacks")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(server, "start_model_server", must_not_start)
    err = _one_line_error(["benchmark", "latency", "--device", "cuda:0", "--out", str(tmp_path)], capsys)
    assert "--device cuda:0: no CUDA device here" in err and "use --device cpu" in err


def test_an_unwritable_out_is_refused_before_the_run(
    tmp_path: Path, no_traceback_env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*_: Any, **__: Any) -> None:
        raise AssertionError("the benchmark must not run when its results cannot be written")

    monkeypatch.setattr(latency, "run_benchmark", must_not_run)
    taken = tmp_path / "latency.json"
    taken.write_text("{}")
    err = _one_line_error(["benchmark", "latency", "--out", str(taken)], capsys)
    assert "is a file, not a folder" in err
    err = _one_line_error(["benchmark", "latency", "--out", str(taken / "sub")], capsys)
    assert "is not a writable folder" in err
