"""`OperationsDashboard`: endpoint, Lambda and API metrics on one page."""

from __future__ import annotations

import json
from typing import Any

from .synth import SynthesizedApp
from .templates import only


def _body(app: SynthesizedApp) -> dict[str, Any]:
    dashboard = only(app.template_json(app.stacks.monitoring), "AWS::CloudWatch::Dashboard")
    # DashboardBody is a Fn::Join of literal JSON pieces and tokens (endpoint name, ...), the
    # tokens always sitting inside JSON strings.
    pieces = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in pieces))


def _metric_lines(app: SynthesizedApp) -> list[list[Any]]:
    return [m for w in _body(app)["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]


def _labels(app: SynthesizedApp) -> set[str]:
    return {m[-1].get("label", "") for m in _metric_lines(app) if isinstance(m[-1], dict)}


def test_model_latency_percentiles_in_microseconds(default_app: SynthesizedApp) -> None:
    labels = _labels(default_app)
    for percentile in ("p50", "p90", "p99"):
        assert f"ModelLatency {percentile} (microseconds)" in labels
        assert f"OverheadLatency {percentile} (microseconds)" in labels


def test_header_names_the_instance_type(default_app: SynthesizedApp, variant_app: SynthesizedApp) -> None:
    for app, instance_type in ((default_app, "ml.g4dn.xlarge"), (variant_app, "ml.g5.xlarge")):
        text = next(w for w in _body(app)["widgets"] if w["type"] == "text")
        assert instance_type in text["properties"]["markdown"]


def test_endpoint_lambda_and_api_metrics_are_shown(default_app: SynthesizedApp) -> None:
    names = {(m[0], m[1]) for m in _metric_lines(default_app) if isinstance(m[0], str) and len(m) > 1}
    for expected in (
        ("AWS/SageMaker", "Invocations"),
        ("AWS/SageMaker", "Invocation4XXErrors"),
        ("AWS/SageMaker", "Invocation5XXErrors"),
        ("AWS/Lambda", "Duration"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/ApiGateway", "Latency"),
        ("AWS/ApiGateway", "IntegrationLatency"),
        ("AWS/ApiGateway", "4XXError"),
        ("AWS/ApiGateway", "5XXError"),
    ):
        assert expected in names, expected
    labels = _labels(default_app)
    assert {"Duration p50 (ms)", "Duration p90 (ms)", "Latency p90 (ms)", "IntegrationLatency p90 (ms)"} <= labels
