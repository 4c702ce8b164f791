"""cdk-nag (AwsSolutions): zero unsuppressed findings; every suppression is reasoned and scoped."""

from __future__ import annotations

from typing import Any

import pytest

from .synth import SynthesizedApp


def test_no_unsuppressed_findings(any_app: SynthesizedApp) -> None:
    findings = any_app.nag_findings()
    if findings:
        pytest.fail(f"{len(findings)} unsuppressed cdk-nag finding(s):\n" + "\n".join(findings), pytrace=False)


def _suppressions(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [("<stack>", rule) for rule in template.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])]
    for logical_id, resource in template.get("Resources", {}).items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            found.append((logical_id, rule))
    return found


def test_suppressions_are_granular_and_explained(any_app: SynthesizedApp) -> None:
    for name, template in any_app.templates().items():
        for where, rule in _suppressions(template):
            assert where != "<stack>", f"{name}: stack-wide suppression {rule['id']}"
            assert len(rule["reason"]) >= 40, f"{name}/{where}: {rule['id']} needs a real reason"
            if rule["id"] in ("AwsSolutions-IAM4", "AwsSolutions-IAM5"):
                # Wildcard/managed-policy findings are suppressed finding by finding.
                assert rule.get("applies_to"), f"{name}/{where}: {rule['id']} without applies_to"


def test_every_suppression_is_used(any_app: SynthesizedApp) -> None:
    """A suppression that covers nothing is either stale or placed on the wrong resource."""
    used = any_app.nag_suppressions_used()
    unused = []
    for name, template in any_app.templates().items():
        for logical_id, rule in _suppressions(template):
            if not any(
                stack == name and where == logical_id and rule_id == rule["id"] and rule["reason"] in text
                for stack, where, rule_id, text in used
            ):
                unused.append(f"{name}/{logical_id}: {rule['id']} ({rule['reason'][:60]}...)")
    assert not unused, "unused cdk-nag suppressions:\n" + "\n".join(unused)
