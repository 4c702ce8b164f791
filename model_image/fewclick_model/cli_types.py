"""Argparse ``type=`` converters for the model CLIs' numeric options.

A bad count (``--batch 0``, ``--steps 0``) used to get past argparse and fail far
later, after the data had loaded or a model had been exported; refused here, the
user sees one line naming the option. Standard library only, so a CLI can offer
its options without importing torch.
"""

from __future__ import annotations

import argparse
import math


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    # float() accepts "nan" and "inf", which pass or fail every bound check by accident.
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts and intervals that 0 would break)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (counts where 0 means "none" or "off")."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


# The encoder halves the input five times; a side it cannot halve evenly fails in the decoder's
# first skip connection, after the data has loaded (train) or the model has (evaluate).
NETWORK_STRIDE = 32


def network_side(text: str) -> int:
    """A network input side: a positive multiple of `NETWORK_STRIDE`."""
    value = positive_int(text)
    if value % NETWORK_STRIDE:
        raise argparse.ArgumentTypeError(f"must be a multiple of {NETWORK_STRIDE}, got {value}")
    return value


def seed(text: str) -> int:
    """A random seed numpy accepts (0 to 2**32 - 1)."""
    value = non_negative_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {value}")
    return value


def fraction(text: str) -> float:
    """A share between 0 and 1, both included."""
    value = _finite(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    value = _finite(text)
    if value <= 0.0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (weights and budgets where 0 means "off")."""
    value = _finite(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value:g}")
    return value


def _device(text: str, *, allow_auto: bool) -> str:
    value = text.strip().lower()
    if value == "cpu" or value == "cuda" or (allow_auto and value == "auto"):
        return value
    kind, _, index = value.partition(":")
    if kind == "cuda" and index.isascii() and index.isdigit():
        return f"cuda:{int(index)}"
    choices = "auto, cpu, cuda or cuda:N" if allow_auto else "cpu, cuda or cuda:N"
    # torch's own refusal ("Expected one of cpu, cuda, ipu, xpu, ...") came as a traceback after the
    # model had started loading, and named devices no FewClick model runs on.
    raise argparse.ArgumentTypeError(f"expected {choices}, got {text!r}")


def device_name(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` by its spelling only; whether the machine has it is checked when
    the command runs (`preflight.check_device`), which needs torch."""
    return _device(text, allow_auto=False)


def device_or_auto(text: str) -> str:
    """`device_name`, or ``auto`` (every GPU when there is one, else the CPU)."""
    return _device(text, allow_auto=True)


def port_number(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port, 0 to 65535, got {value}")
    return value
