"""Settings of the Ground Truth Lambdas, read from the environment the CDK stack sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fewclick_contract.task_token import MAX_TTL_S


def _csv(value: str | None) -> frozenset[str]:
    return frozenset(item.strip() for item in (value or "").split(",") if item.strip())


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


@dataclass(frozen=True)
class GroundTruthSettings:
    secret_arn: str = ""
    # Buckets whose images may be labeled (the proxy reads exactly these).
    image_buckets: frozenset[str] = frozenset()
    # The labeling bucket: label category files, job output (masks are written here).
    labeling_bucket: str = ""
    max_token_ttl_s: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GroundTruthSettings:
        env = os.environ if env is None else env
        return cls(
            secret_arn=env.get("TASK_TOKEN_SECRET_ARN", ""),
            image_buckets=_csv(env.get("IMAGE_BUCKETS")),
            labeling_bucket=env.get("LABELING_BUCKET", ""),
            max_token_ttl_s=min(MAX_TTL_S, max(60, _int(env.get("MAX_TOKEN_TTL_S"), cls.max_token_ttl_s))),
        )
