"""The `sessionId` the UI carries between clicks: an opaque, self-contained token.

The Lambda is stateless, so everything the next click needs is in the token:
- ``sm``: the SageMaker stateful-session id (routes the click to the instance and the
  cache holding the crop's features),
- ``img``: the image identity (content hash, or S3 URI + ETag) that crop ids derive from,
- ``s3``: the S3 URI, when the image came from S3 (lets the proxy re-read it and recover
  an expired session without bothering the UI),
- ``h``/``w``: the image size (to check points and paste the mask without the image),
- ``crop``: the crop id the endpoint last cached (a changed crop must carry pixels).

Format: ``v1.<base64url JSON>[.<base64url HMAC-SHA256[:16]>]``. With a secret configured
the token is signed and a tampered one is refused. The deployed proxy always has one (a Secrets
Manager secret; `session_secret` refuses to serve without it), because the Ground Truth task-scope
check trusts the image a token names. Unsigned tokens exist only locally (tests); every field is
still re-validated (bucket allow-list, point bounds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass

PREFIX = "v1"


class InvalidToken(ValueError):
    pass


@dataclass(frozen=True)
class SessionToken:
    sm: str
    img: str
    h: int
    w: int
    crop: str
    s3: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: str, secret: bytes) -> str:
    return _b64(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()[:16])


def encode_token(token: SessionToken, secret: bytes | None = None) -> str:
    fields = {k: v for k, v in asdict(token).items() if v is not None}
    payload = _b64(json.dumps(fields, separators=(",", ":"), sort_keys=True).encode())
    text = f"{PREFIX}.{payload}"
    return f"{text}.{_sign(text, secret)}" if secret else text


def decode_token(text: str, secret: bytes | None = None) -> SessionToken:
    parts = text.split(".")
    # Ids this API issues are base64url and dots: anything else is refused before it reaches the
    # ASCII-only signing and compare.
    if len(parts) not in (2, 3) or parts[0] != PREFIX or not text.isascii():
        raise InvalidToken("not a session id issued by this API")
    if secret is not None and (
        len(parts) != 3 or not hmac.compare_digest(parts[2], _sign(f"{parts[0]}.{parts[1]}", secret))
    ):
        raise InvalidToken("session id signature mismatch")
    try:
        fields = json.loads(_unb64(parts[1]))
        token = SessionToken(
            sm=str(fields["sm"]),
            img=str(fields["img"]),
            h=int(fields["h"]),
            w=int(fields["w"]),
            crop=str(fields["crop"]),
            s3=str(fields["s3"]) if fields.get("s3") else None,
        )
    except (ValueError, KeyError, TypeError, OverflowError) as exc:  # OverflowError: int(1e999)
        raise InvalidToken("malformed session id") from exc
    if token.h <= 0 or token.w <= 0:
        raise InvalidToken("malformed session id")
    return token
