"""Synthesize the FewClick app in-process for the infrastructure tests (no Docker, no AWS).

The app gets the same context the CDK CLI would pass (`cdk.json`: feature flags and
`fewclick:*` defaults), then the test values below, then:

- `aws:cdk:bundling-stacks: []`: skip Lambda bundling (no pip download, no Docker);
- `@aws-cdk/core:annotationsInValidationReport: false`: with it on, the first cdk-nag error
  aborts synth; off, synth completes and `test_cdk_nag.py` lists every finding instead.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # after the environment above: jsii starts on import
from aws_cdk import cx_api
from aws_cdk.assertions import Template

import app as fewclick_app

# Explicit test values (independent of what a deployer puts in cdk.json), so snapshots and
# assertions only change when the architecture does.
TEST_CONTEXT: dict[str, Any] = {
    "fewclick:stackPrefix": "FewClick",
    "fewclick:account": None,
    "fewclick:region": None,
    "fewclick:instanceType": "ml.g4dn.xlarge",
    "fewclick:instanceCountMin": 1,
    "fewclick:instanceCountMax": 3,
    "fewclick:targetInvocationsPerInstance": 300,
    "fewclick:imageBuild": "asset",
    "fewclick:imageBuckets": ["fewclick-test-images", "fewclick-test-archive"],
    "fewclick:uiOrigins": ["https://label.example.com"],
    "fewclick:userPoolArn": None,
    "fewclick:stageName": "prod",
    "fewclick:throttleRateLimit": 50,
    "fewclick:throttleBurstLimit": 100,
    "fewclick:wafRateLimit": 2000,
    "fewclick:latencyAlarmP90Ms": 250,
    "fewclick:alarmEmail": None,
    "fewclick:logLevel": "INFO",
}

# The other branch of every switch: CodeBuild image, imported user pool, several UI origins,
# alarm e-mail, another stack prefix and instance type.
VARIANT_CONTEXT: dict[str, Any] = {
    **TEST_CONTEXT,
    "fewclick:stackPrefix": "FewClickAlt",
    "fewclick:instanceType": "ml.g5.xlarge",
    "fewclick:imageBuild": "codebuild",
    "fewclick:userPoolArn": "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123",
    "fewclick:uiOrigins": ["https://label.example.com", "http://localhost:8000"],
    "fewclick:alarmEmail": "oncall@example.com",
}

SYNTH_ONLY_CONTEXT: dict[str, Any] = {
    "aws:cdk:bundling-stacks": [],
    "@aws-cdk/core:annotationsInValidationReport": False,
}


@dataclass
class SynthesizedApp:
    app: cdk.App
    stacks: fewclick_app.FewClickStacks
    assembly: cx_api.CloudAssembly
    _templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def all_stacks(self) -> list[cdk.Stack]:
        return [self.stacks.model, self.stacks.api, self.stacks.monitoring]

    def template(self, stack: cdk.Stack) -> Template:
        return Template.from_stack(stack)

    def template_json(self, stack: cdk.Stack) -> dict[str, Any]:
        return self.templates()[stack.stack_name]

    def templates(self) -> dict[str, dict[str, Any]]:
        """{stack name: template} for every stack of the app (read once from the assembly)."""
        if not self._templates:
            for stack in self.all_stacks:
                artifact = self.assembly.get_stack_artifact(stack.artifact_id)
                self._templates[stack.stack_name] = json.loads(Path(artifact.template_full_path).read_text())
        return self._templates

    def nag_findings(self) -> list[str]:
        """Unsuppressed cdk-nag errors and warnings, one readable line each."""
        findings = []
        for stack in self.all_stacks:
            artifact = self.assembly.get_stack_artifact(stack.artifact_id)
            for message in artifact.messages:
                text = str(message.entry.data)
                if message.entry.type in ("aws:cdk:error", "aws:cdk:warning") and (
                    text.startswith("AwsSolutions-") or "AwsSolutions-" in text[:40]
                ):
                    findings.append(f"{message.level} {message.id}: {text.splitlines()[0]}")
        return findings

    def nag_suppressions_used(self) -> set[tuple[str, str, str, str]]:
        """(stack, logical id, rule id, report text) for every finding a suppression covered,
        read from cdk-nag's CSV reports (the reason column holds `[finding] reason`)."""
        used = set()
        for stack in self.all_stacks:
            artifact = self.assembly.get_stack_artifact(stack.artifact_id)
            logical_ids = {
                entry.path.lstrip("/"): str(entry.data) for entry in artifact.find_metadata_by_type("aws:cdk:logicalId")
            }
            report = Path(self.assembly.directory) / f"AwsSolutions-{stack.artifact_id}-NagReport.csv"
            with report.open(newline="") as rows:
                for row in csv.DictReader(rows):
                    if row["Compliance"] == "Suppressed":
                        used.add(
                            (
                                stack.stack_name,
                                logical_ids[row["Resource ID"]],
                                row["Rule ID"],
                                row["Exception Reason"],
                            )
                        )
        return used


def synth(context: Mapping[str, Any], outdir: Path) -> SynthesizedApp:
    app = cdk.App(
        context={**fewclick_app.project_context(), **context, **SYNTH_ONLY_CONTEXT},
        outdir=str(outdir),
    )
    stacks = fewclick_app.build_app(app)
    return SynthesizedApp(app=app, stacks=stacks, assembly=app.synth())
