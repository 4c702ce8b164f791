"""Ground Truth task tokens: a short-lived credential scoped to ONE image, minted per task.

Why: a Ground Truth worker's browser runs our task template (`crowd-form`) and must call the
segmentation API, but it has no Cognito identity of ours. The pre-annotation Lambda mints a token
for the task's image (``taskInput.token``); the API's Lambda authorizer (and the local gateway)
verify it and hand the allowed image to the proxy, which refuses any other image (403).

This module is the ONE implementation: the pre-annotation Lambda mints with it, the authorizer
and `fewclick serve`'s gateway verify with it. Standard library only, so every Lambda asset and
the CLI can import it without numpy/torch.

Format (compact, URL-safe, no padding)::

    fct1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "fct1." + claims))>

Claims: ``img`` (the S3 URI the token is for), ``exp``/``iat`` (Unix seconds), ``jti`` (random
id: audit and log correlation without logging the token), ``job`` (labeling job name, audit).
The HMAC key is derived from the secret with a fixed label, so the stored secret is never used
directly and can never collide with another HMAC use of the same bytes (domain separation).
The prefix is inside the MAC: a proxy session id (``v1.``...) can never pass as a task token.

Replay: a token is a bearer credential for its image until ``exp`` (every click of the task
reuses it); replaying it on any OTHER image is refused by `check_scope`, and tampering with
``img`` breaks the MAC. Expiry is checked on every verification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

PREFIX = "fct1"
# A generous bound: real tokens are ~250 chars (the S3 URI dominates). Refusing huge inputs
# before any decoding keeps a hostile header from costing CPU.
MAX_TOKEN_LENGTH = 4096
# Clock skew tolerated on ``iat`` between the minting and the verifying machine.
CLOCK_SKEW_S = 60
# Ground Truth limits: TaskAvailabilityLifetimeInSeconds <= 30 days (private workforce) and
# TaskTimeLimitInSeconds <= 8 h (custom tasks). No task can need a longer token.
MAX_TTL_S = 30 * 24 * 3600 + 8 * 3600
# Added to a task's availability + time limit when minting: Ground Truth prepares tasks a little
# before offering them, and a worker's last click may land just after the time limit.
TOKEN_SLACK_S = 600
# The API route task tokens authorise: same contract as /v1/segment (fewclick_contract.api).
TASK_SEGMENT_PATH = "/v1/task/segment"
# What a verified token hands the proxy (API Gateway authorizer context, or the local gateway's
# event): string/number values only, as API Gateway requires. The proxy reads CONTEXT_IMAGE.
CONTEXT_IMAGE = "taskImage"
CONTEXT_JOB = "taskJob"
CONTEXT_TOKEN_ID = "taskTokenId"
CONTEXT_EXPIRES = "taskExpiresAt"
_KEY_LABEL = b"fewclick/task-token/v1"
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[^\x00-\x1f\x7f]+$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


class TaskTokenError(ValueError):
    """The token is not valid. ``reason`` is safe to log (it never contains the token)."""

    reason = "invalid"


class TaskTokenMalformed(TaskTokenError):
    reason = "malformed"


class TaskTokenBadSignature(TaskTokenError):
    reason = "bad-signature"


class TaskTokenExpired(TaskTokenError):
    reason = "expired"


class TaskTokenScopeError(TaskTokenError):
    """A valid token used for another image than the one it was minted for."""

    reason = "wrong-image"


@dataclass(frozen=True)
class TaskClaims:
    img: str
    exp: int
    iat: int
    jti: str
    job: str = ""

    def seconds_left(self, now: float | None = None) -> int:
        return int(self.exp - (time.time() if now is None else now))


def derive_key(secret: str | bytes) -> bytes:
    """The HMAC key for task tokens, derived from the stored secret (Secrets Manager string)."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < 32:
        # 32 random bytes (or a 64-char generated password) is the floor for an HMAC-SHA256 key.
        raise ValueError("the task-token secret must be at least 32 bytes")
    return hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64URL.match(text):
        raise TaskTokenMalformed("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TaskTokenMalformed("not base64url") from None


def _mac(key: bytes, signed_part: str) -> str:
    return _b64(hmac.new(key, signed_part.encode("ascii"), hashlib.sha256).digest())


def is_s3_uri(uri: str) -> bool:
    return bool(_S3_URI.fullmatch(uri))  # "$" alone would pass a trailing newline


def mint_task_token(
    key: bytes,
    *,
    image_uri: str,
    ttl_s: int,
    job: str = "",
    now: float | None = None,
) -> tuple[str, TaskClaims]:
    """A token for ``image_uri`` valid ``ttl_s`` seconds from ``now``; returns (token, claims)."""
    if not is_s3_uri(image_uri):
        raise ValueError(f"a task token is scoped to an s3://bucket/key URI, not {image_uri!r}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be in (0, {MAX_TTL_S}]")
    issued = int(time.time() if now is None else now)
    claims = TaskClaims(img=image_uri, exp=issued + int(ttl_s), iat=issued, jti=_b64(secrets.token_bytes(12)), job=job)
    body = {"img": claims.img, "exp": claims.exp, "iat": claims.iat, "jti": claims.jti}
    if job:
        body["job"] = job
    # ensure_ascii=False: an S3 key may be 1,024 bytes of non-ASCII text, and as \uXXXX escapes
    # (6 characters each) its token outgrew MAX_TOKEN_LENGTH, which the verifier then refused.
    text = json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    payload = _b64(text.encode("utf-8"))
    signed_part = f"{PREFIX}.{payload}"
    token = f"{signed_part}.{_mac(key, signed_part)}"
    if len(token) > MAX_TOKEN_LENGTH:
        # Never issue what `verify_task_token` refuses: the worker would get the task and a 401 per click.
        raise ValueError(
            f"a task token for {image_uri[:80]!r}... would be {len(token)} characters, over {MAX_TOKEN_LENGTH}"
        )
    return token, claims


def verify_task_token(key: bytes, token: str, *, now: float | None = None) -> TaskClaims:
    """Signature, then claims, then expiry; raises a `TaskTokenError` subclass on any failure."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise TaskTokenMalformed("empty or oversized token")
    parts = token.split(".")
    # Base64url parts only, before the (ASCII) MAC is computed over them.
    if len(parts) != 3 or parts[0] != PREFIX or not _B64URL.match(parts[1]):
        raise TaskTokenMalformed("not a FewClick task token")
    signed_part = f"{parts[0]}.{parts[1]}"
    # Constant-time compare, and the MAC is checked before the payload is even parsed.
    if not _B64URL.match(parts[2]) or not hmac.compare_digest(parts[2], _mac(key, signed_part)):
        raise TaskTokenBadSignature("signature mismatch")
    try:
        fields = json.loads(_unb64(parts[1]))
        claims = TaskClaims(
            img=str(fields["img"]),
            exp=int(fields["exp"]),
            iat=int(fields["iat"]),
            jti=str(fields["jti"]),
            job=str(fields.get("job", "")),
        )
    except (ValueError, KeyError, TypeError, OverflowError):
        raise TaskTokenMalformed("malformed claims") from None
    current = time.time() if now is None else now
    if not is_s3_uri(claims.img) or claims.exp <= claims.iat or claims.iat > current + CLOCK_SKEW_S:
        raise TaskTokenMalformed("implausible claims")
    if current >= claims.exp:
        raise TaskTokenExpired("token expired")
    return claims


def check_scope(allowed_image: str, image_uri: str | None) -> None:
    """Refuse (TaskTokenScopeError) unless ``image_uri`` is exactly ``allowed_image`` (a token's
    ``img`` claim, or the authorizer context that carries it to the proxy).

    Exact string equality on purpose: S3 keys are case-sensitive and no normalisation can make
    two different keys equal, while any normalisation could make two different URIs collide.
    """
    if not allowed_image or image_uri is None or image_uri != allowed_image:
        raise TaskTokenScopeError("this task token is for another image")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authorizer_context(claims: TaskClaims) -> dict[str, str | int]:
    """The authorizer context of a verified token (the same from the Lambda authorizer and the local gateway)."""
    return {
        CONTEXT_IMAGE: claims.img,
        CONTEXT_JOB: claims.job,
        CONTEXT_TOKEN_ID: claims.jti,
        CONTEXT_EXPIRES: claims.exp,
    }
