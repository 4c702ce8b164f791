"""CloudWatch alarms for FewClick, all notifying one SNS topic (on ALARM and back to OK)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.constructs.service_metrics import ServiceMetrics

FIVE_MINUTES = Duration.minutes(5)


class ServiceAlarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        metrics: ServiceMetrics,
        topic: sns.ITopic,
        latency_p90_threshold_microseconds: float,
        error_rate_threshold_percent: float = 5.0,
        api_5xx_threshold: int = 5,
        lambda_errors_threshold: int = 5,
    ) -> None:
        super().__init__(scope, construct_id)
        m = metrics

        self.model_latency_p90 = cloudwatch.Alarm(
            self,
            "ModelLatencyP90",
            alarm_description=(
                f"SageMaker ModelLatency p90 above {latency_p90_threshold_microseconds:.0f} microseconds "
                "(context fewclick:latencyAlarmP90Ms is in ms): clicks feel slow."
            ),
            metric=m.endpoint("ModelLatency", "p90"),
            threshold=latency_p90_threshold_microseconds,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=3,  # 3 slow minutes out of 5, not one cold start
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        # Server errors per invocation, in percent; IF() keeps idle periods at 0 instead of NaN. No
        # minimum traffic on purpose: with a handful of labelers, one failed click in twenty, two
        # windows running, is already a labeler stuck.
        error_rate = cloudwatch.MathExpression(
            expression="IF(invocations > 0, 100 * errors / invocations, 0)",
            using_metrics={
                "errors": m.endpoint("Invocation5XXErrors", "Sum", period=FIVE_MINUTES),
                "invocations": m.endpoint("Invocations", "Sum", period=FIVE_MINUTES),
            },
            label="Endpoint 5XX error rate (%)",
            period=FIVE_MINUTES,
        )
        self.model_error_rate = cloudwatch.Alarm(
            self,
            "ModelErrorRate",
            alarm_description=f"SageMaker Invocation5XXErrors / Invocations above {error_rate_threshold_percent}%.",
            metric=error_rate,
            threshold=error_rate_threshold_percent,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        self.api_5xx = cloudwatch.Alarm(
            self,
            "Api5xx",
            alarm_description=f"API Gateway returned at least {api_5xx_threshold} 5XX responses in 5 minutes.",
            metric=m.api("5XXError", "Sum", period=FIVE_MINUTES),
            threshold=api_5xx_threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        self.lambda_errors = cloudwatch.Alarm(
            self,
            "LambdaErrors",
            alarm_description=f"The proxy Lambda failed at least {lambda_errors_threshold} times in 5 minutes.",
            metric=m.function("Errors", "Sum", period=FIVE_MINUTES),
            threshold=lambda_errors_threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        self.lambda_throttles = cloudwatch.Alarm(
            self,
            "LambdaThrottles",
            alarm_description="The proxy Lambda was throttled (account concurrency exhausted).",
            metric=m.function("Throttles", "Sum", period=FIVE_MINUTES),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        self.alarms: tuple[cloudwatch.Alarm, ...] = (
            self.model_latency_p90,
            self.model_error_rate,
            self.api_5xx,
            self.lambda_errors,
            self.lambda_throttles,
        )
        action = actions.SnsAction(topic)
        for alarm in self.alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
