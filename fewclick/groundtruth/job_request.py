"""Build a SageMaker CreateLabelingJob request for a FewClick segmentation job (pure; no AWS calls).

Field names, limits and patterns follow the CreateLabelingJob API (botocore's sagemaker service model,
which the tests validate the request against) and the custom-workflow guide
https://docs.aws.amazon.com/sagemaker/latest/dg/sms-custom-templates-step3.html: UiTemplateS3Uri
(our template), PreHumanTaskLambdaArn and AnnotationConsolidationConfig (our two Lambdas).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from fewclick_contract.labelmap import label_category_config, validate_labels
from fewclick_contract.task_token import TOKEN_SLACK_S

from .stack_outputs import JOBS_PREFIX, OUTPUT_PREFIX, LabelingStackOutputs

_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_LABEL_ATTRIBUTE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}$")
_WORKTEAM_ARN = re.compile(r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:workteam/.+$")
# botocore's sagemaker model, HumanTaskConfig.TaskTitle.
_TASK_TITLE = re.compile(r"[\t\n\r\x20-\ud7ff\ue000-\ufffd]*")
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$")


class JobRequestError(ValueError):
    pass


@dataclass(frozen=True)
class JobOptions:
    manifest_uri: str
    labels: list[str] | None = None  # None: the stack's default labels (fewclick:labelClasses)
    workteam_arn: str | None = None
    job_name: str | None = None
    label_attribute_name: str | None = None
    workers_per_object: int = 1
    task_time_limit_s: int = 3600
    task_availability_s: int = 24 * 3600
    max_concurrent_tasks: int | None = None
    max_objects: int | None = None
    title: str = "Segment objects with a few clicks"
    description: str = (
        "Click 4 extreme points of each object, then correct the mask with a few clicks. Label every object "
        "of the listed classes."
    )
    keywords: list[str] = field(default_factory=lambda: ["image", "segmentation", "FewClick"])


@dataclass(frozen=True)
class JobPlan:
    """What `create` will do: write ``label_config`` to ``label_config_uri``, then call
    CreateLabelingJob with ``request``."""

    request: dict[str, Any]
    label_config_uri: str
    label_config: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "LabelCategoryConfig": {"S3Uri": self.label_config_uri, "Body": self.label_config},
            "CreateLabelingJob": self.request,
        }


def default_job_name(now: float | None = None) -> str:
    return time.strftime("fewclick-%Y%m%d-%H%M%S", time.gmtime(now))


def _bucket_of(uri: str, what: str) -> str:
    match = _S3_URI.fullmatch(uri or "")
    if not match:
        raise JobRequestError(f"{what} must be an s3://bucket/key URI, not {uri!r}")
    return match["bucket"]


def build_job_plan(options: JobOptions, outputs: LabelingStackOutputs) -> JobPlan:
    """Validate ``options`` against the deployed stack and build the request; raises JobRequestError."""
    try:
        labels = validate_labels(options.labels if options.labels is not None else outputs.default_labels)
    except ValueError as exc:
        raise JobRequestError(str(exc)) from None
    job_name = options.job_name or default_job_name()
    if not _JOB_NAME.fullmatch(job_name):
        raise JobRequestError(f"job name {job_name!r}: 1-63 letters, digits and hyphens, starting with a letter/digit")
    # Semantic segmentation's output names its label map "<attribute>": "s3://...png" with a name
    # ending in -ref (CreateLabelingJob's LabelAttributeName), which augmented-manifest training expects.
    attribute = options.label_attribute_name or f"{job_name}-ref"
    if not _LABEL_ATTRIBUTE.fullmatch(attribute) or not attribute.endswith("-ref"):
        raise JobRequestError(f"label attribute name {attribute!r}: letters, digits, hyphens, ending in -ref")

    manifest_bucket = _bucket_of(options.manifest_uri, "--manifest")
    readable = {outputs.bucket, *outputs.image_buckets}
    if manifest_bucket not in readable:
        # The Ground Truth role may read only these buckets (least privilege): the job would fail later.
        raise JobRequestError(
            f"the manifest's bucket {manifest_bucket} is not readable by the job's role; put it in "
            f"s3://{outputs.bucket}/manifests/ or one of the image buckets ({', '.join(outputs.image_buckets)})"
        )
    workteam = options.workteam_arn or outputs.workteam_arn
    if not workteam:
        raise JobRequestError("no --workteam-arn given and the stack created no workteam")
    if not _WORKTEAM_ARN.fullmatch(workteam):
        raise JobRequestError(f"{workteam!r} is not a SageMaker workteam ARN")
    if not 1 <= options.workers_per_object <= 9:
        raise JobRequestError("--workers-per-object must be 1..9 (CreateLabelingJob limit)")
    # Custom labeling jobs: at most 8 hours per task (HumanTaskConfig.TaskTimeLimitInSeconds).
    if not 30 <= options.task_time_limit_s <= 8 * 3600:
        raise JobRequestError("--task-time-limit must be 30..28800 seconds")
    if not 60 <= options.task_availability_s <= 30 * 24 * 3600:
        raise JobRequestError("--task-availability must be 60 s .. 30 days")
    needed = options.task_availability_s + options.task_time_limit_s + TOKEN_SLACK_S
    if needed > outputs.max_token_ttl_s:
        # The pre-annotation Lambda mints tokens when Ground Truth prepares tasks; a task opened
        # after its token expired could not segment anything.
        raise JobRequestError(
            f"tasks may stay open {needed} s (availability + time limit + {TOKEN_SLACK_S} s), longer than the "
            f"stack's task-token lifetime of {outputs.max_token_ttl_s} s: lower --task-availability or redeploy "
            "with a larger fewclick:taskTokenMaxTtlHours"
        )
    if options.max_concurrent_tasks is not None and not 1 <= options.max_concurrent_tasks <= 5000:
        raise JobRequestError("--max-concurrent-tasks must be 1..5000")
    if options.max_objects is not None and options.max_objects < 1:
        raise JobRequestError("--max-objects must be at least 1 (StoppingConditions.MaxHumanLabeledObjectCount)")
    # CreateLabelingJob's limits, said here rather than cut silently or refused by AWS after the
    # label file was already written.
    for flag, text, limit in (("--title", options.title, 128), ("--description", options.description, 255)):
        if not text.strip():
            raise JobRequestError(f"{flag} must not be empty (workers read it)")
        if len(text) > limit:
            raise JobRequestError(f"{flag} is {len(text)} characters; CreateLabelingJob takes at most {limit}")
    if not _TASK_TITLE.fullmatch(options.title):
        raise JobRequestError(
            "--title may hold letters, digits, punctuation and spaces, but no control characters and no "
            "characters beyond U+FFFD such as emoji (CreateLabelingJob's TaskTitle pattern)"
        )
    keywords = [k.strip() for k in options.keywords if k.strip()][:5] or ["segmentation"]

    label_config_uri = f"s3://{outputs.bucket}/{JOBS_PREFIX}{job_name}/label-categories.json"
    human: dict[str, Any] = {
        "WorkteamArn": workteam,
        "UiConfig": {"UiTemplateS3Uri": outputs.template_uri},
        "PreHumanTaskLambdaArn": outputs.pre_annotation_arn,
        "TaskKeywords": keywords,
        "TaskTitle": options.title,
        "TaskDescription": options.description,
        "NumberOfHumanWorkersPerDataObject": options.workers_per_object,
        "TaskTimeLimitInSeconds": options.task_time_limit_s,
        "TaskAvailabilityLifetimeInSeconds": options.task_availability_s,
        "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": outputs.consolidation_arn},
    }
    if options.max_concurrent_tasks is not None:
        human["MaxConcurrentTaskCount"] = options.max_concurrent_tasks
    request: dict[str, Any] = {
        "LabelingJobName": job_name,
        "LabelAttributeName": attribute,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": options.manifest_uri}}},
        "OutputConfig": {"S3OutputPath": f"s3://{outputs.bucket}/{OUTPUT_PREFIX}"},
        "RoleArn": outputs.role_arn,
        "LabelCategoryConfigS3Uri": label_config_uri,
        "HumanTaskConfig": human,
        "Tags": [{"Key": "project", "Value": "fewclick"}],
    }
    if options.max_objects is not None:
        request["StoppingConditions"] = {"MaxHumanLabeledObjectCount": options.max_objects}
    return JobPlan(request=request, label_config_uri=label_config_uri, label_config=label_category_config(labels))
