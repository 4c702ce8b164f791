"""`fewclick benchmark endpoint` as a command, offline (botocore's Stubber, as test_endpoint_benchmark.py):
AWS refusing anything is one line and exit 2, counts are range-checked by argparse, --out is checked
before the first AWS call, the CloudWatch wait has a progress bar, and the table names what it shows."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from fewclick.bench import endpoint
from fewclick.bench.endpoint import EndpointBenchmarkError, Row, format_rows, latency_metrics
from fewclick.bench.load import LoadResult, LoadSettings, Sample, summarize
from tests.cli_support import argparse_refusal

from .test_endpoint_benchmark import (
    CLIENT_ID,
    DEPLOYMENT,
    ENDPOINT,
    MICROS,
    POOL_ID,
    T0,
    _metric_results,
    _stack,
    _stub_read,
    client,
    fake_load,
)

pytestmark = pytest.mark.timeout(60)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    endpoint.add_arguments(parser)
    return parser.parse_args(["--stack", "FewClick", *argv])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--minutes", "0", "must be more than 0, got 0"),
        ("--minutes", "-1", "must be more than 0, got -1"),
        ("--metrics-wait", "-5", "must be 0 or more, got -5"),
        ("--users", "0", "must be at least 1, got 0"),
        ("--image-size", "0x0", "must be at least 32 px"),
    ],
)
def test_endpoint_options_out_of_range_are_refused_by_argparse(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["benchmark", "endpoint", "--stack", "FewClick", option, value]
    assert f"argument {option}: {message}" in argparse_refusal(argv, capsys)


# --- the table ---


def _row(samples: list[Sample]) -> Row:
    return Row("ml.g5.xlarge", summarize(LoadResult(LoadSettings(users=2), samples, duration_s=10.0)), {})


def test_the_latency_column_says_which_request_it_shows() -> None:
    with_clicks = _row([Sample(0.0, "new image", 200, 300.0, 40.0), Sample(1.0, "click", 200, 90.0, 20.0)])
    new_images_only = _row([Sample(0.0, "new image", 200, 300.0, 40.0), Sample(1.0, "new image", 200, 310.0, 41.0)])
    table = format_rows([with_clicks, new_images_only]).splitlines()
    assert "answered/s" in table[0] and "e2e of" in table[0] and "click e2e" not in table[0]
    assert "| click " in table[2] and "90.0" in table[2]
    assert "| new image " in table[3] and "305.0" in table[3]  # p50 of the new images, labelled so
    nothing = _row([Sample(0.0, "new image", 503, 5.0, None, "ENDPOINT_UNAVAILABLE")])
    assert "| -   " in format_rows([nothing]).splitlines()[2]


# --- CloudWatch ---


def test_access_denied_on_get_metric_data_is_a_readable_error() -> None:
    cw = client("cloudwatch")
    with Stubber(cw) as stub:
        stub.add_client_error("get_metric_data", "AccessDenied", "User x is not authorized to cloudwatch:GetMetricData")
        with pytest.raises(EndpointBenchmarkError, match=r"CloudWatch \(GetMetricData\): .*AccessDenied"):
            latency_metrics(cw, DEPLOYMENT, T0, T0, wait_s=60, sleep=lambda s: None)


def test_the_wait_for_cloudwatch_shows_a_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    cw = client("cloudwatch")
    with Stubber(cw) as stub:
        stub.add_response("get_metric_data", _metric_results(dict.fromkeys(MICROS)), None)
        stub.add_response("get_metric_data", _metric_results(MICROS), None)
        latency_metrics(cw, DEPLOYMENT, T0, T0, wait_s=600, poll_s=30, sleep=lambda s: None)
    err = capsys.readouterr().err
    assert "CloudWatch metrics" in err and "missing=4" in err


# --- the command ---


class FakeSession:
    """Stands in for boto3.Session: hands out the stubbed clients the test prepared."""

    def __init__(self, clients: dict[str, Any]) -> None:
        self.clients = clients

    def __call__(self, **_: Any) -> FakeSession:
        return self

    def client(self, service: str) -> Any:
        return self.clients[service]


def _stub_stacks(stub: Stubber) -> None:
    api = {"ApiUrl": DEPLOYMENT.api_url + "/", "UserPoolId": POOL_ID, "UiClientId": CLIENT_ID}
    stub.add_response("describe_stacks", {"Stacks": [_stack("FewClick-Api", api)]}, {"StackName": "FewClick-Api"})
    model = {"EndpointName": ENDPOINT}
    stub.add_response("describe_stacks", {"Stacks": [_stack("FewClick-Model", model)]}, {"StackName": "FewClick-Model"})


@pytest.fixture
def aws_clients(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import boto3

    clients = {name: client(name) for name in ("cloudformation", "sagemaker", "application-autoscaling", "cloudwatch")}
    monkeypatch.setattr(boto3, "Session", FakeSession(clients))
    return clients


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("fewclick benchmark endpoint: ")]
    return line


def test_access_denied_on_describe_endpoint_is_one_line(
    aws_clients: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Stubber(aws_clients["cloudformation"]) as cfn, Stubber(aws_clients["sagemaker"]) as sm:
        _stub_stacks(cfn)
        sm.add_client_error("describe_endpoint", "AccessDeniedException", "not authorized: sagemaker:DescribeEndpoint")
        assert endpoint.run(_parse(["--token", "id.token", "--out", str(tmp_path)])) == 2
    line = _one_line(capsys)
    assert "AccessDeniedException" in line and "DescribeEndpoint" in line


def test_access_denied_on_get_metric_data_is_one_line_after_the_run_was_kept(
    aws_clients: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_benchmark = endpoint.benchmark

    def offline(**kwargs: Any) -> list[Row]:
        return real_benchmark(**kwargs, load_runner=fake_load, sleep=lambda s: None)

    monkeypatch.setattr(endpoint, "benchmark", offline)
    with (
        Stubber(aws_clients["cloudformation"]) as cfn,
        Stubber(aws_clients["sagemaker"]) as sm,
        Stubber(aws_clients["cloudwatch"]) as cw,
    ):
        _stub_stacks(cfn)
        _stub_read(sm)
        cw.add_client_error("get_metric_data", "AccessDenied", "not authorized to cloudwatch:GetMetricData")
        assert endpoint.run(_parse(["--token", "id.token", "--users", "1", "--out", str(tmp_path)])) == 2
        for stub in (cfn, sm, cw):
            stub.assert_no_pending_responses()
    line = _one_line(capsys)
    assert "GetMetricData" in line and "AccessDenied" in line
    assert (tmp_path / "endpoint-g4dn-xlarge-1u.json").exists()  # the load run's results were written first


def test_no_region_and_an_unknown_profile_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    assert endpoint.run(_parse(["--token", "t", "--out", str(tmp_path / "out")])) == 2
    line = _one_line(capsys)
    assert "You must specify a region" in line and "give --region" in line
    assert endpoint.run(_parse(["--token", "t", "--profile", "nosuch", "--out", str(tmp_path / "out")])) == 2
    assert "The config profile (nosuch) could not be found" in _one_line(capsys)


def test_an_unwritable_out_is_refused_before_any_aws_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    def no_aws(**_: Any) -> None:
        raise AssertionError("no AWS call when the results cannot be written")

    monkeypatch.setattr(boto3, "Session", no_aws)
    taken = tmp_path / "taken"
    taken.write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):  # fewclick.cli prints it as one line
        endpoint.run(_parse(["--token", "t", "--out", str(taken)]))
