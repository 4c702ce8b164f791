"""S3 access for the Ground Truth Lambdas: parse URIs, read JSON/bytes, write bytes (boto3 lives here)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$")
# Worker answers and payloads are small JSON files; an object this large is not one of them.
MAX_JSON_BYTES = 64 * 1024 * 1024


class S3UriError(ValueError):
    pass


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); anything else raises S3UriError."""
    match = _S3_URI.match(uri or "")
    if not match:
        raise S3UriError(f"not an s3://bucket/key URI: {uri!r}")
    return match["bucket"], match["key"]


def default_s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


class S3Store:
    """The few S3 calls the Lambdas make; the client is built on first use (or injected)."""

    def __init__(self, client_factory: Callable[[], Any] = default_s3_client) -> None:
        self._factory = client_factory
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def get_bytes(self, uri: str, max_bytes: int = MAX_JSON_BYTES) -> bytes:
        bucket, key = parse_s3_uri(uri)
        obj = self.client.get_object(Bucket=bucket, Key=key)
        data: bytes = obj["Body"].read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ValueError(f"{uri} is larger than {max_bytes} bytes")
        return data

    def get_json(self, uri: str) -> Any:
        return json.loads(self.get_bytes(uri))

    def put_bytes(self, uri: str, data: bytes, content_type: str) -> None:
        bucket, key = parse_s3_uri(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
