"""Saving and loading weights: resumable training checkpoints and small served weights."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from .data import DEFAULT_HOLDOUT_SHARE, holdout_share_of
from .network import FewClickNet

WEIGHTS_FORMAT = "fewclick-weights/1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "fewclick-lite0.pt"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write then rename, so a kill mid-save never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def export_weights(
    model: FewClickNet, path: Path, input_size: int, decoder_channels: int, extra: dict[str, Any]
) -> str:
    """Half-precision state dict plus what is needed to rebuild the network; returns the model version."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()[:10]
    version = f"{model.encoder_name.replace('efficientnet-', '')}-{input_size}-{digest}"
    atomic_torch_save(
        {
            "format": WEIGHTS_FORMAT,
            "encoder": model.encoder_name,
            "input_size": input_size,
            "decoder_channels": decoder_channels,
            "model_version": version,
            "state_dict": state,
            **extra,
        },
        path,
    )
    return version


def _load_exported(path: Path) -> dict[str, Any]:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path} is not a {WEIGHTS_FORMAT} file")
    return blob


def weights_meta(path: Path) -> dict[str, Any]:
    """What exported weights record about themselves (version, input size, hold-out share...)."""
    return {k: v for k, v in _load_exported(path).items() if k != "state_dict"}


def weights_holdout_share(path: Path | None) -> float:
    """The share of each training folder that the weights at ``path`` (default: the committed
    ones) never trained on; an untrained network's is the default split's."""
    path = path or DEFAULT_WEIGHTS
    return holdout_share_of(weights_meta(path)) if path.exists() else DEFAULT_HOLDOUT_SHARE


def load_weights(path: Path, device: str | torch.device = "cpu") -> tuple[FewClickNet, dict[str, Any]]:
    """Rebuild the network from exported weights (float32 for inference)."""
    blob = _load_exported(path)
    model = FewClickNet(encoder=blob["encoder"], pretrained=False, decoder_channels=blob["decoder_channels"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    return model.to(device).eval(), meta
