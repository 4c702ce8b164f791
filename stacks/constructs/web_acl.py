"""WAFv2 web ACL in front of the API stage: AWS managed rules plus a per-IP rate limit."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from fewclick_contract.api import ErrorCode


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


# The rate rule counts over 5 minutes; a blocked address is let through again once its rate falls.
RATE_RETRY_AFTER_S = 60
THROTTLED_BODY_KEY = "throttled"
THROTTLED_BODY = json.dumps(
    {"error": {"code": ErrorCode.THROTTLED.value, "message": "too many requests from this address; retry shortly"}}
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
        ui_origins: Sequence[str] = (),
    ) -> None:
        """`common_rules_count_only`: rules of AWSManagedRulesCommonRuleSet that only count
        (are logged in metrics) instead of blocking, for traffic the API legitimately sends.
        `ui_origins`: with exactly one, the rate limit's 429 carries it, so that page can read it
        (with several a static header cannot pick; the page then sees a network error and retries)."""
        super().__init__(scope, construct_id)
        # A labeler behind a busy NAT who hits the per-IP rate gets "slow down" (429, the contract's
        # THROTTLED body, Retry-After), which the UI backs off from, not a 403 "access denied".
        throttled_headers = [
            wafv2.CfnWebACL.CustomHTTPHeaderProperty(name="Retry-After", value=str(RATE_RETRY_AFTER_S))
        ]
        if len(ui_origins) == 1:
            throttled_headers.append(
                wafv2.CfnWebACL.CustomHTTPHeaderProperty(name="Access-Control-Allow-Origin", value=ui_origins[0])
            )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            description="FewClick API: AWS managed common and known-bad-input rules, per-IP rate limit",
            visibility_config=_visibility(f"{metric_prefix}WebAcl"),
            custom_response_bodies={
                THROTTLED_BODY_KEY: wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content=THROTTLED_BODY
                )
            },
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
                    action=wafv2.CfnWebACL.RuleActionProperty(
                        block=wafv2.CfnWebACL.BlockActionProperty(
                            custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                                response_code=429,
                                custom_response_body_key=THROTTLED_BODY_KEY,
                                response_headers=throttled_headers,
                            )
                        )
                    ),
                    visibility_config=_visibility(f"{metric_prefix}RateLimitPerIp"),
                ),
                _managed_rule("AWSManagedRulesCommonRuleSet", 1, metric_prefix, common_rules_count_only),
                _managed_rule("AWSManagedRulesKnownBadInputsRuleSet", 2, metric_prefix),
            ],
        )
        self.association = wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=resource_arn, web_acl_arn=self.web_acl.attr_arn
        )
