"""Lambda entry point (API Gateway REST proxy integration): thin AWS glue only.

Routes: ``POST /v1/segment`` (see `fewclick_contract.api`) and ``GET /v1/openapi.json``.
Everything that can fail becomes ``{"error": {"code", "message"}}`` with its status;
an unexpected exception is logged with its trace and answered as a plain 500
INTERNAL_ERROR, never with the trace. In Lambda without a session-token key (see
`session_secret`) the segment routes answer 503 and log why: session ids are never unsigned there.

Observability: Powertools Logger (correlation id = API Gateway request id), Tracer
(X-Ray), Metrics (EMF): per-request latency by request type (new image / warm click),
model latency, session cache hits/misses, transparent recoveries, errors by class.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from pydantic import ValidationError

from fewclick_contract.api import (
    MAX_CLICKS,
    OPENAPI_PATH,
    SEGMENT_PATH,
    ApiError,
    ErrorCode,
    SegmentRequest,
    openapi_schema,
)
from fewclick_contract.media_type import json_content_type_problem
from fewclick_contract.task_token import TASK_SEGMENT_PATH
from fewclick_contract.wire import SAGEMAKER_MAX_PAYLOAD_BYTES

from .config import ProxyConfig
from .endpoint_client import REQUEST_BUDGET_S, EndpointClient
from .image_source import ImageSource
from .segment import Segmenter
from .session_secret import SessionSecretUnavailable, resolve_session_secret
from .task_scope import enforce_task_scope, task_image, with_task_cors

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "FewClick"))

# Routes without metrics (openapi, most errors) are normal, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# Lambda's own response limit is 6 MB; leave room for the envelope.
MAX_RESPONSE_BYTES = SAGEMAKER_MAX_PAYLOAD_BYTES - 64 * 1024


def _cors() -> CORSConfig | None:
    origins = [o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()]
    if not origins:
        return None
    # Retry-After is not a header browsers show a cross-origin page unless told: the UI's
    # back-off on 429/503 reads it.
    return CORSConfig(
        allow_origin=origins[0], extra_origins=origins[1:] or None, expose_headers=["Retry-After"], max_age=600
    )


app = APIGatewayRestResolver(cors=_cors())

_segmenter: Segmenter | None = None


def configure(
    segmenter: Segmenter | None = None,
    config: ProxyConfig | None = None,
    s3_client_factory: Callable[[], Any] | None = None,
) -> Segmenter:
    """Build (or inject) the logic and its data access; clients are reused across invocations.

    Tests and the local stack call this to point the proxy elsewhere (``s3_client_factory``: what
    reads images by S3 URI; the local stack's reads its images folder); the Lambda runtime builds it
    lazily from the environment on the first request.
    """
    global _segmenter
    if segmenter is None:
        try:
            # The session-token key is resolved here, once per cold start (Secrets Manager in AWS).
            cfg = resolve_session_secret(config or ProxyConfig.from_env())
        except SessionSecretUnavailable as exc:
            # Nothing is cached: a transient read failure heals on the next request.
            logger.error("refusing to serve: no session-token key", extra={"reason": exc.detail})
            raise
        segmenter = Segmenter(cfg, ImageSource(cfg, s3_client_factory), EndpointClient(cfg))
    _segmenter = segmenter
    return segmenter


def get_segmenter() -> Segmenter:
    return _segmenter if _segmenter is not None else configure()


def _metric(name: str, unit: MetricUnit, value: float) -> None:
    # Powertools never clears a disabled metric set (local runs disable metrics): it would grow
    # per request and warn about re-added dimensions, so a disabled set is never fed.
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=unit, value=value)


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body if isinstance(body, str) else json.dumps(body, separators=(",", ":")),
        headers=headers or {},
    )


def _parse_request(raw_body: str | None) -> SegmentRequest:
    if not raw_body:
        raise ApiError(ErrorCode.INVALID_JSON, "the request body is empty")
    if raw_body.startswith("\ufeff"):
        # JSON text has no byte-order mark (RFC 8259, 8.1); said by name, not as "not valid JSON".
        raise ApiError(ErrorCode.INVALID_JSON, "the request body starts with a byte-order mark: send JSON without one")
    try:
        payload = json.loads(raw_body)
    except ValueError:
        raise ApiError(ErrorCode.INVALID_JSON, "the request body is not valid JSON") from None
    except RecursionError:
        # json recurses per nesting level: ~1000 '[' (a 2 KB body) would otherwise be a 500.
        raise ApiError(ErrorCode.INVALID_JSON, "the request body is nested too deeply") from None
    try:
        return SegmentRequest.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        for err in errors:
            if tuple(err["loc"]) == ("clicks",) and err["type"] == "too_long":
                raise ApiError(
                    ErrorCode.TOO_MANY_CLICKS,
                    f"at most {MAX_CLICKS} corrective clicks per request; start a new object instead",
                ) from None
        errors = _errors_of_the_image_shape_sent(errors, payload)
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"{where}: {first['msg']}{more}") from None


# Kept back from the Lambda's remaining time: the answer still has to be decoded, pasted, encoded and sent.
ANSWER_MARGIN_S = 1.0


def _lambda_budget_s(started: float) -> float:
    """Seconds from ``started`` this request may spend before the Lambda itself is stopped (its
    timeout may be set below API Gateway's 29 s): killed, it would leave the caller API Gateway's
    bare 502, without the JSON error or CORS headers a 503 carries."""
    context = getattr(app, "lambda_context", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return REQUEST_BUDGET_S
    elapsed = time.perf_counter() - started
    budget = elapsed + remaining() / 1000.0 - ANSWER_MARGIN_S
    if budget <= elapsed:
        raise ApiError(
            ErrorCode.ENDPOINT_UNAVAILABLE, "too little of this call's time is left to ask the model; retry", 1
        )
    return budget


# The `image` union's branches, by the key that says which one a caller meant.
_IMAGE_SHAPES = {"base64": "Base64Image", "s3Uri": "S3Image"}


def _errors_of_the_image_shape_sent(errors: list[Any], payload: Any) -> list[Any]:
    """pydantic reports a bad `image` against every branch of its union, the one the caller did not
    mean first ("image.S3Image.s3Uri: Field required" for a short base64 string). Keep the errors
    of the branch named by the key sent, without the branch name, or say which keys are expected."""
    image = payload.get("image") if isinstance(payload, dict) else None
    branch_errors = [
        e for e in errors if len(e["loc"]) > 1 and e["loc"][0] == "image" and e["loc"][1] in _IMAGE_SHAPES.values()
    ]
    if not branch_errors:
        return errors
    others = [e for e in errors if e not in branch_errors]
    sent = [key for key in _IMAGE_SHAPES if isinstance(image, dict) and key in image]
    if len(sent) == 1:
        meant = [{**e, "loc": ("image", *e["loc"][2:])} for e in branch_errors if e["loc"][1] == _IMAGE_SHAPES[sent[0]]]
        return meant + others
    msg = (
        "give either base64 or s3Uri, not both"
        if sent
        else "must be an object with base64 (the image's bytes) or s3Uri"
    )
    return [{"loc": ("image",), "msg": msg}, *others]


@app.post(SEGMENT_PATH)
@app.post(TASK_SEGMENT_PATH)  # Ground Truth workers: task-token authorizer, one image (task_scope)
@tracer.capture_method(capture_response=False)
def segment() -> Response:
    started = time.perf_counter()
    # First, before reading the request: without a session-token key in AWS nothing is served (503).
    segmenter = get_segmenter()
    problem = json_content_type_problem(app.current_event.headers.get("Content-Type"))
    if problem is not None:
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, problem)
    try:
        raw_body = app.current_event.decoded_body
    except ValueError:
        # A body that is not UTF-8 arrives base64-encoded and Powertools' decode raises (binascii or
        # UnicodeDecodeError, both ValueErrors): that is the client's bad JSON, not our 500.
        raise ApiError(
            ErrorCode.INVALID_JSON, "the request body is not UTF-8 JSON text (or, marked base64, not base64)"
        ) from None
    req = _parse_request(raw_body)
    allowed_image = task_image(app.current_event.raw_event)
    if allowed_image is not None:
        enforce_task_scope(allowed_image, req, segmenter.config.session_secret)
    outcome = segmenter.segment(req, started, _lambda_budget_s(started))
    body = outcome.response.model_dump_json(exclude_none=True)
    if len(body) > MAX_RESPONSE_BYTES:
        raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, "the mask encodings exceed 6 MB; ask for output ['rle'] only")

    timings = outcome.response.timings
    if not is_metrics_disabled():
        # One request per invocation, flushed at its end: the dimension is this request's type.
        metrics.add_dimension(name="RequestType", value=outcome.request_type)
    _metric("SegmentLatency", MetricUnit.Milliseconds, timings.totalMs)
    _metric("ModelLatency", MetricUnit.Milliseconds, timings.modelMs)
    _metric("SessionCacheHit" if outcome.cache == "hit" else "SessionCacheMiss", MetricUnit.Count, 1)
    if outcome.recovered:
        _metric("SessionRecovered", MetricUnit.Count, 1)
    if req.clicks:
        # 1 when this answer does not follow its newest click: the average is the share of answers that
        # leave the labeler's latest click unfollowed, the model card's "clicks respected" on real clicks
        # (clicks the UI coalesced into one request count once).
        newest_missed = len(req.clicks) - 1 in outcome.response.missedClicks
        _metric("NewestClickMissed", MetricUnit.Count, 1 if newest_missed else 0)
    tracer.put_annotation(key="requestType", value=outcome.request_type)
    tracer.put_annotation(key="cache", value=outcome.cache)
    logger.info(
        "segment",
        extra={
            "requestType": outcome.request_type,
            "cache": outcome.cache,
            "recovered": outcome.recovered,
            "endpointCalls": outcome.calls,
            "wireRequestBytes": outcome.wire_request_bytes,
            "wireResponseBytes": outcome.wire_response_bytes,
            "modelMs": timings.modelMs,
            "totalMs": timings.totalMs,
        },
    )
    return _json_response(200, body)


@app.get(OPENAPI_PATH)
def openapi() -> Response:
    return _json_response(200, openapi_schema())


@app.exception_handler(ApiError)
def handle_api_error(exc: ApiError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    _metric(f"Errors{exc.status // 100}xx", MetricUnit.Count, 1)
    log = logger.warning if exc.status >= 500 else logger.info
    log("request refused", extra={"errorCode": exc.code.value, "status": exc.status, "detail": exc.message})
    return _json_response(exc.status, exc.body(), headers)


@app.exception_handler(Exception)
def handle_unexpected(exc: Exception) -> Response:
    # The trace goes to the log (with the correlation id), never to the caller.
    logger.exception("unhandled error")
    _metric("Errors5xx", MetricUnit.Count, 1)
    err = ApiError(ErrorCode.INTERNAL_ERROR, "internal error; quote the request id to support")
    return _json_response(err.status, err.body())


@app.not_found
def handle_not_found(_exc: Exception) -> Response:
    err = ApiError(ErrorCode.NOT_FOUND, "no such route")
    return _json_response(err.status, err.body())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return with_task_cors(event, app.resolve(event, context))
