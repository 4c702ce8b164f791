"""`python -m fewclick_model.pack`: a compact copy of training folders for a remote trainer.

A lent GPU machine receives at most a few tens of MB with each command, while
coco_mval + davis weigh ~180 MB. Training only ever looks at a crop around the
object (box + at most ~25 % margin, then resized to the network side), so each
instance keeps a generous window around its object, downscaled only where the
object stays well above the network side, and re-encoded as JPEG. The output
has the same ``images/`` + ``masks/`` layout and names, so ``fewclick train
--data`` reads it unchanged and the held-out split (by name) is the same.

``--without-holdout SHARE`` leaves out the instances a network holding out SHARE never trains on
(`data.is_holdout`): a fine-tune from such weights holds out the same share, so they would travel
for nothing, and the copy must fit the device machine's 64 MiB beside the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .cli_types import fraction
from .data import is_holdout, list_instances, load_instance

# Margin kept on each side of the object's box, as a share of its larger side: twice
# what training crops use, so box jitter and rotation still see real pixels.
WINDOW_MARGIN = 0.5


def pack_instance(
    image: np.ndarray, mask: np.ndarray, min_extent: int, quality: int
) -> tuple[bytes, bytes, float] | None:
    """JPEG of the window around the object and PNG of its mask; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    pad = int(np.ceil(WINDOW_MARGIN * extent))
    h, w = mask.shape
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    window = image[y0:y1, x0:x1]
    window_mask = mask[y0:y1, x0:x1].astype(np.uint8) * 255
    scale = min(1.0, min_extent / extent)
    if scale < 1.0:
        size = (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale)))
        window = cv2.resize(window, size, interpolation=cv2.INTER_AREA)
        window_mask = cv2.resize(window_mask, size, interpolation=cv2.INTER_AREA)
        window_mask = np.where(window_mask >= 128, 255, 0).astype(np.uint8)
    ok_image, jpeg = cv2.imencode(".jpg", cv2.cvtColor(window, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    ok_mask, png = cv2.imencode(".png", window_mask, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not (ok_image and ok_mask):
        raise RuntimeError("OpenCV could not encode the packed instance")
    return jpeg.tobytes(), png.tobytes(), scale


def pack_folder(source: Path, target: Path, min_extent: int, quality: int, without_holdout: float = 0.0) -> int:
    (target / "images").mkdir(parents=True, exist_ok=True)
    (target / "masks").mkdir(parents=True, exist_ok=True)
    written = 0
    pairs = [(i, m) for i, m in list_instances(source) if not is_holdout(m.stem, without_holdout)]
    for image_path, mask_path in tqdm(pairs, desc=f"pack {source.name}", unit="img"):
        inst = load_instance(image_path, mask_path)
        packed = pack_instance(inst.image, inst.mask, min_extent, quality)
        if packed is None:
            continue
        jpeg, png, _ = packed
        (target / "images" / f"{inst.name}.jpg").write_bytes(jpeg)
        (target / "masks" / f"{inst.name}.png").write_bytes(png)
        written += 1
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="folder holding the training datasets (e.g. ../shared/datasets)")
    parser.add_argument("target", type=Path, help="where the packed copy goes")
    parser.add_argument("--datasets", nargs="+", default=["coco_mval", "davis"])
    parser.add_argument(
        "--min-extent", type=int, default=320, help="objects larger than this (px) are downscaled to it"
    )
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument(
        "--without-holdout",
        type=fraction,
        default=0.0,
        metavar="SHARE",
        help="leave out the instances held out at this share (what a fine-tune of such weights never trains on)",
    )


def _move_into(staging: Path, target: Path) -> None:
    """Every file under ``staging`` to the same place under ``target``, replacing what is there."""
    for path in sorted(staging.rglob("*")):
        destination = target / path.relative_to(staging)
        if path.is_dir():
            destination.mkdir(exist_ok=True)
        else:
            os.replace(path, destination)


def run(args: argparse.Namespace) -> int:
    source, target = args.source, args.target
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder (the source holds one folder per dataset)")
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: is a file, not a folder (the target is where the packed copy goes)")
    target_existed = target.exists()
    target.mkdir(parents=True, exist_ok=True)
    # Packed inside the target and moved into place only once every instance has packed: a corrupt
    # image or a missing dataset half-way leaves the target as it was, not half a copy that looks whole.
    staging = Path(tempfile.mkdtemp(prefix=".packing-", dir=target))
    try:
        total = 0
        for name in args.datasets:
            total += pack_folder(source / name, staging / name, args.min_extent, args.quality, args.without_holdout)
        _move_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not target_existed and not any(target.iterdir()):
            target.rmdir()
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"summary: packed {total} instances into {target} ({size / 1e6:.1f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m fewclick_model.pack", description=__doc__.splitlines()[0])
    add_arguments(cli)
    args = cli.parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError) as exc:
        # A missing source, a target that is a file, an image OpenCV cannot read: the user's to fix, so
        # one line naming the path (each message does), worded as argparse words its own refusals.
        print(f"{cli.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
