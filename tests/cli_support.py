"""Calling `fewclick` as a user would, for the tests of its options."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fewclick.cli import build_parser


def argparse_refusal(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The error `fewclick ARGV` prints when argparse refuses its options (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser(list(argv)).parse_args(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err
