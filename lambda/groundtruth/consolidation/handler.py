"""Consolidation Lambda entry point: reads the workers' answers from S3, writes one PNG per data
object, returns the documented response (see `consolidation.logic`).

Handler: ``consolidation.handler.lambda_handler``. Environment: LABELING_BUCKET.
A data object whose answers are all unusable is left out of the response and logged (as the
aws-samples recipe does), so one bad submission does not fail the whole batch.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from gt_common.s3io import S3Store
from gt_common.settings import GroundTruthSettings

from .label_image import encode_label_png
from .logic import AnswerError, ConsolidationEvent, consolidate_entry, mask_uri, output_item

logger = Logger(service="fewclick-gt-consolidation")

_settings: GroundTruthSettings | None = None
_store: S3Store | None = None


def configure(settings: GroundTruthSettings | None = None, store: S3Store | None = None) -> None:
    global _settings, _store
    _settings = settings or GroundTruthSettings.from_env()
    _store = store or S3Store()


def consolidate(event: dict[str, Any], settings: GroundTruthSettings, store: S3Store) -> list[dict[str, Any]]:
    parsed = ConsolidationEvent.parse(event)
    entries = store.get_json(parsed.payload_uri)
    items: list[dict[str, Any]] = []
    for entry in entries:
        object_id = str(entry.get("datasetObjectId", "?")) if isinstance(entry, dict) else "?"
        try:
            result = consolidate_entry(entry, parsed, lambda uri: store.get_bytes(uri).decode("utf-8"))
            uri = mask_uri(parsed, settings.labeling_bucket, result.dataset_object_id)
            store.put_bytes(uri, encode_label_png(result.classes, len(result.labels)), "image/png")
        except AnswerError as exc:
            logger.error("data object not consolidated", extra={"datasetObjectId": object_id, "reason": str(exc)})
            continue
        except (KeyError, TypeError, AttributeError, ValueError):
            # A shape no check above foresaw: one data object is left out, never the whole batch.
            logger.exception("data object not consolidated (unexpected shape)", extra={"datasetObjectId": object_id})
            continue
        for worker, reason in result.rejected:
            logger.warning(
                "answer left out", extra={"datasetObjectId": object_id, "workerId": worker, "reason": reason}
            )
        items.append(output_item(result, parsed, uri))
        logger.info(
            "consolidated",
            extra={
                "datasetObjectId": object_id,
                "workers": len(result.workers),
                "confidence": result.confidence,
                "labelRef": uri,
            },
        )
    return items


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    if _settings is None or _store is None:
        configure()
    assert _settings is not None and _store is not None
    return consolidate(event, _settings, _store)
