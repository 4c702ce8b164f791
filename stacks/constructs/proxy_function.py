"""The proxy Lambda: click JSON in, model tensors to the SageMaker endpoint, mask JSON out.

The asset root is the repository root filtered down to `lambda/proxy/` and
`fewclick_contract/` (Docker ignore syntax), so a change to either redeploys the function.
Packaging prefers `LocalPipBundling` (no Docker) and falls back to the SAM Python image.

Permissions to the model and the images are not granted here: the stack wires them
(`sagemaker:InvokeEndpoint` on the one endpoint, `s3:GetObject` on the configured buckets) so this
construct stays testable alone. The session-token secret is the exception: it belongs to this
function alone (nothing else may read it) and the function refuses to serve without it, so the
construct creates it, grants read on it and passes its ARN (`SESSION_TOKEN_SECRET_ARN`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks.constructs import asset_pruning
from stacks.constructs.python_lambda import bundled_code, log_group_and_role, python_function

HANDLER = "fewclick_proxy.handler.lambda_handler"
POWERTOOLS_SERVICE_NAME = "fewclick-proxy"
METRICS_NAMESPACE = "FewClick"
PRUNE_SCRIPT_ENV = "FEWCLICK_PRUNE_ASSET"


class ProxyFunction(Construct):
    """Python 3.12 Lambda with its own role, log group, X-Ray tracing and Powertools settings."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_root: Path,
        handler_dir: str,
        extra_packages: Sequence[str],
        endpoint_name: str,
        allowed_buckets: Sequence[str],
        allowed_origins: Sequence[str],
        log_level: str,
        metrics_namespace: str = METRICS_NAMESPACE,
        timeout: Duration | None = None,
        memory_size: int = 1024,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        extra_environment: Mapping[str, str] | None = None,
        pip_command: Sequence[str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        code = bundled_code(
            source_root=source_root,
            handler_dir=handler_dir,
            extra_packages=extra_packages,
            # The same pruning as LocalPipBundling: the module's source rides in an environment
            # variable (stacks/ is not part of the asset input), and it fails an oversized asset.
            docker_finish=[f'python3 -c "${PRUNE_SCRIPT_ENV}" /asset-output'],
            docker_environment={PRUNE_SCRIPT_ENV: Path(asset_pruning.__file__).read_text(encoding="utf-8")},
            pip_command=pip_command,
        )

        self.log_group, self.role = log_group_and_role(
            self, retention=log_retention, role_description="FewClick proxy Lambda"
        )

        # The HMAC key of the `sessionId` tokens the proxy hands the UI (fewclick_proxy.session_secret).
        # Its own secret, not the task-token one (stacks/constructs/task_token_auth.py): the two keys
        # protect different tokens and are rotated on different schedules. Encrypted at rest with the
        # account's aws/secretsmanager key, which any principal allowed GetSecretValue may use.
        self.session_secret = secretsmanager.Secret(
            self,
            "SessionSecret",
            description="FewClick: HMAC key of the proxy's session ids (fewclick_proxy.session_secret)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )
        # GetSecretValue only, on this secret only (grant_read would add DescribeSecret, unused).
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[self.session_secret.secret_arn])
        )
        NagSuppressions.add_resource_suppressions(
            self.session_secret,
            [
                NagPackSuppression(
                    id="AwsSolutions-SMG4",
                    reason="No scheduled rotation: a new value invalidates the open labeling sessions. Rotate by "
                    "putting a new random value (see the README, Deploying to AWS); new proxy instances read it at "
                    "cold start, and the UI recovers an invalidated session by resending its image "
                    "(404 SESSION_EXPIRED).",
                )
            ],
        )

        self.function = python_function(
            self,
            log_group=self.log_group,
            role=self.role,
            handler=HANDLER,
            code=code,
            # API Gateway gives up after 29 s; a longer Lambda would only burn money.
            timeout=timeout or Duration.seconds(29),
            # Memory also buys CPU for decoding images and building tensors.
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                "ENDPOINT_NAME": endpoint_name,
                "ALLOWED_BUCKETS": ",".join(allowed_buckets),
                "ALLOWED_ORIGINS": ",".join(allowed_origins),
                "POWERTOOLS_SERVICE_NAME": POWERTOOLS_SERVICE_NAME,
                # Per deployment (the stack prefix): two copies in one account keep their metrics apart.
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
                "LOG_LEVEL": log_level,
                "SESSION_TOKEN_SECRET_ARN": self.session_secret.secret_arn,
                **(extra_environment or {}),
            },
            description="FewClick proxy: click JSON -> model tensors -> SageMaker endpoint -> mask",
        )
