import argparse

import pytest
from fewclick_model.cli_types import (
    device_name,
    device_or_auto,
    fraction,
    non_negative_float,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
)


@pytest.mark.parametrize(
    ("convert", "text", "value"),
    [
        (positive_int, "1", 1),
        (positive_int, "6000", 6000),
        (non_negative_int, "0", 0),
        (fraction, "0", 0.0),
        (fraction, "1", 1.0),
        (fraction, "0.4", 0.4),
        (positive_float, "1e-4", 1e-4),
        (non_negative_float, "0", 0.0),
        (device_name, "cpu", "cpu"),
        (device_name, "cuda", "cuda"),
        (device_name, "CUDA:1", "cuda:1"),
        (device_name, "cuda:01", "cuda:1"),
        (device_or_auto, "auto", "auto"),
        (device_or_auto, "cuda:0", "cuda:0"),
        (port_number, "0", 0),
        (port_number, "65535", 65535),
    ],
)
def test_converters_accept_values_in_range(convert, text: str, value: float) -> None:
    assert convert(text) == value


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (positive_int, "0", "at least 1, got 0"),
        (positive_int, "-3", "at least 1, got -3"),
        (positive_int, "1.5", "whole number"),
        (non_negative_int, "-1", "0 or more, got -1"),
        (fraction, "2", "between 0 and 1, got 2"),
        (fraction, "-0.1", "between 0 and 1"),
        (fraction, "nan", "finite"),
        (positive_float, "0", "more than 0"),
        (positive_float, "inf", "finite"),
        (non_negative_float, "-1", "0 or more"),
        (non_negative_float, "x", "expected a number"),
        (device_name, "bogus", "expected cpu, cuda or cuda:N, got 'bogus'"),
        (device_name, "auto", "expected cpu, cuda or cuda:N"),
        (device_name, "cuda:", "cuda:N"),
        (device_name, "cuda:-1", "cuda:N"),
        (device_name, "cuda:x", "cuda:N"),
        (device_name, "mps", "cuda:N"),
        (device_or_auto, "gpu", "expected auto, cpu, cuda or cuda:N, got 'gpu'"),
        (port_number, "70000", "0 to 65535, got 70000"),
        (port_number, "-1", "0 to 65535"),
    ],
)
def test_converters_refuse_values_out_of_range_with_the_reason(convert, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        convert(text)


def test_argparse_names_the_option_and_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=positive_int, default=8)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--batch", "0"])
    assert exit_info.value.code == 2
    assert "argument --batch: must be at least 1, got 0" in capsys.readouterr().err
