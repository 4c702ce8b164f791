"""Task-token authorizer entry point (``task_authorizer.handler.lambda_handler``).

Environment: TASK_TOKEN_SECRET_ARN. Logs the outcome and the token id, never the token.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from gt_common.task_key import TaskKeyProvider

from fewclick_contract.task_token import CONTEXT_IMAGE, CONTEXT_JOB, CONTEXT_TOKEN_ID

from .policy import Unauthorized, authorize

logger = Logger(service="fewclick-task-authorizer")

_keys: Any = None


def configure(keys: Any = None) -> None:
    global _keys
    if keys is None:
        import os

        keys = TaskKeyProvider(os.environ.get("TASK_TOKEN_SECRET_ARN", ""))
    _keys = keys


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if _keys is None:
        configure()
    try:
        result = authorize(event, _keys.key())
    except Unauthorized as exc:
        logger.info("task token refused", extra={"reason": exc.reason})
        raise
    ctx = result["context"]
    logger.info(
        "task token accepted",
        extra={"tokenId": ctx[CONTEXT_TOKEN_ID], "job": ctx[CONTEXT_JOB], "image": ctx[CONTEXT_IMAGE]},
    )
    return result
