"""`fewclick_model.preflight`: a device the machine lacks and an --out that takes no files are refused
before any long work, with a message saying what is wrong (ValueError / OSError: one line from `fewclick`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fewclick_model.preflight import check_device, prepare_out_dir


def test_the_cpu_is_always_there() -> None:
    assert check_device("cpu") == "cpu"


def test_cuda_without_a_gpu_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=rf"--device {device}: no CUDA device here .* use --device cpu"):
            check_device(device)


def test_a_gpu_index_past_the_machines_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda") == "cuda" and check_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        check_device("cuda:2")


def test_out_is_created_and_left_without_the_probe_file(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    assert prepare_out_dir(out) == out and out.is_dir()
    assert list(out.iterdir()) == []
    prepare_out_dir(out)  # an existing folder is fine


def test_an_out_that_is_a_file_or_under_one_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "results.json"
    a_file.write_text("{}")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        prepare_out_dir(a_file)
    with pytest.raises(OSError, match=r"--out .*results.json/sub is not a writable folder"):
        prepare_out_dir(a_file / "sub")


def test_a_folder_that_refuses_files_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Permission bits do not stop root (these tests may run as root), so the write itself fails here.
    import tempfile

    def refuse(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(OSError, match="is not a writable folder: Permission denied"):
        prepare_out_dir(tmp_path / "out")
