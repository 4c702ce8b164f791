"""Fixtures shared by the model library's tests."""

from pathlib import Path

import pytest
import torch

from .synthetic import export_tiny_weights, write_folder


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights file of the network at its smallest (64 px input, 16 decoder channels), untrained
    past the ImageNet encoder: fast to load, and its answers move with every click."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    export_tiny_weights(path)
    return path


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny synthetic training folders, named as `fewclick train` expects them."""
    root = tmp_path_factory.mktemp("data")
    write_folder(root / "coco_mval", 6, seed=1)
    write_folder(root / "davis", 4, seed=2)
    return root
