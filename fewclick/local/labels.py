"""Local label storage for `fewclick serve`: the image folder, one COCO file, one PNG label map per image.

Layout under the output folder (documented in README.md, "Where labels go"):

- ``annotations.json``: ONE COCO "instances" file for every image labelled so far. Segmentations are
  COCO compressed RLE (the API's own mask format, so nothing is re-encoded). Each annotation also keeps
  its ``fewclick`` record (extreme points, corrective clicks, object index, the clicks its mask does not
  follow) so an object can be re-edited.
- ``label_maps/<stem>.png`` (``<name>.png`` where two images share a stem): pixel value = object index
  (1..N, the order of the image's objects; 0 is background; a later object overwrites an earlier one
  where they overlap). 8-bit PNG up to 255 objects, 16-bit beyond. The class of object ``i`` is the
  ``category_id`` of the annotation whose ``fewclick.objectIndex`` is ``i``.

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``, fsync of the
folder): a crash or power loss mid-save leaves the previous file whole, never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fewclick_contract.api import Click, Point, RleMask
from fewclick_contract.click_respect import missed_clicks

ANNOTATIONS_FILE = "annotations.json"
LABEL_MAPS_DIR = "label_maps"
# The API takes PNG and JPEG only, so the local image list offers nothing else.
IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# Temporary files start with this so a restart can tell its own leftovers from a user's files.
TMP_PREFIX = ".fewclick-"
DEFAULT_LABELS: tuple[str, ...] = ("object", "person", "car", "animal")
MAX_OBJECTS_PER_IMAGE = 10_000


class LabelStoreError(Exception):
    """A request the store refuses; ``status`` is the HTTP status the local API answers with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# --- the saved-object JSON the UI PUTs: points, clicks and masks are the API's own models ---


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SavedObject(_Strict):
    label: str = Field(min_length=1, max_length=200)
    extremePoints: list[Point] = Field(min_length=4, max_length=4)
    clicks: list[Click] = Field(default_factory=list, max_length=1000)
    mask: RleMask
    modelVersion: str | None = None


class SaveRequest(_Strict):
    objects: list[SavedObject] = Field(default_factory=list, max_length=MAX_OBJECTS_PER_IMAGE)


def _missed(ann: dict[str, Any], record: dict[str, Any]) -> list[int]:
    """The clicks an annotation saved before the store recorded them does not follow, from its mask (so
    an older annotations.json reopens ringed too); [] where the record is not one this store wrote."""
    try:
        height, width = (int(v) for v in ann["segmentation"]["size"])
        counts = str(ann["segmentation"]["counts"])
        # The same bound a save passes: a hand-edited file's counts never reach pycocotools unchecked.
        if rle_counts_total(counts, height * width) != height * width:
            return []
        mask = mask_utils.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)
        clicks = [(int(c["x"]), int(c["y"]), str(c["type"])) for c in record.get("clicks", [])]
        if not all(0 <= x < width and 0 <= y < height for x, y, _ in clicks):
            return []
        return missed_clicks(mask, clicks)
    except (KeyError, TypeError, ValueError, AttributeError):
        return []


# --- atomic files ---


