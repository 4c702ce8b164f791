"""The task token (fewclick_contract.task_token): valid accepted; expired, tampered, wrong-key,
malformed and other-image uses refused."""

from __future__ import annotations

import base64
import json

import pytest

from fewclick_contract.task_token import (
    MAX_TTL_S,
    TaskTokenBadSignature,
    TaskTokenExpired,
    TaskTokenMalformed,
    TaskTokenScopeError,
    bearer_token,
    check_scope,
    derive_key,
    mint_task_token,
    verify_task_token,
)

IMAGE_A = "s3://fewclick-test-images/street/0001.jpg"
IMAGE_B = "s3://fewclick-test-images/street/0002.jpg"
NOW = 1_750_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_token_is_accepted_and_scoped(key: bytes) -> None:
    token, claims = mint_task_token(key, image_uri=IMAGE_A, ttl_s=3600, job="job-1", now=NOW)
    verified = verify_task_token(key, token, now=NOW + 3599)
    assert verified == claims
    assert (verified.img, verified.job, verified.exp) == (IMAGE_A, "job-1", int(NOW) + 3600)
    check_scope(verified.img, IMAGE_A)  # the token's own image: no error
    assert token.startswith("fct1.") and len(token) < 400 and token.count(".") == 2


@pytest.mark.parametrize(
    "key_text",
    ["фото/" + "д" * 505 + ".jpg", "\U0001f697" * 250, "a" * 1020],
    ids=["cyrillic-1023-bytes", "emoji-1000-bytes", "ascii-1020-bytes"],
)
def test_a_token_for_any_legal_s3_key_is_one_the_verifier_accepts(key: bytes, key_text: str) -> None:
    """S3 keys are up to 1,024 bytes of UTF-8; as JSON \\u escapes a Cyrillic one made a 4,284-character
    token, which `verify_task_token` refused: the worker got the task, then a 401 per click."""
    image = f"s3://fewclick-test-images/{key_text}"
    assert len(key_text.encode()) <= 1024
    token, claims = mint_task_token(key, image_uri=image, ttl_s=3600, job="j" * 63, now=NOW)
    assert verify_task_token(key, token, now=NOW).img == image == claims.img


def test_a_token_the_verifier_would_refuse_is_never_minted(key: bytes) -> None:
    with pytest.raises(ValueError, match="over 4096"):
        mint_task_token(key, image_uri="s3://fewclick-test-images/" + "a" * 5000, ttl_s=3600, now=NOW)
    with pytest.raises(ValueError, match="s3://bucket/key URI"):  # a trailing newline is no part of a key
        mint_task_token(key, image_uri=IMAGE_A + "\n", ttl_s=3600, now=NOW)


def test_token_for_image_a_cannot_segment_image_b(key: bytes) -> None:
    token, _ = mint_task_token(key, image_uri=IMAGE_A, ttl_s=3600, now=NOW)
    claims = verify_task_token(key, token, now=NOW)
    for other in (IMAGE_B, IMAGE_A.upper(), IMAGE_A + "/", IMAGE_A.replace("0001", "0001 "), None, ""):
        with pytest.raises(TaskTokenScopeError):
            check_scope(claims.img, other)


def test_expired_token_is_refused(key: bytes) -> None:
    token, _ = mint_task_token(key, image_uri=IMAGE_A, ttl_s=60, now=NOW)
    verify_task_token(key, token, now=NOW + 59)
    with pytest.raises(TaskTokenExpired):
        verify_task_token(key, token, now=NOW + 60)


def test_tampered_claims_are_refused(key: bytes) -> None:
    """Re-pointing a valid token at another image (or extending it) breaks the MAC."""
    token, _ = mint_task_token(key, image_uri=IMAGE_A, ttl_s=60, now=NOW)
    prefix, payload, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"img": IMAGE_B}, {"exp": claims["exp"] + 86400}):
        forged = _b64(json.dumps({**claims, **change}, separators=(",", ":"), sort_keys=True).encode())
        with pytest.raises(TaskTokenBadSignature):
            verify_task_token(key, f"{prefix}.{forged}.{mac}", now=NOW)


def test_tampered_signature_and_wrong_key_are_refused(key: bytes) -> None:
    token, _ = mint_task_token(key, image_uri=IMAGE_A, ttl_s=60, now=NOW)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(TaskTokenBadSignature):
        verify_task_token(key, flipped, now=NOW)
    with pytest.raises(TaskTokenBadSignature):
        verify_task_token(derive_key("y" * 64), token, now=NOW)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fct1",
        "fct1.a.b.c",
        "v1.eyJ9.abc",
        "fct2.abc.def",
        "x" * 5000,
        "fct1.@@@.abc",
        "fct1.abc.@@@",
        "fct1.é.AAAA",  # non-ASCII claims: refused, not a crash in the MAC
        "fct1.AAAA.é",
    ],
)
def test_malformed_tokens_are_refused(key: bytes, text: str) -> None:
    with pytest.raises((TaskTokenMalformed, TaskTokenBadSignature)):
        verify_task_token(key, text, now=NOW)


def test_signed_garbage_claims_are_malformed(key: bytes) -> None:
    """A correctly signed but nonsensical payload (only the key holder could make one) is still refused."""
    import hashlib
    import hmac

    payload = _b64(b'{"img":"http://not-s3","exp":1,"iat":2,"jti":"x"}')
    mac = _b64(hmac.new(key, f"fct1.{payload}".encode(), hashlib.sha256).digest())
    with pytest.raises(TaskTokenMalformed):
        verify_task_token(key, f"fct1.{payload}.{mac}", now=NOW)


def test_mint_refuses_non_s3_images_and_silly_lifetimes(key: bytes) -> None:
    for uri in ("https://example.com/a.jpg", "s3://Bad_Bucket/a.jpg", "s3://bucket-only"):
        with pytest.raises(ValueError):
            mint_task_token(key, image_uri=uri, ttl_s=60)
    for ttl in (0, -1, MAX_TTL_S + 1):
        with pytest.raises(ValueError):
            mint_task_token(key, image_uri=IMAGE_A, ttl_s=ttl)


def test_every_token_is_unique(key: bytes) -> None:
    tokens = {mint_task_token(key, image_uri=IMAGE_A, ttl_s=60, now=NOW)[0] for _ in range(50)}
    assert len(tokens) == 50  # the jti nonce


def test_key_derivation() -> None:
    assert derive_key("a" * 64) != "a" * 64
    assert derive_key("a" * 64) == derive_key(b"a" * 64)
    with pytest.raises(ValueError):
        derive_key("short")


def test_bearer_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc  ") == "abc"
    for value in (None, "", "Basic abc", "Bearer", "abc"):
        assert bearer_token(value) is None
