"""The proxy <-> model endpoint "model tensors" format, defined once for both sides.

The Lambda proxy builds a `WireRequest`, sends it as the JSON body of a SageMaker
InvokeEndpoint call, and reads back a `WireResponse` (or a `WireError`). The model
server in `fewclick_model.server` parses exactly these models. Bump `WIRE_VERSION`
for any change a deployed peer would misread; the server refuses other versions with
UNSUPPORTED_WIRE_VERSION instead of guessing.

Sizes: the crop is always S x S whatever the image: S = `size` is the network side (256)
or, for a box larger than that, twice it (`fewclick_contract.edge_refine`: the server
shrinks it for the network and answers at S with the edges refined on it). So a cold
request carries at most one S x S RGB image (~150 KB of base64 PNG at 256, ~500 KB at 512) and
a warm corrective click carries only points one way and an S x S 8-bit probability PNG
the other way: well under `WARM_CLICK_BUDGET_BYTES` and far under SageMaker's 6 MB
real-time payload limit (`SAGEMAKER_MAX_PAYLOAD_BYTES`).

Only numpy, opencv and pydantic are used: the Lambda imports this without torch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fewclick_contract.crop import CropBox

WIRE_VERSION = "fewclick.wire/1"
CONTENT_TYPE = "application/json"
# The network side the proxy asks for unless configured otherwise; the server
# resamples a crop of another side onto its own network size, so a mismatch costs
# accuracy, never correctness.
DEFAULT_INPUT_SIZE = 256
MIN_INPUT_SIZE = 32
MAX_INPUT_SIZE = 1024
# SageMaker real-time InvokeEndpoint payload limit (request and response), in bytes.
SAGEMAKER_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# What a warm corrective click may carry each way (asserted in tests): the product
# promise is "a click costs kilobytes, not an image upload".
WARM_CLICK_BUDGET_BYTES = 100 * 1024
# Guards the model server's JSON parsing; corrective clicks past this are a client bug.
MAX_WIRE_CLICKS = 256

# SageMaker stateful-session headers (InvokeEndpoint's SessionId / NewSessionId /
# ClosedSessionId). The runtime forwards SESSION_HEADER to the container; a container
# that opens a session answers SESSION_HEADER = "<id>; Expires=<RFC 3339 UTC>", which
# the runtime hands to the client as NEW_SESSION_HEADER.
SESSION_HEADER = "X-Amzn-SageMaker-Session-Id"
NEW_SESSION_HEADER = "X-Amzn-SageMaker-New-Session-Id"
CLOSED_SESSION_HEADER = "X-Amzn-SageMaker-Closed-Session-Id"
NEW_SESSION = "NEW_SESSION"

ClickKind = Literal["boundary", "positive", "negative"]
CropFormat = Literal["png", "jpeg"]


class WireErrorCode(StrEnum):
    SESSION_EXPIRED = "SESSION_EXPIRED"  # unknown/expired session or crop changed: resend with crop pixels
    BAD_REQUEST = "BAD_REQUEST"
    UNSUPPORTED_WIRE_VERSION = "UNSUPPORTED_WIRE_VERSION"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"  # the body is not declared as CONTENT_TYPE
    OVERLOADED = "OVERLOADED"  # inference queue full: retry shortly
    NOT_READY = "NOT_READY"  # model still loading
    INTERNAL = "INTERNAL"


WIRE_ERROR_STATUS: dict[WireErrorCode, int] = {
    WireErrorCode.SESSION_EXPIRED: 404,
    WireErrorCode.BAD_REQUEST: 400,
    WireErrorCode.UNSUPPORTED_WIRE_VERSION: 400,
    WireErrorCode.PAYLOAD_TOO_LARGE: 413,
    WireErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    WireErrorCode.OVERLOADED: 503,
    WireErrorCode.NOT_READY: 503,
    WireErrorCode.INTERNAL: 500,
}


class _Wire(BaseModel):
    # Unknown fields are refused so a peer on another version fails loudly.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CropPixels(_Wire):
    format: CropFormat
    data: str = Field(description="base64 of the PNG or JPEG bytes of the S x S RGB crop")


# Crop pixels: the crop is grown to hold every point, so anything far outside it is a bad peer,
# refused here rather than turned into a Gaussian the size of a galaxy (NaN and inf included).
Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-4 * MAX_INPUT_SIZE, le=4 * MAX_INPUT_SIZE)]


class WirePoint(_Wire):
    x: Coordinate
    y: Coordinate


class WireClick(WirePoint):
    kind: ClickKind


class WireRequest(_Wire):
    wire: Literal["fewclick.wire/1"] = WIRE_VERSION
    # The SageMaker session header is authoritative; this copy is for logs and for
    # hosts that strip headers.
    sessionId: str | None = Field(default=None, max_length=256)
    cropId: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    crop: CropPixels | None = None
    size: int = Field(default=DEFAULT_INPUT_SIZE, ge=MIN_INPUT_SIZE, le=MAX_INPUT_SIZE)
    extremePoints: Annotated[list[WirePoint], Field(min_length=4, max_length=4)]
    clicks: Annotated[list[WireClick], Field(max_length=MAX_WIRE_CLICKS)] = []
    previous: str | None = Field(default=None, description="base64 8-bit PNG of S x S probabilities")


class WireResponse(_Wire):
    wire: Literal["fewclick.wire/1"] = WIRE_VERSION
    sessionId: str
    cropId: str
    size: int
    probabilities: str = Field(description="base64 8-bit grayscale PNG, S x S, value/255 = probability")
    modelVersion: str
    modelMs: float
    cache: Literal["hit", "miss"]


class WireErrorDetail(_Wire):
    code: str
    message: str


class WireError(_Wire):
    error: WireErrorDetail

    @classmethod
    def of(cls, code: WireErrorCode, message: str) -> WireError:
        return cls(error=WireErrorDetail(code=code.value, message=message))


# --- identities -----------------------------------------------------------------


def image_id_for_bytes(data: bytes) -> str:
    """Identity of an image sent inline: its content hash."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def crop_id(image_id: str, box: CropBox, size: int) -> str:
    """Identity of one network input: same image, same box, same side -> same id.

    Box coordinates are rounded so float noise between two proxy invocations does not
    look like a crop change (which would re-send the crop and re-encode).
    """
    coords = ",".join(f"{v:.3f}" for v in box.as_list())
    digest = hashlib.sha256(f"{WIRE_VERSION}|{image_id}|{size}|{coords}".encode()).hexdigest()
    return digest[:32]


