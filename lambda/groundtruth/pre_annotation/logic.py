"""Pure logic of the pre-annotation Lambda (no AWS calls: the job info and the key are passed in).

Request and response shapes are Ground Truth's, from "Pre-annotation Lambda" in
https://docs.aws.amazon.com/sagemaker/latest/dg/sms-custom-templates-step3-lambda-requirements.html::

    in:  {"version": "2018-10-16", "labelingJobArn": "...", "dataObject": {"source-ref": "s3://..."}}
    out: {"taskInput": {...}, "isHumanAnnotationRequired": true | false}  (a JSON boolean, as documented)

``taskInput`` becomes ``task.input`` in the Liquid template: ``taskObject`` (the image, shown through
``grant_read_access``), ``token`` (the task token, scoped to that image) and ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gt_common.jobs import JobInfo
from gt_common.s3io import S3UriError, parse_s3_uri

from fewclick_contract.task_token import TOKEN_SLACK_S, is_s3_uri, mint_task_token


@dataclass(frozen=True)
class Skip:
    """A data object no worker should see (not an image we may serve): reason is for the log."""

    reason: str


# S3's own limit on an object key: a longer one names no object (and would not fit a task token).
MAX_S3_KEY_BYTES = 1024


def image_uri_of(data_object: Any, image_buckets: frozenset[str]) -> str | Skip:
    """The data object's S3 image URI, if it is one the API may read; else why not."""
    if not isinstance(data_object, dict):
        return Skip("dataObject is not a JSON object")
    uri = data_object.get("source-ref")
    if not isinstance(uri, str):
        # A "source" (inline text) object cannot be segmented.
        return Skip("dataObject has no source-ref (an S3 image is required)")
    try:
        bucket, key = parse_s3_uri(uri)
    except S3UriError:
        return Skip("source-ref is not an s3://bucket/key URI")
    if len(key.encode("utf-8")) > MAX_S3_KEY_BYTES:
        return Skip(f"source-ref's key is over S3's {MAX_S3_KEY_BYTES} bytes")
    if not is_s3_uri(uri):
        return Skip("source-ref has characters a task token cannot carry")
    if bucket not in image_buckets:
        # The proxy only reads the configured buckets: a worker would get 403 on every click.
        return Skip(f"bucket {bucket} is not one of the deployment's image buckets")
    return uri


def token_ttl(job: JobInfo, max_ttl_s: int) -> int:
    """Long enough for the task to be picked up and worked on, never longer than the deployment allows.

    Ground Truth calls this Lambda when it prepares a batch, not when a worker opens the task, so the
    token must outlive the task's availability window plus its time limit.
    """
    return max(60, min(max_ttl_s, job.task_window_s + TOKEN_SLACK_S))


def build_response(
    event: dict[str, Any],
    *,
    job: JobInfo,
    key: bytes,
    image_buckets: frozenset[str],
    max_ttl_s: int,
    now: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Ground Truth response, fields for the log). The token is never in the log fields."""
    found = image_uri_of(event.get("dataObject"), image_buckets)
    if isinstance(found, Skip):
        response = {"taskInput": {"labels": list(job.labels)}, "isHumanAnnotationRequired": False}
        return response, {"skipped": found.reason}
    ttl = token_ttl(job, max_ttl_s)
    token, claims = mint_task_token(key, image_uri=found, ttl_s=ttl, job=job.name, now=now)
    response = {
        "taskInput": {"taskObject": found, "token": token, "labels": list(job.labels)},
        "isHumanAnnotationRequired": True,
    }
    return response, {"tokenId": claims.jti, "expiresAt": claims.exp, "ttlSeconds": ttl, "image": found}
