"""Fixtures of the Ground Truth tests: the Lambda asset on sys.path (via helpers), keys, AWS env.

`lambda/groundtruth` is the asset root of the three Ground Truth Lambdas (as `lambda/proxy` is the
proxy's), so `pre_annotation`, `consolidation`, `task_authorizer` and `gt_common` import here as
they do in Lambda.
"""

from __future__ import annotations

import os

import pytest

from .helpers import SECRET, LambdaContext

# Before any handler module is imported: Powertools settings as the stack sets them, no X-Ray.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


@pytest.fixture
def key() -> bytes:
    from fewclick_contract.task_token import derive_key

    return derive_key(SECRET)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and region: botocore clients sign (Stubber answers) without real AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext()
