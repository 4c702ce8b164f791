"""Pure logic of the consolidation Lambda: the documented event in, the documented response out.

Shapes are Ground Truth's, from "Post-annotation Lambda" in
https://docs.aws.amazon.com/sagemaker/latest/dg/sms-custom-templates-step3-lambda-requirements.html:

- event: ``{"version", "labelingJobArn", "labelCategories", "labelAttributeName", "roleArn",
  "payload": {"s3Uri"}, "outputConfig"}`` (``outputConfig`` as in the aws-samples
  aws-sagemaker-ground-truth-recipe annotation_consolidation_lambda.py);
- payload file: ``[{"datasetObjectId", "dataObject": {"s3Uri"|"content"}, "annotations":
  [{"workerId", "annotationData": {"content"|"s3Uri"}}]}]``;
- response: ``[{"datasetObjectId", "consolidatedAnnotation": {"content": {...}}}]`` where the
  content follows the semantic segmentation output of
  https://docs.aws.amazon.com/sagemaker/latest/dg/sms-data-output.html (``internal-color-map``,
  ``type: groundtruth/semantic-segmentation``, ``human-annotated``, ``creation-date``, ``job-name``).

Reading S3 is the caller's job (a ``read_text(uri)`` callable is passed in), so this module is
testable with plain dicts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.exceptions import ClientError
from gt_common.s3io import S3UriError, parse_s3_uri

from fewclick_contract.labelmap import (
    ANSWER_FIELD,
    ANSWER_FORMAT,
    BACKGROUND_COLOR,
    SEMANTIC_SEGMENTATION_TYPE,
    LabelError,
    internal_color_map,
    validate_labels,
)

from .label_image import LabelImageError, decode_label_png, majority_vote

_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")


class AnswerError(ValueError):
    """One worker's answer cannot be used (it is left out of the vote, with this reason logged)."""


