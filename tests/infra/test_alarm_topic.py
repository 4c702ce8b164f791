"""`AlarmTopic`: KMS-encrypted (key CloudWatch may use), TLS-only, optional e-mail."""

from __future__ import annotations

import json

from .synth import VARIANT_CONTEXT, SynthesizedApp
from .templates import only, resources


def test_topic_is_encrypted_with_a_rotated_key_cloudwatch_can_use(default_app: SynthesizedApp) -> None:
    template = default_app.template_json(default_app.stacks.monitoring)
    (key_id, key) = next(iter(resources(template, "AWS::KMS::Key").items()))
    assert key["Properties"]["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    # Only this account's alarms may make CloudWatch use the key (no confused deputy).
    conditions = cloudwatch[0]["Condition"]
    assert conditions["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert ":alarm:*" in json.dumps(conditions["ArnLike"]["aws:SourceArn"])
    topic = only(template, "AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_topic_denies_non_tls_publishing(default_app: SynthesizedApp) -> None:
    policy = only(default_app.template_json(default_app.stacks.monitoring), "AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_email_subscription_only_when_configured(default_app: SynthesizedApp, variant_app: SynthesizedApp) -> None:
    assert not resources(default_app.template_json(default_app.stacks.monitoring), "AWS::SNS::Subscription")
    subscription = only(variant_app.template_json(variant_app.stacks.monitoring), "AWS::SNS::Subscription")
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == VARIANT_CONTEXT["fewclick:alarmEmail"]
    assert json.dumps(subscription).count("@") == 1
