"""Pure logic of the task-token authorizer: REQUEST authorizer event in, IAM policy + context out.

API Gateway REST Lambda authorizers answer ``{"principalId", "policyDocument", "context"}``; raising
``Exception("Unauthorized")`` makes API Gateway answer 401 (see "Output from an Amazon API Gateway
Lambda authorizer" in the API Gateway developer guide). The context's string values reach the proxy
as ``event.requestContext.authorizer.<name>``; ``taskImage`` is the one image the proxy will serve.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fewclick_contract.task_token import (
    TASK_SEGMENT_PATH,
    TaskTokenError,
    authorizer_context,
    bearer_token,
    verify_task_token,
)

_METHOD_ARN = re.compile(r"^(?P<base>arn:aws[a-z-]*:execute-api:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9]+/[^/]+)/")


class Unauthorized(Exception):
    """API Gateway maps exactly the message "Unauthorized" to a 401 response."""

    def __init__(self, reason: str) -> None:
        super().__init__("Unauthorized")
        self.reason = reason


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """Case-insensitive header lookup (REST events keep the client's spelling)."""
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def allow_resource(method_arn: str) -> str:
    """The policy's resource. Authorizer results are cached per token and the cached policy is
    reused for other methods of the API, so it names the task route only (any stage-relative
    method of this API would widen the grant)."""
    match = _METHOD_ARN.match(method_arn or "")
    if not match:
        raise Unauthorized("malformed methodArn")
    return f"{match['base']}/POST{TASK_SEGMENT_PATH}"


def authorize(event: Mapping[str, Any], key: bytes, now: float | None = None) -> dict[str, Any]:
    token = bearer_token(header(event.get("headers"), "Authorization"))
    if token is None:
        raise Unauthorized("no bearer token")
    try:
        claims = verify_task_token(key, token, now=now)
    except TaskTokenError as exc:
        raise Unauthorized(exc.reason) from None
    resource = allow_resource(str(event.get("methodArn")))
    return {
        "principalId": f"task/{claims.jti}",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}],
        },
        "context": authorizer_context(claims),
    }
