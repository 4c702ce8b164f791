"""Fixtures of the serving tests: the real model server, the SageMaker Runtime stand-in,
and the real proxy handler wired to them through boto3."""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# Before fewclick_proxy.handler is imported: no X-Ray daemon here, metrics to stdout only.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "fewclick-proxy-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "FewClickTest")

ENDPOINT = "fewclick-test"
BUCKET = "fewclick-images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    """Dummy credentials and region so boto3 signs requests to the local stand-in."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@dataclass
class Stack:
    model: Any  # ModelServerHandle
    runtime: Any  # RuntimeStubHandle


@pytest.fixture(scope="session")
def stack(aws_env: None) -> Iterator[Stack]:
    """The real model server (real predictor, committed or untrained weights) + the stand-in."""
    from fewclick_model.server import start_model_server

    from fewclick.local.sagemaker_runtime import start_runtime_stub

    with warnings.catch_warnings():
        # No trained weights committed yet is fine for serving tests.
        warnings.simplefilter("ignore", RuntimeWarning)
        model = start_model_server("127.0.0.1", 0, devices=["cpu"], ready_timeout=120)
    runtime = start_runtime_stub(model.url, endpoint_names={ENDPOINT})
    yield Stack(model, runtime)
    runtime.stop()
    model.stop()
