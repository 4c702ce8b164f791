"""API stack: Cognito, the proxy Lambda, the REST API and its WAF, wired to the model endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from fewclick_contract.api import OPENAPI_PATH, SEGMENT_PATH
from stacks.constructs.proxy_function import ProxyFunction
from stacks.constructs.segmentation_api import SegmentationApi
from stacks.constructs.user_pool import LabelerUserPool
from stacks.constructs.web_acl import ApiWebAcl


def bucket_object_arns(bucket_names: Sequence[str]) -> list[str]:
    return [f"arn:{Aws.PARTITION}:s3:::{name}/*" for name in bucket_names]


class ApiStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_root: Path,
        handler_dir: str,
        contract_dir: str,
        endpoint_name: str,
        endpoint_arn: str,
        model_instance_type: str,
        image_buckets: Sequence[str],
        ui_origins: Sequence[str],
        user_pool_arn: str | None,
        stage_name: str,
        throttle_rate_limit: float,
        throttle_burst_limit: int,
        waf_rate_limit: int,
        log_level: str,
        api_name: str,
        metrics_prefix: str = "FewClick",
        task_route: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.users = LabelerUserPool(self, "Users", user_pool_arn=user_pool_arn)
        self.proxy = ProxyFunction(
            self,
            "Proxy",
            source_root=source_root,
            handler_dir=handler_dir,
            extra_packages=[contract_dir],
            endpoint_name=endpoint_name,
            allowed_buckets=image_buckets,
            allowed_origins=ui_origins,
            log_level=log_level,
            metrics_namespace=metrics_prefix,
            # Not only informative: the endpoint is replaced (new generated name) when the
            # instance type changes, and this value changing makes CloudFormation update the
            # function, re-reading ENDPOINT_NAME from the model stack's output.
            extra_environment={"MODEL_INSTANCE_TYPE": model_instance_type},
        )
        self.api = SegmentationApi(
            self,
            "Api",
            handler=self.proxy.function,
            user_pool=self.users.user_pool,
            ui_origins=ui_origins,
            stage_name=stage_name,
            throttle_rate_limit=throttle_rate_limit,
            throttle_burst_limit=throttle_burst_limit,
            api_name=api_name,
            # The Ground Truth task route (added by stacks/labeling_stack.py) serves pages on Amazon's
            # origins: API Gateway's own refusals must reach them too.
            errors_to_any_origin=task_route,
            # One source of truth for the routes: the UI-facing contract.
            segment_path=SEGMENT_PATH,
            openapi_path=OPENAPI_PATH,
        )
        self.waf = ApiWebAcl(
            self,
            "Waf",
            resource_arn=self.api.stage.stage_arn,
            rate_limit_per_5_minutes=waf_rate_limit,
            # The click JSON may carry the image inline (base64, up to MAX_INLINE_IMAGE_BYTES in
            # fewclick_contract.api); the common rule set would block every body above 8 KB.
            # The proxy bounds and validates the body instead.
            common_rules_count_only=["SizeRestrictions_BODY"],
            # WAF metric names are the CloudWatch dimension: two copies of the app in one account
            # (another fewclick:stackPrefix) keep theirs apart.
            metric_prefix=metrics_prefix,
            ui_origins=ui_origins,
        )

        # Wiring (least privilege): this one endpoint, and reads from the configured buckets only.
        self.proxy.function.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[endpoint_arn])
        )
        if image_buckets:
            self.proxy.function.add_to_role_policy(
                iam.PolicyStatement(actions=["s3:GetObject"], resources=bucket_object_arns(image_buckets))
            )
        self._suppress_nag_findings(image_buckets)

        self.function_name: str = self.proxy.function.function_name
        self.api_name: str = api_name
        self.metrics_namespace: str = metrics_prefix  # the proxy's own (EMF) metrics
        self.stage_name: str = stage_name
        CfnOutput(self, "ApiUrl", value=self.api.api.url, description="Base URL of the segmentation API")
        CfnOutput(self, "UserPoolId", value=self.users.user_pool.user_pool_id)
        if self.users.ui_client is not None:
            CfnOutput(self, "UiClientId", value=self.users.ui_client.user_pool_client_id)

    def _suppress_nag_findings(self, image_buckets: Sequence[str]) -> None:
        suppressions = [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions.",
                applies_to=["Resource::*"],
            )
        ]
        if image_buckets:
            suppressions.append(
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="s3:GetObject on the objects of the configured image buckets only "
                    "(fewclick:imageBuckets); object keys arrive with each request.",
                    applies_to=[f"Resource::arn:<AWS::Partition>:s3:::{name}/*" for name in image_buckets],
                )
            )
        NagSuppressions.add_resource_suppressions(self.proxy.role.node.find_child("DefaultPolicy"), suppressions)
        NagSuppressions.add_resource_suppressions(
            self.proxy.function,
            [
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason="Pinned to Python 3.12 on purpose: the asset's wheels (numpy, OpenCV, "
                    "pydantic-core) are built for 3.12 (LocalPipBundling --python-version 3.12) and "
                    "the proxy's tests run on it; a newer runtime is a tested change of both.",
                )
            ],
        )
