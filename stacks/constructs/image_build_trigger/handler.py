"""Custom-resource handlers that run the model image CodeBuild project during `cdk deploy`.

Used by `stacks.constructs.model_image.CodeBuildModelImage` through the CDK provider
framework: `on_event` starts a build (unless the tag is already in ECR, which makes retries
after a rollback cheap and keeps immutable tags pushable), `is_complete` polls it. Only boto3
is needed, which the Lambda runtime provides.
"""

from __future__ import annotations

import os
from typing import Any

import boto3

_FAILED = {"FAILED", "FAULT", "STOPPED", "TIMED_OUT"}


def _image_exists(ecr: Any, repository: str, tag: str) -> bool:
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return False
    return True


def on_event(event: dict[str, Any], _context: object) -> dict[str, Any]:
    properties = event["ResourceProperties"]
    tag = properties["ImageTag"]
    repository = os.environ["REPOSITORY_NAME"]
    physical_id = f"{repository}:{tag}"
    if event["RequestType"] == "Delete":
        # Images stay in the (retained) repository; its lifecycle rule prunes old ones.
        return {"PhysicalResourceId": event.get("PhysicalResourceId", physical_id)}

    if _image_exists(boto3.client("ecr"), repository, tag):
        return {"PhysicalResourceId": physical_id, "Data": {"BuildId": ""}}

    build = boto3.client("codebuild").start_build(
        projectName=os.environ["PROJECT_NAME"],
        environmentVariablesOverride=[{"name": "IMAGE_TAG", "value": tag, "type": "PLAINTEXT"}],
    )["build"]
    print(f"started build {build['id']} for {physical_id}")
    return {"PhysicalResourceId": physical_id, "Data": {"BuildId": build["id"]}}


def is_complete(event: dict[str, Any], _context: object) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    build_id = event.get("Data", {}).get("BuildId", "")
    if not build_id:
        return {"IsComplete": True}
    builds = boto3.client("codebuild").batch_get_builds(ids=[build_id])["builds"]
    status = builds[0]["buildStatus"] if builds else "FAILED"
    if status == "SUCCEEDED":
        return {"IsComplete": True}
    if status in _FAILED:
        logs = builds[0].get("logs", {}).get("deepLink", "") if builds else ""
        raise RuntimeError(f"model image build {build_id} ended {status}; logs: {logs}")
    return {"IsComplete": False}
