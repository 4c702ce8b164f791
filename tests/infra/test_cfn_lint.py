"""cfn-lint on every synthesized template: zero findings."""

from __future__ import annotations

import re

import pytest
from cfnlint.api import ManualArgs, lint

from .synth import SynthesizedApp

# (rule, message pattern, why it is accepted). Keep this list short and specific.
ACCEPTED: tuple[tuple[str, str, str], ...] = (
    (
        "W3005",
        r"^'\w+Role\w*' dependency already enforced by a 'GetAtt' at 'Resources/\w+/Properties/Role(Arn)?'$",
        "aws-cdk-lib (Lambda functions, the provider framework's state machine) adds DependsOn on a role "
        "next to the role GetAtt so the role's separate policy resource is attached first; harmless.",
    ),
)


def _accepted(rule_id: str, message: str) -> bool:
    return any(rule_id == rule and re.search(pattern, message) for rule, pattern, _ in ACCEPTED)


def test_templates_pass_cfn_lint(any_app: SynthesizedApp) -> None:
    import json

    problems = []
    for name, template in sorted(any_app.templates().items()):
        for match in lint(json.dumps(template), config=ManualArgs(regions=["us-east-1", "eu-west-1"])):
            if not _accepted(match.rule.id, match.message):
                problems.append(f"{name}: {match.rule.id} {match.message} (at {'/'.join(map(str, match.path))})")
    if problems:
        pytest.fail(f"{len(problems)} cfn-lint finding(s):\n" + "\n".join(problems), pytrace=False)
