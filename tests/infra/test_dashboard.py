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


def test_the_proxys_own_metrics_are_shown_under_the_deployments_namespace(
    default_app: SynthesizedApp, variant_app: SynthesizedApp
) -> None:
    """The proxy's EMF metrics, with the dimensions Powertools writes (service; RequestType on an answered
    request), in the namespace the proxy function is told: the stack prefix, so two copies keep theirs apart."""
    from stacks.constructs.proxy_function import POWERTOOLS_SERVICE_NAME

    for app, namespace in ((default_app, "FewClick"), (variant_app, "FewClickAlt")):
        lines = [m for m in _metric_lines(app) if isinstance(m[0], str) and m[0] == namespace]

        def dimensions(line: list[Any]) -> frozenset[tuple[str, str]]:
            flat = line[2:-1] if isinstance(line[-1], dict) else line[2:]
            return frozenset(zip(flat[::2], flat[1::2], strict=True))

        keyed = {(m[1], dimensions(m)) for m in lines}
        service = ("service", POWERTOOLS_SERVICE_NAME)
        for kind in ("new", "warm"):
            for name in ("SegmentLatency", "SessionCacheHit", "SessionCacheMiss", "NewestClickMissed"):
                assert (name, frozenset({service, ("RequestType", kind)})) in keyed, (namespace, name, kind)
        for name in ("Errors4xx", "Errors5xx"):
            assert (name, frozenset({service})) in keyed
        functions = [
            r["Properties"]
            for r in app.template_json(app.stacks.api)["Resources"].values()
            if r["Type"] == "AWS::Lambda::Function" and "POWERTOOLS_METRICS_NAMESPACE" in str(r["Properties"])
        ]
        (proxy,) = functions
        env = proxy["Environment"]["Variables"]
        assert (env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]) == (
            namespace,
            POWERTOOLS_SERVICE_NAME,
        )
    labels = _labels(default_app)
    assert {"warm p50 (ms)", "warm p90 (ms)", "new p90 (ms)", "not followed (warm)", "answers (warm)"} <= labels
