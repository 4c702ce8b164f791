"""The proxy's logic, free of AWS glue: click JSON -> wire request -> full-image mask.

One call of `Segmenter.segment`:
1. resolve the image (inline, S3, or only the session token's memory of it),
2. check every point lies inside the image,
3. compute the crop with `crop_box_for_clicks` (the geometry training used) and its id,
4. send the crop pixels only when the endpoint cannot have them (new session, crop
   changed, session expired), otherwise only points: a warm click carries kilobytes,
5. paste the crop probabilities back onto the full image, threshold at 0.5, encode, and name the
   clicks the mask still does not follow (`missedClicks`).

Session expiry is recovered here: with an S3 image the proxy re-reads the object and
retries with pixels in a new session (invisible to the UI); with an inline image it
cannot (it keeps no copy), so the UI gets 404 SESSION_EXPIRED and resends the image.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from fewclick_contract.api import (
    ApiError,
    Base64Image,
    ErrorCode,
    RleMask,
    S3Image,
    SegmentRequest,
    SegmentResponse,
    Timings,
)
from fewclick_contract.click_constraints import served_constraints, served_probabilities
from fewclick_contract.click_respect import missed_clicks
from fewclick_contract.crop import CropBox, crop_box_for_clicks, extract_crop
from fewclick_contract.edge_refine import crop_side_for
from fewclick_contract.wire import (
    WireClick,
    WirePoint,
    WireRequest,
    crop_id,
    decode_probabilities,
    encode_crop,
)

from . import masks
from .config import ProxyConfig
from .endpoint_client import REQUEST_BUDGET_S, EndpointResult, SessionExpiredAtEndpoint
from .image_source import S3_WORST_CASE_S, LoadedImage
from .session_token import InvalidToken, SessionToken, decode_token, encode_token

RequestType = Literal["new", "warm"]
# SageMaker's SessionId pattern (InvokeEndpoint API reference), with its 256-character limit.
_SM_SESSION_RE = re.compile(r"[A-Za-z0-9](-*[A-Za-z0-9])*")


class Images(Protocol):
    def load(self, ref: S3Image | Base64Image) -> LoadedImage: ...

    def load_s3(self, uri: str) -> LoadedImage: ...


class Endpoint(Protocol):
    def invoke(self, request: WireRequest, session_id: str | None, deadline: float | None = None) -> EndpointResult: ...


@dataclass(frozen=True)
class SegmentOutcome:
    response: SegmentResponse
    request_type: RequestType  # "new": crop pixels were sent; "warm": points only
    cache: Literal["hit", "miss"]
    recovered: bool  # an expired session was rebuilt transparently
    calls: int  # InvokeEndpoint calls made
    wire_request_bytes: int
    wire_response_bytes: int


class Segmenter:
    def __init__(self, config: ProxyConfig, images: Images, endpoint: Endpoint) -> None:
        self.config = config
        self.images = images
        self.endpoint = endpoint

    def segment(
        self, req: SegmentRequest, started: float | None = None, budget_s: float = REQUEST_BUDGET_S
    ) -> SegmentOutcome:
        started = time.perf_counter() if started is None else started
        # One budget for everything below (S3 reads, endpoint attempts, a session rebuilt), so the
        # answer always beats API Gateway's 29 s (and the Lambda's own timeout: `budget_s`).
        deadline = started + min(budget_s, REQUEST_BUDGET_S)
        token = self._token(req.sessionId)
        image = self.images.load(req.image) if req.image is not None else None
        if image is not None and token is not None and image.image_id != token.img:
            # Another image under an old session id: start over rather than mix crops.
            token = None
        if image is not None:
            height, width, image_id = image.height, image.width, image.image_id
        else:
            assert token is not None  # the schema requires image or sessionId
            height, width, image_id = token.h, token.w, token.img

        # Checked as Python ints first: JSON integers are unbounded, and one past float64's range
        # would make the conversion below raise (a 500) instead of answering what is wrong.
        _check_inside(req, width, height)
        extreme = np.array([(p.x, p.y) for p in req.extremePoints], dtype=np.float64)
        clicks = np.array([(c.x, c.y) for c in req.clicks], dtype=np.float64).reshape(-1, 2)
        box = crop_box_for_clicks(extreme, clicks if len(clicks) else None)
        # A box larger than the network's input travels at a finer side, for edge refinement.
        size = crop_side_for(box, self.config.input_size)

        cid = crop_id(image_id, box, size)
        send_crop = token is None or token.crop != cid
        if send_crop and image is None:
            # The crop grew past what the endpoint holds; only S3 images can be re-read.
            image = self._reload(token, "the new points moved the crop", height, width, deadline)
            image_id = image.image_id
            cid = crop_id(image_id, box, size)

        recovered = False
        calls = 1
        sm_session = None if token is None else token.sm
        wire = self._wire_request(req, box, size, cid, image if send_crop else None, extreme, clicks, sm_session)
        try:
            # A changed crop keeps the session: the endpoint replaces that session's features.
            result = self.endpoint.invoke(wire, sm_session, deadline)
        except SessionExpiredAtEndpoint:
            if image is None:
                image = self._reload(token, "the session expired", height, width, deadline)
                if image.image_id != image_id:
                    image_id = image.image_id
                    cid = crop_id(image_id, box, size)
            wire = self._wire_request(req, box, size, cid, image, extreme, clicks, None)
            recovered, send_crop, calls = True, True, 2
            try:
                result = self.endpoint.invoke(wire, None, deadline)  # NEW_SESSION: always routable
            except SessionExpiredAtEndpoint:
                raise ApiError(ErrorCode.ENDPOINT_ERROR, "the model refused a fresh session", 1) from None

        prob = decode_probabilities(result.response.probabilities, size)
        # The same click-consistency pass as the model library's evaluation (one implementation).
        click_points = [(c.x, c.y, c.type) for c in req.clicks]
        constraints = served_constraints(extreme, click_points)
        mask = masks.binarize(
            served_probabilities(prob, box, height, width, constraints, network_size=self.config.input_size)
        )
        new_token = SessionToken(
            sm=result.session_id,
            img=image_id,
            h=height,
            w=width,
            crop=cid,
            s3=image.s3_uri if image is not None else (token.s3 if token is not None else None),
        )
        response = SegmentResponse(
            sessionId=encode_token(new_token, self.config.session_secret),
            mask=RleMask(**masks.encode_rle(mask)),
            polygons=masks.polygons(mask) if "polygon" in req.output else None,
            png=masks.encode_png(mask) if "png" in req.output else None,
            missedClicks=missed_clicks(mask, click_points),
            modelVersion=result.response.modelVersion,
            timings=Timings(
                modelMs=round(result.response.modelMs, 3),
                totalMs=round((time.perf_counter() - started) * 1000.0, 3),
            ),
        )
        return SegmentOutcome(
            response=response,
            request_type="new" if send_crop else "warm",
            cache=result.response.cache,
            recovered=recovered,
            calls=calls,
            wire_request_bytes=result.request_bytes,
            wire_response_bytes=result.response_bytes,
        )

    # --- helpers ---------------------------------------------------------------------------

    def _token(self, session_id: str | None) -> SessionToken | None:
        if session_id is None:
            return None
        try:
            token = decode_token(session_id, self.config.session_secret)
        except InvalidToken as exc:
            if "signature" in str(exc):
                # A rotated secret invalidates old sessions; the UI recovers by resending.
                raise ApiError(
                    ErrorCode.SESSION_EXPIRED, "the session is no longer valid: send the image again"
                ) from None
            raise ApiError(ErrorCode.VALIDATION_ERROR, f"sessionId: {exc}") from None
        # Without SESSION_TOKEN_SECRET a token is not signed, so its fields are as untrusted as the body:
        # a forged 10^5 x 10^5 size would make the paste allocate 40 GB, and a session id with CR/LF would
        # reach the InvokeEndpoint header. Hold them to what this API itself issues.
        sm_ok = len(token.sm) <= 256 and _SM_SESSION_RE.fullmatch(token.sm) is not None
        if token.h * token.w > self.config.max_image_pixels or not sm_ok:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "sessionId: malformed session id")
        return token

    def _reload(self, token: SessionToken | None, why: str, height: int, width: int, deadline: float) -> LoadedImage:
        if token is not None and token.s3:
            if time.perf_counter() + S3_WORST_CASE_S > deadline:
                # A slow re-read could not end in time; the next try starts with a whole budget.
                raise ApiError(ErrorCode.ENDPOINT_UNAVAILABLE, f"{why}; no time left to re-read the image, retry", 1)
            image = self.images.load_s3(token.s3)
            if (image.height, image.width) != (height, width):
                # The object was replaced by another picture: the clicks no longer apply.
                raise ApiError(ErrorCode.SESSION_EXPIRED, "the S3 object changed since the session started")
            return image
        raise ApiError(
            ErrorCode.SESSION_EXPIRED,
            f"{why} and the server no longer has this image: send the request again with the image",
        )

    def _wire_request(
        self,
        req: SegmentRequest,
        box: CropBox,
        size: int,
        cid: str,
        image: LoadedImage | None,
        extreme: np.ndarray,
        clicks: np.ndarray,
        session_id: str | None,
    ) -> WireRequest:
        crop = None
        if image is not None:
            crop = encode_crop(extract_crop(image.rgb, box, size), self.config.crop_format)
        ext_c = box.to_crop(extreme, size)
        clk_c = box.to_crop(clicks, size) if len(clicks) else np.zeros((0, 2))
        return WireRequest(
            # Also in the body: the container still finds the session if a hop drops the header.
            sessionId=session_id,
            cropId=cid,
            crop=crop,
            size=size,
            extremePoints=[WirePoint(x=round(float(x), 2), y=round(float(y), 2)) for x, y in ext_c],
            clicks=[
                WireClick(x=round(float(x), 2), y=round(float(y), 2), kind=c.type)
                for (x, y), c in zip(clk_c, req.clicks, strict=True)
            ],
        )


def _check_inside(req: SegmentRequest, width: int, height: int) -> None:
    points: Sequence[tuple[str, int, int]] = [
        *((f"extremePoints[{i}]", p.x, p.y) for i, p in enumerate(req.extremePoints)),
        *((f"clicks[{i}]", c.x, c.y) for i, c in enumerate(req.clicks)),
    ]
    for name, x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise ApiError(
                ErrorCode.POINT_OUTSIDE_IMAGE,
                f"{name} ({x}, {y}) is outside the {width}x{height} image",
            )
