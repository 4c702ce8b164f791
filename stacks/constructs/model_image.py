"""The model server's container image in ECR, built either by the CDK CLI or by CodeBuild.

- `AssetModelImage` (default, `fewclick:imageBuild=asset`): a `DockerImageAsset`; `cdk deploy`
  builds it with the local Docker engine and pushes it to the bootstrap ECR repository.
- `CodeBuildModelImage` (`fewclick:imageBuild=codebuild`): for deployers without Docker. The
  build context is uploaded as a zipped S3 asset, a CodeBuild project builds and pushes it to
  a dedicated ECR repository, and a custom resource runs that build during the deployment (and
  waits for it) so the SageMaker model never points at a tag that does not exist yet.

Both expose `image_uri` and `repository` (for least-privilege pull grants).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from aws_cdk import CustomResource, Duration, IgnoreMode, RemovalPolicy
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct, IConstruct

# The Docker build context is the repository root so the Dockerfile can COPY the shared
# contract package; everything except these folders is excluded (Docker ignore syntax:
# `*` drops every top-level entry, `!dir` brings a folder back with its contents).
IMAGE_CONTEXT_FOLDERS: tuple[str, ...] = ("fewclick_contract", "model_image")
IMAGE_CONTEXT_EXCLUDES: tuple[str, ...] = (
    "*",
    *(f"!{folder}" for folder in IMAGE_CONTEXT_FOLDERS),
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/*.ckpt",
    "**/.ipynb_checkpoints",
)

_TRIGGER_CODE = Path(__file__).resolve().parent / "image_build_trigger"


# CloudFormation waits at most an hour for a custom resource (ServiceTimeout's maximum), so the
# build and the provider's polling after it must end inside that: a longer build would surface as a
# CloudFormation timeout, not as the build's own failure and log.
CUSTOM_RESOURCE_LIMIT = Duration.minutes(60)
PROVIDER_MARGIN = Duration.minutes(10)  # queueing, the last status poll, the provider's own calls
# Pulling a CUDA base image and installing torch: not measured here (no AWS).
DEFAULT_BUILD_TIMEOUT = Duration.minutes(45)


class ModelImage(Protocol):
    """What the endpoint needs from either image source."""

    @property
    def image_uri(self) -> str: ...

    @property
    def repository(self) -> ecr.IRepository: ...


class AssetModelImage(Construct):
    """Model image built by the CDK CLI (local Docker) into the bootstrap ECR repository."""

    def __init__(self, scope: Construct, construct_id: str, *, context_dir: Path, dockerfile: str) -> None:
        super().__init__(scope, construct_id)
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Asset",
            directory=str(context_dir),
            file=dockerfile,
            exclude=list(IMAGE_CONTEXT_EXCLUDES),
            ignore_mode=IgnoreMode.DOCKER,
            # SageMaker GPU hosts are x86_64; pin it so an arm64 laptop still builds the right image.
            platform=ecr_assets.Platform.LINUX_AMD64,
        )

    @property
    def image_uri(self) -> str:
        return self.asset.image_uri

    @property
    def repository(self) -> ecr.IRepository:
        return self.asset.repository


class CodeBuildModelImage(Construct):
    """Model image built in the account by CodeBuild and pushed to a dedicated ECR repository."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        context_dir: Path,
        dockerfile: str,
        build_timeout: Duration | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        build_timeout = build_timeout or DEFAULT_BUILD_TIMEOUT
        if build_timeout.to_minutes() + PROVIDER_MARGIN.to_minutes() > CUSTOM_RESOURCE_LIMIT.to_minutes():
            raise ValueError(
                f"build_timeout {build_timeout.to_minutes()} min: with the provider's "
                f"{PROVIDER_MARGIN.to_minutes()} min margin it must fit CloudFormation's "
                f"{CUSTOM_RESOURCE_LIMIT.to_minutes()} min wait for a custom resource"
            )

        self.source = s3_assets.Asset(
            self,
            "Source",
            path=str(context_dir),
            exclude=list(IMAGE_CONTEXT_EXCLUDES),
            ignore_mode=IgnoreMode.DOCKER,
        )
        # The tag is the hash of the build context: a changed Dockerfile or server code gives a
        # new tag, which changes the custom resource below (new build) and the SageMaker model.
        self.image_tag = self.source.asset_hash

        self.ecr_repository = ecr.Repository(
            self,
            "Repository",
            image_scan_on_push=True,
            # Tags are content hashes, so they never need to move; immutability stops a stray
            # push from changing what a deployed model runs.
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description="keep the 10 most recent model images",
                    max_image_count=10,
                    rule_priority=1,
                )
            ],
            # Images of a deployed endpoint must outlive an accidental stack deletion.
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.key = kms.Key(
            self,
            "BuildKey",
            description="Encrypts the FewClick model image build's artifacts and cache",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        build_logs = logs.LogGroup(self, "BuildLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.project = codebuild.Project(
            self,
            "Build",
            description="Builds the FewClick model server image and pushes it to ECR",
            source=codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.MEDIUM,
                privileged=True,  # docker build needs the Docker daemon
            ),
            environment_variables={
                "REPOSITORY_URI": codebuild.BuildEnvironmentVariable(value=self.ecr_repository.repository_uri),
                "DOCKERFILE": codebuild.BuildEnvironmentVariable(value=dockerfile),
                # Overridden per build by the trigger; the default only serves manual runs.
                "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value=self.image_tag),
            },
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "pre_build": {
                            "commands": [
                                'aws ecr get-login-password --region "$AWS_DEFAULT_REGION"'
                                ' | docker login --username AWS --password-stdin "${REPOSITORY_URI%%/*}"',
                            ]
                        },
                        "build": {
                            "commands": [
                                'docker build --platform linux/amd64 -f "$DOCKERFILE"'
                                ' -t "$REPOSITORY_URI:$IMAGE_TAG" .',
                                'docker push "$REPOSITORY_URI:$IMAGE_TAG"',
                            ]
                        },
                    },
                }
            ),
            encryption_key=self.key,
            timeout=build_timeout,
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=build_logs)),
        )
        self.ecr_repository.grant_pull_push(self.project)

        self._add_build_trigger(build_timeout=build_timeout, log_retention=log_retention)
        self._suppress_nag_findings()

    @property
    def image_uri(self) -> str:
        return self.ecr_repository.repository_uri_for_tag(self.image_tag)

    @property
    def repository(self) -> ecr.IRepository:
        return self.ecr_repository

    def _trigger_function(self, construct_id: str, handler: str, log_retention: logs.RetentionDays) -> lambda_.Function:
        log_group = logs.LogGroup(
            self, f"{construct_id}Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        role = iam.Role(self, f"{construct_id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        log_group.grant_write(role)
        return lambda_.Function(
            self,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_14,
            code=lambda_.Code.from_asset(str(_TRIGGER_CODE), exclude=["__pycache__", "*.pyc"]),
            handler=handler,
            timeout=Duration.seconds(60),
            memory_size=256,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                "PROJECT_NAME": self.project.project_name,
                "REPOSITORY_NAME": self.ecr_repository.repository_name,
            },
        )

    def _add_build_trigger(self, *, build_timeout: Duration, log_retention: logs.RetentionDays) -> None:
        start = self._trigger_function("StartBuild", "handler.on_event", log_retention)
        start.add_to_role_policy(
            iam.PolicyStatement(actions=["codebuild:StartBuild"], resources=[self.project.project_arn])
        )
        start.add_to_role_policy(
            iam.PolicyStatement(actions=["ecr:DescribeImages"], resources=[self.ecr_repository.repository_arn])
        )
        check = self._trigger_function("CheckBuild", "handler.is_complete", log_retention)
        check.add_to_role_policy(
            iam.PolicyStatement(actions=["codebuild:BatchGetBuilds"], resources=[self.project.project_arn])
        )

        provider_logs = logs.LogGroup(
            self, "ProviderLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=start,
            is_complete_handler=check,
            query_interval=Duration.seconds(30),
            total_timeout=build_timeout.plus(PROVIDER_MARGIN),
            log_group=provider_logs,
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=provider_logs, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        self.build_run = CustomResource(
            self,
            "BuildRun",
            service_token=self.provider.service_token,
            resource_type="Custom::FewClickImageBuild",
            service_timeout=CUSTOM_RESOURCE_LIMIT,
            properties={
                "ProjectName": self.project.project_name,
                "RepositoryName": self.ecr_repository.repository_name,
                "ImageTag": self.image_tag,
            },
        )

    def _suppress_nag_findings(self) -> None:
        """Each suppression sits on the one resource cdk-nag reports, for named findings only."""
        build_policy = _find(self.project, "Role/DefaultPolicy")
        NagSuppressions.add_resource_suppressions(
            build_policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ecr:GetAuthorizationToken (docker login) has no resource-level permissions.",
                    applies_to=["Resource::*"],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="CodeBuild's generated policy: the build creates its own log streams and "
                    "report groups, named after the project, at build time.",
                    applies_to=[
                        {
                            "regex": "/^Resource::arn:<AWS::Partition>:codebuild:.*:report-group/"
                            "<[A-Za-z0-9]+Build[0-9A-F]{8}>-\\*$/"
                        },
                        {
                            "regex": "/^Resource::arn:<AWS::Partition>:logs:.*:log-group:/aws/codebuild/"
                            "<[A-Za-z0-9]+Build[0-9A-F]{8}>:\\*$/"
                        },
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Read access to the one zipped build-context object (the S3 source asset), "
                    "granted by the CDK's grantRead with its standard action groups.",
                    applies_to=["Action::s3:GetObject*", "Action::s3:GetBucket*", "Action::s3:List*"],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Use of the build's own KMS key (build artifacts), granted by the CDK's "
                    "standard encrypt/decrypt action groups on that key only.",
                    applies_to=["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
                ),
            ],
        )
        for function_id in ("StartBuild", "CheckBuild"):
            NagSuppressions.add_resource_suppressions(
                _find(self, f"{function_id}Role/DefaultPolicy"),
                [
                    NagPackSuppression(
                        id="AwsSolutions-IAM5",
                        reason="X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions.",
                        applies_to=["Resource::*"],
                    )
                ],
            )

        # The CDK provider framework's own functions, roles and waiter state machine.
        invoke_versions = NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="The provider framework invokes any version (`<function arn>:*`) of the "
            "StartBuild/CheckBuild handlers and of its own isComplete/onTimeout functions.",
            applies_to=[
                {
                    "regex": "/^Resource::<[A-Za-z0-9]*(StartBuild|CheckBuild|Providerframework[A-Za-z]+)"
                    "[0-9A-F]{8}\\.Arn>:\\*$/"
                },
            ],
        )
        for function_id in ("framework-onEvent", "framework-isComplete", "framework-onTimeout"):
            NagSuppressions.add_resource_suppressions(
                _find(self.provider, f"{function_id}/ServiceRole"),
                [
                    NagPackSuppression(
                        id="AwsSolutions-IAM4",
                        reason="The CDK custom-resource provider framework attaches "
                        "AWSLambdaBasicExecutionRole to its own functions; it only grants log writes.",
                        applies_to=[
                            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
                        ],
                    )
                ],
            )
            NagSuppressions.add_resource_suppressions(
                _find(self.provider, f"{function_id}/ServiceRole/DefaultPolicy"), [invoke_versions]
            )
        NagSuppressions.add_resource_suppressions(
            _find(self.provider, "waiter-state-machine/Role/DefaultPolicy"),
            [
                invoke_versions,
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="The waiter state machine's log delivery (logs:CreateLogDelivery etc.) has no "
                    "resource-level permissions.",
                    applies_to=["Resource::*"],
                ),
            ],
        )
        NagSuppressions.add_resource_suppressions(
            _find(self.provider, "waiter-state-machine"),
            [
                NagPackSuppression(
                    id="AwsSolutions-SF2",
                    reason="The provider framework's waiter state machine only polls CheckBuild and has "
                    "no X-Ray option; the StartBuild/CheckBuild functions themselves are traced.",
                )
            ],
        )


def _find(root: IConstruct, path: str) -> IConstruct:
    """Child construct by relative path (fails loudly if the CDK renames its internals)."""
    node = root
    for part in path.split("/"):
        node = node.node.find_child(part)
    return node
