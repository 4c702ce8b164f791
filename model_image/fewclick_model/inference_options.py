"""How the predictor runs the network: its float type and which answers average a mirror view.

Both default to ``auto``, chosen per machine, and both can be forced (CLI ``--precision`` /
``--mirror``, the model server's ``FEWCLICK_PRECISION`` / ``FEWCLICK_MIRROR``).

Precision. On a CPU with AVX-512 BF16 or AMX (AMD Zen 4 and later, Intel Cooper Lake /
Sapphire Rapids and later) oneDNN runs the network's convolutions in bfloat16 about twice as
fast as in float32 on one core (a click's decoder pass on an AMD EPYC with AVX-512 BF16: 17-21 ms
against 36-39 ms): half the bytes to move, and dot-product instructions for them. On the
held-out instances the answers match float32's (mean IoU within 0.1 on all four curves; the
model card). Without native support oneDNN would emulate it, slower than float32, so there
``auto`` keeps float32; GPUs keep float32, the precision their latency was measured in.

Mirror views (flip test-time augmentation, chosen on held-out data: the model card). ``every``:
each answer is the mean of the crop's and its mirror image's; ``first``: only the first mask
(extreme points alone) is, a click is one pass; ``none``: one view. ``auto`` is ``every``, except
float32 on a CPU, where the second pass takes a click past its 40 ms p90 budget on 2 cores.

`PredictorOptions` holds these and the predictor's other choices as one value. Torch is
imported only when a choice is resolved or a predictor loaded, so CLIs and the model server's
HTTP side can offer the choices cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from .predictor import CropPredictor

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16")
MirrorMode = Literal["none", "first", "every"]
MIRROR_MODES: tuple[MirrorMode, ...] = ("none", "first", "every")
MirrorChoice = Literal["auto", "none", "first", "every"]
MIRROR_CHOICES: tuple[MirrorChoice, ...] = ("auto", *MIRROR_MODES)
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class PredictorOptions:
    """Every choice `predictor.load_crop_predictor` takes but the device, as one value: the
    model server passes it whole from its CLI to each replica, so a new option is added here
    and where it is parsed, not at every layer between. The defaults are what is served."""

    weights: str | Path | None = None
    input_size: int | None = None
    mirror: MirrorChoice = "auto"
    precision: Precision = "auto"
    boundary_refiner: bool | str | Path = True
    progressive_merge: bool = True
    cuda_graphs: bool = True
    frozen_graphs: bool = True

    def load(self, device: str | None = None) -> CropPredictor:
        from .predictor import load_crop_predictor

        return load_crop_predictor(device=device, **{f.name: getattr(self, f.name) for f in fields(self)})


@cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (Linux's flags; False elsewhere)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)


def resolve_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    """The dtype for ``precision`` on ``device`` (``auto``: bf16 on a CPU that has it natively)."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def resolve_mirror(choice: MirrorChoice, device: torch.device, dtype: torch.dtype) -> MirrorMode:
    """The mirror mode for ``choice`` (``auto``: ``every``, but ``first`` for float32 on a CPU)."""
    import torch

    if choice == "auto":
        return "first" if device.type == "cpu" and dtype == torch.float32 else "every"
    if choice not in MIRROR_MODES:
        raise ValueError(f"mirror must be one of {MIRROR_CHOICES}, got {choice!r}")
    return choice
