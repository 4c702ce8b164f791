"""`LabelerUserPool`: created (strong policy, optional MFA, threat protection) or imported."""

from __future__ import annotations

from aws_cdk.assertions import Match

from .synth import SynthesizedApp
from .templates import resources


def test_created_pool_is_hardened(default_app: SynthesizedApp) -> None:
    template = default_app.template(default_app.stacks.api)
    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
            "MfaConfiguration": "OPTIONAL",
            "EnabledMfas": ["SOFTWARE_TOKEN_MFA"],
            "Policies": {
                "PasswordPolicy": Match.object_like(
                    {
                        "MinimumLength": 12,
                        "RequireLowercase": True,
                        "RequireUppercase": True,
                        "RequireNumbers": True,
                        "RequireSymbols": True,
                    }
                )
            },
            "UserPoolTier": "PLUS",
            "UserPoolAddOns": {"AdvancedSecurityMode": "ENFORCED"},
            "DeletionProtection": "ACTIVE",
        },
    )
    template.has_resource("AWS::Cognito::UserPool", {"DeletionPolicy": "Retain"})


def test_ui_client_is_public_srp(default_app: SynthesizedApp) -> None:
    template = default_app.template(default_app.stacks.api)
    template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {
            "GenerateSecret": False,
            "ExplicitAuthFlows": Match.array_with(["ALLOW_USER_SRP_AUTH"]),
            "PreventUserExistenceErrors": "ENABLED",
        },
    )


def test_imported_pool_creates_nothing(variant_app: SynthesizedApp) -> None:
    template = variant_app.template_json(variant_app.stacks.api)
    assert not resources(template, "AWS::Cognito::UserPool")
    assert not resources(template, "AWS::Cognito::UserPoolClient")
