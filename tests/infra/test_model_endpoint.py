"""`ModelEndpoint`: SageMaker model, endpoint config, endpoint, autoscaling, execution role."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from aws_cdk.assertions import Match, Template

from stacks.constructs.model_endpoint import VARIANT_NAME, ModelEndpoint, instance_type_slug

from .synth import TEST_CONTEXT, SynthesizedApp
from .templates import as_list, only, policy_statements, resources


def test_endpoint_runs_on_the_default_gpu_instance(default_app: SynthesizedApp) -> None:
    template = default_app.template(default_app.stacks.model)
    template.resource_count_is("AWS::SageMaker::Endpoint", 1)
    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                Match.object_like(
                    {
                        "InstanceType": "ml.g4dn.xlarge",
                        "VariantName": VARIANT_NAME,
                        "InitialInstanceCount": TEST_CONTEXT["fewclick:instanceCountMin"],
                        # Sized for loading CUDA + weights on a cold GPU host.
                        "ContainerStartupHealthCheckTimeoutInSeconds": 600,
                        "ModelDataDownloadTimeoutInSeconds": 600,
                    }
                )
            ]
        },
    )


def test_an_image_deploy_keeps_the_instance_count_autoscaling_reached(default_app: SynthesizedApp) -> None:
    # Without it, UpdateEndpoint with the new config resets the variant to InitialInstanceCount (the floor).
    endpoint = only(default_app.template_json(default_app.stacks.model), "AWS::SageMaker::Endpoint")
    assert endpoint["Properties"]["RetainAllVariantProperties"] is True
    assert "ExcludeRetainedVariantProperties" not in endpoint["Properties"]


def test_variant_instance_type_comes_from_context(variant_app: SynthesizedApp) -> None:
    config = only(variant_app.template_json(variant_app.stacks.model), "AWS::SageMaker::EndpointConfig")
    assert config["Properties"]["ProductionVariants"][0]["InstanceType"] == "ml.g5.xlarge"


def test_no_physical_names(default_app: SynthesizedApp) -> None:
    """Generated names let CloudFormation replace these resources without name clashes."""
    template = default_app.template_json(default_app.stacks.model)
    for resource_type, name_key in (
        ("AWS::SageMaker::Model", "ModelName"),
        ("AWS::SageMaker::EndpointConfig", "EndpointConfigName"),
        ("AWS::SageMaker::Endpoint", "EndpointName"),
    ):
        assert name_key not in only(template, resource_type)["Properties"]


def test_model_is_network_isolated_and_uses_its_role(default_app: SynthesizedApp) -> None:
    template = default_app.template(default_app.stacks.model)
    template.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "EnableNetworkIsolation": True,
            "ExecutionRoleArn": {"Fn::GetAtt": [Match.string_like_regexp("^EndpointExecutionRole"), "Arn"]},
        },
    )


def test_autoscaling_tracks_invocations_per_instance(default_app: SynthesizedApp) -> None:
    template = default_app.template(default_app.stacks.model)
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "MinCapacity": TEST_CONTEXT["fewclick:instanceCountMin"],
            "MaxCapacity": TEST_CONTEXT["fewclick:instanceCountMax"],
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ServiceNamespace": "sagemaker",
            "ResourceId": {
                "Fn::Join": [
                    "",
                    ["endpoint/", {"Fn::GetAtt": [Match.any_value(), "EndpointName"]}, "/variant/AllTraffic"],
                ]
            },
        },
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                    "TargetValue": TEST_CONTEXT["fewclick:targetInvocationsPerInstance"],
                }
            ),
        },
    )
    # Scaling goes through the service-linked role; no extra IAM role is created for it.
    assert len(resources(default_app.template_json(default_app.stacks.model), "AWS::IAM::Role")) == 1


def test_execution_role_is_least_privilege(default_app: SynthesizedApp) -> None:
    template = default_app.template_json(default_app.stacks.model)
    actions = {}
    for statement in policy_statements(template):
        for action in as_list(statement["Action"]):
            assert "*" not in action.split(":")[1], f"wildcard action {action}"
            actions[action] = statement
    assert set(actions) == {
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetAuthorizationToken",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
        "cloudwatch:PutMetricData",
    }
    # Image pulls: the image's repository only (here the CDK bootstrap asset repository).
    pull_resource = actions["ecr:BatchGetImage"]["Resource"]
    assert pull_resource != "*"
    assert "container-assets" in str(pull_resource)
    # PutMetricData cannot be scoped by resource, so a namespace condition scopes it: SageMaker's own
    # endpoint metrics only (the network-isolated container publishes none).
    namespaces = actions["cloudwatch:PutMetricData"]["Condition"]["StringEquals"]["cloudwatch:namespace"]
    assert as_list(namespaces) == ["/aws/sagemaker/Endpoints"]
    assert "/aws/sagemaker/Endpoints/*" in str(actions["logs:PutLogEvents"]["Resource"])


def test_construct_alone_on_a_bare_stack() -> None:
    """The construct needs nothing but its arguments (no context, no other stacks)."""
    stack = cdk.Stack(cdk.App(), "Bare")
    repository = ecr.Repository.from_repository_name(stack, "Repo", "fewclick-model")
    endpoint = ModelEndpoint(
        stack,
        "Endpoint",
        image_uri=repository.repository_uri_for_tag("v1"),
        image_repository=repository,
        instance_type="ml.g6.xlarge",
        instance_count_min=2,
        instance_count_max=4,
        target_invocations_per_instance=120,
        startup_timeout_seconds=900,
    )
    assert endpoint.variant_name == "AllTraffic"
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                Match.object_like(
                    {
                        "InstanceType": "ml.g6.xlarge",
                        "InitialInstanceCount": 2,
                        "ContainerStartupHealthCheckTimeoutInSeconds": 900,
                    }
                )
            ]
        },
    )
    template.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {"MaxCapacity": 4})


def _endpoint_logical_id(instance_type: str) -> str:
    stack = cdk.Stack(cdk.App(), "Bare")
    repository = ecr.Repository.from_repository_name(stack, "Repo", "fewclick-model")
    ModelEndpoint(
        stack,
        "Endpoint",
        image_uri=repository.repository_uri_for_tag("v1"),
        image_repository=repository,
        instance_type=instance_type,
        instance_count_min=1,
        instance_count_max=2,
        target_invocations_per_instance=300,
    )
    (logical_id,) = Template.from_stack(stack).find_resources("AWS::SageMaker::Endpoint")
    return str(logical_id)


def test_new_instance_type_means_a_new_endpoint() -> None:
    """SageMaker cannot change an autoscaled variant's instance type in place, so such a change
    must replace the endpoint (new logical id) rather than update it."""
    assert instance_type_slug("ml.g4dn.xlarge") == "G4dnXlarge"
    assert _endpoint_logical_id("ml.g4dn.xlarge") != _endpoint_logical_id("ml.g5.xlarge")
