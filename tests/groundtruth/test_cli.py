"""`fewclick labeling-job create`: the CreateLabelingJob request is valid against botocore's sagemaker
service model, --dry-run prints it offline, and the real path calls S3 then SageMaker (Stubber)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.model import Shape
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from fewclick.cli import main
from fewclick.groundtruth import stack_outputs as keys
from fewclick.groundtruth.job_request import JobOptions, JobRequestError, build_job_plan
from fewclick.groundtruth.stack_outputs import LabelingStackOutputs

STACK = "FewClick-Labeling"
ACCOUNT = "111122223333"
OUTPUTS = {
    keys.BUCKET: "fewclick-labeling-test",
    keys.TEMPLATE_URI: "s3://fewclick-labeling-test/templates/fewclick-task.liquid.html",
    keys.PRE_ANNOTATION_ARN: f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:FewClick-Labeling-PreAnnotation",
    keys.CONSOLIDATION_ARN: f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:FewClick-Labeling-Consolidation",
    keys.ROLE_ARN: f"arn:aws:iam::{ACCOUNT}:role/FewClick-Labeling-GroundTruthRole",
    keys.API_URL: "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/",
    keys.IMAGE_BUCKETS: "fewclick-test-images,fewclick-test-archive",
    keys.MAX_TOKEN_TTL: str(7 * 86400),
}
WORKTEAM = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/fewclick"
MANIFEST = "s3://fewclick-test-images/manifests/street.manifest"


def sagemaker_input_shape() -> Shape:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateLabelingJob").input_shape


def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    """The model's patterns are Java regexes; the few Python cannot read (\\p{L} in tag keys) are skipped."""
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def check_constraints(value: Any, shape: Shape, path: str = "") -> list[str]:
    """What validate_parameters leaves out: patterns and maxima of the service model."""
    problems: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                problems += check_constraints(value[name], member, f"{path}.{name}")
    elif shape.type_name == "list":
        problems += [f"{path}: more than {meta['max']} items"] if len(value) > meta.get("max", 1e9) else []
        for i, item in enumerate(value):
            problems += check_constraints(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "string":
        pattern = _compiled(meta.get("pattern"))
        if pattern is not None and not pattern.fullmatch(value):
            problems.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if len(value) > meta.get("max", 1e9):
            problems.append(f"{path}: longer than {meta['max']}")
    elif shape.type_name == "integer" and value > meta.get("max", 1e18):
        problems.append(f"{path}: above {meta['max']}")
    return problems


def plan(**changes: Any) -> Any:
    fields: dict[str, Any] = {
        "manifest_uri": MANIFEST,
        "labels": ["person", "car"],
        "workteam_arn": WORKTEAM,
        "job_name": "street-scenes-1",
        **changes,
    }
    options = JobOptions(**fields)
    return build_job_plan(options, LabelingStackOutputs.from_mapping(OUTPUTS, STACK))


def test_request_is_valid_for_the_sagemaker_service_model() -> None:
    request = plan(workers_per_object=3, max_concurrent_tasks=100, max_objects=500).request
    # Semantic segmentation output: the label map's URI under a name ending in -ref.
    assert request["LabelAttributeName"] == request["LabelingJobName"] + "-ref"
    shape = sagemaker_input_shape()
    validate_parameters(request, shape)  # raises ParamValidationError on any type/required/min problem
    assert check_constraints(request, shape) == []

    human = request["HumanTaskConfig"]
    assert human["UiConfig"] == {"UiTemplateS3Uri": OUTPUTS[keys.TEMPLATE_URI]}
    assert human["PreHumanTaskLambdaArn"] == OUTPUTS[keys.PRE_ANNOTATION_ARN]
    consolidation = human["AnnotationConsolidationConfig"]
    assert consolidation == {"AnnotationConsolidationLambdaArn": OUTPUTS[keys.CONSOLIDATION_ARN]}
    assert human["NumberOfHumanWorkersPerDataObject"] == 3
    assert request["RoleArn"] == OUTPUTS[keys.ROLE_ARN]
    assert request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"] == MANIFEST
    assert request["OutputConfig"]["S3OutputPath"] == "s3://fewclick-labeling-test/output/"
    assert request["LabelCategoryConfigS3Uri"] == (
        "s3://fewclick-labeling-test/jobs/street-scenes-1/label-categories.json"
    )


def test_label_category_file_is_the_documented_format() -> None:
    assert plan().label_config == {
        "document-version": "2018-11-28",
        "labels": [{"label": "person"}, {"label": "car"}],
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"manifest_uri": "s3://someone-elses-bucket/m.manifest"}, "not readable"),
        ({"manifest_uri": "/tmp/m.manifest"}, "s3://bucket/key"),
        ({"labels": ["person", "Person"]}, "twice"),
        ({"labels": ["BACKGROUND"]}, "reserved"),
        ({"labels": ["<script>"]}, "letters"),
        ({"workers_per_object": 10}, "1..9"),
        ({"task_time_limit_s": 9 * 3600}, "28800"),
        ({"task_availability_s": 7 * 86400}, "task-token lifetime"),
        ({"job_name": "bad_name!"}, "job name"),
        ({"workteam_arn": "arn:aws:iam::111122223333:role/x"}, "workteam"),
        ({"max_objects": 0}, "--max-objects must be at least 1"),
        ({"label_attribute_name": "street-labels"}, "ending in -ref"),
        ({"title": "  "}, "--title must not be empty"),
        ({"description": ""}, "--description must not be empty"),
        ({"title": "t" * 129}, "129 characters"),
        ({"description": "d" * 256}, "at most 255"),
        ({"title": "Segment \U0001f697 cars"}, "TaskTitle pattern"),
        ({"title": "bell\x07"}, "TaskTitle pattern"),
        ({"job_name": "abc\n"}, "job name"),
        ({"manifest_uri": "s3://labeling-input/m.manifest\n"}, "s3://bucket/key"),
    ],
)
def test_invalid_jobs_are_refused_before_any_call(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(JobRequestError, match=message):
        plan(**changes)


def test_workteam_comes_from_the_stack_when_it_made_one() -> None:
    outputs = LabelingStackOutputs.from_mapping({**OUTPUTS, keys.WORKTEAM_ARN: WORKTEAM}, STACK)
    request = build_job_plan(JobOptions(manifest_uri=MANIFEST, labels=["car"]), outputs).request
    assert request["HumanTaskConfig"]["WorkteamArn"] == WORKTEAM
    assert re.fullmatch(r"fewclick-\d{8}-\d{6}", request["LabelingJobName"])
    with pytest.raises(JobRequestError, match="workteam"):
        build_job_plan(
            JobOptions(manifest_uri=MANIFEST, labels=["car"]), LabelingStackOutputs.from_mapping(OUTPUTS, STACK)
        )


def test_dry_run_offline_prints_the_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs_file = tmp_path / "cdk-outputs.json"
    outputs_file.write_text(json.dumps({"FewClick-Api": {"ApiUrl": "x"}, STACK: OUTPUTS}))
    code = main(
        [
            "labeling-job",
            "create",
            "--manifest",
            MANIFEST,
            "--labels",
            "person,car",
            "--workteam-arn",
            WORKTEAM,
            "--job-name",
            "street-scenes-1",
            "--outputs-file",
            str(outputs_file),
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    printed = json.loads(out)
    assert printed["CreateLabelingJob"] == plan().request
    assert printed["LabelCategoryConfig"]["S3Uri"].endswith("/jobs/street-scenes-1/label-categories.json")


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs_file = tmp_path / "cdk-outputs.json"
    outputs_file.write_text(json.dumps({STACK: {k: v for k, v in OUTPUTS.items() if k != keys.ROLE_ARN}}))
    code = main(
        [
            "labeling-job",
            "create",
            "--manifest",
            MANIFEST,
            "--labels",
            "car",
            "--workteam-arn",
            WORKTEAM,
            "--outputs-file",
            str(outputs_file),
            "--dry-run",
        ]
    )
    assert code == 2
    assert "GroundTruthRoleArn" in capsys.readouterr().err

    # A JSON file of another shape (not `cdk deploy --outputs-file`'s) is a message, not a traceback.
    outputs_file.write_text("[1, 2]")
    code = main(["labeling-job", "create", "--manifest", MANIFEST, "--outputs-file", str(outputs_file), "--dry-run"])
    assert code == 2
    assert "expected `cdk deploy --outputs-file` JSON" in capsys.readouterr().err


class StubSession:
    """A boto3 session whose clients are stubbed (what the CLI gets from boto3.session.Session)."""

    def __init__(self) -> None:
        self.clients = {
            name: boto3.client(name, region_name="us-east-1") for name in ("cloudformation", "s3", "sagemaker")
        }
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}

    def client(self, name: str) -> Any:
        return self.clients[name]


def _expect_stack_outputs(session: StubSession) -> None:
    """The CLI's first call: DescribeStacks answering the labeling stack's outputs."""
    session.stubs["cloudformation"].add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": STACK,
                    "CreationTime": "2025-01-01T00:00:00Z",
                    "StackStatus": "CREATE_COMPLETE",
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()],
                }
            ]
        },
        {"StackName": STACK},
    )


