"""Where images come from: S3 objects in allowed buckets, or inline base64.

Both paths end in `decode_image`, which refuses anything that is not a PNG or JPEG of a
sane size *before* decoding pixels (a 1 KB PNG can claim 100k x 100k pixels).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from fewclick_contract.api import ApiError, Base64Image, ErrorCode, S3Image
from fewclick_contract.wire import image_id_for_bytes

from .config import ProxyConfig

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_ALLOWED_FORMATS = ("PNG", "JPEG")
_DATA_URL_RE = re.compile(r"^data:image/[a-z+.\-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    image_id: str
    s3_uri: str | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def parse_s3_uri(uri: str, allowed_buckets: frozenset[str]) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key), refusing buckets off the allow-list and
    keys that only make sense as path tricks (``..``, ``//``, backslashes, control chars)."""
    if not uri.startswith("s3://"):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "image.s3Uri must look like s3://bucket/key")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not _BUCKET_RE.match(bucket) or not key:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "image.s3Uri must look like s3://bucket/key")
    if bucket not in allowed_buckets:
        # Exact match only: no prefixes, no case folding, no wildcards.
        raise ApiError(ErrorCode.BUCKET_NOT_ALLOWED, f"bucket {bucket!r} is not allowed for this API")
    segments = key.split("/")
    if (
        len(key.encode()) > 1024
        or key.startswith("/")
        or "\\" in key
        or _CONTROL_RE.search(key)
        or any(seg in ("", ".", "..") for seg in segments)
        or "?" in key
        or "#" in key
    ):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "image.s3Uri key is not a plain object key")
    return bucket, key


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, 3) uint8 RGB, EXIF orientation applied (as browsers show it,
    so the UI's click coordinates match the pixels)."""
    try:
        with warnings.catch_warnings():
            # Pillow warns past MAX_IMAGE_PIXELS and raises past twice that; we want the
            # limit to be ours and to be an error either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS)
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ApiError(ErrorCode.IMAGE_UNDECODABLE, "the image has no pixels")
            if width * height > max_pixels:
                raise ApiError(
                    ErrorCode.IMAGE_TOO_LARGE,
                    f"the image is {width}x{height}; at most {max_pixels} pixels are accepted",
                )
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(ErrorCode.IMAGE_TOO_LARGE, "the image is too large to decode") from None
    except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError):
        raise ApiError(ErrorCode.IMAGE_UNDECODABLE, "the image is not a readable PNG or JPEG") from None
    return np.ascontiguousarray(rgb)


def decode_base64_payload(text: str, max_bytes: int) -> bytes:
    text = _DATA_URL_RE.sub("", text.strip(), count=1)
    if len(text) * 3 // 4 > max_bytes:
        raise ApiError(ErrorCode.IMAGE_TOO_LARGE, f"inline images are limited to {max_bytes} bytes")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(ErrorCode.IMAGE_UNDECODABLE, "image.base64 is not valid base64") from None


class ImageSource:
    def __init__(self, config: ProxyConfig, s3_client_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._s3_factory = s3_client_factory or _default_s3_client
        self._s3: Any = None

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = self._s3_factory()
        return self._s3

    def load(self, ref: S3Image | Base64Image) -> LoadedImage:
        if isinstance(ref, S3Image):
            return self.load_s3(ref.s3Uri)
        from fewclick_contract.api import MAX_INLINE_IMAGE_BYTES

        data = decode_base64_payload(ref.base64, MAX_INLINE_IMAGE_BYTES)
        return LoadedImage(decode_image(data, self.config.max_image_pixels), image_id_for_bytes(data))

    def load_s3(self, uri: str) -> LoadedImage:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = parse_s3_uri(uri, self.config.allowed_buckets)
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key)
            size = int(obj.get("ContentLength") or 0)
            if size > self.config.max_image_bytes:
                raise ApiError(
                    ErrorCode.IMAGE_TOO_LARGE, f"the object is {size} bytes; the limit is {self.config.max_image_bytes}"
                )
            data = obj["Body"].read(self.config.max_image_bytes + 1)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in ("NoSuchKey", "NotFound", "NoSuchBucket") or status == 404:
                raise ApiError(ErrorCode.IMAGE_NOT_FOUND, f"no object at {uri}") from None
            if code in ("AccessDenied", "Forbidden") or status == 403:
                raise ApiError(ErrorCode.ACCESS_DENIED, f"the API may not read {uri}") from None
            if code in ("SlowDown", "ServiceUnavailable", "Throttling") or status in (429, 503):
                raise ApiError(ErrorCode.ENDPOINT_UNAVAILABLE, "S3 is busy; retry shortly", retry_after=1) from None
            raise ApiError(ErrorCode.ENDPOINT_ERROR, f"reading the image from S3 failed ({code})") from None
        except BotoCoreError:
            raise ApiError(ErrorCode.ENDPOINT_UNAVAILABLE, "S3 is unreachable; retry shortly", retry_after=2) from None
        if len(data) > self.config.max_image_bytes:
            raise ApiError(ErrorCode.IMAGE_TOO_LARGE, f"the object is over {self.config.max_image_bytes} bytes")
        etag = str(obj.get("ETag") or "").strip('"')
        # URI + ETag: a re-uploaded object is a new image, so stale crops are never reused.
        image_id = f"{uri}#{etag}" if etag else image_id_for_bytes(data)
        return LoadedImage(decode_image(data, self.config.max_image_pixels), image_id, s3_uri=uri)


# An S3 read must leave most of the request's 26 s budget to the model (`endpoint_client.REQUEST_BUDGET_S`):
# at worst two attempts of 2 s to connect and 5 s without a byte (a stall, not a slow transfer).
S3_CONNECT_TIMEOUT_S = 2.0
S3_READ_TIMEOUT_S = 5.0
S3_MAX_ATTEMPTS = 2
S3_WORST_CASE_S = S3_MAX_ATTEMPTS * (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S)


def _default_s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        config=Config(
            connect_timeout=S3_CONNECT_TIMEOUT_S,
            read_timeout=S3_READ_TIMEOUT_S,
            retries={"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        ),
    )
