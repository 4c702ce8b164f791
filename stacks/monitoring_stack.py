"""Monitoring stack: dashboard, alarms and the SNS topic they notify."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.constructs.alarm_topic import AlarmTopic
from stacks.constructs.dashboard import OperationsDashboard
from stacks.constructs.service_alarms import ServiceAlarms
from stacks.constructs.service_metrics import ServiceMetrics


class MonitoringStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        variant_name: str,
        instance_type: str,
        function_name: str,
        proxy_metrics_namespace: str,
        api_name: str,
        stage_name: str,
        latency_p90_threshold_microseconds: float,
        alarm_email: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        metrics = ServiceMetrics(
            endpoint_name=endpoint_name,
            variant_name=variant_name,
            function_name=function_name,
            proxy_namespace=proxy_metrics_namespace,
            api_name=api_name,
            stage_name=stage_name,
        )
        self.alarm_topic = AlarmTopic(self, "AlarmTopic", email=alarm_email)
        # The instance type in the dashboard also makes this stack update (and re-read the
        # endpoint name) when a new instance type replaces the endpoint.
        self.dashboard = OperationsDashboard(self, "Dashboard", metrics=metrics, instance_type=instance_type)
        self.alarms = ServiceAlarms(
            self,
            "Alarms",
            metrics=metrics,
            topic=self.alarm_topic.topic,
            latency_p90_threshold_microseconds=latency_p90_threshold_microseconds,
        )
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard.dashboard_name)
