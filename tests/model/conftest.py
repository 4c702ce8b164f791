"""Fixtures shared by the model library's tests."""

from pathlib import Path

import pytest
import torch
from fewclick_model.checkpoints import export_weights
from fewclick_model.network import FewClickNet


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights file of the network at its smallest (64 px input, 16 decoder channels), untrained
    past the ImageNet encoder: fast to load, and its answers move with every click."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    export_weights(FewClickNet(pretrained=True, decoder_channels=16).eval(), path, 64, 16, {})
    return path
