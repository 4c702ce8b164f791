"""The images folder as the proxy's S3 bucket: only the store's names, S3's error codes, content ETags."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from botocore.exceptions import ClientError

from fewclick.local.image_bucket import LOCAL_IMAGE_BUCKET, FolderBucket
from fewclick.local.labels import LabelStore


def test_the_folder_answers_get_object_like_s3(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((8, 8, 3), 10, np.uint8))
    (tmp_path / "secret.png").write_bytes(b"outside the folder")
    bucket = FolderBucket(LabelStore(images, tmp_path / "out"))

    first = bucket.get_object(Bucket=LOCAL_IMAGE_BUCKET, Key="a.png")
    data = first["Body"].read()
    assert data == (images / "a.png").read_bytes() and first["ContentLength"] == len(data)
    assert bucket.uri("a.png") == f"s3://{LOCAL_IMAGE_BUCKET}/a.png"

    # A changed file is another image to the proxy (its image id is URI + ETag).
    cv2.imwrite(str(images / "a.png"), np.full((8, 8, 3), 200, np.uint8))
    assert bucket.get_object(Bucket=LOCAL_IMAGE_BUCKET, Key="a.png")["ETag"] != first["ETag"]

    for bucket_name, key, code in (
        (LOCAL_IMAGE_BUCKET, "missing.png", "NoSuchKey"),
        (LOCAL_IMAGE_BUCKET, "../secret.png", "NoSuchKey"),  # looked up by name, never joined to a path
        ("another-bucket", "a.png", "NoSuchBucket"),
    ):
        with pytest.raises(ClientError) as caught:
            bucket.get_object(Bucket=bucket_name, Key=key)
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_file_that_cannot_be_read_is_an_s3_error_not_a_crash(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((8, 8, 3), 10, np.uint8))
    bucket = FolderBucket(LabelStore(images, tmp_path / "out"))
    (images / "a.png").unlink()  # listed at start, gone now
    with pytest.raises(ClientError) as caught:
        bucket.get_object(Bucket=LOCAL_IMAGE_BUCKET, Key="a.png")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
