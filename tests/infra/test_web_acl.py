"""`ApiWebAcl`: managed rules, per-IP rate limit, associated with the API stage."""

from __future__ import annotations

import json

from .synth import TEST_CONTEXT, SynthesizedApp
from .templates import only


def test_rules(default_app: SynthesizedApp) -> None:
    acl = only(default_app.template_json(default_app.stacks.api), "AWS::WAFv2::WebACL")["Properties"]
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    assert set(rules) == {"RateLimitPerIp", "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"}
    rate = rules["RateLimitPerIp"]
    assert set(rate["Action"]) == {"Block"}  # with a 429 custom response: test below
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == TEST_CONTEXT["fewclick:wafRateLimit"]
    assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    for name in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        statement = rules[name]["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", name)
        assert rules[name]["OverrideAction"] == {"None": {}}
    # Inline base64 images are part of the click contract: only the 8 KB body-size rule is
    # relaxed to count; every other common rule keeps blocking.
    common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert common["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    known_bad = rules["AWSManagedRulesKnownBadInputsRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert "RuleActionOverrides" not in known_bad
    assert len({rule["Priority"] for rule in acl["Rules"]}) == 3


def test_associated_with_the_api_stage(default_app: SynthesizedApp) -> None:
    template = default_app.template_json(default_app.stacks.api)
    association = only(template, "AWS::WAFv2::WebACLAssociation")["Properties"]
    (acl_id,) = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::WAFv2::WebACL"]
    assert association["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    (stage_id,) = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::ApiGateway::Stage"]
    rendered = str(association["ResourceArn"])
    assert stage_id in rendered and "/restapis/" in rendered and "/stages/" in rendered


def test_metric_names_follow_the_stack_prefix(default_app: SynthesizedApp, variant_app: SynthesizedApp) -> None:
    """WAF metric names are the CloudWatch dimension: two copies of the app in one account
    (another fewclick:stackPrefix) must not add up in one metric."""

    def metric_names(app: SynthesizedApp) -> set[str]:
        acl = only(app.template_json(app.stacks.api), "AWS::WAFv2::WebACL")["Properties"]
        return {acl["VisibilityConfig"]["MetricName"]} | {r["VisibilityConfig"]["MetricName"] for r in acl["Rules"]}

    default, variant = metric_names(default_app), metric_names(variant_app)
    assert all(name.startswith("FewClick") and not name.startswith("FewClickAlt") for name in default)
    assert all(name.startswith("FewClickAlt") for name in variant)
    assert not default & variant


def test_the_rate_limit_answers_429_in_the_contracts_shape(
    default_app: SynthesizedApp, variant_app: SynthesizedApp
) -> None:
    """An office behind one NAT that hits the per-IP rate is told to slow down (the UI backs off on
    429 + Retry-After), not refused as if it had no access (403)."""
    from fewclick_contract.api import ErrorCode

    for app, origin_header in ((default_app, True), (variant_app, False)):  # one UI origin / several
        acl = only(app.template_json(app.stacks.api), "AWS::WAFv2::WebACL")["Properties"]
        rate = next(rule for rule in acl["Rules"] if rule["Name"] == "RateLimitPerIp")
        custom = rate["Action"]["Block"]["CustomResponse"]
        assert custom["ResponseCode"] == 429
        body = acl["CustomResponseBodies"][custom["CustomResponseBodyKey"]]
        assert body["ContentType"] == "APPLICATION_JSON"
        assert json.loads(body["Content"])["error"]["code"] == ErrorCode.THROTTLED.value
        headers = {h["Name"]: h["Value"] for h in custom["ResponseHeaders"]}
        assert int(headers["Retry-After"]) > 0
        assert ("Access-Control-Allow-Origin" in headers) is origin_header
        if origin_header:
            assert headers["Access-Control-Allow-Origin"] == TEST_CONTEXT["fewclick:uiOrigins"][0]
