"""SageMaker real-time endpoint serving the model image on one GPU instance type, autoscaled.

No physical names: CloudFormation generates the model, endpoint-config and endpoint names, so
a change that needs replacement (new image, new instance type) can create the new resource
before deleting the old one, and two copies of the app can live in one account.

Stateful sessions: the model server keeps the image features of a labeling session in memory
and relies on SageMaker stateful sessions (`SessionId` on InvokeEndpoint) to route every click
of a session to the same instance. That needs nothing in CloudFormation; it is noted here so
nobody adds a load-balancing setting that breaks it.
"""

from __future__ import annotations

import re

from aws_cdk import Aws, Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

VARIANT_NAME = "AllTraffic"
# Loading CUDA, the weights and a warm-up pass on a cold GPU host takes minutes, not the
# default 60 s health-check budget.
GPU_STARTUP_TIMEOUT_SECONDS = 600


def instance_type_slug(instance_type: str) -> str:
    """`ml.g4dn.xlarge` -> `G4dnXlarge` (for construct ids)."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", instance_type.removeprefix("ml.")))


class ModelEndpoint(Construct):
    """CfnModel + CfnEndpointConfig + CfnEndpoint + target-tracking autoscaling."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image_uri: str,
        image_repository: ecr.IRepository,
        instance_type: str,
        instance_count_min: int,
        instance_count_max: int,
        target_invocations_per_instance: int,
        startup_timeout_seconds: int = GPU_STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.variant_name = VARIANT_NAME

        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="FewClick model endpoint: pull its image, write its logs and metrics",
        )
        # Pull from this one repository only (+ ecr:GetAuthorizationToken, which has no resource).
        image_repository.grant_pull(self.execution_role)
        self.execution_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                # The endpoint's name is generated, so the log group is known only by its prefix.
                resources=[
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/*"
                ],
            )
        )
        self.execution_role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource-level permissions...
                # ...so the namespace condition is what limits it: SageMaker's own endpoint metrics (the
                # container is network-isolated and publishes none itself).
                conditions={"StringEquals": {"cloudwatch:namespace": ["/aws/sagemaker/Endpoints"]}},
            )
        )

        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.execution_role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                mode="SingleModel",
                # No ModelDataUrl: the weights are baked into the image.
            ),
            # The weights are inside the image and the server calls nothing: no network needed.
            enable_network_isolation=True,
        )
        # The role's policy (a separate resource) must exist before SageMaker checks that it can
        # pull the image; the role itself is already a dependency through ExecutionRoleArn.
        policy = self.execution_role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            self.model.node.add_dependency(policy)

        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT_NAME,
                    model_name=self.model.attr_model_name,
                    instance_type=instance_type,
                    initial_instance_count=instance_count_min,
                    initial_variant_weight=1.0,
                    container_startup_health_check_timeout_in_seconds=startup_timeout_seconds,
                    model_data_download_timeout_in_seconds=startup_timeout_seconds,
                )
            ],
            # No KmsKeyId: every allowed GPU type has local NVMe storage, for which SageMaker
            # rejects a KMS key (those volumes are hardware-encrypted).
        )

        # SageMaker refuses to change the instance type of an autoscaled variant in place
        # (UpdateEndpoint fails while it is a scalable target). Naming the construct after the
        # instance type makes such a change create a new endpoint (and scalable target) and
        # delete the old ones instead; image changes still update the endpoint in place.
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            f"Endpoint{instance_type_slug(instance_type)}",
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            # An image deploy (a new config) keeps the instance count autoscaling reached; without
            # this, UpdateEndpoint resets it to the config's InitialInstanceCount (the floor) under load.
            retain_all_variant_properties=True,
        )
        self.endpoint_name: str = self.endpoint.attr_endpoint_name
        self.endpoint_arn: str = self.endpoint.attr_endpoint_arn

        # SageMaker variants always scale through Application Auto Scaling's service-linked role
        # (created on first use); naming it stops the CDK from adding an unused, empty role.
        scaling_role = iam.Role.from_role_arn(
            self,
            "ScalingRole",
            f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/"
            "sagemaker.application-autoscaling.amazonaws.com/"
            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
            mutable=False,
        )
        self.scalable_target = appscaling.ScalableTarget(
            self,
            "Scaling",
            role=scaling_role,
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint_name}/variant/{VARIANT_NAME}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=instance_count_min,
            max_capacity=instance_count_max,
        )
        self.scalable_target.scale_to_track_metric(
            "InvocationsPerInstance",
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            target_value=float(target_invocations_per_instance),
            # GPU hosts take minutes to start: scale out fast, scale in slowly.
            scale_out_cooldown=Duration.minutes(2),
            scale_in_cooldown=Duration.minutes(10),
        )

        NagSuppressions.add_resource_suppressions(
            self.execution_role.node.find_child("DefaultPolicy"),
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level "
                    "permissions (PutMetricData is limited by a namespace condition); endpoint log "
                    "groups are named after the CloudFormation-generated endpoint name.",
                    applies_to=[
                        "Resource::*",
                        "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                        "log-group:/aws/sagemaker/Endpoints/*",
                    ],
                )
            ],
        )
