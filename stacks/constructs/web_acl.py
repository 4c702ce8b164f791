"""WAFv2 web ACL in front of the API stage: AWS managed rules plus a per-IP rate limit."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )


def _managed_rule(
    name: str, priority: int, metric_prefix: str, count_only: Sequence[str] = ()
) -> wafv2.CfnWebACL.RuleProperty:
    overrides = [
        wafv2.CfnWebACL.RuleActionOverrideProperty(
            name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
        )
        for rule in count_only
    ]
    return wafv2.CfnWebACL.RuleProperty(
        name=name,
        priority=priority,
        statement=wafv2.CfnWebACL.StatementProperty(
            managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS", name=name, rule_action_overrides=overrides or None
            )
        ),
        # Managed groups carry their own actions; "none" keeps them instead of overriding.
        override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
        visibility_config=_visibility(f"{metric_prefix}{name}"),
    )


class ApiWebAcl(Construct):
    """Regional web ACL associated with one API Gateway stage (`resource_arn`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_arn: str,
        rate_limit_per_5_minutes: int,
        common_rules_count_only: Sequence[str] = (),
        metric_prefix: str = "FewClick",
    ) -> None:
        """`common_rules_count_only`: rules of AWSManagedRulesCommonRuleSet that only count
        (are logged in metrics) instead of blocking, for traffic the API legitimately sends."""
        super().__init__(scope, construct_id)
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            description="FewClick API: AWS managed common and known-bad-input rules, per-IP rate limit",
            visibility_config=_visibility(f"{metric_prefix}WebAcl"),
            rules=[
                # Rate limit first: a flood is blocked before the managed rules spend capacity on it.
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=0,
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP",
                            # Requests per source IP per 5 minutes; an active labeler clicks
                            # about once a second, i.e. ~300.
                            limit=rate_limit_per_5_minutes,
                            evaluation_window_sec=300,
                        )
                    ),
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    visibility_config=_visibility(f"{metric_prefix}RateLimitPerIp"),
                ),
                _managed_rule("AWSManagedRulesCommonRuleSet", 1, metric_prefix, common_rules_count_only),
                _managed_rule("AWSManagedRulesKnownBadInputsRuleSet", 2, metric_prefix),
            ],
        )
        self.association = wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=resource_arn, web_acl_arn=self.web_acl.attr_arn
        )
