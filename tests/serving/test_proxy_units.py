"""Proxy pieces in isolation: error mapping, image sources, session tokens, config."""

from __future__ import annotations

import base64
import io
import json

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from fewclick_proxy.config import ProxyConfig
from fewclick_proxy.endpoint_client import SessionExpiredAtEndpoint, map_client_error
from fewclick_proxy.image_source import ImageSource, decode_image, parse_s3_uri
from fewclick_proxy.masks import decode_rle, encode_png, encode_rle, polygons
from fewclick_proxy.session_token import InvalidToken, SessionToken, decode_token, encode_token

from fewclick_contract.api import ApiError, Base64Image, ErrorCode

from .helpers import png_bytes

BUCKETS = frozenset({"images-a", "images.b"})


def _client_error(code: str, status: int, message: str = "", **extra: object) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}, **extra},
        "InvokeEndpoint",
    )


def _model_error(original_status: int, wire_code: str | None) -> ClientError:
    body = json.dumps({"error": {"code": wire_code, "message": "x"}}) if wire_code else "Internal Server Error"
    return _client_error(
        "ModelError", 424, "Received client error", OriginalStatusCode=original_status, OriginalMessage=body
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_model_error(404, "SESSION_EXPIRED"), "expired"),
        (_client_error("ValidationError", 400, "Session abc is not valid or has expired."), "expired"),
        (_model_error(503, "OVERLOADED"), (503, "ENDPOINT_UNAVAILABLE")),
        (_model_error(503, "NOT_READY"), (503, "ENDPOINT_UNAVAILABLE")),
        (_model_error(500, None), (502, "ENDPOINT_ERROR")),
        (_model_error(400, "BAD_REQUEST"), (502, "ENDPOINT_ERROR")),
        (_model_error(413, "PAYLOAD_TOO_LARGE"), (413, "PAYLOAD_TOO_LARGE")),
        (_client_error("ModelNotReadyException", 429), (503, "ENDPOINT_UNAVAILABLE")),
        (_client_error("ThrottlingException", 400), (429, "THROTTLED")),
        (_client_error("ServiceUnavailable", 503), (503, "ENDPOINT_UNAVAILABLE")),
        (_client_error("InternalFailure", 500), (502, "ENDPOINT_ERROR")),
        (_client_error("ValidationError", 400, "Endpoint x of account y not found."), (502, "ENDPOINT_ERROR")),
    ],
)
def test_endpoint_error_mapping(exc: ClientError, expected: object) -> None:
    mapped = map_client_error(exc)
    if expected == "expired":
        assert isinstance(mapped, SessionExpiredAtEndpoint)
        return
    assert isinstance(mapped, ApiError)
    assert (mapped.status, mapped.code.value) == expected
    if mapped.status in (429, 502, 503):
        assert mapped.retry_after and mapped.retry_after > 0


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("s3://images-c/a.png", ErrorCode.BUCKET_NOT_ALLOWED),
        ("s3://images-a.evil/a.png", ErrorCode.BUCKET_NOT_ALLOWED),
        ("s3://IMAGES-A/a.png", ErrorCode.VALIDATION_ERROR),
        ("s3://images-a/../images-c/a.png", ErrorCode.VALIDATION_ERROR),
        ("s3://images-a/a/./b.png", ErrorCode.VALIDATION_ERROR),
        ("s3://images-a//a.png", ErrorCode.VALIDATION_ERROR),
        ("s3://images-a/a\\b.png", ErrorCode.VALIDATION_ERROR),
        ("s3://images-a/a.png?versionId=1", ErrorCode.VALIDATION_ERROR),
        ("s3://images-a/a\n.png", ErrorCode.VALIDATION_ERROR),
        ("s3://images-a/", ErrorCode.VALIDATION_ERROR),
        ("https://images-a/a.png", ErrorCode.VALIDATION_ERROR),
    ],
)
def test_s3_uri_refusals(uri: str, code: ErrorCode) -> None:
    with pytest.raises(ApiError) as exc:
        parse_s3_uri(uri, BUCKETS)
    assert exc.value.code == code


def test_s3_uri_accepted() -> None:
    assert parse_s3_uri("s3://images.b/dir/sub/0001 copy.JPG", BUCKETS) == ("images.b", "dir/sub/0001 copy.JPG")
    with pytest.raises(ApiError) as exc:
        parse_s3_uri("s3://images-a/a.png", frozenset())  # nothing configured: fail closed
    assert exc.value.code == ErrorCode.BUCKET_NOT_ALLOWED


def test_decode_image_limits() -> None:
    rgb = np.zeros((100, 120, 3), np.uint8)
    assert decode_image(png_bytes(rgb), 50_000).shape == (100, 120, 3)
    with pytest.raises(ApiError) as exc:
        decode_image(png_bytes(rgb), 1000)  # the decompression-bomb guard, scaled down
    assert exc.value.code == ErrorCode.IMAGE_TOO_LARGE
    for junk in (b"", b"hello", b"GIF89a" + bytes(100), png_bytes(rgb)[:60]):
        with pytest.raises(ApiError) as exc:
            decode_image(junk, 50_000)
        assert exc.value.code == ErrorCode.IMAGE_UNDECODABLE