def test_create_reads_the_stack_writes_labels_and_creates_the_job(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    session = StubSession()
    expected = plan().request
    _expect_stack_outputs(session)
    session.stubs["s3"].add_response(
        "put_object",
        {},
        {
            "Bucket": "fewclick-labeling-test",
            "Key": "jobs/street-scenes-1/label-categories.json",
            "Body": json.dumps(plan().label_config, indent=2).encode(),
            "ContentType": "application/json",
        },
    )
    arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:labeling-job/street-scenes-1"
    session.stubs["sagemaker"].add_client_error(
        "describe_labeling_job",
        service_error_code="ResourceNotFound",
        expected_params={"LabelingJobName": "street-scenes-1"},
    )
    session.stubs["sagemaker"].add_response("create_labeling_job", {"LabelingJobArn": arn}, expected)

    import fewclick.groundtruth.cli as cli

    monkeypatch.setattr(cli, "_session", lambda args: session)
    for stub in session.stubs.values():
        stub.activate()
    code = main(
        [
            "labeling-job",
            "create",
            "--manifest",
            MANIFEST,
            "--labels",
            "person,car",
            "--workteam-arn",
            WORKTEAM,
            "--job-name",
            "street-scenes-1",
            "--stack-name",
            STACK,
        ]
    )
    for stub in session.stubs.values():
        stub.assert_no_pending_responses()
    assert code == 0
    assert capsys.readouterr().out.strip() == arn


def test_an_existing_job_name_is_refused_before_its_label_file_is_touched(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-using a running job's name used to replace its label file (which its pre-annotation Lambda
    re-reads) before CreateLabelingJob refused the name."""
    session = StubSession()
    _expect_stack_outputs(session)
    existing = {
        "LabelingJobStatus": "InProgress",
        "LabelCounters": {},
        "CreationTime": "2025-01-01T00:00:00Z",
        "LastModifiedTime": "2025-01-01T00:00:00Z",
        "JobReferenceCode": "ref",
        "LabelingJobName": "street-scenes-1",
        "LabelingJobArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:labeling-job/street-scenes-1",
        "LabelAttributeName": "street-scenes-1-ref",
        "InputConfig": plan().request["InputConfig"],
        "OutputConfig": plan().request["OutputConfig"],
        "RoleArn": plan().request["RoleArn"],
        "HumanTaskConfig": plan().request["HumanTaskConfig"],
    }
    session.stubs["sagemaker"].add_response("describe_labeling_job", existing, {"LabelingJobName": "street-scenes-1"})
    # No S3 response is stubbed: a put_object would fail the test.
    import fewclick.groundtruth.cli as cli

    monkeypatch.setattr(cli, "_session", lambda args: session)
    for stub in session.stubs.values():
        stub.activate()
    argv = ["labeling-job", "create", "--manifest", MANIFEST, "--labels", "dog,cat", "--workteam-arn", WORKTEAM]
    code = main([*argv, "--job-name", "street-scenes-1", "--stack-name", STACK])
    for stub in session.stubs.values():
        stub.assert_no_pending_responses()
    assert code == 2
    err = capsys.readouterr().err
    assert "a labeling job named street-scenes-1 exists already (InProgress); pick another --job-name" in err


def test_labels_default_to_the_stack_labels() -> None:
    outputs = LabelingStackOutputs.from_mapping({**OUTPUTS, keys.DEFAULT_LABELS: "person,car"}, STACK)
    job = build_job_plan(JobOptions(manifest_uri=MANIFEST, workteam_arn=WORKTEAM), outputs)
    assert job.label_config["labels"] == [{"label": "person"}, {"label": "car"}]
    with pytest.raises(JobRequestError, match="at least one label"):
        build_job_plan(
            JobOptions(manifest_uri=MANIFEST, workteam_arn=WORKTEAM), LabelingStackOutputs.from_mapping(OUTPUTS, STACK)
        )
