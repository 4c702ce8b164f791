"""The Ground Truth label-map contract between the task template (browser) and the consolidation Lambda.

A worker submits, in the crowd-form hidden input named `ANSWER_FIELD`, a JSON object shaped like
Ground Truth's own ``crowd-semantic-segmentation`` answer (see the "Semantic Segmentation Payload"
example in https://docs.aws.amazon.com/sagemaker/latest/dg/sms-custom-templates-step3-lambda-requirements.html),
plus the clicks that produced it::

    {"format": "fewclick.groundtruth/1",
     "inputImageProperties": {"height": H, "width": W},
     "labelMappings": {"<label>": {"color": "#rrggbb"}, ...},
     "labeledImage": {"pngImageData": "<base64 PNG, BACKGROUND_COLOR + one colour per class>"},
     "objects": [{"label", "extremePoints", "clicks", "modelVersion", "missedClicks"}, ...],
     "skipped": {"incomplete": n, "withoutMask": n}}   # objects left out (the page refuses to submit those)

``missedClicks`` are indices into an object's ``clicks`` that its mask does not follow (the segment
API's answer for that mask; see `fewclick_contract.click_respect`).
Class ``i`` (1-based, in label-category order) is painted `class_color(i)`; 0 is the background.
The consolidated output uses the same colours in its ``internal-color-map`` (the semantic
segmentation output format of https://docs.aws.amazon.com/sagemaker/latest/dg/sms-data-output.html).
One palette, here: the template builder injects it into the page, the consolidation Lambda reads it.
Standard library only (every Lambda asset and the CLI import it).
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Iterable, Sequence

ANSWER_FIELD = "fewclick"
ANSWER_FORMAT = "fewclick.groundtruth/1"
BACKGROUND_LABEL = "BACKGROUND"
BACKGROUND_COLOR = "#ffffff"
SEMANTIC_SEGMENTATION_TYPE = "groundtruth/semantic-segmentation"
# Ground Truth's semantic segmentation tool allows dozens of classes; 50 keeps colours distinct.
MAX_LABELS = 50
# Printable, no markup characters: labels end up in HTML, JSON, file names of exports and logs.
_LABEL = re.compile(r"^[\w][\w .,+()/-]{0,63}$")
# d3 "category10" (what Ground Truth's own tools use, e.g. #2ca02c in the docs' examples).
_BASE_PALETTE: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _extend_palette(count: int) -> tuple[str, ...]:
    colors = list(_BASE_PALETTE)
    step = 0
    while len(colors) < count:
        # Golden-angle hues at two saturations: deterministic, distinct, never white.
        hue = (step * 0.618033988749895) % 1.0
        sat = 0.85 if step % 2 == 0 else 0.55
        r, g, b = colorsys.hsv_to_rgb(hue, sat, 0.9)
        color = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
        if color not in colors and color != BACKGROUND_COLOR:
            colors.append(color)
        step += 1
    return tuple(colors)


PALETTE: tuple[str, ...] = _extend_palette(MAX_LABELS)


class LabelError(ValueError):
    pass


def class_color(index: int) -> str:
    """Colour of class ``index`` (0 = background, 1..MAX_LABELS = the job's labels in order)."""
    if index == 0:
        return BACKGROUND_COLOR
    if not 1 <= index <= len(PALETTE):
        raise LabelError(f"class index {index} is outside 0..{len(PALETTE)}")
    return PALETTE[index - 1]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        raise LabelError(f"{color!r} is not a #rrggbb colour")
    value = int(color[1:], 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def validate_labels(labels: Iterable[str]) -> list[str]:
    """Strip, refuse empties, duplicates, the reserved background name and unsafe characters."""
    result: list[str] = []
    seen: set[str] = set()
    for raw in labels:
        label = str(raw).strip()
        if not label:
            continue
        if not _LABEL.match(label):
            raise LabelError(f"label {label!r}: use letters, digits, spaces and . , + ( ) / - (at most 64 characters)")
        if label.casefold() == BACKGROUND_LABEL.casefold():
            raise LabelError(f"{BACKGROUND_LABEL!r} is reserved for unlabeled pixels")
        if label.casefold() in seen:
            raise LabelError(f"label {label!r} is listed twice")
        seen.add(label.casefold())
        result.append(label)
    if not result:
        raise LabelError("at least one label is required")
    if len(result) > MAX_LABELS:
        raise LabelError(f"at most {MAX_LABELS} labels are supported, got {len(result)}")
    return result


def label_mappings(labels: Sequence[str]) -> dict[str, dict[str, str]]:
    """``{"<label>": {"color": "#rrggbb"}}`` as in Ground Truth's semantic segmentation answer."""
    return {label: {"color": class_color(i)} for i, label in enumerate(labels, start=1)}


def internal_color_map(labels: Sequence[str], confidence: float) -> dict[str, dict[str, object]]:
    """The ``internal-color-map`` of a semantic segmentation output manifest line."""
    entries: dict[str, dict[str, object]] = {
        "0": {"class-name": BACKGROUND_LABEL, "hex-color": BACKGROUND_COLOR, "confidence": confidence}
    }
    for i, label in enumerate(labels, start=1):
        entries[str(i)] = {"class-name": label, "hex-color": class_color(i), "confidence": confidence}
    return entries


def label_category_config(labels: Sequence[str]) -> dict[str, object]:
    """The label category configuration file CreateLabelingJob's LabelCategoryConfigS3Uri points at
    (format from the CreateLabelingJob API reference: document-version 2018-11-28)."""
    return {"document-version": "2018-11-28", "labels": [{"label": label} for label in validate_labels(labels)]}


def labels_from_category_config(config: object) -> list[str]:
    """The labels of a label category configuration file (the inverse of `label_category_config`)."""
    if not isinstance(config, dict) or not isinstance(config.get("labels"), list):
        raise LabelError("a label category configuration needs a 'labels' list")
    return validate_labels(str(entry.get("label", "")) for entry in config["labels"] if isinstance(entry, dict))
