"""Pre-annotation Lambda entry point: thin glue around `pre_annotation.logic`.

Handler: ``pre_annotation.handler.lambda_handler``. Environment (set by the labeling stack):
TASK_TOKEN_SECRET_ARN, IMAGE_BUCKETS, LABELING_BUCKET, MAX_TOKEN_TTL_S.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from gt_common.jobs import JobCatalog
from gt_common.s3io import S3Store
from gt_common.settings import GroundTruthSettings
from gt_common.task_key import TaskKeyProvider

from .logic import build_response

logger = Logger(service="fewclick-gt-pre-annotation")

_settings: GroundTruthSettings | None = None
_jobs: JobCatalog | None = None
_keys: Any = None


def configure(settings: GroundTruthSettings | None = None, jobs: JobCatalog | None = None, keys: Any = None) -> None:
    """Build (or inject, in tests) the settings and data access; reused across warm invocations."""
    global _settings, _jobs, _keys
    _settings = settings or GroundTruthSettings.from_env()
    _jobs = jobs or JobCatalog(S3Store())
    _keys = keys or TaskKeyProvider(_settings.secret_arn)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if _settings is None or _jobs is None or _keys is None:
        configure()
    assert _settings is not None and _jobs is not None and _keys is not None
    job = _jobs.get(str(event.get("labelingJobArn", "")))
    response, fields = build_response(
        event,
        job=job,
        key=_keys.key(),
        image_buckets=_settings.image_buckets,
        max_ttl_s=_settings.max_token_ttl_s,
    )
    if "skipped" in fields:
        logger.warning("data object skipped", extra={"job": job.name, **fields})
    else:
        logger.info("task token minted", extra={"job": job.name, **fields})
    return response