def _fsync_dir(directory: Path) -> None:
    # The rename itself lives in the directory entry: without this a power cut can undo it.
    with contextlib.suppress(OSError):  # some file systems refuse to open a directory; nothing to sync then
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX + path.name + ".", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temporary files a killed save left behind (their targets are intact by construction)."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for folder in (directory, directory / LABEL_MAPS_DIR):
        if not folder.is_dir():
            continue
        for tmp in folder.glob(TMP_PREFIX + "*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


# --- the store ---


@dataclass(frozen=True)
class ImageEntry:
    name: str
    path: Path
    width: int
    height: int
    content_type: str


# EXIF orientations that turn the picture a quarter turn (5-8): width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112


def _image_size(path: Path) -> tuple[int, int]:
    """The size the picture is seen at: the proxy and browsers apply EXIF rotation (a phone photo
    stored landscape but shot portrait), so masks are that size, not the stored one."""
    # PIL reads only the header here, so listing a large folder stays fast.
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in _QUARTER_TURNS:
            return height, width
        return width, height


def list_images(images_dir: Path, include: Collection[str] | None = None) -> list[ImageEntry]:
    entries: list[ImageEntry] = []
    for path in sorted(images_dir.iterdir()):
        content_type = IMAGE_SUFFIXES.get(path.suffix.lower())
        if content_type is None or not path.is_file() or path.name.startswith("."):
            continue
        if include is not None and path.name not in include:
            continue
        try:
            width, height = _image_size(path)
        except OSError:
            continue  # not a readable image despite its name: leave it out rather than fail the list
        entries.append(ImageEntry(path.name, path, width, height, content_type))
    return entries


def _empty_coco(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "info": {
            "description": "FewClick labels (fewclick serve)",
            "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(labels)],
    }


class LabelStore:
    """The image folder (read only) and the output folder (labels), safe to call from many threads."""

    def __init__(
        self,
        images_dir: Path,
        out_dir: Path,
        labels: Sequence[str] = DEFAULT_LABELS,
        include: Collection[str] | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.out_dir = Path(out_dir)
        self.labels = [label for label in (s.strip() for s in labels) if label] or list(DEFAULT_LABELS)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.images_dir}")
        self._images = {entry.name: entry for entry in list_images(self.images_dir, include)}
        stems: dict[str, int] = {}
        for name in self._images:
            stems[Path(name).stem] = stems.get(Path(name).stem, 0) + 1
        # Two images with one stem (a.jpg, a.png) would share a label map; those keep their full name.
        self._map_names = {
            name: (Path(name).stem if stems[Path(name).stem] == 1 else name) + ".png" for name in self._images
        }
        # One lock: a save is a read-modify-write of the single COCO file.
        self._lock = threading.Lock()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.out_dir)
        # Fail at start, not at the first save, when an existing file is not ours to overwrite.
        self._read_coco()

    @property
    def annotations_path(self) -> Path:
        return self.out_dir / ANNOTATIONS_FILE

    def label_map_path(self, name: str) -> Path:
        return self.out_dir / LABEL_MAPS_DIR / self._map_names[self.image(name).name]

    # -- images --

    def images(self) -> list[ImageEntry]:
        return list(self._images.values())

    def image(self, name: str) -> ImageEntry:
        entry = self._images.get(name)
        if entry is None:
            # Names come from this dict only, so a crafted name ("../x") can never reach the file system.
            raise LabelStoreError(404, "IMAGE_NOT_FOUND", f"no image named {name!r} in {self.images_dir}")
        return entry

    def image_bytes(self, name: str) -> tuple[bytes, str]:
        entry = self.image(name)
        return entry.path.read_bytes(), entry.content_type

    def listing(self) -> dict[str, Any]:
        with self._lock:
            coco = self._read_coco()
        saved: dict[str, int] = {}
        ids = {image["id"]: image["file_name"] for image in coco["images"]}
        for image in coco["images"]:
            saved[image["file_name"]] = 0
        for ann in coco["annotations"]:
            name = ids.get(ann["image_id"])
            if name is not None:
                saved[name] = saved.get(name, 0) + 1
        items = [
            {
                "name": e.name,
                "width": e.width,
                "height": e.height,
                "done": e.name in saved,
                "objects": saved.get(e.name, 0),
            }
            for e in self._images.values()
        ]
        return {"images": items, "done": sum(1 for i in items if i["done"]), "total": len(items)}

    # -- labels --

    def _read_coco(self) -> dict[str, Any]:
        path = self.annotations_path
        if not path.exists():
            return _empty_coco(self.labels)
        try:
            coco = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LabelStoreError(
                500, "LABELS_UNREADABLE", f"{path} is not valid JSON ({exc}); move it away to start afresh"
            ) from exc
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco.get(key), list):
                raise LabelStoreError(500, "LABELS_UNREADABLE", f"{path} has no COCO '{key}' list")
        known = {c["name"] for c in coco["categories"]}
        next_id = max((c["id"] for c in coco["categories"]), default=0) + 1
        for label in self.labels:
            if label not in known:
                coco["categories"].append({"id": next_id, "name": label, "supercategory": "object"})
                next_id += 1
        return coco

    def load(self, name: str) -> dict[str, Any]:
        entry = self.image(name)
        with self._lock:
            coco = self._read_coco()
        image = next((i for i in coco["images"] if i["file_name"] == entry.name), None)
        result: dict[str, Any] = {
            "image": entry.name,
            "width": entry.width,
            "height": entry.height,
            "saved": image is not None,
            "objects": [],
        }
        if image is None:
            return result
        names = {c["id"]: c["name"] for c in coco["categories"]}
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        anns.sort(key=lambda a: a.get("fewclick", {}).get("objectIndex", a["id"]))
        for ann in anns:
            record = ann.get("fewclick", {})
            result["objects"].append(
                {
                    "label": names.get(ann["category_id"], str(ann["category_id"])),
                    "extremePoints": record.get("extremePoints", []),
                    "clicks": record.get("clicks", []),
                    "mask": ann["segmentation"],
                    "modelVersion": record.get("modelVersion"),
                    "missedClicks": record["missedClicks"] if "missedClicks" in record else _missed(ann, record),
                }
            )
        return result

    def save(self, name: str, payload: Any) -> dict[str, Any]:
        entry = self.image(name)
        try:
            request = SaveRequest.model_validate(payload)
        except ValidationError as exc:
            raise LabelStoreError(400, "BAD_LABELS", _validation_message(exc)) from exc
        masks = [self._decode_checked(entry, index, obj) for index, obj in enumerate(request.objects)]
        label_map = _label_map(masks, entry.height, entry.width)
        ok, png = cv2.imencode(".png", label_map)
        if not ok:  # pragma: no cover - cv2 encodes any uint8/uint16 array
            raise LabelStoreError(500, "ENCODE_FAILED", "could not encode the label map as PNG")
        with self._lock:
            coco = self._read_coco()
            category_ids = self._category_ids(coco, [obj.label for obj in request.objects])
            image = next((i for i in coco["images"] if i["file_name"] == entry.name), None)
            if image is None:
                image = {"id": max((i["id"] for i in coco["images"]), default=0) + 1, "file_name": entry.name}
                coco["images"].append(image)
            image.update(width=entry.width, height=entry.height, label_map=f"{LABEL_MAPS_DIR}/{self._map_names[name]}")
            coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != image["id"]]
            next_id = max((a["id"] for a in coco["annotations"]), default=0) + 1
            for index, (obj, binary) in enumerate(zip(request.objects, masks, strict=True)):
                rle = {"size": [entry.height, entry.width], "counts": obj.mask.counts}
                coco["annotations"].append(
                    {
                        "id": next_id + index,
                        "image_id": image["id"],
                        "category_id": category_ids[obj.label],
                        "segmentation": rle,
                        "area": int(binary.sum()),
                        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                        "iscrowd": 0,
                        "fewclick": {
                            "objectIndex": index + 1,
                            "extremePoints": [p.model_dump() for p in obj.extremePoints],
                            "clicks": [c.model_dump() for c in obj.clicks],
                            "modelVersion": obj.modelVersion,
                            # Which clicks the saved mask does not follow, worked out here from the mask itself
                            # (not taken from the page): a reopened object stays ringed, and a reviewer can find
                            # masks a labeler accepted against their own clicks.
                            "missedClicks": missed_clicks(binary, [(c.x, c.y, c.type) for c in obj.clicks]),
                        },
                    }
                )
            # The label map first: if we die between the two writes, the COCO file (what the UI reopens)
            # still describes the previous, complete save.
            map_path = self.label_map_path(name)
            atomic_write_bytes(map_path, png.tobytes())
            atomic_write_bytes(self.annotations_path, json.dumps(coco, indent=1).encode("utf-8"))
        return {
            "saved": True,
            "image": entry.name,
            "objects": len(request.objects),
            "labelMap": str(map_path),
            "annotations": str(self.annotations_path),
        }

    def _category_ids(self, coco: dict[str, Any], labels: Sequence[str]) -> dict[str, int]:
        ids = {c["name"]: c["id"] for c in coco["categories"]}
        next_id = max(ids.values(), default=0) + 1
        for label in labels:
            if label not in ids:
                # A label typed in the UI but not configured still gets a category rather than being lost.
                coco["categories"].append({"id": next_id, "name": label, "supercategory": "object"})
                ids[label] = next_id
                next_id += 1
        return ids

    @staticmethod
    def _decode_checked(entry: ImageEntry, index: int, obj: SavedObject) -> np.ndarray:
        if list(obj.mask.size) != [entry.height, entry.width]:
            raise LabelStoreError(
                400,
                "BAD_LABELS",
                f"object {index + 1}: mask size {list(obj.mask.size)} is not the image's "
                f"[{entry.height}, {entry.width}]",
            )
        for point in [*obj.extremePoints, *obj.clicks]:
            if not (0 <= point.x < entry.width and 0 <= point.y < entry.height):
                raise LabelStoreError(
                    400,
                    "BAD_LABELS",
                    f"object {index + 1}: point ({point.x}, {point.y}) is outside the image",
                )
        pixels = entry.height * entry.width
        try:
            # pycocotools decodes garbage without complaint, so the runs are checked to cover the mask.
            if rle_counts_total(obj.mask.counts, pixels) != pixels:
                raise ValueError(f"the runs do not add up to the mask's {pixels} pixels")
        except ValueError as exc:
            raise LabelStoreError(
                400, "BAD_LABELS", f"object {index + 1}: mask counts are not COCO RLE: {exc}"
            ) from exc
        try:
            binary = mask_utils.decode({"size": [entry.height, entry.width], "counts": obj.mask.counts})
        except Exception as exc:  # pycocotools raises bare exceptions on malformed counts
            raise LabelStoreError(400, "BAD_LABELS", f"object {index + 1}: mask counts are not COCO RLE") from exc
        return binary.astype(bool)


