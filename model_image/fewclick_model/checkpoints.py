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
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no stray half file beside a path that could not be written
        raise


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
            "newest_click": model.newest_click,
            "model_version": version,
            "state_dict": state,
            **extra,
        },
        path,
    )
    return version


def describe_torch_object(blob: object) -> str:
    """What a loaded torch file holds, in words, for an error that says what was found instead."""
    if isinstance(blob, dict):
        if "format" in blob:
            return f"a {blob['format']!r} file"
        if {"model", "optimizer", "step"} <= blob.keys():
            return "a training checkpoint (*.ckpt; --init and --weights take the weights its run exported)"
        return "a dict without a 'format' entry (a bare state dict?)"
    return f"a pickled {type(blob).__name__}"


def load_torch_file(path: Path, expected: str) -> Any:
    """``torch.load`` of ``path``; a missing file raises FileNotFoundError, one torch cannot read a
    ValueError, both naming the path and ``expected`` (what the caller wanted there)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected {expected})")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not {expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except OSError:
        raise  # unreadable (permissions, I/O): the system's own message says it best
    except Exception as error:
        # Unpickling foreign bytes fails in many ways (UnpicklingError, EOFError, a zip
        # RuntimeError, AttributeError for unknown classes...): each means "not a torch file".
        raise ValueError(f"{path} is not {expected}: torch cannot read it ({type(error).__name__}: {error})") from None


WEIGHTS_EXPECTED = f"FewClick network weights (a {WEIGHTS_FORMAT!r} file from `fewclick train --export`)"


def _load_exported(path: Path) -> dict[str, Any]:
    blob = load_torch_file(path, WEIGHTS_EXPECTED)
    if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path} is {describe_torch_object(blob)}, not {WEIGHTS_EXPECTED}")
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
    try:
        model = FewClickNet(
            encoder=blob["encoder"],
            pretrained=False,
            decoder_channels=blob["decoder_channels"],
            newest_click=bool(blob.get("newest_click", False)),  # recorded since the option exists
        )
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    except (KeyError, RuntimeError) as error:  # the right format, but not what it says it holds
        raise ValueError(f"{path} is a damaged {WEIGHTS_FORMAT!r} file: {error}") from None
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    return model.to(device).eval(), meta


def require_same_network(recorded: dict[str, Any], source: Path, encoder: str, decoder_channels: int) -> None:
    """A ValueError naming the setting in which ``recorded`` (exported weights' metadata or a
    training checkpoint) differs from this run's network; settings it does not record pass."""
    for option, theirs, ours in (
        ("--encoder", recorded.get("encoder"), encoder),
        ("--decoder-channels", recorded.get("decoder_channels"), decoder_channels),
    ):
        if theirs is not None and theirs != ours:
            raise ValueError(
                f"{source} was made with {option} {theirs}, this run asks for {ours}: pass {option} {theirs}"
            )


def state_dict_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """How ``state`` fails to fit ``model`` (missing, extra or differently shaped entries), in one
    line, or None where it fits: for checkpoints that do not record the settings they were made with."""
    ours = model.state_dict()
    missing, extra = sorted(ours.keys() - state.keys()), sorted(state.keys() - ours.keys())
    if missing or extra:
        return f"{len(missing)} entries missing (e.g. {missing[:1]}), {len(extra)} unexpected (e.g. {extra[:1]})"
    for key, value in state.items():
        if tuple(value.shape) != tuple(ours[key].shape):
            return f"{key} is {tuple(value.shape)} there, {tuple(ours[key].shape)} in this run's network"
    return None
