"""`ServiceAlarms`: latency, error-rate, API 5XX and Lambda alarms, all notifying the topic."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from stacks.constructs.service_alarms import ServiceAlarms
from stacks.constructs.service_metrics import ServiceMetrics

from .synth import TEST_CONTEXT, SynthesizedApp
from .templates import resources


def _alarms(app: SynthesizedApp) -> dict[str, dict[str, Any]]:
    return {
        logical_id.removeprefix("Alarms")[:-8]: alarm["Properties"]
        for logical_id, alarm in resources(app.template_json(app.stacks.monitoring), "AWS::CloudWatch::Alarm").items()
    }


def test_alarms_present(default_app: SynthesizedApp) -> None:
    assert set(_alarms(default_app)) == {
        "ModelLatencyP90",
        "ModelErrorRate",
        "Api5xx",
        "LambdaErrors",
        "LambdaThrottles",
    }


def test_model_latency_p90_threshold_is_in_microseconds(default_app: SynthesizedApp) -> None:
    alarm = _alarms(default_app)["ModelLatencyP90"]
    assert alarm["Namespace"] == "AWS/SageMaker"
    assert alarm["MetricName"] == "ModelLatency"
    assert alarm["ExtendedStatistic"] == "p90"
    assert alarm["Threshold"] == TEST_CONTEXT["fewclick:latencyAlarmP90Ms"] * 1000
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    dimensions = {d["Name"] for d in alarm["Dimensions"]}
    assert dimensions == {"EndpointName", "VariantName"}


def test_error_rate_is_5xx_over_invocations(default_app: SynthesizedApp) -> None:
    alarm = _alarms(default_app)["ModelErrorRate"]
    expression = next(m for m in alarm["Metrics"] if "Expression" in m)
    assert "errors / invocations" in expression["Expression"]
    used = {m["Id"]: m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert used == {"errors": "Invocation5XXErrors", "invocations": "Invocations"}


def test_api_and_lambda_alarms(default_app: SynthesizedApp) -> None:
    alarms = _alarms(default_app)
    assert (alarms["Api5xx"]["Namespace"], alarms["Api5xx"]["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    assert (alarms["LambdaErrors"]["Namespace"], alarms["LambdaErrors"]["MetricName"]) == ("AWS/Lambda", "Errors")


def test_every_alarm_notifies_the_topic(default_app: SynthesizedApp) -> None:
    template = default_app.template_json(default_app.stacks.monitoring)
    (topic_id,) = resources(template, "AWS::SNS::Topic")
    for name, alarm in _alarms(default_app).items():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], name
        assert alarm["OKActions"] == [{"Ref": topic_id}], name


def test_construct_alone_on_a_bare_stack() -> None:
    stack = cdk.Stack(cdk.App(), "Bare")
    topic = sns.Topic(stack, "Topic")
    metrics = ServiceMetrics(
        endpoint_name="ep",
        variant_name="AllTraffic",
        function_name="fn",
        proxy_namespace="FewClick",
        api_name="api",
        stage_name="prod",
    )
    ServiceAlarms(stack, "Alarms", metrics=metrics, topic=topic, latency_p90_threshold_microseconds=123_000)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::CloudWatch::Alarm", 5)
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "ModelLatency", "Threshold": 123_000})
