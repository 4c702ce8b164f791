"""The labeling bucket (task template, label category files, manifests, job output) and its access-log bucket.

Ground Truth needs a CORS rule on buckets whose images workers' browsers load (GET from any origin,
exposing Access-Control-Allow-Origin): https://docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html.
This bucket holds no input images (those stay in fewclick:imageBuckets, which the proxy reads), but
the rule is set anyway so manifests may point at images copied here, as the console's setup would.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

GROUND_TRUTH_CORS = s3.CorsRule(
    allowed_methods=[s3.HttpMethods.GET],
    allowed_origins=["*"],
    allowed_headers=[],
    exposed_headers=["Access-Control-Allow-Origin"],
)


class LabelingBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # server access logging cannot deliver to SSE-KMS
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            # SSE-S3: Ground Truth's role and the Lambdas need no KMS grants, and a job's OutputConfig
            # needs no KmsKeyId; the data is still encrypted at rest.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,  # labels are the product: an overwritten mask can be recovered
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="labeling-bucket/",
            cors=[GROUND_TRUTH_CORS],
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(90),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            # Labels outlive the stack: deleting it must not delete them.
            removal_policy=RemovalPolicy.RETAIN,
        )
        NagSuppressions.add_resource_suppressions(
            self.access_logs,
            [
                NagPackSuppression(
                    id="AwsSolutions-S1",
                    reason="This is the access-log bucket itself; logging its own accesses would recurse. "
                    "It is private, TLS-only and expires logs after a year.",
                )
            ],
        )
