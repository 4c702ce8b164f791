"""Proxy settings, read once per cold start from the environment (set by the CDK stack)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from fewclick_contract.api import MAX_IMAGE_PIXELS
from fewclick_contract.wire import DEFAULT_INPUT_SIZE


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, "") or default)
    except ValueError:
        return default


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class ProxyConfig:
    endpoint_name: str = "fewclick"
    # Local stack / tests: point boto3 at the SageMaker Runtime stand-in.
    runtime_endpoint_url: str | None = None
    allowed_buckets: frozenset[str] = frozenset()
    input_size: int = DEFAULT_INPUT_SIZE
    crop_format: Literal["png", "jpeg"] = "png"
    # HMAC key for session tokens (SESSION_TOKEN_SECRET: the local/test override). Unset outside
    # AWS -> unsigned tokens (they then only carry hints the proxy re-validates: bucket allow-list,
    # point bounds). In AWS the key comes from Secrets Manager (`session_secret_arn`, resolved once
    # per cold start by `session_secret.resolve_session_secret`), and a function without either
    # refuses to serve: a forged unsigned token could point a task-token session at another image.
    session_secret: bytes | None = field(default=None, repr=False)  # a key: never in a log line
    session_secret_arn: str | None = None
    # Running in Lambda (AWS_LAMBDA_FUNCTION_NAME is set by the runtime): unsigned tokens are refused.
    in_lambda: bool = False
    # S3 objects larger than this are refused before download (inline images are bounded
    # by Lambda's 6 MB payload already).
    max_image_bytes: int = 25 * 1024 * 1024
    max_image_pixels: int = MAX_IMAGE_PIXELS
    connect_timeout_s: float = 2.0
    # A cold crop encodes in well under a second on GPU; 20 s stays inside API Gateway's 29 s.
    read_timeout_s: float = 20.0
    max_attempts: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if env is None else env
        buckets = frozenset(b.strip() for b in env.get("ALLOWED_BUCKETS", "").split(",") if b.strip())
        secret = env.get("SESSION_TOKEN_SECRET")
        fmt = env.get("CROP_FORMAT", "png").lower()
        return cls(
            endpoint_name=env.get("ENDPOINT_NAME") or env.get("SAGEMAKER_ENDPOINT_NAME") or "fewclick",
            runtime_endpoint_url=env.get("SAGEMAKER_RUNTIME_ENDPOINT_URL") or None,
            allowed_buckets=buckets,
            input_size=_int(env, "MODEL_INPUT_SIZE", DEFAULT_INPUT_SIZE),
            crop_format="jpeg" if fmt in ("jpeg", "jpg") else "png",
            session_secret=secret.encode() if secret else None,
            session_secret_arn=env.get("SESSION_TOKEN_SECRET_ARN") or None,
            in_lambda=bool(env.get("AWS_LAMBDA_FUNCTION_NAME")),
            max_image_bytes=_int(env, "MAX_IMAGE_BYTES", cls.max_image_bytes),
            max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", cls.max_image_pixels),
            connect_timeout_s=_float(env, "ENDPOINT_CONNECT_TIMEOUT_S", cls.connect_timeout_s),
            read_timeout_s=_float(env, "ENDPOINT_READ_TIMEOUT_S", cls.read_timeout_s),
            max_attempts=max(1, _int(env, "ENDPOINT_MAX_ATTEMPTS", cls.max_attempts)),
        )
