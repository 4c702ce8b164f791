"""What the pre-annotation Lambda needs to know about its labeling job (DescribeLabelingJob).

Ground Truth's pre-annotation event carries only the job ARN and one data object (see
https://docs.aws.amazon.com/sagemaker/latest/dg/sms-custom-templates-step3-lambda-requirements.html),
so the labels and the task timing come from the job itself: its LabelCategoryConfigS3Uri (written by
`fewclick labeling-job create`) and its HumanTaskConfig. Cached per job: they cannot change while a
job runs, and Ground Truth calls the Lambda once per data object.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fewclick_contract.labelmap import labels_from_category_config

from .s3io import S3Store

_JOB_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:labeling-job/(?P<name>[A-Za-z0-9-]{1,63})$")
# Private-workforce default when a job does not set TaskAvailabilityLifetimeInSeconds (CreateLabelingJob
# API reference, HumanTaskConfig): 30 days.
DEFAULT_AVAILABILITY_S = 30 * 24 * 3600
CACHE_SECONDS = 600.0


class JobError(ValueError):
    pass


def job_name_from_arn(arn: str) -> str:
    match = _JOB_ARN.match(arn or "")
    if not match:
        raise JobError(f"not a labeling job ARN: {arn!r}")
    return match["name"]


@dataclass(frozen=True)
class JobInfo:
    name: str
    labels: tuple[str, ...]
    # How long a task of this job can be open: availability lifetime + time limit.
    task_window_s: int


def default_sagemaker_client() -> Any:
    import boto3

    return boto3.client("sagemaker")


class JobCatalog:
    def __init__(
        self,
        store: S3Store,
        client_factory: Callable[[], Any] = default_sagemaker_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._factory = client_factory
        self._client: Any = None
        self._clock = clock
        self._cache: dict[str, tuple[float, JobInfo]] = {}
        self._lock = threading.Lock()

    def get(self, job_arn: str) -> JobInfo:
        name = job_name_from_arn(job_arn)
        with self._lock:
            cached = self._cache.get(name)
            if cached and self._clock() - cached[0] < CACHE_SECONDS:
                return cached[1]
        info = self._describe(name)
        with self._lock:
            self._cache[name] = (self._clock(), info)
        return info

    def _describe(self, name: str) -> JobInfo:
        if self._client is None:
            self._client = self._factory()
        job = self._client.describe_labeling_job(LabelingJobName=name)
        uri = job.get("LabelCategoryConfigS3Uri")
        if not uri:
            raise JobError(
                f"labeling job {name} has no LabelCategoryConfigS3Uri: create it with "
                "`fewclick labeling-job create`, which writes one"
            )
        labels = labels_from_category_config(self.store.get_json(uri))
        human = job.get("HumanTaskConfig") or {}
        window = int(human.get("TaskAvailabilityLifetimeInSeconds") or DEFAULT_AVAILABILITY_S) + int(
            human.get("TaskTimeLimitInSeconds") or 0
        )
        return JobInfo(name=name, labels=tuple(labels), task_window_s=window)
