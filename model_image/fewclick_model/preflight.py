"""Checks a benchmark or tool runs before its long work, so a bad setting costs seconds, not the run.

A CUDA device asked for on a machine without one used to fail inside the model load (an
AssertionError from torch, or the model server's load error three tracebacks deep), and an
unwritable ``--out`` only after the whole run, losing its results. Both raise `ValueError` /
`OSError` here, which the `fewclick` CLI prints as one line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def check_device(device: str) -> str:
    """``device`` (``cpu``, ``cuda``, ``cuda:N``) when this machine has it; ValueError saying what it has."""
    if not device.startswith("cuda"):
        return device
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {device}: no CUDA device here (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}); use --device cpu"
        )
    _, _, index = device.partition(":")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def _prove_writable(folder: Path) -> None:
    """Make ``folder`` and write a file there (then remove it). Permission bits alone do not tell
    (read-only mounts, quotas, root in a container), so it writes."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".fewclick-write-test-"):
        pass


def prepare_out_dir(path: Path) -> Path:
    """Create ``path`` and prove a file can be written there; OSError naming it if not."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--out {path} is a file, not a folder")
    try:
        _prove_writable(path)
    except OSError as exc:
        raise OSError(f"--out {path} is not a writable folder: {exc.strerror or exc}") from exc
    return path


def check_names_a_file(path: Path, option: str) -> None:
    """IsADirectoryError where ``option``'s ``path`` is a folder: it must name the file to write."""
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; name a file")


def prepare_out_file(path: Path, option: str) -> Path:
    """Prove ``path`` can be written (its folder made, a file written there and removed) without
    touching ``path`` itself; OSError naming ``option`` if not. For outputs written only at the end
    of a long run (exported weights), where a bad path used to be found after all the work."""
    check_names_a_file(path, option)
    try:
        _prove_writable(path.parent)
    except OSError as exc:
        raise OSError(f"{option} {path}: its folder is not writable: {exc.strerror or exc}") from exc
    return path
