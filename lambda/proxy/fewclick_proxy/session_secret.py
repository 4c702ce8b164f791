"""The HMAC key of session tokens: where it comes from, and refusing to serve without one in AWS.

Sources, first match wins:
1. ``SESSION_TOKEN_SECRET`` (env): the local/test override; `fewclick serve` sets a random one per run.
2. ``SESSION_TOKEN_SECRET_ARN`` (env, set by the CDK stack): a Secrets Manager secret, read once
   per cold start (the key never changes under a warm instance, so a session id stays valid for
   the instance's life; a rotated value reaches new instances only, and an old token then fails
   its signature -> 404 SESSION_EXPIRED, which the UI recovers from by resending the image).
3. Neither: fine locally (tests, unsigned tokens), but in Lambda the proxy answers 503 and logs
   why instead of issuing unsigned tokens: the Ground Truth task-scope check trusts the image a
   session id names, and an unsigned id can be forged to name another image.

A failed read (throttling, network) is not cached: the next request tries again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from fewclick_contract.api import ApiError, ErrorCode

from .config import ProxyConfig

# A generated secret is 64 characters; below 32 bytes an HMAC-SHA256 key is weaker than its output.
MIN_SECRET_BYTES = 32
# What the caller sees: the reason (which only the operators can fix) goes to the log, not the client.
PUBLIC_MESSAGE = "the segmentation service is not configured correctly and refuses requests; tell its operators"


class SessionSecretUnavailable(ApiError):
    """503 ENDPOINT_UNAVAILABLE for the caller; ``detail`` is the operator-facing reason (logged)."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(ErrorCode.ENDPOINT_UNAVAILABLE, PUBLIC_MESSAGE, retry_after=retry_after)
        self.detail = detail


def default_secrets_client() -> Any:
    import boto3
    from botocore.config import Config

    # This runs inside the first request of a cold start, whose budget (REQUEST_BUDGET_S, inside API
    # Gateway's 29 s) also pays for the model call: two attempts of at most 2 + 3 s and one backoff of
    # at most 1 s end within 11 s, then the caller gets 503 with Retry-After rather than the gateway's
    # 504. (`max_attempts` would count retries only: 3 meant four attempts, ~28 s.)
    return boto3.client(
        "secretsmanager",
        config=Config(connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 2, "mode": "standard"}),
    )


def fetch_secret_string(secret_id: str, client_factory: Callable[[], Any] | None = None) -> str:
    """The secret's current string value; SessionSecretUnavailable (retryable) when it cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        value = (client_factory or default_secrets_client)().get_secret_value(SecretId=secret_id).get("SecretString")
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "")) or "unknown error"
        raise SessionSecretUnavailable(f"reading the session-token secret failed ({code})", retry_after=5) from None
    except BotoCoreError as exc:
        detail = f"Secrets Manager is unreachable ({type(exc).__name__})"
        raise SessionSecretUnavailable(detail, retry_after=5) from None
    if not isinstance(value, str):
        # A binary secret is not what the stack creates: an operator replaced it by hand.
        raise SessionSecretUnavailable("the session-token secret has no SecretString", retry_after=60)
    return value


def resolve_session_secret(config: ProxyConfig, fetch: Callable[[str], str] | None = None) -> ProxyConfig:
    """``config`` with ``session_secret`` filled in, or SessionSecretUnavailable where serving would be unsafe.

    ``fetch`` (secret id -> string) defaults to `fetch_secret_string`, looked up at call time so tests
    can replace it.
    """
    if config.session_secret:
        if config.in_lambda and len(config.session_secret) < MIN_SECRET_BYTES:
            raise SessionSecretUnavailable(
                f"SESSION_TOKEN_SECRET is shorter than {MIN_SECRET_BYTES} bytes", retry_after=60
            )
        return config
    if config.session_secret_arn:
        secret = (fetch or fetch_secret_string)(config.session_secret_arn).encode("utf-8")
        if len(secret) < MIN_SECRET_BYTES:
            raise SessionSecretUnavailable(
                f"the session-token secret is shorter than {MIN_SECRET_BYTES} bytes", retry_after=60
            )
        return dataclasses.replace(config, session_secret=secret)
    if config.in_lambda:
        raise SessionSecretUnavailable(
            "neither SESSION_TOKEN_SECRET_ARN nor SESSION_TOKEN_SECRET is set: refusing to issue unsigned "
            "session ids (deploy the API stack, which creates the secret and sets the ARN)",
            retry_after=60,
        )
    return config
