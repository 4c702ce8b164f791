"""The execution role Ground Truth assumes to run FewClick labeling jobs (CreateLabelingJob's RoleArn).

Least privilege instead of the managed AmazonSageMakerGroundTruthExecution policy (which matches
buckets and functions by name patterns): statements follow "Execution Role Requirements for Custom
Task Types" in https://docs.aws.amazon.com/sagemaker/latest/dg/sms-security-permission-execution-role.html,
scoped to the labeling bucket, the configured image buckets, the two Lambdas, and Ground Truth's
own log group.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, CfnElement, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

LABELING_JOB_LOG_GROUP = "/aws/sagemaker/LabelingJobs"


def _bucket_arn(name: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{name}"


class GroundTruthRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        labeling_bucket: s3.IBucket,
        image_buckets: Sequence[str],
        functions: Sequence[lambda_.IFunction],
        output_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="FewClick: Ground Truth labeling jobs (custom template, FewClick Lambdas)",
        )
        image_arns = [_bucket_arn(name) for name in image_buckets]
        # Bucket-level: Ground Truth checks the buckets it reads manifests and images from.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ViewBuckets",
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[labeling_bucket.bucket_arn, *image_arns],
            )
        )
        # Read: manifests, the template, label category files (labeling bucket) and the images
        # (grant_read_access presigns them with this role).
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadInputs",
                actions=["s3:GetObject"],
                resources=[labeling_bucket.arn_for_objects("*"), *(f"{arn}/*" for arn in image_arns)],
            )
        )
        # Write: the job's output, under the prefix `fewclick labeling-job create` uses only.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOutput",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[labeling_bucket.arn_for_objects(f"{output_prefix}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeFewClickLambdas",
                actions=["lambda:InvokeFunction"],
                resources=[fn.function_arn for fn in functions],
            )
        )
        log_group = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{LABELING_JOB_LOG_GROUP}"
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="JobLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                resources=[log_group, f"{log_group}:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="JobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                # Ground Truth's own job metrics; matching is case-sensitive and the labeling-job
                # namespace is spelled "AWS/Sagemaker/LabelingJobs", so every spelling is listed.
                conditions={
                    "StringLike": {"cloudwatch:namespace": ["AWS/SageMaker*", "AWS/Sagemaker*", "/aws/sagemaker/*"]}
                },
            )
        )
        bucket_ref = f"<{self._logical_id(labeling_bucket)}.Arn>"
        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Ground Truth reads any manifest/template/label file of the labeling bucket and any "
                    "image of the configured image buckets (keys come with each job), writes job output under "
                    "output/ only, logs to its own /aws/sagemaker/LabelingJobs group, and PutMetricData has no "
                    "resource-level permissions (limited to the AWS/SageMaker namespaces by condition).",
                    applies_to=[
                        f"Resource::{bucket_ref}/*",
                        f"Resource::{bucket_ref}/{output_prefix}*",
                        *(f"Resource::arn:<AWS::Partition>:s3:::{name}/*" for name in image_buckets),
                        f"Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                        f"{LABELING_JOB_LOG_GROUP}:*",
                        "Resource::*",
                    ],
                )
            ],
            apply_to_children=True,
        )

    @staticmethod
    def _logical_id(bucket: s3.IBucket) -> str:
        """How cdk-nag names the bucket in a finding (`<LogicalId.Arn>`)."""
        child = bucket.node.default_child
        assert isinstance(child, CfnElement)
        return str(Stack.of(child).get_logical_id(child))
