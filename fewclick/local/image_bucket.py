"""The images folder of `fewclick serve`, read by the proxy as an S3 bucket (GetObject only).

The UI on AWS sends an image by S3 URI; an inline image is limited to 4.5 MB of base64 (API Gateway
and Lambda take 6 MB bodies), which a 12-megapixel phone photo exceeds. Locally the page names its
image `s3://fewclick-local-images/<file name>` and the proxy reads it through this stand-in, on the
same code path (size limits, ETag-keyed image ids, a session rebuilt from "S3" after it expired) as
in AWS. Only the names in the label store are readable: a key is looked up, never joined to a path.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from botocore.exceptions import ClientError

from .labels import LabelStore, LabelStoreError

LOCAL_IMAGE_BUCKET = "fewclick-local-images"


def _not_found(code: str, message: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject"
    )


class FolderBucket:
    """What `fewclick_proxy.image_source.ImageSource` calls on its S3 client."""

    def __init__(self, store: LabelStore, bucket: str = LOCAL_IMAGE_BUCKET) -> None:
        self.store = store
        self.bucket = bucket

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        if Bucket != self.bucket:
            raise _not_found("NoSuchBucket", f"no bucket {Bucket!r} here (only {self.bucket!r})")
        try:
            path = self.store.image(Key).path
        except LabelStoreError:
            raise _not_found("NoSuchKey", f"no image {Key!r} in {self.store.images_dir}") from None
        try:
            data = path.read_bytes()
        except OSError as exc:  # unreadable now (removed, permissions): what S3 says of a failed read
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": str(exc)}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                "GetObject",
            ) from None
        # S3's ETag of a simple upload: a file changed on disk is a new image to the proxy.
        return {"Body": io.BytesIO(data), "ContentLength": len(data), "ETag": f'"{hashlib.md5(data).hexdigest()}"'}

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{name}"
