"""An optional Cognito-backed private workforce and work team for Ground Truth (fewclick:createWorkteam).

Created: a worker user pool (invite-only, strong passwords, threat protection), its hosted-UI domain,
an app client with a secret (the worker portal signs workers in through it), a user group whose
members form the team, the account's private workforce (`AWS::SageMaker::Workforce`, one per account
and region, bound to this pool) and the team (`AWS::SageMaker::Workteam`).

An account/region that already has a private workforce must not set fewclick:createWorkteam (its
workforce is bound to another pool); create the team in the console and pass fewclick:workteamArn
or `--workteam-arn` instead. API shapes: CognitoConfig / CognitoMemberDefinition in the SageMaker
API reference.
"""

from __future__ import annotations

from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from .user_pool import hardened_user_pool

WORKER_GROUP = "fewclick-workers"


class WorkerTeam(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, domain_prefix: str, team_name: str) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = hardened_user_pool(self, "Workers", temp_password_days=7)
        self.domain = self.user_pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=domain_prefix)
        )
        self.client = self.user_pool.add_client(
            "PortalClient",
            generate_secret=True,  # the worker portal is a server-side OAuth client
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True, implicit_code_grant=True),
                scopes=[cognito.OAuthScope.EMAIL, cognito.OAuthScope.OPENID, cognito.OAuthScope.PROFILE],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
        )
        self.group = cognito.CfnUserPoolGroup(
            self,
            "Group",
            user_pool_id=self.user_pool.user_pool_id,
            group_name=WORKER_GROUP,
            description="FewClick Ground Truth workers (members of the work team)",
        )
        self.workforce = sagemaker.CfnWorkforce(
            self,
            "Workforce",
            workforce_name="default",  # a Cognito private workforce is the account's one, named default
            cognito_config=sagemaker.CfnWorkforce.CognitoConfigProperty(
                client_id=self.client.user_pool_client_id, user_pool=self.user_pool.user_pool_id
            ),
        )
        self.workforce.node.add_dependency(self.domain)
        self.workteam = sagemaker.CfnWorkteam(
            self,
            "Workteam",
            workteam_name=team_name,
            workforce_name="default",
            description="FewClick segmentation workers",
            member_definitions=[
                sagemaker.CfnWorkteam.MemberDefinitionProperty(
                    cognito_member_definition=sagemaker.CfnWorkteam.CognitoMemberDefinitionProperty(
                        cognito_user_pool=self.user_pool.user_pool_id,
                        cognito_client_id=self.client.user_pool_client_id,
                        cognito_user_group=self.group.group_name or WORKER_GROUP,
                    )
                )
            ],
        )
        self.workteam.node.add_dependency(self.workforce, self.group)
        self.workteam_arn: str = self.workteam.attr_workteam_arn
        # Workers sign in at https://<sub domain> (the labeling portal of this workforce).
        self.portal_url: str = "https://" + self.workforce.attr_sub_domain
        NagSuppressions.add_resource_suppressions(
            self.user_pool,
            [
                NagPackSuppression(
                    id="AwsSolutions-COG2",
                    reason="MFA (TOTP) is offered but optional: workers sign in to the Ground Truth portal, "
                    "often from shared labeling stations; Plus-plan threat protection covers risky sign-ins.",
                )
            ],
        )