def test_inline_image_and_data_url() -> None:
    source = ImageSource(ProxyConfig())
    data = png_bytes(np.full((20, 30, 3), 7, np.uint8))
    a = source.load(Base64Image(base64=base64.b64encode(data).decode()))
    b = source.load(Base64Image(base64="data:image/png;base64," + base64.b64encode(data).decode()))
    assert a.image_id == b.image_id and (a.height, a.width) == (20, 30) and a.s3_uri is None


def test_s3_errors_are_mapped() -> None:
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    cfg = ProxyConfig(allowed_buckets=BUCKETS, max_image_bytes=10_000)
    source = ImageSource(cfg, lambda: s3)
    data = png_bytes(np.zeros((10, 10, 3), np.uint8))
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
        stub.add_client_error("get_object", "AccessDenied", http_status_code=403)
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(b""), 0), "ContentLength": 50_000})
        stub.add_response(
            "get_object",
            {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentLength": len(data), "ETag": '"e1"'},
        )
        for code in (ErrorCode.IMAGE_NOT_FOUND, ErrorCode.ACCESS_DENIED, ErrorCode.IMAGE_TOO_LARGE):
            with pytest.raises(ApiError) as exc:
                source.load_s3("s3://images-a/x.png")
            assert exc.value.code == code
        image = source.load_s3("s3://images-a/x.png")
        assert image.image_id == "s3://images-a/x.png#e1" and image.s3_uri == "s3://images-a/x.png"


def test_session_tokens() -> None:
    token = SessionToken(sm="4f1c-aa", img="sha256:ab", h=10, w=20, crop="c" * 32, s3=None)
    assert decode_token(encode_token(token)) == token
    signed = encode_token(token, b"k1")
    assert decode_token(signed, b"k1") == token
    for bad, key in ((signed, b"k2"), (encode_token(token), b"k1"), ("v1.!!!", None), ("v2.e30", None)):
        with pytest.raises(InvalidToken):
            decode_token(bad, key)
    tampered = signed.split(".")
    tampered[1] = encode_token(SessionToken("other", "sha256:ab", 10, 20, "c" * 32)).split(".")[1]
    with pytest.raises(InvalidToken):
        decode_token(".".join(tampered), b"k1")
    # Non-ASCII text and absurd numbers are malformed ids, not crashes in the signing or int().
    overflow = "v1." + base64.urlsafe_b64encode(b'{"sm":"a","img":"b","h":1e999,"w":2,"crop":"c"}').decode()
    for bad, key in (("v1.ééé." + "A" * 22, b"k1"), (signed[:-4] + "éééé", b"k1"), ("v1.é", None), (overflow, None)):
        with pytest.raises(InvalidToken):
            decode_token(bad, key)


def test_mask_encodings() -> None:
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    rle = encode_rle(mask)
    assert rle["size"] == [30, 40] and isinstance(rle["counts"], str)
    assert np.array_equal(decode_rle(rle), mask)
    (poly,) = polygons(mask)
    assert {tuple(p) for p in poly} == {(10, 5), (29, 5), (29, 19), (10, 19)}
    assert base64.b64decode(encode_png(mask))[:4] == b"\x89PNG"


def test_config_from_env() -> None:
    cfg = ProxyConfig.from_env(
        {
            "ENDPOINT_NAME": "ep",
            "ALLOWED_BUCKETS": " a , b,,",
            "CROP_FORMAT": "JPEG",
            "MODEL_INPUT_SIZE": "320",
            "SESSION_TOKEN_SECRET": "s",
            "ENDPOINT_MAX_ATTEMPTS": "0",
        }
    )
    assert cfg.endpoint_name == "ep" and cfg.allowed_buckets == {"a", "b"} and cfg.crop_format == "jpeg"
    assert cfg.input_size == 320 and cfg.session_secret == b"s" and cfg.max_attempts == 1
    assert cfg.runtime_endpoint_url is None


def test_handler_never_leaks_a_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    from fewclick_proxy import handler

    from .helpers import call

    class Broken:
        def segment(self, req: object, started: float) -> None:
            raise RuntimeError("secret internals at /var/task/x.py line 3")

    previous = handler._segmenter
    handler.configure(Broken())  # type: ignore[arg-type]
    try:
        body = {"image": {"base64": "AAAAAAAA"}, "extremePoints": [{"x": 1, "y": 1}] * 4}
        status, err, _ = call(handler, "POST", "/v1/segment", body)
        assert status == 500 and err["error"]["code"] == "INTERNAL_ERROR"
        assert "secret" not in json.dumps(err) and "Traceback" not in json.dumps(err)
    finally:
        handler._segmenter = previous


def test_handler_builds_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from fewclick_proxy import handler

    monkeypatch.setenv("ENDPOINT_NAME", "ep-from-env")
    monkeypatch.setenv("ALLOWED_BUCKETS", "b1")
    monkeypatch.setenv("SAGEMAKER_RUNTIME_ENDPOINT_URL", "http://127.0.0.1:9")
    previous = handler._segmenter
    try:
        seg = handler.configure()
        assert seg.config.endpoint_name == "ep-from-env" and seg.config.allowed_buckets == {"b1"}
        assert seg.config.runtime_endpoint_url == "http://127.0.0.1:9"
    finally:
        handler._segmenter = previous
