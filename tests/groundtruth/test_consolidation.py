"""The consolidation Lambda, fed Ground Truth's documented request and annotation file; S3 via Stubber."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from PIL import Image

from fewclick_contract.labelmap import ANSWER_FIELD, ANSWER_FORMAT, class_color, hex_to_rgb, label_mappings

from .helpers import JOB_NAME, LABELING_BUCKET, load_event

LABELS = ["person", "car"]
H, W = 24, 32


def label_png(classes: np.ndarray, labels: list[str] = LABELS, alpha: int = 255) -> str:
    """What the template's canvas produces: RGBA, white background, class colours, exact pixels."""
    palette = np.array([hex_to_rgb(class_color(i)) for i in range(len(labels) + 1)], np.uint8)
    rgba = np.concatenate([palette[classes], np.full((*classes.shape, 1), alpha, np.uint8)], axis=2)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def answer_content(classes: np.ndarray, labels: list[str] = LABELS, **overrides: Any) -> str:
    """A crowd-form submission: {"<hidden input name>": "<answer JSON as a string>"}."""
    answer = {
        "format": ANSWER_FORMAT,
        "inputImageProperties": {"height": int(classes.shape[0]), "width": int(classes.shape[1])},
        "labelMappings": label_mappings(labels),
        "labeledImage": {"pngImageData": label_png(classes, labels)},
        "objects": [{"label": "person", "extremePoints": [], "clicks": [], "modelVersion": "test"}],
        **overrides,
    }
    return json.dumps({ANSWER_FIELD: json.dumps(answer)})


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def rect(y0: int, y1: int, x0: int, x1: int, cls: int, base: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros((H, W), np.uint8) if base is None else base.copy()
    out[y0:y1, x0:x1] = cls
    return out


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


@pytest.fixture
def s3(aws_env: None) -> Any:
    return boto3.client("s3", region_name="us-east-1")


def run_handler(s3: Any, stub: Stubber, event: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    from consolidation import handler
    from gt_common.s3io import S3Store
    from gt_common.settings import GroundTruthSettings

    handler.configure(GroundTruthSettings(labeling_bucket=LABELING_BUCKET), S3Store(lambda: s3))
    with stub:
        result: list[dict[str, Any]] = handler.lambda_handler(event, context)
        stub.assert_no_pending_responses()
    return result


def test_documented_event_three_workers_and_one_from_s3(s3: Any, context: Any) -> None:
    event = load_event("consolidation_request.json")
    # Object 0: three workers. Two agree on a person box; the third drew it shifted and added a car
    # that nobody else saw: per pixel, the majority wins.
    person = rect(4, 16, 4, 14, 1)
    shifted = rect(6, 18, 6, 16, 1)
    with_car = rect(2, 6, 20, 30, 2, base=person)
    payload_text = json.dumps(load_event("consolidation_payload.json"))
    for index, classes in enumerate((person, shifted, with_car)):
        payload_text = payload_text.replace(f'"__ANSWER_{index}__"', json.dumps(answer_content(classes)))
    payload = json.loads(payload_text)
    # Object 1: one worker whose answer Ground Truth stored in S3 (annotationData.s3Uri).
    single = rect(0, 10, 0, 10, 2)
    answer_uri = payload[1]["annotations"][0]["annotationData"]["s3Uri"]

    stub = Stubber(s3)
    payload_key = event["payload"]["s3Uri"].split("/", 3)[3]
    stub.add_response(
        "get_object", {"Body": _body(json.dumps(payload).encode())}, {"Bucket": LABELING_BUCKET, "Key": payload_key}
    )
    written: dict[str, bytes] = {}

    def expect_put(key: str) -> None:
        stub.add_response(
            "put_object", {}, {"Bucket": LABELING_BUCKET, "Key": key, "Body": ANY, "ContentType": "image/png"}
        )

    out_prefix = event["outputConfig"].split("/", 3)[3]
    expect_put(f"{out_prefix}/fewclick-masks/0.png")
    stub.add_response(
        "get_object",
        {"Body": _body(answer_content(single).encode())},
        {"Bucket": LABELING_BUCKET, "Key": answer_uri.split("/", 3)[3]},
    )
    expect_put(f"{out_prefix}/fewclick-masks/1.png")

    original_put = s3.put_object

    def capture_put(**kwargs: Any) -> Any:
        written[kwargs["Key"]] = kwargs["Body"]
        return original_put(**kwargs)

    s3.put_object = capture_put  # the Stubber still checks the call; we keep the PNG bytes
    result = run_handler(s3, stub, event, context)

    # The documented response: a list of {"datasetObjectId", "consolidatedAnnotation": {"content": {...}}}.
    assert [item["datasetObjectId"] for item in result] == ["0", "1"]
    attribute = event["labelAttributeName"]
    for item in result:
        assert set(item) == {"datasetObjectId", "consolidatedAnnotation"}
        content = item["consolidatedAnnotation"]["content"]
        assert set(content) == {attribute, f"{attribute}-metadata"}
        # The semantic segmentation format: the label map's URI itself, under a name ending in -ref.
        assert attribute.endswith("-ref")
        assert content[attribute].startswith(f"s3://{LABELING_BUCKET}/{out_prefix}/fewclick-masks/")
        meta = content[f"{attribute}-metadata"]
        assert meta["type"] == "groundtruth/semantic-segmentation"
        assert meta["human-annotated"] == "yes"
        assert meta["job-name"] == JOB_NAME
        assert len(meta["creation-date"]) >= 19
        color_map = meta["internal-color-map"]
        assert color_map["0"]["class-name"] == "BACKGROUND" and color_map["0"]["hex-color"] == "#ffffff"
        assert [color_map[str(i)]["class-name"] for i in (1, 2)] == LABELS
        assert len({entry["confidence"] for entry in color_map.values()}) == 1  # one score per image
    json.dumps(result)

    voted = decode_png(written[f"{out_prefix}/fewclick-masks/0.png"])
    person_rgb = hex_to_rgb(class_color(1))
    expected = (person > 0) & (shifted > 0)  # two of three workers agree only on the overlap
    expected |= (person > 0) & (with_car > 0)
    assert np.array_equal(np.all(voted == person_rgb, axis=2), expected)
    assert not np.any(np.all(voted == hex_to_rgb(class_color(2)), axis=2))  # the lone car is outvoted
    confidence = result[0]["consolidatedAnnotation"]["content"][f"{attribute}-metadata"]["internal-color-map"]
    assert 0.5 < confidence["0"]["confidence"] < 1.0

    one = decode_png(written[f"{out_prefix}/fewclick-masks/1.png"])
    assert np.array_equal(np.all(one == hex_to_rgb(class_color(2)), axis=2), single == 2)
    meta1 = result[1]["consolidatedAnnotation"]["content"][f"{attribute}-metadata"]
    assert meta1["internal-color-map"]["1"]["confidence"] == 0.0  # one worker: Ground Truth reports 0.00


def test_unusable_answers_are_left_out_and_all_bad_objects_are_dropped(s3: Any, context: Any) -> None:
    from consolidation.logic import ConsolidationEvent, consolidate_entry

    event = ConsolidationEvent.parse(load_event("consolidation_request.json"))
    good = rect(4, 16, 4, 14, 1)
    foreign = np.zeros((H, W), np.uint8)
    bad_png = answer_content(good, labelMappings={"person": {"color": "#123456"}, "car": {"color": "#654321"}})
    entry = {
        "datasetObjectId": "7",
        "annotations": [
            {"workerId": "w-good", "annotationData": {"content": answer_content(good)}},
            {"workerId": "w-colours", "annotationData": {"content": bad_png}},
            {"workerId": "w-size", "annotationData": {"content": answer_content(np.zeros((5, 5), np.uint8))}},
            {"workerId": "w-label", "annotationData": {"content": answer_content(foreign, ["person", "bus"])}},
            {"workerId": "w-empty", "annotationData": {"content": "{}"}},
        ],
    }
    result = consolidate_entry(entry, event, read_text=lambda uri: "")
    assert result.workers == ["w-good"]
    assert {w for w, _ in result.rejected} == {"w-colours", "w-size", "w-label", "w-empty"}
    assert np.array_equal(result.classes, good)

    from consolidation.logic import AnswerError

    all_bad = [a for a in entry["annotations"] if a["workerId"] in ("w-colours", "w-label", "w-empty")]
    with pytest.raises(AnswerError):
        consolidate_entry({**entry, "annotations": all_bad}, event, read_text=lambda uri: "")


def test_answers_a_worker_shaped_by_hand_are_left_out_not_the_batch(s3: Any, context: Any) -> None:
    """A worker can put anything in the hidden answer field: each odd shape costs that answer only."""
    from consolidation.logic import ConsolidationEvent, consolidate_entry

    event = ConsolidationEvent.parse(load_event("consolidation_request.json"))
    good = rect(4, 16, 4, 14, 1)
    huge = answer_content(good).replace(f'\\"height\\": {H}', '\\"height\\": 1e400')
    assert "1e400" in huge
    entry = {
        "datasetObjectId": "8",
        "annotations": [
            {"workerId": "w-good", "annotationData": {"content": answer_content(good)}},
            {
                "workerId": "w-string-colour",
                "annotationData": {"content": answer_content(good, labelMappings={"person": "#1f77b4"})},
            },
            {"workerId": "w-huge", "annotationData": {"content": huge}},
            {"workerId": "w-data", "annotationData": ["not", "an", "object"]},
            "not an annotation",
        ],
    }
    result = consolidate_entry(entry, event, read_text=lambda uri: "")
    assert result.workers == ["w-good"]
    assert {w for w, _ in result.rejected} == {"w-string-colour", "w-huge", "w-data", "?"}
    # An answer whose S3 object is gone (or not ours) costs that worker only.
    from botocore.exceptions import ClientError

    def gone(uri: str) -> str:
        raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")

    missing = {"workerId": "w-gone", "annotationData": {"s3Uri": "s3://labeling/output/x/worker-response/gone.json"}}
    result = consolidate_entry({**entry, "annotations": [entry["annotations"][0], missing]}, event, read_text=gone)
    assert result.workers == ["w-good"] and [w for w, _ in result.rejected] == ["w-gone"]

    # A colour that is no colour, an answer file that is not text, an s3Uri that is no string: each
    # costs that worker only (they used to drop the whole data object, good answers included).
    def binary(uri: str) -> str:
        return b"\xff\xfe not utf-8".decode("utf-8")

    odd = [
        {
            "workerId": "w-red",
            "annotationData": {"content": answer_content(good, labelMappings={"person": {"color": "red"}})},
        },
        {
            "workerId": "w-null",
            "annotationData": {"content": answer_content(good, labelMappings={"person": {"color": None}})},
        },
        {"workerId": "w-binary", "annotationData": {"s3Uri": "s3://labeling/output/x/worker-response/bin.json"}},
        {"workerId": "w-number", "annotationData": {"s3Uri": 42}},
        {"workerId": "w-list", "annotationData": {"s3Uri": ["s3://a/b"]}},
    ]
    result = consolidate_entry({**entry, "annotations": [entry["annotations"][0], *odd]}, event, read_text=binary)
    assert result.workers == ["w-good"] and np.array_equal(result.classes, good)
    assert {w for w, _ in result.rejected} == {"w-red", "w-null", "w-binary", "w-number", "w-list"}

    # An entry that is not a data object is one data object refused (the handler logs it and goes on).
    from consolidation.logic import AnswerError

    for odd in ({"annotations": []}, ["not", "an", "entry"]):
        with pytest.raises(AnswerError, match="datasetObjectId"):
            consolidate_entry(odd, event, read_text=lambda uri: "")  # type: ignore[arg-type]


def test_majority_vote_ties_go_to_background_and_transparent_is_background() -> None:
    from consolidation.label_image import decode_label_png, majority_vote

    a = rect(0, 10, 0, 10, 1)
    b = np.zeros((H, W), np.uint8)
    voted, confidence = majority_vote([a, b], 2)
    assert not voted.any()  # 1-1 split: background (conservative)
    assert confidence == 0.5
    voted, confidence = majority_vote([a, a, b], 2)
    assert np.array_equal(voted, a) and confidence == pytest.approx(2 / 3, abs=1e-3)
    voted, confidence = majority_vote([b, b], 2)
    assert not voted.any() and confidence == 1.0
    # Two classes tied: background too, whichever class is listed first.
    person, car = rect(0, 10, 0, 10, 1), rect(0, 10, 0, 10, 2)
    for pair in ([person, car], [car, person]):
        voted, confidence = majority_vote(pair, 2)
        assert not voted.any() and confidence == 0.0  # no worker left those pixels as background
    voted, _ = majority_vote([person, car, car], 2)
    assert np.array_equal(voted, car)

    colors = {"#ffffff": 0, class_color(1): 1, class_color(2): 2}
    transparent = label_png(a, alpha=0)
    assert not decode_label_png(transparent, colors, (H, W)).any()


def test_mask_location_and_event_parsing() -> None:
    from consolidation.logic import ConsolidationEvent, mask_uri

    event = ConsolidationEvent.parse(load_event("consolidation_request.json"))
    assert event.job_name == JOB_NAME and event.label_categories == ("person", "car")
    inside = mask_uri(event, LABELING_BUCKET, "0")
    assert inside.endswith("/annotations/consolidated-annotation/output/fewclick-masks/0.png")
    elsewhere = ConsolidationEvent.parse({**load_event("consolidation_request.json"), "outputConfig": "s3://other/x"})
    assert mask_uri(elsewhere, LABELING_BUCKET, "../a b") == (
        f"s3://{LABELING_BUCKET}/output/{JOB_NAME}/fewclick-masks/.._a_b.png"
    )
    with pytest.raises(ValueError):
        ConsolidationEvent.parse({"labelingJobArn": "x"})
