"""The task-token Lambda authorizer, fed an API Gateway REQUEST authorizer event."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from fewclick_contract.task_token import derive_key, mint_task_token

from .helpers import load_event

IMAGE = "s3://fewclick-test-images/street/0001.jpg"


def event_with(token: str) -> dict[str, Any]:
    return json.loads(json.dumps(load_event("authorizer_request.json")).replace("__TOKEN__", token))


@pytest.fixture
def handler(key: bytes) -> Any:
    from gt_common.task_key import StaticKeyProvider
    from task_authorizer import handler as module

    module.configure(StaticKeyProvider(key))
    return module


def test_valid_token_allows_the_task_route_and_passes_the_image(handler: Any, key: bytes, context: Any) -> None:
    token, claims = mint_task_token(key, image_uri=IMAGE, ttl_s=600, job="job-1")
    result = handler.lambda_handler(event_with(token), context)
    statement = result["policyDocument"]["Statement"]
    assert statement == [
        {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": "arn:aws:execute-api:us-east-1:111122223333:a1b2c3d4e5/prod/POST/v1/task/segment",
        }
    ]
    assert result["principalId"] == f"task/{claims.jti}"
    # Authorizer context values must be strings, numbers or booleans (no objects, no nulls).
    assert result["context"] == {
        "taskImage": IMAGE,
        "taskJob": "job-1",
        "taskTokenId": claims.jti,
        "taskExpiresAt": claims.exp,
    }
    assert all(isinstance(v, str | int | bool) for v in result["context"].values())


@pytest.mark.parametrize("case", ["missing", "basic", "expired", "tampered", "other-key", "session-id"])
def test_bad_credentials_get_401(handler: Any, key: bytes, context: Any, case: str) -> None:
    token, _ = mint_task_token(key, image_uri=IMAGE, ttl_s=600)
    if case == "expired":
        token, _ = mint_task_token(key, image_uri=IMAGE, ttl_s=60, now=time.time() - 120)
    elif case == "tampered":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif case == "other-key":
        token, _ = mint_task_token(derive_key("z" * 64), image_uri=IMAGE, ttl_s=600)
    elif case == "session-id":
        token = "v1.eyJzbSI6IngifQ.AAAA"  # a proxy session id is not a task token
    event = event_with(token)
    if case == "missing":
        event["headers"].pop("authorization")
    elif case == "basic":
        event["headers"]["authorization"] = "Basic dXNlcjpwYXNz"
    from task_authorizer.policy import Unauthorized

    with pytest.raises(Unauthorized) as raised:
        handler.lambda_handler(event, context)
    assert str(raised.value) == "Unauthorized"  # the exact message API Gateway maps to 401
