"""The latency benchmark runs end to end (tiny sizes) and writes its report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from fewclick.bench import latency
from fewclick.cli import build_parser

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
