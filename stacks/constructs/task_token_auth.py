"""Task-token authorization for Ground Truth workers: the signing secret, the authorizer Lambda,
and the API Gateway REQUEST authorizer that uses it.

Why a separate route with its own authorizer (``POST /v1/task/segment``) rather than one authorizer
accepting both credentials: the Cognito user-pool authorizer stays exactly as it is for labelers
(API Gateway verifies their JWTs natively, no code of ours), the task route accepts ONLY task
tokens, and the proxy can tell from the route and the authorizer context which requests are
confined to one image. A combined Lambda authorizer would have to re-implement Cognito JWT
verification and would put every labeler click behind our code.

The secret lives here (with the authorizer that verifies tokens); the labeling stack's
pre-annotation Lambda gets read access to mint them. Its value is a generated 64-character string;
`fewclick_contract.task_token.derive_key` turns it into the HMAC key.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks.constructs.groundtruth_function import GroundTruthFunction

AUTHORIZER_HANDLER = "task_authorizer.handler.lambda_handler"
# API Gateway caches the authorizer's answer per token, so a task's clicks rarely wait on the
# authorizer; expiry is still exact: the proxy checks the expiry the context carries (task_scope.py).
RESULTS_CACHE_TTL = Duration.minutes(5)


class TaskTokenAuth(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code, log_level: str) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "SigningSecret",
            description="FewClick: HMAC key material for Ground Truth task tokens (fewclick_contract.task_token)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )
        self.function = GroundTruthFunction(
            self,
            "Authorizer",
            code=code,
            handler=AUTHORIZER_HANDLER,
            description="FewClick: verifies Ground Truth task tokens for POST /v1/task/segment",
            environment={"TASK_TOKEN_SECRET_ARN": self.secret.secret_arn},
            service_name="fewclick-task-authorizer",
            log_level=log_level,
            timeout=Duration.seconds(10),
            memory_size=256,
        )
        self.secret.grant_read(self.function.role)
        self.authorizer = apigw.RequestAuthorizer(
            self,
            "RequestAuthorizer",
            handler=self.function.function,
            identity_sources=[apigw.IdentitySource.header("Authorization")],
            results_cache_ttl=RESULTS_CACHE_TTL,
        )
        NagSuppressions.add_resource_suppressions(
            self.secret,
            [
                NagPackSuppression(
                    id="AwsSolutions-SMG4",
                    reason="Rotating the key invalidates every outstanding task token (tasks stay open for "
                    "days), so it is rotated between labeling jobs by putting a new random value "
                    "(see the README, Task tokens); the verifier picks it up within 5 minutes.",
                )
            ],
        )
