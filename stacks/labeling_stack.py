"""Labeling stack (Ground Truth integration) and the task route it adds to the API stack.

    <prefix>-Api       + POST /v1/task/segment: the proxy, authorised by task tokens (add_task_route)
    <prefix>-Labeling  labeling bucket (+ access logs), the task template (uploaded at deploy),
                       pre-annotation and consolidation Lambdas, Ground Truth execution role,
                       optional Cognito workforce + work team, and outputs for CreateLabelingJob

`app.py` calls `add_task_route` on the API stack, then creates `LabelingStack` (which depends on the
API stack for the API URL and the token-signing secret). `fewclick labeling-job create` reads the
outputs declared here (keys in `fewclick.groundtruth.stack_outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct, IConstruct

from fewclick.groundtruth import stack_outputs as out
from fewclick.groundtruth.template import build_template
from fewclick_contract.task_token import TASK_SEGMENT_PATH
from stacks.config import COGNITO_RESERVED_WORDS
from stacks.constructs.groundtruth_function import GroundTruthFunction, groundtruth_code
from stacks.constructs.groundtruth_role import GroundTruthRole
from stacks.constructs.labeling_bucket import LabelingBucket
from stacks.constructs.segmentation_api import CORS_ALLOW_HEADERS, SEGMENT_REQUEST_SCHEMA
from stacks.constructs.task_token_auth import TaskTokenAuth
from stacks.constructs.worker_team import WorkerTeam

if TYPE_CHECKING:
    from stacks.api_stack import ApiStack
    from stacks.config import FewClickConfig

PRE_ANNOTATION_HANDLER = "pre_annotation.handler.lambda_handler"
CONSOLIDATION_HANDLER = "consolidation.handler.lambda_handler"
_OPTIONS_REASON = (
    "CORS preflight (OPTIONS) of the task route must be answered without credentials: browsers never "
    "send an Authorization header on preflight. It is a MOCK integration that returns headers only."
)


def add_task_route(
    api: ApiStack,
    *,
    source_root: Path,
    handler_dir: str,
    contract_dir: str,
    log_level: str,
) -> TaskTokenAuth:
    """Add task-token auth and ``POST /v1/task/segment`` (same proxy, same contract) to the API stack.

    CORS on this route allows any origin: the credential is an explicit bearer token that only the
    task page holds (no cookie, so nothing ambient for another origin to ride on), and the Ground
    Truth worker page's origin is Amazon's, not one we could list in fewclick:uiOrigins.
    """
    auth = TaskTokenAuth(
        api,
        "TaskTokens",
        code=groundtruth_code(source_root=source_root, handler_dir=handler_dir, extra_packages=[contract_dir]),
        log_level=log_level,
    )
    rest = api.api.api
    parent_path, _, leaf = TASK_SEGMENT_PATH.rpartition("/")
    base_path, _, group = parent_path.rpartition("/")
    task = rest.root.resource_for_path(base_path).add_resource(
        group,
        default_cors_preflight_options=apigw.CorsOptions(
            allow_origins=apigw.Cors.ALL_ORIGINS,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=list(CORS_ALLOW_HEADERS),
            max_age=Duration.hours(1),
        ),
    )
    model = rest.add_model("TaskSegmentRequestModel", content_type="application/json", schema=SEGMENT_REQUEST_SCHEMA)
    method = api.api.add_method(
        task.add_resource(leaf),
        "POST",
        apigw.LambdaIntegration(api.proxy.function, proxy=True),
        authorizer=auth.authorizer,
        request_validator=api.api.body_validator,
        request_models={"application/json": model},
    )
    NagSuppressions.add_resource_suppressions(
        method,
        [
            NagPackSuppression(
                id="AwsSolutions-COG4",
                reason="Ground Truth workers have no identity in the labelers' user pool: this route is "
                "authorised by a Lambda REQUEST authorizer that verifies an HMAC task token scoped to one image "
                "(fewclick_contract.task_token), and the proxy refuses any other image.",
            )
        ],
    )
    for options in (m for m in rest.methods if m.http_method == "OPTIONS"):
        if options.resource.path.startswith(parent_path):
            NagSuppressions.add_resource_suppressions(
                options,
                [
                    NagPackSuppression(id="AwsSolutions-APIG4", reason=_OPTIONS_REASON),
                    NagPackSuppression(id="AwsSolutions-COG4", reason=_OPTIONS_REASON),
                ],
            )
    return auth


class LabelingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_root: Path,
        handler_dir: str,
        contract_dir: str,
        api_url: str,
        task_token_secret: secretsmanager.ISecret,
        image_buckets: Sequence[str],
        default_labels: Sequence[str],
        max_token_ttl_s: int,
        workteam_arn: str | None,
        create_workteam: bool,
        worker_domain_prefix: str,
        log_level: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.storage = LabelingBucket(self, "Labeling")
        bucket = self.storage.bucket
        code = groundtruth_code(source_root=source_root, handler_dir=handler_dir, extra_packages=[contract_dir])

        self.pre_annotation = GroundTruthFunction(
            self,
            "PreAnnotation",
            code=code,
            handler=PRE_ANNOTATION_HANDLER,
            description="FewClick Ground Truth pre-annotation: task input + task token per image",
            environment={
                "TASK_TOKEN_SECRET_ARN": task_token_secret.secret_arn,
                "IMAGE_BUCKETS": ",".join(image_buckets),
                "LABELING_BUCKET": bucket.bucket_name,
                "MAX_TOKEN_TTL_S": str(max_token_ttl_s),
            },
            service_name="fewclick-gt-pre-annotation",
            log_level=log_level,
            timeout=Duration.seconds(30),
            memory_size=256,
        )
        task_token_secret.grant_read(self.pre_annotation.role)
        # The job's labels and timing (DescribeLabelingJob), and its label category file (jobs/).
        job_arns = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:labeling-job/*"
        self.pre_annotation.role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:DescribeLabelingJob"], resources=[job_arns])
        )
        self.pre_annotation.role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{out.JOBS_PREFIX}*")])
        )

        self.consolidation = GroundTruthFunction(
            self,
            "Consolidation",
            code=code,
            handler=CONSOLIDATION_HANDLER,
            description="FewClick Ground Truth consolidation: per-pixel majority vote of label maps",
            environment={"LABELING_BUCKET": bucket.bucket_name},
            service_name="fewclick-gt-consolidation",
            log_level=log_level,
            # A batch holds many data objects; decoding and voting full-size PNGs needs memory and time.
            timeout=Duration.minutes(5),
            memory_size=2048,
        )
        # Ground Truth writes the annotation files under the job's S3OutputPath (output/), and the
        # consolidated masks go beside them.
        self.consolidation.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"], resources=[bucket.arn_for_objects(f"{out.OUTPUT_PREFIX}*")]
            )
        )

        functions: list[lambda_.IFunction] = [self.pre_annotation.function, self.consolidation.function]
        self.ground_truth = GroundTruthRole(
            self,
            "GroundTruth",
            labeling_bucket=bucket,
            image_buckets=image_buckets,
            functions=functions,
            output_prefix=out.OUTPUT_PREFIX,
        )

        # The template, built at synth with the labeling core inlined; the API URL is a deploy-time
        # value (the other stack's output), which Source.data resolves when it uploads.
        template_dir, _, template_name = out.TEMPLATE_KEY.rpartition("/")
        self.template_upload = s3deploy.BucketDeployment(
            self,
            "TaskTemplate",
            destination_bucket=bucket,
            destination_key_prefix=f"{template_dir}/",
            sources=[s3deploy.Source.data(template_name, build_template(api_url))],
            content_type="text/html; charset=utf-8",
            prune=False,  # other templates (older versions kept by jobs) stay
            retain_on_delete=True,
            memory_limit=256,
        )

        self.team: WorkerTeam | None = None
        team_arn = workteam_arn
        if create_workteam:
            self.team = WorkerTeam(
                self, "Workers", domain_prefix=worker_domain_prefix, team_name=f"{construct_id}-team"
            )
            team_arn = self.team.workteam_arn
            CfnOutput(self, out.WORKER_PORTAL_URL, value=self.team.portal_url, description="Worker sign-in portal")
            CfnOutput(
                self,
                "WorkerUserPoolId",
                value=self.team.user_pool.user_pool_id,
                description="Invite workers here and add them to the fewclick-workers group",
            )

        self._suppress_nag_findings(image_buckets)
        outputs = {
            out.BUCKET: (bucket.bucket_name, "Labeling bucket: manifests/, templates/, jobs/, output/"),
            out.TEMPLATE_URI: (f"s3://{bucket.bucket_name}/{out.TEMPLATE_KEY}", "UiConfig.UiTemplateS3Uri"),
            out.PRE_ANNOTATION_ARN: (
                self.pre_annotation.function.function_arn,
                "HumanTaskConfig.PreHumanTaskLambdaArn",
            ),
            out.CONSOLIDATION_ARN: (
                self.consolidation.function.function_arn,
                "AnnotationConsolidationConfig.AnnotationConsolidationLambdaArn",
            ),
            out.ROLE_ARN: (self.ground_truth.role.role_arn, "CreateLabelingJob RoleArn"),
            out.API_URL: (api_url, "Segmentation API the task template calls (POST v1/task/segment)"),
            out.IMAGE_BUCKETS: (",".join(image_buckets), "Buckets manifests may reference images in"),
            out.MAX_TOKEN_TTL: (str(max_token_ttl_s), "Longest task-token lifetime (availability + time limit)"),
            out.DEFAULT_LABELS: (",".join(default_labels), "Labels used when the job launcher gets no --labels"),
        }
        if team_arn:
            outputs[out.WORKTEAM_ARN] = (team_arn, "HumanTaskConfig.WorkteamArn")
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)

    def _suppress_nag_findings(self, image_buckets: Sequence[str]) -> None:
        stack = Stack.of(self)
        bucket_ref = f"<{stack.get_logical_id(self.storage.bucket.node.default_child)}.Arn>"  # type: ignore[arg-type]
        NagSuppressions.add_resource_suppressions(
            self.pre_annotation.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="DescribeLabelingJob on this account's labeling jobs (the job ARN arrives with each "
                    "event) and s3:GetObject on the label category files under jobs/ only.",
                    applies_to=[
                        "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:labeling-job/*",
                        f"Resource::{bucket_ref}/{out.JOBS_PREFIX}*",
                    ],
                )
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.consolidation.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Reads Ground Truth's annotation files and writes consolidated masks under the jobs' "
                    "output/ prefix of the labeling bucket only; keys are per job and data object.",
                    applies_to=[f"Resource::{bucket_ref}/{out.OUTPUT_PREFIX}*"],
                )
            ],
            apply_to_children=True,
        )
        # BucketDeployment's provider (a singleton Lambda aws-cdk-lib ships) copies the template.
        for construct in _bucket_deployment_handlers(stack):
            NagSuppressions.add_resource_suppressions(
                construct,
                [
                    NagPackSuppression(
                        id="AwsSolutions-IAM4",
                        reason="aws-cdk-lib's BucketDeployment provider uses AWSLambdaBasicExecutionRole for its "
                        "own logs; it runs only during deployments.",
                        applies_to=[
                            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
                        ],
                    ),
                    NagPackSuppression(
                        id="AwsSolutions-IAM5",
                        reason="BucketDeployment reads the synthesized template asset from the CDK assets bucket "
                        "and writes it to the labeling bucket (the construct's own grants, object-level).",
                        applies_to=[
                            "Action::s3:GetBucket*",
                            "Action::s3:GetObject*",
                            "Action::s3:List*",
                            "Action::s3:Abort*",
                            "Action::s3:DeleteObject*",
                            "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*",
                            f"Resource::{bucket_ref}/*",
                        ],
                    ),
                    NagPackSuppression(
                        id="AwsSolutions-L1",
                        reason="The BucketDeployment provider's runtime is chosen by aws-cdk-lib, not by this app.",
                    ),
                ],
                apply_to_children=True,
            )


def _bucket_deployment_handlers(stack: Stack) -> list[IConstruct]:
    return [c for c in stack.node.children if c.node.id.startswith("Custom::CDKBucketDeployment")]


GROUNDTRUTH_HANDLER_DIR = "lambda/groundtruth"  # relative to the repository root; the Lambdas' asset root


def worker_domain_prefix(stack_prefix: str, configured: str | None) -> str:
    """The Cognito domain prefix of a created workforce: configured, or unique per account."""
    if configured:
        return configured
    # Cognito domain prefixes are global, lowercase, <= 63 chars and may not contain its reserved words.
    base = "".join(c for c in stack_prefix.lower() if c.isalnum() or c == "-")
    for word in COGNITO_RESERVED_WORDS:
        base = base.replace(word, "")
    base = base[:24] or "fewclick"
    return f"{base}-gt-workers-{Aws.ACCOUNT_ID}"


def add_labeling(
    app: Construct, *, api: ApiStack, config: FewClickConfig, env: Any, source_root: Path, contract_dir: str
) -> LabelingStack | None:
    """`app.py`'s one call: the task route on the API stack and the labeling stack, when
    fewclick:labeling is on (None otherwise: the API stack is then exactly as without this module)."""
    if not config.labeling:
        return None
    task_tokens = add_task_route(
        api,
        source_root=source_root,
        handler_dir=GROUNDTRUTH_HANDLER_DIR,
        contract_dir=contract_dir,
        log_level=config.log_level,
    )
    return LabelingStack(
        app,
        f"{config.stack_prefix}-Labeling",
        env=env,
        description="FewClick: Ground Truth task template, pre-annotation and consolidation Lambdas, job role",
        source_root=source_root,
        handler_dir=GROUNDTRUTH_HANDLER_DIR,
        contract_dir=contract_dir,
        api_url=api.api.api.url,
        task_token_secret=task_tokens.secret,
        image_buckets=config.image_buckets,
        default_labels=config.label_classes,
        max_token_ttl_s=config.task_token_max_ttl_hours * 3600,
        workteam_arn=config.workteam_arn,
        create_workteam=config.create_workteam,
        worker_domain_prefix=worker_domain_prefix(config.stack_prefix, config.worker_domain_prefix),
        log_level=config.log_level,
    )
