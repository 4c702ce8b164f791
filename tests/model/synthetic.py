"""Synthetic benchmark folders (textured backgrounds with one ellipse each, known exactly) and the
network at its smallest, for the model library's tests."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from fewclick_model import evaluate, train
from fewclick_model.checkpoints import export_weights
from fewclick_model.data import Instance, SampleGenerator, list_instances, load_instance
from fewclick_model.encoding import CropClick
from fewclick_model.network import FewClickNet

# Top, left, bottom and right extreme points of an object filling most of a 64 px crop (the tiny
# network's side): the start of every crop-level click sequence in the predictor's tests.
TINY_CROP_EXTREMES = (
    CropClick(32, 5, "boundary"),
    CropClick(5, 32, "boundary"),
    CropClick(32, 58, "boundary"),
    CropClick(58, 32, "boundary"),
)


def mirrored_clicks(clicks: Sequence[CropClick], side: int = 64) -> list[CropClick]:
    """``clicks`` on the mirror image of a ``side`` px crop (the tiny network's side by default)."""
    return [CropClick(side - 1 - c.x, c.y, c.kind) for c in clicks]


def train_parser() -> argparse.ArgumentParser:
    """`fewclick train`'s own argument parser, for tests that run or refuse its CLI."""
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser


def evaluate_parser() -> argparse.ArgumentParser:
    """`fewclick evaluate`'s own argument parser, for tests that run its CLI."""
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser


def make_instance(rng: np.random.Generator, h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 90, size=(h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    centre = (int(rng.integers(50, w - 50)), int(rng.integers(40, h - 40)))
    axes = (int(rng.integers(18, 40)), int(rng.integers(14, 32)))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    colour = rng.integers(150, 255, size=3)
    image[mask > 0] = (0.7 * colour + 0.3 * image[mask > 0]).astype(np.uint8)
    return image, mask


def make_instances(count: int, seed: int) -> list[Instance]:
    """``count`` synthetic instances in memory (``obj0``, ``obj1``, ...; the object as a bool mask, no unknown band)."""
    rng = np.random.default_rng(seed)
    instances = []
    for i in range(count):
        image, mask = make_instance(rng)
        instances.append(Instance(f"obj{i}", image, mask > 0, None))
    return instances


def write_folder(root: Path, count: int, seed: int = 0, ignore_band: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, mask = make_instance(rng)
        if ignore_band:
            # GrabCut-style unknown band around the edge.
            edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)) > 0
            mask = np.where(edge, 128, mask).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"obj{i:02d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"obj{i:02d}.png"), mask)
    return root


def export_tiny_weights(path: Path, info: dict[str, object] | None = None) -> str:
    """The network at its smallest (64 px input, 16 decoder channels), untrained past the ImageNet
    encoder, exported to ``path`` with ``info`` recorded (e.g. a hold-out share); its model version.
    Seed torch first where the decoder's initial weights matter."""
    return export_weights(FewClickNet(pretrained=True, decoder_channels=16).eval(), path, 64, 16, dict(info or {}))


def steps_on_one_batch(data: Path, steps: int, **step_options: Any) -> list[tuple[float, float, int]]:
    """`train.train_step` ``steps`` times on one fixed batch of 4 crops of ``data``'s coco_mval folder,
    from the ImageNet encoder with a small decoder, ``step_options`` passed on (e.g. ``focal_gamma``):
    each step's (loss, batch IoU, passes), deterministic."""
    torch.manual_seed(0)
    instances = [load_instance(i, m) for i, m in list_instances(data / "coco_mval")]
    batch = train.TrainingBatch.of([SampleGenerator(instances, 64, seed=3).sample() for _ in range(4)])
    model = FewClickNet(pretrained=True, decoder_channels=16).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    device = torch.device("cpu")
    return [train.train_step(model, optimizer, batch, rng, device, **step_options) for _ in range(steps)]
