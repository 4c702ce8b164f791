"""Predictors: the expensive part once per crop, the cheap part once per click.

`CropPredictor` works in crop pixels and is what the model server holds;
`FewClickPredictor` wraps it SAM-style (`set_image` / `predict`) for callers
that speak full-image pixels (evaluation, notebooks, the GrabCut comparison),
using the same `fewclick_contract.crop` geometry as the proxy.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fewclick_contract.click_constraints import served_constraints, served_probabilities
from fewclick_contract.crop import CropBox, crop_box_for_clicks, extract_crop, paste_crop
from fewclick_contract.edge_refine import crop_side_for, prepare_crop, refine_probabilities

from . import DEFAULT_INPUT_SIZE
from .checkpoints import DEFAULT_WEIGHTS, load_weights
from .encoding import CropClick, encode_guidance
from .folding import fold_batch_norms
from .network import FewClickNet, ImageFeatures
from .simulator import Click

logger = logging.getLogger(__name__)

UNTRAINED_VERSION = "untrained"
PREFIX_CACHE_ENTRIES = 32


class PrefixCache(OrderedDict[tuple[CropClick, ...], np.ndarray]):
    """Predictions of a session's click prefixes, newest last, bounded.

    Undo, redo and a resent request all land on a prefix already computed, and a
    new click costs one decoder pass because its previous mask is here.
    """

    def __init__(self, max_entries: int = PREFIX_CACHE_ENTRIES) -> None:
        super().__init__()
        self.max_entries = max_entries

    def put(self, key: tuple[CropClick, ...], value: np.ndarray) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.max_entries:
            self.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.values())


class CropPredictor:
    def __init__(
        self,
        model: FewClickNet,
        input_size: int,
        model_version: str,
        device: str | torch.device = "cpu",
        mirror_first: bool = True,
    ) -> None:
        self.device = torch.device(device)
        # Flip test-time augmentation for the first mask only: chosen on held-out data (+0.3 mIoU
        # with the extreme points alone on both sets, later clicks even) for ~35 ms more on a new
        # image on 2 cores, inside its 300 ms budget. A click stays one decoder pass: averaging
        # every click too was better still but over the 40 ms click budget (model card).
        self.mirror_first = mirror_first
        # Channels-last (NHWC) is oneDNN's native layout: on 2 CPU cores a click takes ~25 %
        # less time than in NCHW, which spent it converting layouts. CUDA keeps the layout
        # its latency was measured in.
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        self.input_size = input_size
        self.model_version = model_version

    @torch.inference_mode()
    def encode(self, crop_rgb: np.ndarray) -> ImageFeatures:
        """(S, S, 3) uint8 RGB crop -> the features every click of this crop reuses."""
        s = self.input_size
        if crop_rgb.shape != (s, s, 3) or crop_rgb.dtype != np.uint8:
            raise ValueError(f"crop must be ({s}, {s}, 3) uint8, got {crop_rgb.shape} {crop_rgb.dtype}")
        rgb = torch.from_numpy(np.ascontiguousarray(crop_rgb)).permute(2, 0, 1)[None].float().to(self.device)
        if not self.mirror_first:
            return self.model.encode_image(rgb.contiguous(memory_format=self.memory_format))
        both = self.model.encode_image(torch.cat([rgb, rgb.flip(-1)]).contiguous(memory_format=self.memory_format))
        mirrored = ImageFeatures(both.stride2[1:], both.stride4[1:])
        return ImageFeatures(both.stride2[:1], both.stride4[:1], mirrored)

    @torch.inference_mode()
    def predict(
        self, features: ImageFeatures, clicks: Sequence[CropClick], previous: np.ndarray | None = None
    ) -> np.ndarray:
        """Probabilities (S, S) float32 for the clicks (extreme points first, as kind boundary)."""
        guidance = torch.from_numpy(encode_guidance(clicks, self.input_size, previous))[None].to(self.device)
        logits = self.model.decode(features, guidance.contiguous(memory_format=self.memory_format))
        return torch.sigmoid(logits)[0, 0].float().cpu().numpy()

    def predict_first(self, features: ImageFeatures, extreme_points: Sequence[CropClick]) -> np.ndarray:
        """The mask from the extreme points alone: the mean of the crop's and its mirror's answers
        when `encode` kept the mirror's features."""
        prob = self.predict(features, extreme_points)
        if features.mirrored is None:
            return prob
        last = self.input_size - 1  # guidance maps put pixel x at index x: x mirrors to last - x
        mirrored_points = [CropClick(last - c.x, c.y, c.kind) for c in extreme_points]
        return (prob + self.predict(features.mirrored, mirrored_points)[:, ::-1]) / 2

    def predict_sequence(
        self,
        features: ImageFeatures,
        extreme_points: Sequence[CropClick],
        corrective_clicks: Sequence[CropClick],
        cache: PrefixCache | dict | None = None,
    ) -> np.ndarray:
        """The prediction after all clicks, each step fed the previous one's mask.

        Replays only the prefixes missing from ``cache`` (a cold session rebuilt
        from its image replays them all, and gets the same answer as the warm one).
        """
        extremes = tuple(extreme_points)
        clicks = tuple(corrective_clicks)
        cache = PrefixCache() if cache is None else cache
        start, previous = 0, None
        for k in range(len(clicks), -1, -1):
            hit = cache.get(extremes + clicks[:k])
            if hit is not None:
                start, previous = k + 1, hit.astype(np.float32)
                break
        for k in range(start, len(clicks) + 1):
            if k == 0:
                previous = self.predict_first(features, extremes)
            else:
                previous = self.predict(features, extremes + clicks[:k], previous)
            key = extremes + clicks[:k]
            value = previous.astype(np.float16)
            if isinstance(cache, PrefixCache):
                cache.put(key, value)
            else:
                cache[key] = value
        assert previous is not None
        return previous


