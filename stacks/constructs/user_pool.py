"""Cognito user pool for labelers: created here, or an existing one imported by ARN.

Created pools are invite-only (labelers are added by an admin), use a strong password
policy, offer TOTP MFA (optional: labeling stations are often shared kiosks, enforcing MFA
is the pool owner's call) and run on the Plus feature plan with full threat protection
(compromised-credential and adaptive-authentication checks). A public app client (no
secret, SRP sign-in) is created for the browser UI.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct


class LabelerUserPool(Construct):
    """`user_pool` is always set; `ui_client` only when the pool is created here."""

    def __init__(self, scope: Construct, construct_id: str, *, user_pool_arn: str | None) -> None:
        super().__init__(scope, construct_id)
        self.ui_client: cognito.UserPoolClient | None = None
        if user_pool_arn:
            self.user_pool: cognito.IUserPool = cognito.UserPool.from_user_pool_arn(self, "Imported", user_pool_arn)
            return

        pool = hardened_user_pool(self, "Pool", temp_password_days=3)
        self.user_pool = pool
        self.ui_client = pool.add_client(
            "UiClient",
            auth_flows=cognito.AuthFlow(user_srp=True),
            generate_secret=False,  # a browser cannot keep a secret
            prevent_user_existence_errors=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.hours(12),  # one labeling shift
        )
        NagSuppressions.add_resource_suppressions(
            pool,
            [
                NagPackSuppression(
                    id="AwsSolutions-COG2",
                    reason="MFA is offered (TOTP) but optional by design: labeling stations are often "
                    "shared; threat protection (Plus plan, full function) covers risky sign-ins.",
                )
            ],
        )


def hardened_user_pool(scope: Construct, construct_id: str, *, temp_password_days: int) -> cognito.UserPool:
    """An invitation-only pool with strong passwords, optional TOTP MFA and threat protection.

    Shared by the labelers' pool and the Ground Truth workers' pool, so both keep one security baseline.
    """
    return cognito.UserPool(
        scope,
        construct_id,
        self_sign_up_enabled=False,
        sign_in_aliases=cognito.SignInAliases(email=True),
        auto_verify=cognito.AutoVerifiedAttrs(email=True),
        account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
        password_policy=cognito.PasswordPolicy(
            min_length=12,
            require_lowercase=True,
            require_uppercase=True,
            require_digits=True,
            require_symbols=True,
            temp_password_validity=Duration.days(temp_password_days),
        ),
        mfa=cognito.Mfa.OPTIONAL,
        mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
        feature_plan=cognito.FeaturePlan.PLUS,
        standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
        deletion_protection=True,
        # Users (and their labels' authorship) outlive a stack teardown.
        removal_policy=RemovalPolicy.RETAIN,
    )
