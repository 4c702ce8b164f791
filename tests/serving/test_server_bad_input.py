"""`fewclick model-server`, the container's `serve` and `fewclick serve` refuse bad input as `fewclick benchmark
model` does: one line naming the option or file, exit status 2, no traceback (real processes, as a user runs them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fewclick.cli import TRACEBACK_ENV


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEWCLICK_") and k != "SAGEMAKER_BIND_TO_PORT"}
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


def _refusal(done: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The one line a refused start printed (besides the model server's INFO log, the CLI's hint and
    argparse's usage)."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    noise = ("usage:", " ")  # argparse's usage, over as many lines as it takes
    said = [
        line
        for line in done.stderr.splitlines()
        if not line.startswith(noise) and " INFO " not in line and TRACEBACK_ENV not in line
    ]
    assert len(said) == 1 and said[0].startswith(prefix), done.stderr
    return said[0]


@pytest.fixture
def not_weights(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("these are not weights\n")
    return path


def test_model_server_refuses_bad_weights_in_one_line(tmp_path: Path, not_weights: Path) -> None:
    server = ("-m", "fewclick.cli", "model-server", "--port", "0")
    said = _refusal(
        _run(*server, "--weights", str(tmp_path / "gone.pt"), cwd=tmp_path), "fewclick model-server: error:"
    )
    assert "could not load the model" in said and "gone.pt does not exist" in said
    said = _refusal(_run(*server, "--weights", str(not_weights), cwd=tmp_path), "fewclick model-server: error:")
    assert "could not load the model" in said and "notes.txt is not FewClick network weights" in said


def test_the_containers_entry_refuses_bad_weights_in_one_line_too(tmp_path: Path, not_weights: Path) -> None:
    # It has no `fewclick` CLI around it to print the error.
    container = ("-m", "fewclick_model.server", "serve", "--host", "127.0.0.1", "--port", "0")
    said = _refusal(_run(*container, "--weights", str(not_weights), cwd=tmp_path), "serve: error:")
    assert "notes.txt is not FewClick network weights" in said


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--device", "tpu"), "argument --device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
        (("--log-level", "bogus"), "argument --log-level: 'bogus' (flag or FEWCLICK_LOG_LEVEL) is not one of DEBUG"),
        (("--device", "cuda"), "--device cuda: no CUDA device here"),
    ],
)
def test_model_server_refuses_a_bad_device_or_log_level(argv: tuple[str, str], says: str, tmp_path: Path) -> None:
    if argv == ("--device", "cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    said = _refusal(_run("-m", "fewclick.cli", "model-server", "--port", "0", *argv, cwd=tmp_path), "fewclick")
    assert says in said


def test_model_server_names_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _run("-m", "fewclick.cli", "model-server", "--port", str(port), cwd=tmp_path)
    said = _refusal(done, "fewclick model-server: error:")
    assert f"cannot listen on 127.0.0.1:{port}" in said and "Address already in use" in said


def test_serve_says_once_that_the_model_server_cannot_load_the_weights(tmp_path: Path, not_weights: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((48, 64, 3), 120, np.uint8))
    labels = tmp_path / "labels"
    argv = ("-m", "fewclick.cli", "serve", "--port", "0", "--weights", str(not_weights), "--images", str(images))
    done = _run(*argv, "--out", str(labels), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    # Its line alone: not the model server's traceback, nor its refusal and then "exited with code ...".
    [said] = done.stderr.splitlines()
    assert said.startswith(f"fewclick serve: the model server could not load the model: {not_weights} is not "), said
    assert not labels.exists()  # nothing left behind by the start that failed