# 7 characters of 5 bits hold any 32-bit run (pycocotools stores runs as uint32).
MAX_RUN_CHARACTERS = 7


def rle_counts_total(counts: str, limit: int) -> int:
    """Sum of the run lengths in a COCO compressed counts string (pycocotools' rleFrString).

    ValueError as soon as the sum passes ``limit`` (the mask's pixel count) or a run takes more than
    `MAX_RUN_CHARACTERS`: without both, a 6 MB string of continuation characters built one number
    of millions of bits, seconds to minutes of a core per request, before being refused anyway.
    """
    total, count = 0, 0
    two_back, one_back = 0, 0  # a run from the fourth on is stored as its difference to the run two back
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("truncated RLE counts")
            if k == MAX_RUN_CHARACTERS:
                raise ValueError(f"an RLE run longer than {MAX_RUN_CHARACTERS} characters")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError("character outside the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if count > 2:
            x += two_back
        if x < 0:
            raise ValueError("negative run length")
        total += x
        if total > limit:
            raise ValueError(f"the runs cover more than the mask's {limit} pixels")
        two_back, one_back = one_back, x
        count += 1
    return total


def _label_map(masks: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    dtype = np.uint8 if len(masks) <= 255 else np.uint16
    label_map = np.zeros((height, width), dtype=dtype)
    for index, binary in enumerate(masks, start=1):
        label_map[binary] = index
    return label_map


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
