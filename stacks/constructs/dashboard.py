"""CloudWatch dashboard: model endpoint, proxy Lambda and API Gateway on one page.

Rows follow a request's path (API -> Lambda -> model), so a latency spike can be located by
reading top to bottom. SageMaker latencies are in microseconds (said in every label).
"""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from stacks.constructs.service_metrics import ServiceMetrics

PERCENTILES = ("p50", "p90", "p99")


def _labelled(metric: cloudwatch.Metric, label: str) -> cloudwatch.Metric:
    return metric.with_(label=label)


class OperationsDashboard(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, metrics: ServiceMetrics, instance_type: str) -> None:
        super().__init__(scope, construct_id)
        m = metrics
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", period_override=cloudwatch.PeriodOverride.AUTO)
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    "# FewClick\nRequest path: API Gateway -> proxy Lambda -> SageMaker endpoint "
                    f"(`{instance_type}`). SageMaker latencies are in **microseconds**, Lambda and "
                    "API Gateway in milliseconds."
                ),
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API latency (ms)",
                left=[
                    _labelled(m.api(name, p), f"{name} {p} (ms)")
                    for name in ("Latency", "IntegrationLatency")
                    for p in ("p50", "p90")
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[_labelled(m.api("Count", "Sum"), "Requests")],
                right=[_labelled(m.api(name, "Sum"), name) for name in ("4XXError", "5XXError")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Lambda duration (ms)",
                left=[_labelled(m.function("Duration", p), f"Duration {p} (ms)") for p in ("p50", "p90")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Lambda invocations, errors and throttles",
                left=[_labelled(m.function("Invocations", "Sum"), "Invocations")],
                right=[_labelled(m.function(name, "Sum"), name) for name in ("Errors", "Throttles")],
                width=12,
            ),
        )
        request_types = ("new", "warm")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Proxy: a click end to end (ms), new image vs warm click",
                left=[
                    _labelled(m.proxy("SegmentLatency", p, request_type=kind), f"{kind} {p} (ms)")
                    for kind in request_types
                    for p in ("p50", "p90")
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                # The stateful session is what makes a click cheap: a falling hit rate means the model
                # server's cache (or SageMaker's session routing) is losing sessions.
                title="Proxy: model session cache and refusals",
                left=[
                    _labelled(m.proxy(name, "Sum", request_type=kind), f"{name} ({kind})")
                    for name in ("SessionCacheHit", "SessionCacheMiss", "SessionRecovered")
                    for kind in request_types
                ],
                right=[_labelled(m.proxy(name, "Sum"), name) for name in ("Errors4xx", "Errors5xx")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                # The model card's "clicks respected", measured on the labelers' own clicks: a rising share
                # means labelers meet images the model handles worse than the benchmarks.
                title="Proxy: answers whose mask does not follow the newest corrective click (share)",
                left=[
                    _labelled(m.proxy("NewestClickMissed", "Average", request_type=kind), f"not followed ({kind})")
                    for kind in request_types
                ],
                right=[
                    _labelled(m.proxy("NewestClickMissed", "SampleCount", request_type=kind), f"answers ({kind})")
                    for kind in request_types
                ],
                left_y_axis=cloudwatch.YAxisProps(min=0, max=1, label="share", show_units=False),
                width=24,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Model latency (microseconds)",
                left=[
                    _labelled(m.endpoint("ModelLatency", p), f"ModelLatency {p} (microseconds)") for p in PERCENTILES
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="SageMaker overhead latency (microseconds)",
                left=[
                    _labelled(m.endpoint("OverheadLatency", p), f"OverheadLatency {p} (microseconds)")
                    for p in PERCENTILES
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Endpoint invocations and errors",
                left=[_labelled(m.endpoint("Invocations", "Sum"), "Invocations")],
                right=[
                    _labelled(m.endpoint(f"Invocation{kind}Errors", "Sum"), f"Invocation {kind} errors")
                    for kind in ("4XX", "5XX")
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="GPU instances (%)",
                left=[
                    _labelled(m.instance(name), f"{name} (%)")
                    for name in ("GPUUtilization", "GPUMemoryUtilization", "CPUUtilization")
                ],
                width=12,
            ),
        )
