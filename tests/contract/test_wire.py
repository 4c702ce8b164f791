"""The proxy <-> endpoint wire format: versioning, pixels, sizes, session headers."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from fewclick_contract import wire
from fewclick_contract.crop import crop_box_for_clicks

POINTS = [
    wire.WirePoint(x=10, y=128),
    wire.WirePoint(x=240, y=128),
    wire.WirePoint(x=128, y=5),
    wire.WirePoint(x=128, y=250),
]
# botocore's NewSessionResponseHeader pattern (sagemaker-runtime service model).
NEW_SESSION_PATTERN = re.compile(
    r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*;\sExpires=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
)


def _noise(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_crop_round_trip(fmt: str) -> None:
    crop = _noise(64)
    back = wire.decode_crop(wire.encode_crop(crop, fmt), 64)  # type: ignore[arg-type]
    assert back.shape == (64, 64, 3)
    if fmt == "png":
        assert np.array_equal(back, crop)


def test_crop_of_wrong_size_is_refused_before_decoding() -> None:
    pixels = wire.encode_crop(_noise(32))
    with pytest.raises(ValueError, match="64x64"):
        wire.decode_crop(pixels, 64)
    # A PNG header claiming a huge image is refused from the header alone.
    bomb = bytearray(base64.b64decode(pixels.data))
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2
    with pytest.raises(ValueError):
        wire.decode_crop(wire.CropPixels(format="png", data=base64.b64encode(bytes(bomb)).decode()), 64)
    with pytest.raises(ValueError):
        wire.decode_crop(wire.CropPixels(format="png", data="!!!"), 64)


def test_image_dimensions_reads_png_and_jpeg_headers() -> None:
    for fmt in ("png", "jpeg"):
        raw = base64.b64decode(wire.encode_crop(_noise(48), fmt).data)  # type: ignore[arg-type]
        assert wire.image_dimensions(raw) == (48, 48)
    assert wire.image_dimensions(b"GIF89a....") is None


def test_probabilities_round_trip_is_8_bit() -> None:
    prob = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    back = wire.decode_probabilities(wire.encode_probabilities(prob), 64)
    assert back.dtype == np.float32 and np.abs(back - prob).max() <= 0.5 / 255 + 1e-6


def test_unknown_version_and_fields_are_refused() -> None:
    base = {"cropId": "a" * 16, "extremePoints": [p.model_dump() for p in POINTS]}
    assert wire.WireRequest.model_validate(base).wire == wire.WIRE_VERSION
    with pytest.raises(ValidationError):
        wire.WireRequest.model_validate({**base, "wire": "fewclick.wire/2"})
    with pytest.raises(ValidationError):
        wire.WireRequest.model_validate({**base, "extra": 1})
    with pytest.raises(ValidationError):
        wire.WireRequest.model_validate({**base, "extremePoints": base["extremePoints"][:3]})


@pytest.mark.parametrize(
    ("where", "value"),
    [("point", "5"), ("point", True), ("size", "256"), ("kind", 1)],
)
def test_a_value_of_the_wrong_json_type_is_refused_not_converted(where: str, value: object) -> None:
    """Both ends of the wire are ours: a string where a number belongs is a bug to surface, not to
    convert (pydantic's lax mode turned "5" into 5 and true into 1)."""
    import json

    body = {
        "cropId": "a" * 16,
        "size": 256,
        "extremePoints": [p.model_dump() for p in POINTS],
        "clicks": [{"x": 20, "y": 30, "kind": "positive"}],
    }
    assert wire.WireRequest.model_validate_json(json.dumps(body)).size == 256
    if where == "point":
        body["extremePoints"][0]["x"] = value
    elif where == "size":
        body["size"] = value
    else:
        body["clicks"][0]["kind"] = value
    with pytest.raises(ValidationError):
        wire.WireRequest.model_validate_json(json.dumps(body))


def test_crop_id_is_stable_and_sensitive() -> None:
    pts = np.array([[10, 20], [90, 25], [50, 5], [55, 80]])
    box = crop_box_for_clicks(pts)
    a = wire.crop_id("sha256:x", box, 256)
    assert a == wire.crop_id("sha256:x", crop_box_for_clicks(pts.copy()), 256)
    assert a != wire.crop_id("sha256:y", box, 256)
    assert a != wire.crop_id("sha256:x", box, 320)
    assert re.fullmatch(r"[0-9a-f]{32}", a)


def test_session_header_matches_botocore_pattern() -> None:
    value = wire.format_session_header("3f2a-11aa", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert NEW_SESSION_PATTERN.match(value), value
    assert wire.parse_session_header(value) == ("3f2a-11aa", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert wire.parse_session_header("bare-id") == ("bare-id", None)


def test_payload_sizes() -> None:
    # Cold request at the largest side the wire allows: still under SageMaker's 6 MB.
    big = wire.WireRequest(
        cropId="c" * 32,
        crop=wire.encode_crop(_noise(wire.MAX_INPUT_SIZE)),
        size=wire.MAX_INPUT_SIZE,
        extremePoints=POINTS,
    )
    assert len(wire.dump_request(big)) < wire.SAGEMAKER_MAX_PAYLOAD_BYTES
    # Warm click with the maximum number of clicks: a few KB.
    clicks = [wire.WireClick(x=1.25, y=200.5, kind="positive")] * 100
    warm = wire.WireRequest(cropId="c" * 32, extremePoints=POINTS, clicks=clicks)
    assert len(wire.dump_request(warm)) < 10 * 1024
    # Response: worst case (noise) probabilities at S=256 fit the warm budget.
    prob = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    resp = wire.WireResponse(
        sessionId="s",
        cropId="c" * 32,
        size=256,
        probabilities=wire.encode_probabilities(prob),
        modelVersion="m",
        modelMs=1.0,
        cache="hit",
    )
    assert len(resp.model_dump_json()) <= wire.WARM_CLICK_BUDGET_BYTES
