"""The CloudWatch metrics of one FewClick deployment, shared by the dashboard and the alarms.

Plain factory (not a construct): `cloudwatch.Metric` objects are values, so the dashboard and
the alarms build theirs from the same definitions and cannot drift apart.

Units: SageMaker `ModelLatency` and `OverheadLatency` are MICROSECONDS; Lambda `Duration` and
API Gateway `Latency`/`IntegrationLatency` are milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
SAGEMAKER_INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
LAMBDA_NAMESPACE = "AWS/Lambda"
APIGATEWAY_NAMESPACE = "AWS/ApiGateway"


@dataclass(frozen=True)
class ServiceMetrics:
    endpoint_name: str
    variant_name: str
    function_name: str
    api_name: str
    stage_name: str
    period: Duration = Duration.minutes(1)

    def _endpoint(self) -> dict[str, str]:
        return {"EndpointName": self.endpoint_name, "VariantName": self.variant_name}

    def endpoint(
        self, metric_name: str, statistic: str, *, label: str | None = None, period: Duration | None = None
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=SAGEMAKER_NAMESPACE,
            metric_name=metric_name,
            dimensions_map=self._endpoint(),
            statistic=statistic,
            period=period or self.period,
            label=label,
        )

    def model_latency(self, statistic: str, *, period: Duration | None = None) -> cloudwatch.Metric:
        return self.endpoint("ModelLatency", statistic, label=f"ModelLatency {statistic} (microseconds)", period=period)

    def overhead_latency(self, statistic: str) -> cloudwatch.Metric:
        return self.endpoint("OverheadLatency", statistic, label=f"OverheadLatency {statistic} (microseconds)")

    def invocations(self, *, period: Duration | None = None) -> cloudwatch.Metric:
        return self.endpoint("Invocations", "Sum", label="Invocations", period=period)

    def invocation_errors(self, kind: str, *, period: Duration | None = None) -> cloudwatch.Metric:
        """`kind` is "4XX" or "5XX"."""
        return self.endpoint(f"Invocation{kind}Errors", "Sum", label=f"Invocation {kind} errors", period=period)

    def instance(self, metric_name: str) -> cloudwatch.Metric:
        """Per-instance utilisation (%) published by SageMaker for the variant's hosts."""
        return cloudwatch.Metric(
            namespace=SAGEMAKER_INSTANCE_NAMESPACE,
            metric_name=metric_name,
            dimensions_map=self._endpoint(),
            statistic="Average",
            period=self.period,
            label=f"{metric_name} (%)",
        )

    def function(
        self, metric_name: str, statistic: str, *, label: str | None = None, period: Duration | None = None
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=LAMBDA_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"FunctionName": self.function_name},
            statistic=statistic,
            period=period or self.period,
            label=label or f"Lambda {metric_name} {statistic}",
        )

    def api(
        self, metric_name: str, statistic: str, *, label: str | None = None, period: Duration | None = None
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=APIGATEWAY_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"ApiName": self.api_name, "Stage": self.stage_name},
            statistic=statistic,
            period=period or self.period,
            label=label or f"API {metric_name} {statistic}",
        )