@dataclass(frozen=True)
class ConsolidationEvent:
    job_arn: str
    job_name: str
    label_attribute_name: str
    payload_uri: str
    output_config: str | None
    label_categories: tuple[str, ...]

    @classmethod
    def parse(cls, event: dict[str, Any]) -> ConsolidationEvent:
        try:
            job_arn = str(event["labelingJobArn"])
            label_attribute = str(event["labelAttributeName"])
            payload_uri = str(event["payload"]["s3Uri"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a Ground Truth consolidation event (missing {exc})") from None
        categories: tuple[str, ...] = ()
        raw = event.get("labelCategories")
        if isinstance(raw, list) and raw:
            try:
                categories = tuple(validate_labels(str(c) for c in raw))
            except LabelError:
                categories = ()  # fall back to the labels the answers carry
        output = event.get("outputConfig")
        return cls(
            job_arn=job_arn,
            job_name=job_arn.rsplit("/", 1)[-1],
            label_attribute_name=label_attribute,
            payload_uri=payload_uri,
            output_config=str(output) if isinstance(output, str) and output else None,
            label_categories=categories,
        )


@dataclass
class Consolidated:
    dataset_object_id: str
    classes: np.ndarray
    labels: tuple[str, ...]
    confidence: float
    workers: list[str]
    rejected: list[tuple[str, str]] = field(default_factory=list)


def parse_answer(content: Any) -> dict[str, Any]:
    """A worker's ``annotationData.content`` -> our answer object.

    crowd-form submits ``{"<input name>": "<value>"}``; our hidden input's value is the JSON answer
    as a string (some tooling re-parses it into an object, so both are accepted).
    """
    try:
        outer = json.loads(content) if isinstance(content, str) else content
        answer = outer[ANSWER_FIELD]
        if isinstance(answer, str):
            answer = json.loads(answer)
    except (ValueError, KeyError, TypeError):
        raise AnswerError(f"no '{ANSWER_FIELD}' answer in the submission") from None
    if not isinstance(answer, dict) or answer.get("format") != ANSWER_FORMAT:
        raise AnswerError(f"the answer is not in the {ANSWER_FORMAT} format")
    return answer


def answer_size(answer: dict[str, Any]) -> tuple[int, int]:
    try:
        props = answer["inputImageProperties"]
        height, width = int(props["height"]), int(props["width"])
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: a worker's 1e400
        raise AnswerError("inputImageProperties.height/width are missing") from None
    if height <= 0 or width <= 0:
        raise AnswerError("inputImageProperties are not a positive size")
    return height, width


def answer_labels(answer: dict[str, Any]) -> list[str]:
    mappings = answer.get("labelMappings")
    if not isinstance(mappings, dict):
        raise AnswerError("labelMappings is missing")
    return list(mappings)


def color_to_class(answer: dict[str, Any], labels: Sequence[str]) -> dict[str, int]:
    """The worker's colours -> the job's class indices (0 = background)."""
    mapping: dict[str, int] = {BACKGROUND_COLOR: 0}
    for label, spec in answer["labelMappings"].items():
        if label not in labels:
            raise AnswerError(f"label {label!r} is not a label of this job")
        if not isinstance(spec, dict):
            raise AnswerError(f"labelMappings[{label!r}] is not an object with a colour")
        color = str(spec.get("color", "")).lower()
        if color in mapping:
            raise AnswerError(f"colour {color} is used for two classes")
        mapping[color] = labels.index(label) + 1
    return mapping


def job_labels(event: ConsolidationEvent, answers: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The job's classes in order: the event's labelCategories, else the first answer's labels."""
    if event.label_categories:
        return event.label_categories
    for answer in answers:
        try:
            return tuple(validate_labels(answer_labels(answer)))
        except (AnswerError, LabelError):
            continue
    raise AnswerError("no label categories in the event and no usable answer")


def consolidate_entry(
    entry: dict[str, Any], event: ConsolidationEvent, read_text: Callable[[str], str]
) -> Consolidated:
    """Decode every worker's label map, drop unusable answers (with reasons), vote on the rest."""
    if not isinstance(entry, dict) or "datasetObjectId" not in entry:
        raise AnswerError("a payload entry without a datasetObjectId")
    dataset_object_id = str(entry["datasetObjectId"])
    parsed: list[tuple[str, dict[str, Any]]] = []
    rejected: list[tuple[str, str]] = []
    for annotation in entry.get("annotations") or []:
        if not isinstance(annotation, dict):
            rejected.append(("?", "an annotation that is not an object"))
            continue
        worker = str(annotation.get("workerId", "?"))
        data = annotation.get("annotationData") or {}
        if not isinstance(data, dict):
            rejected.append((worker, "annotationData is not an object"))
            continue
        # The docs spell it s3Uri; the recipe sample reads s3uri: accept both.
        uri = data.get("s3Uri") or data.get("s3uri")
        if uri is not None and not isinstance(uri, str):
            rejected.append((worker, f"annotationData.s3Uri is {type(uri).__name__}, not an s3:// URI"))
            continue
        try:
            content = read_text(uri) if uri and data.get("content") is None else data.get("content")
        except (ClientError, S3UriError, UnicodeDecodeError) as exc:
            # This worker's answer is gone, not ours to read or not text: it alone is left out, not the batch.
            rejected.append((worker, f"the answer at {uri} cannot be read ({exc})"))
            continue
        try:
            parsed.append((worker, parse_answer(content)))
        except AnswerError as exc:
            rejected.append((worker, str(exc)))
    labels = job_labels(event, [answer for _, answer in parsed])
    size = _common_size(parsed)
    maps: list[np.ndarray] = []
    workers: list[str] = []
    for worker, answer in parsed:
        try:
            this_size = answer_size(answer)
            if this_size != size:
                raise AnswerError(f"image size {this_size} differs from the other answers' {size}")
            image = (answer.get("labeledImage") or {}).get("pngImageData")
            if not isinstance(image, str):
                raise AnswerError("labeledImage.pngImageData is missing")
            maps.append(decode_label_png(image, color_to_class(answer, labels), this_size))
            workers.append(worker)
        except (AnswerError, LabelImageError, LabelError) as exc:  # LabelError: a colour that is no colour
            rejected.append((worker, str(exc)))
    if not maps:
        reasons = "; ".join(f"{w}: {r}" for w, r in rejected) or "no annotations"
        raise AnswerError(f"no usable answer for data object {dataset_object_id} ({reasons})")
    classes, confidence = majority_vote(maps, len(labels))
    return Consolidated(dataset_object_id, classes, labels, confidence, workers, rejected)


def _common_size(parsed: Sequence[tuple[str, dict[str, Any]]]) -> tuple[int, int] | None:
    """The image size most answers report (this Lambda cannot read the image itself): one worker
    whose page measured the image differently cannot decide the size for the others."""
    counts: dict[tuple[int, int], int] = {}
    for _, answer in parsed:
        try:
            size = answer_size(answer)
        except AnswerError:
            continue
        counts[size] = counts.get(size, 0) + 1
    return max(counts, key=lambda s: counts[s]) if counts else None


def mask_uri(event: ConsolidationEvent, labeling_bucket: str, dataset_object_id: str) -> str:
    """Where the consolidated PNG goes: beside Ground Truth's output when that is in our bucket
    (the only bucket this Lambda may write), else under ``output/<job>/`` of it. One key per data
    object, so a retried consolidation overwrites instead of piling up copies."""
    name = _SAFE_ID.sub("_", dataset_object_id) or "object"
    if event.output_config:
        try:
            bucket, key = parse_s3_uri(event.output_config.rstrip("/") + "/")
        except S3UriError:
            bucket, key = "", ""
        if bucket == labeling_bucket and key.strip("/"):
            return f"s3://{bucket}/{key.strip('/')}/fewclick-masks/{name}.png"
    return f"s3://{labeling_bucket}/output/{event.job_name}/fewclick-masks/{name}.png"


def output_item(
    result: Consolidated, event: ConsolidationEvent, label_ref: str, now: datetime | None = None
) -> dict[str, Any]:
    """One element of the consolidation response, in the semantic segmentation output format: the
    label map's URI as a plain string under the label attribute (whose name ends in ``-ref``, as
    augmented-manifest training and adjustment jobs expect), its colour map in ``<attribute>-metadata``."""
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    attribute = event.label_attribute_name
    return {
        "datasetObjectId": result.dataset_object_id,
        "consolidatedAnnotation": {
            "content": {
                attribute: label_ref,
                f"{attribute}-metadata": {
                    "internal-color-map": internal_color_map(result.labels, result.confidence),
                    "type": SEMANTIC_SEGMENTATION_TYPE,
                    "human-annotated": "yes",
                    "creation-date": created,
                    "job-name": event.job_name,
                },
            }
        },
    }
