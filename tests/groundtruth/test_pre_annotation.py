"""The pre-annotation Lambda, fed Ground Truth's documented request; AWS calls answered by Stubber."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from fewclick_contract.task_token import TOKEN_SLACK_S, check_scope, verify_task_token

from .helpers import IMAGE_BUCKET, JOB_ARN, JOB_NAME, LABELING_BUCKET, SECRET, load_event

LABEL_CONFIG_URI = f"s3://{LABELING_BUCKET}/jobs/{JOB_NAME}/label-categories.json"
LABEL_CONFIG = {"document-version": "2018-11-28", "labels": [{"label": "person"}, {"label": "car"}]}


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


class Stubs:
    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        self.secrets = boto3.client("secretsmanager", region_name="us-east-1")
        self.stubbers = [Stubber(c) for c in (self.s3, self.sagemaker, self.secrets)]
        self.s3_stub, self.sm_stub, self.secrets_stub = self.stubbers

    def expect_job(self, availability: int | None = 86400, time_limit: int = 3600) -> None:
        human: dict[str, Any] = {
            "WorkteamArn": "arn:aws:sagemaker:us-east-1:111122223333:workteam/private-crowd/fewclick",
            "UiConfig": {"UiTemplateS3Uri": f"s3://{LABELING_BUCKET}/templates/fewclick-task.liquid.html"},
            "TaskTitle": "t",
            "TaskDescription": "d",
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": time_limit,
        }
        if availability is not None:
            human["TaskAvailabilityLifetimeInSeconds"] = availability
        self.sm_stub.add_response(
            "describe_labeling_job",
            {
                "LabelingJobStatus": "InProgress",
                "LabelCounters": {},
                "CreationTime": "2025-01-01T12:00:00Z",
                "LastModifiedTime": "2025-01-01T12:00:00Z",
                "JobReferenceCode": "abc",
                "LabelingJobName": JOB_NAME,
                "LabelingJobArn": JOB_ARN,
                "LabelAttributeName": JOB_NAME,
                "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://b/m.manifest"}}},
                "OutputConfig": {"S3OutputPath": f"s3://{LABELING_BUCKET}/output/"},
                "RoleArn": "arn:aws:iam::111122223333:role/gt",
                "LabelCategoryConfigS3Uri": LABEL_CONFIG_URI,
                "HumanTaskConfig": human,
            },
            {"LabelingJobName": JOB_NAME},
        )
        self.s3_stub.add_response(
            "get_object",
            {"Body": _body(json.dumps(LABEL_CONFIG).encode())},
            {"Bucket": LABELING_BUCKET, "Key": f"jobs/{JOB_NAME}/label-categories.json"},
        )

    def expect_secret(self) -> None:
        self.secrets_stub.add_response(
            "get_secret_value",
            {"SecretString": SECRET},
            {"SecretId": "arn:aws:secretsmanager:us-east-1:111122223333:secret:fewclick-task-token"},
        )

    def __enter__(self) -> Stubs:
        for stub in self.stubbers:
            stub.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        for stub in self.stubbers:
            stub.assert_no_pending_responses()
            stub.deactivate()


@pytest.fixture
def handler(aws_env: None) -> Any:
    from pre_annotation import handler as module

    return module


def _configure(module: Any, stubs: Stubs, max_ttl: int = 7 * 86400) -> None:
    from gt_common.jobs import JobCatalog
    from gt_common.s3io import S3Store
    from gt_common.settings import GroundTruthSettings
    from gt_common.task_key import TaskKeyProvider

    settings = GroundTruthSettings(
        secret_arn="arn:aws:secretsmanager:us-east-1:111122223333:secret:fewclick-task-token",
        image_buckets=frozenset({IMAGE_BUCKET}),
        labeling_bucket=LABELING_BUCKET,
        max_token_ttl_s=max_ttl,
    )
    module.configure(
        settings,
        JobCatalog(S3Store(lambda: stubs.s3), lambda: stubs.sagemaker),
        TaskKeyProvider(settings.secret_arn, lambda: stubs.secrets),
    )


def test_documented_request_gets_documented_response(handler: Any, key: bytes, context: Any) -> None:
    event = load_event("pre_annotation_source_ref.json")
    with Stubs() as stubs:
        stubs.expect_job(availability=86400, time_limit=3600)
        stubs.expect_secret()
        _configure(handler, stubs)
        response = handler.lambda_handler(event, context)

    # {"taskInput": <json object>, "isHumanAnnotationRequired": true} (the docs' response shape: a boolean)
    assert set(response) == {"taskInput", "isHumanAnnotationRequired"}
    assert response["isHumanAnnotationRequired"] is True
    task_input = response["taskInput"]
    assert set(task_input) == {"taskObject", "token", "labels"}
    assert task_input["taskObject"] == event["dataObject"]["source-ref"]
    assert task_input["labels"] == ["person", "car"]
    json.dumps(response)  # Ground Truth needs plain JSON

    claims = verify_task_token(key, task_input["token"])
    check_scope(claims.img, event["dataObject"]["source-ref"])
    assert claims.job == JOB_NAME
    # availability + time limit + slack: the token outlives the task, and no more.
    assert claims.exp - claims.iat == 86400 + 3600 + TOKEN_SLACK_S


def test_job_info_and_key_are_cached_across_data_objects(handler: Any, context: Any) -> None:
    event = load_event("pre_annotation_source_ref.json")
    with Stubs() as stubs:
        stubs.expect_job()
        stubs.expect_secret()  # once: a second DescribeLabelingJob or GetSecretValue would fail the stub
        _configure(handler, stubs)
        first = handler.lambda_handler(event, context)
        second_event = {**event, "dataObject": {"source-ref": f"s3://{IMAGE_BUCKET}/street/0002.jpg"}}
        second = handler.lambda_handler(second_event, context)
    assert first["taskInput"]["token"] != second["taskInput"]["token"]
    assert second["taskInput"]["taskObject"].endswith("0002.jpg")


def test_token_lifetime_is_capped_by_the_deployment(handler: Any, key: bytes, context: Any) -> None:
    with Stubs() as stubs:
        stubs.expect_job(availability=None, time_limit=3600)  # no availability: 30-day default
        stubs.expect_secret()
        _configure(handler, stubs, max_ttl=2 * 86400)
        response = handler.lambda_handler(load_event("pre_annotation_source_ref.json"), context)
    claims = verify_task_token(key, response["taskInput"]["token"])
    assert claims.exp - claims.iat == 2 * 86400


@pytest.mark.parametrize(
    "data_object",
    [
        None,  # replaced by the documented "source" event below
        {"source-ref": "s3://some-other-bucket/a.jpg"},
        {"source-ref": "https://example.com/a.jpg"},
        {"source-ref": 42},
        {"source-ref": "s3://fewclick-test-images/" + "a" * 1025},  # no S3 key is this long
    ],
)
def test_objects_that_cannot_be_segmented_are_not_sent_to_workers(
    handler: Any, context: Any, data_object: dict[str, Any] | None
) -> None:
    event = load_event("pre_annotation_source.json")
    if data_object is not None:
        event["dataObject"] = data_object
    with Stubs() as stubs:
        stubs.expect_job()
        stubs.expect_secret()
        _configure(handler, stubs)
        response = handler.lambda_handler(event, context)
    assert response["isHumanAnnotationRequired"] is False
    assert "token" not in response["taskInput"]


def test_job_without_label_category_file_fails_loudly(handler: Any, context: Any) -> None:
    from gt_common.jobs import JobError, job_name_from_arn

    assert job_name_from_arn(JOB_ARN) == JOB_NAME
    with pytest.raises(JobError):
        job_name_from_arn("arn:aws:sagemaker:us-east-1:111122223333:workteam/private-crowd/x")
