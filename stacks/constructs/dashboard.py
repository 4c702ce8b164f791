"""CloudWatch dashboard: model endpoint, proxy Lambda and API Gateway on one page.

Rows follow a request's path (API -> Lambda -> model), so a latency spike can be located by
reading top to bottom. SageMaker latencies are in microseconds (said in every label).
"""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from stacks.constructs.service_metrics import ServiceMetrics

PERCENTILES = ("p50", "p90", "p99")


class OperationsDashboard(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, metrics: ServiceMetrics) -> None:
        super().__init__(scope, construct_id)
        m = metrics
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", period_override=cloudwatch.PeriodOverride.AUTO)
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    "# FewClick\nRequest path: API Gateway -> proxy Lambda -> SageMaker endpoint. "
                    "SageMaker latencies are in **microseconds**, Lambda and API Gateway in milliseconds."
                ),
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API latency (ms)",
                left=[m.api("Latency", p, label=f"Latency {p} (ms)") for p in ("p50", "p90")]
                + [m.api("IntegrationLatency", p, label=f"IntegrationLatency {p} (ms)") for p in ("p50", "p90")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[m.api("Count", "Sum", label="Requests")],
                right=[m.api("4XXError", "Sum", label="4XX"), m.api("5XXError", "Sum", label="5XX")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Lambda duration (ms)",
                left=[m.function("Duration", p, label=f"Duration {p} (ms)") for p in ("p50", "p90")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Lambda errors and throttles",
                left=[m.function("Invocations", "Sum", label="Invocations")],
                right=[m.function("Errors", "Sum", label="Errors"), m.function("Throttles", "Sum", label="Throttles")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Model latency (microseconds)",
                left=[m.model_latency(p) for p in PERCENTILES],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="SageMaker overhead latency (microseconds)",
                left=[m.overhead_latency(p) for p in PERCENTILES],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Endpoint invocations and errors",
                left=[m.invocations()],
                right=[m.invocation_errors("4XX"), m.invocation_errors("5XX")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="GPU instances (%)",
                left=[m.instance(name) for name in ("GPUUtilization", "GPUMemoryUtilization", "CPUUtilization")],
                width=12,
            ),
        )
