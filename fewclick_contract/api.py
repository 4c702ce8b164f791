"""The UI-facing contract: `POST /v1/segment` click JSON, its errors, and its OpenAPI.

This is the stable interface the labeling UI, the Ground Truth tools and the local
gateway code against. Field names are the JSON names (camelCase) on purpose: one
spelling everywhere, no alias layer to drift. Coordinates are integer pixel indices
of the full image (x right, y down), the same convention as `fewclick_contract.crop`.

Only pydantic is needed here (the Lambda imports it without torch).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import models_json_schema

API_VERSION = "1.0.0"
SEGMENT_PATH = "/v1/segment"
OPENAPI_PATH = "/v1/openapi.json"

# One labeling state rarely needs 20 corrective clicks; 100 bounds the work (the
# server replays click prefixes) and the payload.
MAX_CLICKS = 100
# The proxy session token is a few hundred characters; this only bounds abuse.
MAX_SESSION_ID_LENGTH = 2048
# Lambda's synchronous payload limit is 6 MB; base64 costs 4/3, so an inline image
# above ~4.4 MB cannot arrive anyway. The proxy enforces the decoded size.
MAX_INLINE_IMAGE_BYTES = 4_500_000
# Decoded size limit (decompression-bomb guard), the proxy's default (MAX_IMAGE_PIXELS in its
# environment overrides it): 50 MP is a 8660 x 5773 photo.
MAX_IMAGE_PIXELS = 50_000_000

ClickType = Literal["positive", "negative", "boundary"]
OutputKind = Literal["rle", "polygon", "png"]


class _Api(BaseModel):
    # Unknown fields are refused: a typo ("extremepoints") must not silently
    # produce a mask from defaults.
    model_config = ConfigDict(extra="forbid")


class S3Image(_Api):
    s3Uri: str = Field(
        pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.+$",
        max_length=1100,
        examples=["s3://my-labeling-bucket/images/0001.jpg"],
        description="An object in one of the buckets the deployment allows.",
    )


class Base64Image(_Api):
    base64: str = Field(
        min_length=8,
        description="PNG or JPEG file bytes, base64 (standard alphabet). Needed again "
        "after a SESSION_EXPIRED error, since the proxy keeps no copy.",
    )


class Point(_Api):
    # Strict: JSON integers only. Lax pydantic would take true as 1 and "12" as 12, which the OpenAPI
    # document (type: integer) says are errors; a client that sends them has a bug worth hearing about.
    # JSON Schema's "integer" also matches 3.0; strict does not, so the descriptions say so.
    x: int = Field(strict=True, description="column, 0 <= x < image width, written without a fraction (3, not 3.0)")
    y: int = Field(strict=True, description="row, 0 <= y < image height, written without a fraction (3, not 3.0)")


class Click(Point):
    type: ClickType = Field(
        description="positive: inside the object; negative: background; boundary: on the object's edge"
    )


class SegmentRequest(_Api):
    # The rule `_image_or_session` enforces, stated in the published schema too.
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"anyOf": [{"required": ["image"]}, {"required": ["sessionId"]}]}
    )

    image: S3Image | Base64Image | None = Field(default=None, description="Required unless sessionId is given.")
    sessionId: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SESSION_ID_LENGTH,
        description="The sessionId of the previous response for this image; opaque.",
    )
    extremePoints: Annotated[list[Point], Field(min_length=4, max_length=4)] = Field(
        description="Exactly 4 extreme points (left-, right-, top-, bottom-most), any order."
    )
    clicks: Annotated[list[Click], Field(max_length=MAX_CLICKS)] = Field(
        default_factory=list, description="Corrective clicks, oldest first."
    )
    output: Annotated[list[OutputKind], Field(min_length=1, max_length=3)] = Field(
        default_factory=lambda: ["rle"],
        description="Extra mask encodings; the RLE mask is always returned.",
    )

    @model_validator(mode="after")
    def _image_or_session(self) -> SegmentRequest:
        if self.image is None and self.sessionId is None:
            raise ValueError("either image or sessionId is required")
        return self


class RleMask(_Api):
    size: Annotated[list[int], Field(min_length=2, max_length=2)] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE (pycocotools.mask.encode, column-major)")


class Timings(_Api):
    modelMs: float = Field(description="time inside the model server")
    totalMs: float = Field(description="time inside the proxy, the model included")


class SegmentResponse(_Api):
    sessionId: str = Field(description="Send it with the next click on this image.")
    mask: RleMask
    polygons: list[list[Annotated[list[int], Field(min_length=2, max_length=2)]]] | None = Field(
        default=None, description="Outer contours as [[x, y], ...] (if asked)."
    )
    png: str | None = Field(default=None, description="base64 8-bit PNG, 255 = object (if asked)")
    missedClicks: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list,
        description="Indices into the request's clicks that this mask does not follow: a positive click "
        "outside it, a negative one inside, a boundary click its edge misses by more than 3 px "
        "(fewclick_contract.click_respect). The UI marks them, so the labeler can add a region click there.",
    )
    modelVersion: str
    timings: Timings


class ErrorCode(StrEnum):
    INVALID_JSON = "INVALID_JSON"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    POINT_OUTSIDE_IMAGE = "POINT_OUTSIDE_IMAGE"
    IMAGE_UNDECODABLE = "IMAGE_UNDECODABLE"
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    UNAUTHORIZED = "UNAUTHORIZED"
    BUCKET_NOT_ALLOWED = "BUCKET_NOT_ALLOWED"
    ACCESS_DENIED = "ACCESS_DENIED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    TOO_MANY_CLICKS = "TOO_MANY_CLICKS"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    THROTTLED = "THROTTLED"
    ENDPOINT_ERROR = "ENDPOINT_ERROR"
    ENDPOINT_UNAVAILABLE = "ENDPOINT_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


ERROR_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.POINT_OUTSIDE_IMAGE: 400,
    ErrorCode.IMAGE_UNDECODABLE: 400,
    ErrorCode.IMAGE_NOT_FOUND: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.BUCKET_NOT_ALLOWED: 403,
    ErrorCode.ACCESS_DENIED: 403,
    ErrorCode.SESSION_EXPIRED: 404,
    ErrorCode.NOT_FOUND: 404,
    # `fewclick serve`'s gateway, for a method a route does not take (API Gateway answers NOT_FOUND there).
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    # A body declared as something other than UTF-8 JSON (`fewclick_contract.media_type`).
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.TOO_MANY_CLICKS: 413,
    ErrorCode.IMAGE_TOO_LARGE: 413,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.THROTTLED: 429,
    ErrorCode.ENDPOINT_ERROR: 502,
    ErrorCode.ENDPOINT_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}


class ErrorDetail(_Api):
    code: ErrorCode
    message: str


class ErrorResponse(_Api):
    error: ErrorDetail


class ApiError(Exception):
    """Raised anywhere in the proxy; the handler turns it into the error JSON.

    ``retry_after`` (seconds) becomes a Retry-After header on 429/503.
    """

    def __init__(self, code: ErrorCode, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = ERROR_STATUS[code]
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code.value, "message": self.message}}


def _error_response_doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def openapi_schema(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for this API, generated from the models above."""
    _, defs = models_json_schema(
        [
            (SegmentRequest, "validation"),
            (SegmentResponse, "serialization"),
            (ErrorResponse, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    from .task_token import TASK_SEGMENT_PATH

    retry = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "FewClick segmentation API",
            "version": API_VERSION,
            "description": "Click 4 extreme points, get a mask; add corrective clicks with the returned "
            "sessionId. Masks are full-image COCO RLE.",
        },
        "paths": {
            SEGMENT_PATH: {
                "post": {
                    "operationId": "segment",
                    "summary": "Segment an object from extreme points and corrective clicks",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "The mask at full image size",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/SegmentResponse"}}
                            },
                        },
                        "400": _error_response_doc(
                            "Bad JSON, schema violation, point outside the image, undecodable image"
                        ),
                        "401": _error_response_doc("Not authenticated (from the gateway)"),
                        "403": _error_response_doc("Bucket not allowed or access denied"),
                        "404": _error_response_doc("SESSION_EXPIRED: send the image again (with the same clicks)"),
                        "411": _error_response_doc("VALIDATION_ERROR: the body has no Content-Length (chunked)"),
                        "413": _error_response_doc("Image, request or click list too large"),
                        "415": _error_response_doc(
                            "UNSUPPORTED_MEDIA_TYPE: the body is declared as something other than UTF-8 "
                            "application/json (no Content-Type is taken as JSON)"
                        ),
                        "429": {**_error_response_doc("Throttled"), "headers": retry},
                        "500": _error_response_doc("INTERNAL_ERROR: a fault of the proxy (logged; report it)"),
                        "502": _error_response_doc("The model endpoint failed, or (INTERNAL_ERROR) the proxy did"),
                        "503": {**_error_response_doc("The model endpoint is unavailable"), "headers": retry},
                    },
                }
            },
            OPENAPI_PATH: {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 JSON"}},
                }
            },
        },
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "labeler": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Cognito ID token of the deployment's user pool (`fewclick serve`: the token "
                    "it prints in its URL).",
                },
                "taskToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Ground Truth task token (`fct1.…`, from the task's input), good for its "
                    "one image until it expires.",
                },
            },
        },
    }
    segment = doc["paths"][SEGMENT_PATH]["post"]
    segment["security"] = [{"labeler": []}]
    # The Ground Truth workers' route: the same request and answers, confined to the task's image.
    doc["paths"][TASK_SEGMENT_PATH] = {
        "post": {
            **segment,
            "operationId": "segmentTask",
            "summary": "Segment the task's image (Ground Truth workers)",
            "security": [{"taskToken": []}],
            "responses": {
                **segment["responses"],
                "401": _error_response_doc("UNAUTHORIZED: no task token, a bad one, or one that expired"),
                "403": _error_response_doc("ACCESS_DENIED: another image than the task's"),
            },
        }
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
