"""The UI-facing contract: schema validation, error statuses, OpenAPI generation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fewclick_contract.api import (
    ERROR_STATUS,
    MAX_CLICKS,
    ApiError,
    ErrorCode,
    S3Image,
    SegmentRequest,
    SegmentResponse,
    openapi_schema,
)

POINTS = [{"x": 1, "y": 2}, {"x": 5, "y": 2}, {"x": 3, "y": 0}, {"x": 3, "y": 4}]


def test_valid_requests() -> None:
    r = SegmentRequest.model_validate({"image": {"s3Uri": "s3://my-bucket/a/b.jpg"}, "extremePoints": POINTS})
    assert isinstance(r.image, S3Image) and r.clicks == [] and r.output == ["rle"]
    r = SegmentRequest.model_validate(
        {
            "sessionId": "v1.abc",
            "extremePoints": POINTS,
            "clicks": [{"x": 1, "y": 1, "type": "negative"}, {"x": 2, "y": 2, "type": "boundary"}],
            "output": ["rle", "polygon", "png"],
        }
    )
    assert [c.type for c in r.clicks] == ["negative", "boundary"]


@pytest.mark.parametrize(
    "body",
    [
        {"image": {"base64": "AAAAAAAA"}, "extremePoints": POINTS[:3]},  # 3 points
        {"image": {"base64": "AAAAAAAA"}, "extremePoints": [*POINTS, POINTS[0]]},  # 5 points
        {"extremePoints": POINTS},  # neither image nor session
        {"image": {"s3Uri": "https://bucket/key"}, "extremePoints": POINTS},
        {"image": {"s3Uri": "s3://b/k", "base64": "AAAAAAAA"}, "extremePoints": POINTS},
        {"image": {"base64": "AAAAAAAA"}, "extremePoints": POINTS, "clicks": [{"x": 1, "y": 1, "type": "maybe"}]},
        {"image": {"base64": "AAAAAAAA"}, "extremePoints": [{"x": 1.5, "y": 2}, *POINTS[1:]]},
        {"image": {"base64": "AAAAAAAA"}, "extremePoints": POINTS, "output": ["svg"]},
        {"image": {"base64": "AAAAAAAA"}, "extremePoints": POINTS, "extremepoints": POINTS},  # typo'd extra
    ],
)
def test_invalid_requests(body: dict) -> None:
    with pytest.raises(ValidationError):
        SegmentRequest.model_validate(body)


def test_click_cap() -> None:
    clicks = [{"x": 1, "y": 1, "type": "positive"}] * (MAX_CLICKS + 1)
    with pytest.raises(ValidationError) as exc:
        SegmentRequest.model_validate({"sessionId": "s", "extremePoints": POINTS, "clicks": clicks})
    assert exc.value.errors()[0]["type"] == "too_long"


def test_every_error_code_has_a_status_and_json_shape() -> None:
    assert set(ERROR_STATUS) == set(ErrorCode)
    assert ERROR_STATUS[ErrorCode.SESSION_EXPIRED] == 404
    err = ApiError(ErrorCode.ENDPOINT_UNAVAILABLE, "down", retry_after=5)
    assert err.status == 503 and err.body() == {"error": {"code": "ENDPOINT_UNAVAILABLE", "message": "down"}}


def test_response_model_round_trip() -> None:
    body = {
        "sessionId": "v1.x",
        "mask": {"size": [2, 3], "counts": "06"},
        "missedClicks": [2],
        "modelVersion": "m",
        "timings": {"modelMs": 1.0, "totalMs": 2.0},
    }
    assert SegmentResponse.model_validate(body).model_dump(exclude_none=True) == body
    # Every answer names the clicks it does not follow, none included.
    without = {k: v for k, v in body.items() if k != "missedClicks"}
    assert SegmentResponse.model_validate(without).model_dump(exclude_none=True) == {**without, "missedClicks": []}
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        SegmentResponse.model_validate({**body, "missedClicks": [-1]})


def test_openapi_document() -> None:
    doc = openapi_schema("https://api.example.test/prod")
    assert doc["openapi"].startswith("3.1")
    op = doc["paths"]["/v1/segment"]["post"]
    assert {"200", "400", "403", "404", "413", "429", "502", "503"} <= set(op["responses"])
    schemas = doc["components"]["schemas"]
    assert {"SegmentRequest", "SegmentResponse", "ErrorResponse"} <= set(schemas)
    assert schemas["SegmentRequest"]["properties"]["extremePoints"]["minItems"] == 4
    # What the handler refuses beyond the properties (neither image nor sessionId) is in the schema too.
    request = schemas["SegmentRequest"]
    assert request["anyOf"] == [{"required": ["image"]}, {"required": ["sessionId"]}]
    import jsonschema_rs

    validator = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/SegmentRequest", "components": {"schemas": schemas}}
    )
    points = [{"x": 1, "y": 1}] * 4
    assert not validator.is_valid({"extremePoints": points})
    assert validator.is_valid({"sessionId": "s", "extremePoints": points})
    # How each route authenticates, and the Ground Truth workers' route beside the labelers'.
    assert set(doc["components"]["securitySchemes"]) == {"labeler", "taskToken"}
    assert op["security"] == [{"labeler": []}]
    task = doc["paths"]["/v1/task/segment"]["post"]
    assert task["security"] == [{"taskToken": []}] and task["requestBody"] == op["requestBody"]
    assert "expired" in task["responses"]["401"]["description"]
    # Every $ref resolves inside the document.
    text = str(doc)
    for name in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in schemas, name
