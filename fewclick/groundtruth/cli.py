"""`fewclick labeling-job create`: launch a Ground Truth job that uses the FewClick task template.

    fewclick labeling-job create --manifest s3://bucket/manifests/cars.manifest \\
        --labels person,car --workteam-arn arn:aws:sagemaker:...:workteam/private-crowd/fewclick \\
        [--stack-name FewClick-Labeling | --outputs-file cdk-outputs.json] [--dry-run]

It reads the labeling stack's outputs (CloudFormation DescribeStacks, or a `cdk deploy --outputs-file`
file), writes the label category file to the labeling bucket and calls CreateLabelingJob.
``--dry-run`` prints both as JSON and calls nothing that writes (with --outputs-file, nothing at all).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .job_request import JobOptions, JobPlan, JobRequestError, build_job_plan
from .stack_outputs import (
    TEMPLATE_URI,
    LabelingStackOutputs,
    StackOutputsError,
    outputs_from_cloudformation,
    outputs_from_file,
)

DEFAULT_STACK_NAME = "FewClick-Labeling"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="labeling_action", metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a Ground Truth labeling job",
        description="Create a Ground Truth labeling job "
        "that uses the FewClick task template, pre-annotation and consolidation Lambdas.",
    )
    create.add_argument("--manifest", required=True, help="input manifest, s3://bucket/key (lines with source-ref)")
    create.add_argument(
        "--labels",
        default=None,
        help="comma-separated classes, e.g. person,car (default: the stack's fewclick:labelClasses)",
    )
    create.add_argument(
        "--workteam-arn", default=None, help="private workteam ARN (default: the stack's, if it created one)"
    )
    create.add_argument(
        "--stack-name",
        default=None,
        help=f"labeling stack (default: {DEFAULT_STACK_NAME}; with --outputs-file, the one labeling stack in the file)",
    )
    create.add_argument(
        "--outputs-file",
        type=Path,
        default=None,
        help="read the outputs from `cdk deploy --outputs-file` "
        "instead of CloudFormation (with --dry-run: fully offline)",
    )
    create.add_argument("--job-name", default=None, help="default: fewclick-YYYYmmdd-HHMMSS (UTC)")
    create.add_argument(
        "--label-attribute-name", default=None, help="output manifest key, ending in -ref (default: <job name>-ref)"
    )
    create.add_argument("--workers-per-object", type=int, default=1, help="workers per image, 1-9 (default: 1)")
    create.add_argument("--task-time-limit", type=int, default=3600, help="seconds per task (default: 3600)")
    create.add_argument(
        "--task-availability", type=int, default=24 * 3600, help="seconds a task stays offered (default: 86400)"
    )
    create.add_argument("--max-concurrent-tasks", type=int, default=None, help="batch size (default: Ground Truth's)")
    create.add_argument("--max-objects", type=int, default=None, help="stop after this many labeled images")
    create.add_argument("--title", default=JobOptions.title, help="task title shown to workers")
    create.add_argument("--description", default=JobOptions.description, help="task description shown to workers")
    create.add_argument("--region", default=None, help="AWS region (default: your AWS configuration's)")
    create.add_argument("--profile", default=None, help="AWS profile")
    create.add_argument("--dry-run", action="store_true", help="print the requests as JSON; create nothing")


def _session(args: argparse.Namespace) -> Any:
    import boto3

    return boto3.session.Session(profile_name=args.profile, region_name=args.region)


def _options(args: argparse.Namespace) -> JobOptions:
    return JobOptions(
        manifest_uri=args.manifest,
        labels=args.labels.split(",") if args.labels is not None else None,
        workteam_arn=args.workteam_arn,
        job_name=args.job_name,
        label_attribute_name=args.label_attribute_name,
        workers_per_object=args.workers_per_object,
        task_time_limit_s=args.task_time_limit,
        task_availability_s=args.task_availability,
        max_concurrent_tasks=args.max_concurrent_tasks,
        max_objects=args.max_objects,
        title=args.title,
        description=args.description,
    )


def plan_job(args: argparse.Namespace, session: Any | None) -> JobPlan:
    """Read the stack outputs and build the plan (the session is only used without --outputs-file)."""
    if args.outputs_file is not None:
        name = args.stack_name or _only_labeling_stack(args.outputs_file)
        raw = outputs_from_file(args.outputs_file, name)
    else:
        assert session is not None
        name = args.stack_name or DEFAULT_STACK_NAME
        raw = outputs_from_cloudformation(session.client("cloudformation"), name)
    outputs = LabelingStackOutputs.from_mapping(raw, name)
    return build_job_plan(_options(args), outputs)


def _only_labeling_stack(path: Path) -> str:
    """With --outputs-file and no --stack-name: the one stack whose outputs are the labeling stack's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StackOutputsError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise StackOutputsError(f"{path}: expected `cdk deploy --outputs-file` JSON (stack name -> outputs)")
    names = [n for n, values in data.items() if isinstance(values, dict) and TEMPLATE_URI in values]
    if len(names) != 1:
        raise StackOutputsError(f"{path}: expected one labeling stack, found {names or 'none'}; pass --stack-name")
    return str(names[0])


def create_job(plan: JobPlan, session: Any) -> str:
    """Write the label category file, then CreateLabelingJob; returns the job ARN.

    The file goes first: the pre-annotation Lambda reads it (through DescribeLabelingJob) as soon as
    Ground Truth starts preparing tasks.
    """
    # A job of this name would have its label file replaced below (its pre-annotation Lambda re-reads
    # it), and only then would CreateLabelingJob refuse the name: ask first.
    name = plan.request["LabelingJobName"]
    try:
        existing = session.client("sagemaker").describe_labeling_job(LabelingJobName=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ResourceNotFound", "ValidationException"):
            raise
    else:
        raise JobRequestError(
            f"a labeling job named {name} exists already ({existing.get('LabelingJobStatus', 'unknown status')}); "
            "pick another --job-name"
        )
    bucket, _, key = plan.label_config_uri.removeprefix("s3://").partition("/")
    session.client("s3").put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(plan.label_config, indent=2).encode("utf-8"),
        ContentType="application/json",
    )
    response = session.client("sagemaker").create_labeling_job(**plan.request)
    return str(response["LabelingJobArn"])


def run(args: argparse.Namespace) -> int:
    if getattr(args, "labeling_action", None) != "create":
        print("usage: fewclick labeling-job create --manifest s3://... [--labels a,b] [...]", file=sys.stderr)
        return 2
    try:
        session = None if (args.dry_run and args.outputs_file is not None) else _session(args)
        plan = plan_job(args, session)
        if args.dry_run:
            print(json.dumps(plan.as_json(), indent=2))
            return 0
        arn = create_job(plan, session)
    except (JobRequestError, StackOutputsError) as exc:
        print(f"fewclick labeling-job: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        # No credentials, no such stack, a refused request: the AWS message says what to fix.
        print(f"fewclick labeling-job: AWS error: {exc}", file=sys.stderr)
        return 1
    print(arn)
    return 0
