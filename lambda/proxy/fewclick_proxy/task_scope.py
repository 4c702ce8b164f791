"""Task-token scope: requests on ``POST /v1/task/segment`` may segment ONE image, the token's.

The API Gateway Lambda authorizer (lambda/groundtruth/task_authorizer) verifies the task token and
passes the image it was minted for as ``requestContext.authorizer.taskImage`` (the local gateway
does the same). Here the proxy refuses (403 ACCESS_DENIED) any request on that route whose image,
or whose session's image, is another one: a token for image A cannot segment image B, and a
session id from another image cannot be replayed under it. Inline (base64) images are refused on
the task route: their origin cannot be tied to the token.

Pure functions over the Lambda event and the parsed request; the handler calls `enforce_task_scope`
before segmenting and `with_task_cors` on the way out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fewclick_contract.api import ApiError, ErrorCode, S3Image, SegmentRequest
from fewclick_contract.task_token import (
    CONTEXT_EXPIRES,
    CONTEXT_IMAGE,
    TASK_SEGMENT_PATH,
    TaskTokenScopeError,
    check_scope,
)

from .session_token import InvalidToken, decode_token


def task_image(event: Mapping[str, Any]) -> str | None:
    """The image this request is confined to, or None when it is not a task-token request.

    The route decides (not only the context): a task-route request that somehow arrives without
    the authorizer's context is refused rather than served unconfined.
    """
    context = event.get("requestContext")
    if not isinstance(context, Mapping):
        context = {}  # API Gateway always sends one; anything else is no authorizer's context
    authorizer = context.get("authorizer") or {}
    image = authorizer.get(CONTEXT_IMAGE) if isinstance(authorizer, Mapping) else None
    # The path too: the router dispatches on it, so a resource that differs (a greedy {proxy+}) must
    # not let a task-route request past this check.
    on_task_route = TASK_SEGMENT_PATH in (event.get("resource"), context.get("resourcePath"), event.get("path"))
    if not on_task_route and image is None:
        return None
    if not isinstance(image, str) or not image:
        raise ApiError(ErrorCode.UNAUTHORIZED, "this route needs a Ground Truth task token")
    # API Gateway caches the authorizer's Allow for minutes per token: the expiry it verified travels
    # in the context (as text), so a token that ran out meanwhile is refused here, to the second.
    expires = authorizer.get(CONTEXT_EXPIRES) if isinstance(authorizer, Mapping) else None
    try:
        expired = expires is not None and float(expires) <= time.time()
    except (TypeError, ValueError):
        expired = False  # not ours to judge: the authorizer verified the token
    if expired:
        raise ApiError(ErrorCode.UNAUTHORIZED, "the task token has expired; reopen the task")
    return image


def _refuse() -> ApiError:
    return ApiError(ErrorCode.ACCESS_DENIED, "this task token may only segment its own task's image")


def enforce_task_scope(allowed_image: str, req: SegmentRequest, session_secret: bytes | None) -> None:
    """Raise 403 unless every image the request could touch is ``allowed_image``."""
    if req.image is not None:
        uri = req.image.s3Uri if isinstance(req.image, S3Image) else None
        try:
            check_scope(allowed_image, uri)
        except TaskTokenScopeError:
            raise _refuse() from None
    if req.sessionId is not None:
        try:
            session = decode_token(req.sessionId, session_secret)
        except InvalidToken:
            # Unusable anyway: the segmenter answers it with its own error and serves nothing.
            return
        try:
            check_scope(allowed_image, session.s3)
        except TaskTokenScopeError:
            raise _refuse() from None
        # S3 image ids are "<uri>#<etag>" (image_source); anything else is another image's session.
        if session.img != allowed_image and not session.img.startswith(allowed_image + "#"):
            raise _refuse()


def with_task_cors(event: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """On the task route, answer any origin: the Ground Truth worker page's origin is Amazon's, and
    the credential is an explicit bearer token (nothing ambient, so nothing for CORS to protect)."""
    if event.get("resource") != TASK_SEGMENT_PATH:
        return response
    headers = dict(response.get("headers") or {})
    headers["Access-Control-Allow-Origin"] = "*"
    headers["Access-Control-Expose-Headers"] = "Retry-After"  # the worker page backs off by it
    headers.pop("Access-Control-Allow-Credentials", None)
    multi = dict(response.get("multiValueHeaders") or {})
    for name in ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"):
        multi.pop(name, None)
    result = {**response, "headers": headers}
    if "multiValueHeaders" in response:
        result["multiValueHeaders"] = multi
    return result
