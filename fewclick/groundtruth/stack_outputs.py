"""The labeling stack's CloudFormation outputs: the contract between `stacks/labeling_stack.py`
(which declares them) and `fewclick labeling-job create` (which reads them).

Outputs are read with CloudFormation DescribeStacks, or offline from the file
`cdk deploy --outputs-file cdk-outputs.json` writes (``{"<stack name>": {"<key>": "<value>"}}``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUCKET = "LabelingBucketName"
TEMPLATE_URI = "TaskTemplateS3Uri"
PRE_ANNOTATION_ARN = "PreAnnotationFunctionArn"
CONSOLIDATION_ARN = "ConsolidationFunctionArn"
ROLE_ARN = "GroundTruthRoleArn"
API_URL = "TaskApiUrl"
IMAGE_BUCKETS = "ImageBuckets"
MAX_TOKEN_TTL = "TaskTokenMaxTtlSeconds"
DEFAULT_LABELS = "DefaultLabels"  # fewclick:labelClasses: used when `create` gets no --labels
WORKTEAM_ARN = "WorkteamArn"  # when the stack created a workteam or was given fewclick:workteamArn
WORKER_PORTAL_URL = "WorkerPortalUrl"  # only when the stack created a workforce

REQUIRED = (
    BUCKET,
    TEMPLATE_URI,
    PRE_ANNOTATION_ARN,
    CONSOLIDATION_ARN,
    ROLE_ARN,
    API_URL,
    IMAGE_BUCKETS,
    MAX_TOKEN_TTL,
)
# Where the job launcher puts things in the labeling bucket (the stack grants exactly these prefixes).
OUTPUT_PREFIX = "output/"
JOBS_PREFIX = "jobs/"
MANIFESTS_PREFIX = "manifests/"
TEMPLATE_KEY = "templates/fewclick-task.liquid.html"


class StackOutputsError(ValueError):
    pass


@dataclass(frozen=True)
class LabelingStackOutputs:
    bucket: str
    template_uri: str
    pre_annotation_arn: str
    consolidation_arn: str
    role_arn: str
    api_url: str
    image_buckets: tuple[str, ...]
    max_token_ttl_s: int
    workteam_arn: str | None = None
    default_labels: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, outputs: Mapping[str, str], stack_name: str) -> LabelingStackOutputs:
        missing = [key for key in REQUIRED if not outputs.get(key)]
        if missing:
            raise StackOutputsError(
                f"stack {stack_name} lacks the outputs {', '.join(missing)}: is it the FewClick labeling stack "
                "(deployed with -c fewclick:labeling=true)?"
            )
        try:
            ttl = int(outputs[MAX_TOKEN_TTL])
        except ValueError:
            raise StackOutputsError(f"output {MAX_TOKEN_TTL} is not a number: {outputs[MAX_TOKEN_TTL]!r}") from None
        return cls(
            bucket=outputs[BUCKET],
            template_uri=outputs[TEMPLATE_URI],
            pre_annotation_arn=outputs[PRE_ANNOTATION_ARN],
            consolidation_arn=outputs[CONSOLIDATION_ARN],
            role_arn=outputs[ROLE_ARN],
            api_url=outputs[API_URL],
            image_buckets=tuple(b.strip() for b in outputs[IMAGE_BUCKETS].split(",") if b.strip()),
            max_token_ttl_s=ttl,
            workteam_arn=outputs.get(WORKTEAM_ARN) or None,
            default_labels=tuple(x.strip() for x in outputs.get(DEFAULT_LABELS, "").split(",") if x.strip()),
        )


def outputs_from_cloudformation(client: Any, stack_name: str) -> dict[str, str]:
    """{OutputKey: OutputValue} of a deployed stack (CloudFormation DescribeStacks)."""
    stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    if not stacks:
        raise StackOutputsError(f"no stack named {stack_name}")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def outputs_from_file(path: Path, stack_name: str) -> dict[str, str]:
    """The stack's entry of a `cdk deploy --outputs-file` JSON file."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StackOutputsError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get(stack_name), dict):
        known = ", ".join(sorted(data)) if isinstance(data, dict) else "none"
        raise StackOutputsError(f"{path} has no outputs for stack {stack_name} (stacks in it: {known})")
    return {str(k): str(v) for k, v in data[stack_name].items()}
