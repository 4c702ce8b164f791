"""Fixtures shared by the model library's tests."""

from pathlib import Path

import pytest
import torch

from .synthetic import export_tiny_weights


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights file of the network at its smallest (64 px input, 16 decoder channels), untrained
    past the ImageNet encoder: fast to load, and its answers move with every click."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    export_tiny_weights(path)
    return path