# --- pixels -------------------------------------------------------------------


def _b64decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, without decoding pixels.

    Decoding a hostile 6 MB PNG could allocate gigabytes; reading the header first
    lets the caller refuse anything that is not the expected S x S.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            (seg_len,) = struct.unpack(">H", data[i + 2 : i + 4])
            # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC) carry the frame size.
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if i + 9 > len(data):
                    return None
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + seg_len
    return None


def encode_crop(crop_rgb: np.ndarray, fmt: CropFormat = "png") -> CropPixels:
    """An S x S x 3 uint8 RGB crop as wire pixels. PNG is lossless (the model sees
    exactly what training saw); JPEG q95 is ~3x smaller for bandwidth-bound callers."""
    if crop_rgb.ndim != 3 or crop_rgb.shape[2] != 3 or crop_rgb.dtype != np.uint8:
        raise ValueError(f"crop must be (S, S, 3) uint8, got {crop_rgb.shape} {crop_rgb.dtype}")
    bgr = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError("crop encoding failed")
    return CropPixels(format=fmt, data=base64.b64encode(buf.tobytes()).decode("ascii"))


def decode_crop(pixels: CropPixels, size: int) -> np.ndarray:
    """Wire pixels -> (size, size, 3) uint8 RGB; ValueError on anything else."""
    raw = _b64decode(pixels.data)
    dims = image_dimensions(raw)
    if dims != (size, size):
        raise ValueError(f"crop must be a {size}x{size} {pixels.format.upper()}, header says {dims}")
    bgr = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (size, size):
        raise ValueError("crop pixels could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_probabilities(prob: np.ndarray) -> str:
    """(S, S) float probabilities -> base64 8-bit PNG (1/255 steps: far below what
    thresholding at 0.5 or the next click's guidance can notice)."""
    q = np.clip(np.rint(np.asarray(prob, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", q, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError("probability encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def decode_probabilities(data: str, size: int | None = None) -> np.ndarray:
    """base64 8-bit PNG -> (S, S) float32 in [0, 1]."""
    raw = _b64decode(data)
    dims = image_dimensions(raw)
    if dims is None or (size is not None and dims != (size, size)) or dims[0] > MAX_INPUT_SIZE:
        raise ValueError(f"probabilities must be a {size}x{size} PNG, header says {dims}")
    q = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if q is None:
        raise ValueError("probabilities could not be decoded")
    return q.astype(np.float32) / 255.0


# --- session header -------------------------------------------------------------


def format_session_header(session_id: str, expires: datetime) -> str:
    """The container's answer to NEW_SESSION: "<id>; Expires=2025-01-01T00:00:00Z"
    (the pattern botocore's NewSessionResponseHeader declares)."""
    ts = expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{session_id}; Expires={ts}"


def parse_session_header(value: str) -> tuple[str, datetime | None]:
    """ "<id>; Expires=..." (or a bare id) -> (id, expiry or None)."""
    head, _, rest = value.partition(";")
    expires: datetime | None = None
    rest = rest.strip()
    if rest.lower().startswith("expires="):
        try:
            expires = datetime.strptime(rest[len("expires=") :], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            expires = None
    return head.strip(), expires


class WireRequestTooLarge(ValueError):
    pass


def dump_request(req: WireRequest) -> bytes:
    body = req.model_dump_json(exclude_none=True).encode()
    if len(body) > SAGEMAKER_MAX_PAYLOAD_BYTES:
        raise WireRequestTooLarge(f"wire request is {len(body)} bytes, SageMaker takes at most 6 MB")
    return body