def load_crop_predictor(
    weights: str | Path | None = None,
    device: str | None = None,
    input_size: int | None = None,
    mirror_first: bool = True,
) -> CropPredictor:
    """The committed weights by default; an untrained network (pretrained encoder) if none exist.

    ``input_size`` overrides the side the weights were trained at (the network is
    fully convolutional; a larger crop trades latency for edge detail). The network's
    batch norms are folded into its convolutions (`folding`): inference only.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_flush_denormal(True)
    if input_size is not None and input_size % 32:
        raise ValueError(f"input size must be a multiple of 32, got {input_size}")
    path = Path(weights) if weights else DEFAULT_WEIGHTS
    if path.exists():
        model, meta = load_weights(path, device)
        size = input_size or int(meta["input_size"])
        version = str(meta["model_version"]) + (f"@{size}" if size != int(meta["input_size"]) else "")
    elif weights:
        raise FileNotFoundError(f"weights file {path} does not exist")
    else:
        warnings.warn(f"no trained weights at {path}; serving an UNTRAINED network", RuntimeWarning, stacklevel=2)
        model, size, version = FewClickNet(pretrained=True).eval(), input_size or DEFAULT_INPUT_SIZE, UNTRAINED_VERSION
    fold_batch_norms(model)
    return CropPredictor(model, size, version, device, mirror_first)


HonorMode = Literal["none", "clicks", "all"]


class FewClickPredictor:
    """Full-image interface: ``set_image`` once, then ``predict`` per interaction.

    ``honor`` makes the mask agree with the clicks where they were made
    (`fewclick_contract.click_constraints`): ``all`` for the extreme points and
    the corrective clicks (what the proxy serves), ``clicks`` for the corrective
    clicks only, ``none`` for the network's raw output.
    """

    def __init__(self, crop_predictor: CropPredictor, honor: HonorMode = "all", refine_edges: bool = True) -> None:
        self.crop_predictor = crop_predictor
        self.honor = honor
        # As served: large boxes are cut at 2x the network side and their edges refined on it.
        self.refine_edges = refine_edges
        self._image: np.ndarray | None = None
        self._box: CropBox | None = None
        self._features: ImageFeatures | None = None
        self._guide: np.ndarray | None = None
        self._cache = PrefixCache()

    def set_image(self, image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        self._image = image
        self._box = None
        self._features = None
        self._guide = None

    def crop_for(self, extreme_points: np.ndarray, clicks: Sequence[Click]) -> CropBox:
        points = np.array([(c.x, c.y) for c in clicks], dtype=np.float64).reshape(-1, 2)
        return crop_box_for_clicks(np.asarray(extreme_points), points)

    def predict(self, extreme_points: np.ndarray, clicks: Sequence[Click] = ()) -> np.ndarray:
        """Object probabilities (H, W) float32 for 4 extreme points (image px) and corrective clicks."""
        if self._image is None:
            raise RuntimeError("call set_image first")
        box = self.crop_for(extreme_points, clicks)
        size = self.crop_predictor.input_size
        if box != self._box or self._features is None:
            # The crop grew (a click outside it): new pixels, new features, new history.
            self._box = box
            side = crop_side_for(box, size) if self.refine_edges else size
            network_crop, self._guide = prepare_crop(extract_crop(self._image, box, side), size)
            self._features = self.crop_predictor.encode(network_crop)
            self._cache = PrefixCache()
        extremes = [CropClick(float(x), float(y), "boundary") for x, y in box.to_crop(extreme_points, size)]
        crop_xy = box.to_crop(np.array([(c.x, c.y) for c in clicks], dtype=np.float64).reshape(-1, 2), size)
        corrective = [CropClick(float(x), float(y), c.kind) for (x, y), c in zip(crop_xy, clicks, strict=True)]
        prob = self.crop_predictor.predict_sequence(self._features, extremes, corrective, self._cache)
        if self._guide is not None:
            prob = refine_probabilities(prob, self._guide)
        h, w = self._image.shape[:2]
        if self.honor == "none":
            return paste_crop(prob, box, h, w)
        constraints = served_constraints(extreme_points, [(c.x, c.y, c.kind) for c in clicks], self.honor == "all")
        return served_probabilities(prob, box, h, w, constraints, network_size=size)
