"""Small queries over synthesized CloudFormation templates (plain dicts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .synth import SynthesizedApp


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"] == resource_type
    }


def only(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every statement of every AWS::IAM::Policy and inline role policy in the template."""
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy":
            yield from properties["PolicyDocument"]["Statement"]
        if resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                yield from policy["PolicyDocument"]["Statement"]


def statements_with_action(template: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in policy_statements(template) if action in as_list(s["Action"])]


def resolve_cross_stack(app: SynthesizedApp, value: Any) -> Any:
    """Follow a cross-stack reference (weak `Fn::GetStackOutput` or strong `Fn::ImportValue`)
    to the value the producing stack exports; anything else is returned unchanged."""
    if not isinstance(value, dict):
        return value
    if "Fn::GetStackOutput" in value:
        ref = value["Fn::GetStackOutput"]
        producer = app.templates()[ref["StackName"]]
        return producer["Outputs"][ref["OutputName"]]["Value"]
    if "Fn::ImportValue" in value:
        export = value["Fn::ImportValue"]
        for template in app.templates().values():
            for output in template.get("Outputs", {}).values():
                if output.get("Export", {}).get("Name") == export:
                    return output["Value"]
        raise AssertionError(f"no stack exports {export!r}")
    return value
