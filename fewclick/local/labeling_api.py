"""The ``/local/`` HTTP routes of `fewclick serve`: what the stand-alone page needs beyond the segment API.

- ``GET /local/config``: class labels, API base path, where labels are written.
- ``GET /local/images``: the image list with progress (``done``/``total``).
- ``GET /local/images/{name}``: the image bytes (behind the token, so images never leak from the page).
- ``GET /local/labels/{name}``: the saved objects of an image (masks, extreme points, clicks).
- ``PUT /local/labels/{name}``: save an image's objects (atomic; see `fewclick.local.labels`).

The Ground Truth task template does not use these: the labeling core never calls them itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from fewclick.local.gateway import HttpResponse
from fewclick.local.labels import LabelStore, LabelStoreError
from fewclick_contract.media_type import json_content_type_problem


class _MethodNotAllowed(LabelStoreError):
    """405, with the method the route takes (the Allow header HTTP requires beside a 405)."""

    def __init__(self, allowed: str) -> None:
        super().__init__(405, "METHOD_NOT_ALLOWED", f"this route takes {allowed}")
        self.allowed = allowed


class LocalLabelApi:
    def __init__(self, store: LabelStore, *, auth_required: bool, image_bucket: str | None = None) -> None:
        self.store = store
        self.auth_required = auth_required
        # Set where the proxy reads this folder as a bucket (`image_bucket.FolderBucket`): the page
        # then names its images by S3 URI instead of sending their bytes.
        self.image_bucket = image_bucket

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        body: bytes,
        content_type: str | None = None,
    ) -> HttpResponse:
        try:
            return self._route(method, path, body, content_type)
        except _MethodNotAllowed as exc:
            return HttpResponse.error(exc.status, exc.code, exc.message, {"Allow": exc.allowed})
        except LabelStoreError as exc:
            return HttpResponse.error(exc.status, exc.code, exc.message)

    def _route(self, method: str, path: str, body: bytes, content_type: str | None) -> HttpResponse:
        parts = path.removeprefix("/local/").split("/", 1)
        resource = parts[0]
        # Image names are percent-encoded by the page; unquote once, then look them up (never join paths).
        name = unquote(parts[1]) if len(parts) == 2 else None
        if resource == "config" and name is None:
            self._only(method, "GET")
            return HttpResponse.json(200, self.config())
        if resource == "images" and name is None:
            self._only(method, "GET")
            return HttpResponse.json(200, self.store.listing())
        if resource == "images" and name:
            self._only(method, "GET")
            data, content_type = self.store.image_bytes(name)
            return HttpResponse(200, data, {"Content-Type": content_type, "Cache-Control": "no-store"})
        if resource == "labels" and name:
            self._only(method, "GET", "PUT")
            if method == "GET":
                return HttpResponse.json(200, self.store.load(name))
            problem = json_content_type_problem(content_type)
            if problem is not None:
                raise LabelStoreError(415, "UNSUPPORTED_MEDIA_TYPE", problem)
            try:
                payload = json.loads(body or b"null")
            except ValueError as exc:
                raise LabelStoreError(400, "BAD_JSON", f"body is not JSON: {exc}") from exc
            return HttpResponse.json(200, self.store.save(name, payload))
        raise LabelStoreError(404, "NOT_FOUND", f"no local route {method} {path}")

    @staticmethod
    def _only(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _MethodNotAllowed(", ".join(allowed))

    def config(self) -> dict[str, Any]:
        return {
            "labels": self.store.labels,
            "apiBaseUrl": "/v1",
            "outDir": str(self.store.out_dir.resolve()),
            "authRequired": self.auth_required,
            "labelMap": "pixel value = object index (1..N), 0 = background",
            "imageBucket": self.image_bucket,
        }
