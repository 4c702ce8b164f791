"""The CloudWatch metrics of one FewClick deployment, shared by the dashboard and the alarms.

Plain factory (not a construct): `cloudwatch.Metric` objects are values, so the dashboard and
the alarms build theirs from the same definitions and cannot drift apart. Metrics come without
labels (alarms then render as plain MetricName/Statistic); the dashboard adds labels.

Units: SageMaker `ModelLatency` and `OverheadLatency` are MICROSECONDS; Lambda `Duration` and
API Gateway `Latency`/`IntegrationLatency` are milliseconds, and so are the proxy's own EMF metrics
(`SegmentLatency`, its `ModelLatency` as the model server reports it).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from stacks.constructs.proxy_function import POWERTOOLS_SERVICE_NAME

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
SAGEMAKER_INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
LAMBDA_NAMESPACE = "AWS/Lambda"
APIGATEWAY_NAMESPACE = "AWS/ApiGateway"


@dataclass(frozen=True)
class ServiceMetrics:
    endpoint_name: str
    variant_name: str
    function_name: str
    proxy_namespace: str
    api_name: str
    stage_name: str
    period_minutes: int = 1

    def _metric(
        self, namespace: str, metric_name: str, dimensions: dict[str, str], statistic: str, period: Duration | None
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=metric_name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=period or Duration.minutes(self.period_minutes),
        )

    def endpoint(self, metric_name: str, statistic: str, *, period: Duration | None = None) -> cloudwatch.Metric:
        """`AWS/SageMaker` metric of the endpoint's variant (ModelLatency, Invocations, ...)."""
        dimensions = {"EndpointName": self.endpoint_name, "VariantName": self.variant_name}
        return self._metric(SAGEMAKER_NAMESPACE, metric_name, dimensions, statistic, period)

    def instance(self, metric_name: str, *, period: Duration | None = None) -> cloudwatch.Metric:
        """Per-instance utilisation (%) of the variant's hosts (GPUUtilization, ...)."""
        dimensions = {"EndpointName": self.endpoint_name, "VariantName": self.variant_name}
        return self._metric(SAGEMAKER_INSTANCE_NAMESPACE, metric_name, dimensions, "Average", period)

    def function(self, metric_name: str, statistic: str, *, period: Duration | None = None) -> cloudwatch.Metric:
        """`AWS/Lambda` metric of the proxy function (Duration, Errors, Throttles, ...)."""
        return self._metric(LAMBDA_NAMESPACE, metric_name, {"FunctionName": self.function_name}, statistic, period)

    def proxy(
        self, metric_name: str, statistic: str, *, request_type: str | None = None, period: Duration | None = None
    ) -> cloudwatch.Metric:
        """The proxy's own EMF metric, with the dimensions Powertools writes: ``service``, and on a
        segmented request its ``RequestType`` (``new``: crop pixels sent, ``warm``: points only).
        Answered requests: SegmentLatency, ModelLatency, SessionCacheHit / Miss, SessionRecovered and,
        with corrective clicks, NewestClickMissed (1 when the answer does not follow the newest click,
        else 0; with RequestType); refused ones: Errors4xx / Errors5xx (service only)."""
        dimensions = {"service": POWERTOOLS_SERVICE_NAME}
        if request_type is not None:
            dimensions["RequestType"] = request_type
        return self._metric(self.proxy_namespace, metric_name, dimensions, statistic, period)

    def api(self, metric_name: str, statistic: str, *, period: Duration | None = None) -> cloudwatch.Metric:
        """`AWS/ApiGateway` metric of the stage (Latency, IntegrationLatency, 4XXError, ...)."""
        dimensions = {"ApiName": self.api_name, "Stage": self.stage_name}
        return self._metric(APIGATEWAY_NAMESPACE, metric_name, dimensions, statistic, period)
