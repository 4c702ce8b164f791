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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import nn

from fewclick_contract.click_constraints import served_constraints, served_probabilities
from fewclick_contract.crop import CropBox, crop_box_for_clicks, extract_crop, paste_crop
from fewclick_contract.edge_refine import crop_side_for, prepare_crop

from . import DEFAULT_INPUT_SIZE
from .boundary_refiner import (
    DEFAULT_REFINER_WEIGHTS,
    BoundaryRefiner,
    feature_window,
    load_refiner,
    paste_window,
    towards_click,
    value_at,
    window_inputs,
)
from .checkpoints import DEFAULT_WEIGHTS, load_weights
from .cuda_graphs import GraphedCall
from .edge_refine_torch import refine_probabilities_on
from .encoding import EXTREME_POINTS, CropClick, encode_guidance
from .folding import fold_batch_norms
from .frozen_graphs import FrozenCall
from .inference_options import MIRROR_MODES, MirrorChoice, MirrorMode, Precision, resolve_dtype, resolve_mirror
from .network import FewClickNet, ImageFeatures
from .progressive_merge import FIRST_MERGED_CLICK, merge_near_click
from .simulator import Click

logger = logging.getLogger(__name__)

UNTRAINED_VERSION = "untrained"
PREFIX_CACHE_ENTRIES = 32


class PrefixCache(OrderedDict[tuple[CropClick, ...], np.ndarray]):
    """Predictions of a session's click prefixes, newest last, bounded.

    Undo, redo and a resent request all land on a prefix already computed, and a
    new click costs one decoder pass (per view) because its previous mask is here.
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


T = TypeVar("T")
# (core budget, intra-op threads per view) as last set by `_split_cpu_threads`, so a second
# predictor in the same process splits the same budget instead of halving it again.
_cpu_split: tuple[int, int] | None = None


def _split_cpu_threads(views: int) -> int:
    """Give each view its share of the process's torch CPU threads; returns the budget.

    On 2 cores a click's two views run as two single-threaded passes side by side at least
    as fast as one batch of 2 on 2 intra-op threads, and steadier (bfloat16, three runs each:
    19-20 / 22-23 ms p50 / p90 against 19-27 / 22-32; float32: 26-34 / 33-42 against
    30-42 / 37-50): a click's small convolutions spend much of a multi-threaded pass
    synchronising. torch's intra-op thread count is process-wide, so it is set here, once
    per budget.
    """
    global _cpu_split
    current = torch.get_num_threads()
    budget = _cpu_split[0] if _cpu_split is not None and current == _cpu_split[1] else current
    per_view = max(1, budget // views)
    torch.set_num_threads(per_view)
    _cpu_split = (budget, per_view)
    return budget


class _EncoderPass(nn.Module):
    """`FewClickNet.encode_image` as tensors in, tensors out: what a graph can record."""

    def __init__(self, model: FewClickNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.encode_image(rgb)
        return features.stride2, features.stride4


class _DecoderPass(nn.Module):
    """`FewClickNet.decode_with_features` as tensors in, tensors out: what a graph can record.
    It always returns the decoder's features too; they are computed on the way to the logits."""

    def __init__(self, model: FewClickNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, stride2: torch.Tensor, stride4: torch.Tensor, guidance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode_with_features(ImageFeatures(stride2, stride4), guidance)


class CropPredictor:
    def __init__(
        self,
        model: FewClickNet,
        input_size: int,
        model_version: str,
        device: str | torch.device = "cpu",
        mirror: MirrorMode = "every",
        dtype: torch.dtype = torch.float32,
        refiner: BoundaryRefiner | None = None,
        progressive_merge: bool = True,
        cuda_graphs: bool = True,
        frozen_graphs: bool = True,
        repeat_cap: int = 1,
    ) -> None:
        if mirror not in MIRROR_MODES:
            raise ValueError(f"mirror must be one of {MIRROR_MODES}, got {mirror!r}")
        self.device = torch.device(device)
        # Flip test-time augmentation (`inference_options`): "every" answer is the mean of the
        # crop's and its mirror image's (held-out: +0.3 mIoU with the extreme points alone, and
        # better on all four curves after 20 clicks than "first", which averages the first mask only).
        self.mirror = mirror
        # Channels-last (NHWC) is oneDNN's native layout: on 2 CPU cores a click takes ~25 %
        # less time than in NCHW, which spent it converting layouts. CUDA keeps the layout
        # its latency was measured in.
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.dtype = dtype
        self.model = model.to(self.device, dtype=dtype, memory_format=self.memory_format).eval()
        self.input_size = input_size
        self.model_version = model_version
        # How strongly a repeated boundary click is drawn: what the weights were trained with
        # (`encoding.REPEAT_CAP`; 1, every click alike, for weights trained without repeats).
        self.repeat_cap = repeat_cap
        # Redraws the window around each new boundary click (`boundary_refiner`); it runs in
        # the network's dtype and layout, on as many views as the network.
        self.refiner = (
            None if refiner is None else refiner.to(self.device, dtype=dtype, memory_format=self.memory_format).eval()
        )
        # The refiner looks at the crop's pixels, so sessions keep them (~200 KB); so does
        # `train_refiner`, which collects what a refiner would see.
        self.keep_pixels = self.refiner is not None
        # Late boundary clicks change only the mask next to them (`progressive_merge`; served).
        self.progressive_merge = progressive_merge
        # On a GPU both views are one batch of 2 (nearly free); on CPU cores, when every click
        # runs both, they run side by side, each on its share of the threads (`_split_cpu_threads`).
        self._view_pool: ThreadPoolExecutor | None = None
        if mirror == "every" and self.device.type == "cpu" and _split_cpu_threads(2) >= 2:
            self._view_pool = ThreadPoolExecutor(2, thread_name_prefix="fewclick-view")
        # On a GPU a click's passes are replayed as CUDA graphs (`cuda_graphs`: launch-bound
        # there); on a CPU the crop's and the click's passes run as frozen TorchScript graphs
        # (`frozen_graphs`: the two view threads no longer queue for the GIL to dispatch ops).
        # Both give eager mode's answers.
        self._graphed_encode: FrozenCall | None = None
        self._graphed_decode: GraphedCall | FrozenCall | None = None
        self._graphed_refiner: GraphedCall | FrozenCall | None = None
        if cuda_graphs and self.device.type == "cuda":
            self._graphed_decode = GraphedCall(_DecoderPass(self.model), "the decoder")
            if self.refiner is not None:
                self._graphed_refiner = GraphedCall(self.refiner, "the boundary refiner")
        elif frozen_graphs and self.device.type == "cpu":
            self._graphed_encode = FrozenCall(_EncoderPass(self.model), "the encoder")
            self._graphed_decode = FrozenCall(_DecoderPass(self.model), "the decoder")
            if self.refiner is not None:
                self._graphed_refiner = FrozenCall(self.refiner, "the boundary refiner")

    @property
    def views(self) -> int:
        """Views `encode` keeps (the first mask averages them all)."""
        return 1 if self.mirror == "none" else 2

    @property
    def click_views(self) -> int:
        """Views each corrective click's answer averages."""
        return 2 if self.mirror == "every" else 1

    def describe(self) -> str:
        """Where and how the network runs, for benchmark and evaluation reports."""
        dtype = str(self.dtype).removeprefix("torch.")
        refiner = ", boundary refiner" if self.refiner is not None else ""
        refiner += ", progressive merge" if self.progressive_merge else ""
        if self.device.type != "cpu":
            graphs = ", CUDA graphs" if self._graphed_decode is not None and self._graphed_decode.enabled else ""
            return f"{self.device.type}, {dtype}, mirror {self.mirror}{refiner}{graphs}"
        threads = torch.get_num_threads()
        layout = f"2 views side by side, {threads} thread(s) each" if self._view_pool else f"{threads} thread(s)"
        frozen = ", frozen graphs" if self._graphed_decode is not None and self._graphed_decode.enabled else ""
        return f"cpu ({layout}), {dtype}, mirror {self.mirror}{refiner}{frozen}"

    def _side_by_side(self, run: Callable[[int], T]) -> list[T]:
        """[run(0), run(1)] at the same time on the CPU pool's two threads (callers without a
        pool run both views as one batch instead)."""
        assert self._view_pool is not None

        def in_inference_mode(view: int) -> T:
            with torch.inference_mode():  # thread-local: the pool's threads need their own
                return run(view)

        return list(self._view_pool.map(in_inference_mode, range(2)))

    @torch.inference_mode()
    def encode(self, crop_rgb: np.ndarray) -> ImageFeatures:
        """(S, S, 3) uint8 RGB crop -> the features every click of this crop reuses
        (one batch row per view: the crop, then its mirror image)."""
        s = self.input_size
        if crop_rgb.shape != (s, s, 3) or crop_rgb.dtype != np.uint8:
            raise ValueError(f"crop must be ({s}, {s}, 3) uint8, got {crop_rgb.shape} {crop_rgb.dtype}")
        rgb = torch.from_numpy(np.ascontiguousarray(crop_rgb)).permute(2, 0, 1)[None].to(self.device, self.dtype)
        if self.views == 2:
            rgb = torch.cat([rgb, rgb.flip(-1)])
        pixels = np.array(crop_rgb, copy=True) if self.keep_pixels else None

        def encode(batch: torch.Tensor) -> ImageFeatures:
            batch = batch.contiguous(memory_format=self.memory_format)
            if self._graphed_encode is not None:
                stride2, stride4 = self._graphed_encode(batch)
                return ImageFeatures(stride2, stride4)
            return self.model.encode_image(batch)

        if self._view_pool is None:
            features = encode(rgb)
            return ImageFeatures(features.stride2, features.stride4, pixels)
        parts = self._side_by_side(lambda v: encode(rgb[v : v + 1]))
        return ImageFeatures(
            torch.cat([f.stride2 for f in parts]).contiguous(memory_format=self.memory_format),
            torch.cat([f.stride4 for f in parts]).contiguous(memory_format=self.memory_format),
            pixels,
        )

    def _run_views(self, views: int, run: Callable[[int], T], batched: Callable[[], T]) -> list[T]:
        """Each batch's output, in view order: [run(0)] for one view; for two, [run(0), run(1)]
        side by side on the CPU pool, else [batched()] (one batch of 2)."""
        if views == 1:
            return [run(0)]
        if self._view_pool is None:
            return [batched()]
        return self._side_by_side(run)

    @torch.inference_mode()
    def _predict_views(
        self,
        features: ImageFeatures,
        clicks: Sequence[CropClick],
        previous: np.ndarray | None,
        views: int,
        refine: bool = False,
    ) -> np.ndarray:
        views = min(views, features.views)
        prob, decoder_features = self._network_views(features, clicks, previous, views, refine)
        if decoder_features is None:
            return prob
        return self._refine(features, clicks, prob, decoder_features, views, previous)

    @torch.inference_mode()
    def network_answer(
        self, features: ImageFeatures, clicks: Sequence[CropClick], previous: np.ndarray | None
    ) -> tuple[np.ndarray, torch.Tensor]:
        """The network's probabilities (S, S) before any refinement, and its last decoder
        features (1, C, S/2, S/2), averaged over the views: what the boundary refiner sees
        (`train_refiner` collects them)."""
        views = min(self.click_views, features.views)
        prob, decoder_features = self._network_views(features, clicks, previous, views, with_features=True)
        assert decoder_features is not None
        return prob, decoder_features

    def _network_views(
        self,
        features: ImageFeatures,
        clicks: Sequence[CropClick],
        previous: np.ndarray | None,
        views: int,
        with_features: bool,
    ) -> tuple[np.ndarray, torch.Tensor | None]:
        """``views`` (at most ``features.views``) decoder passes, their probabilities averaged."""
        guidance = encode_guidance(clicks, self.input_size, previous, self.repeat_cap, self.model.newest_click)
        guidance = torch.from_numpy(guidance)[None]
        guidance = guidance.to(self.device, self.dtype)
        if views == 2:
            # The guidance maps put pixel x at index x, so the mirror's maps are the flipped maps.
            guidance = torch.cat([guidance, guidance.flip(-1)])
        guidance = guidance.contiguous(memory_format=self.memory_format)

        def decode(f: ImageFeatures, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            if self._graphed_decode is not None:
                logits, last = self._graphed_decode(f.stride2, f.stride4, g)
                return logits, (last if with_features else None)
            return self.model.decode_with_features(f, g) if with_features else (self.model.decode(f, g), None)

        out = self._run_views(
            views, lambda v: decode(features.view(v), guidance[v : v + 1]), lambda: decode(features, guidance)
        )
        logits = torch.cat([o[0] for o in out])
        decoder_features = torch.cat([o[1] for o in out if o[1] is not None]) if with_features else None
        prob = torch.sigmoid(logits.float())[:, 0]
        if views == 2:
            prob = (prob[0] + prob[1].flip(-1)) / 2
            if decoder_features is not None:
                # Averaged over the mirror, the features flip with the image (as the window does).
                decoder_features = (decoder_features[0:1] + decoder_features[1:2].flip(-1)) / 2
        return prob.reshape(self.input_size, self.input_size).cpu().numpy(), decoder_features

    def _refine(
        self,
        features: ImageFeatures,
        clicks: Sequence[CropClick],
        prob: np.ndarray,
        decoder_features: torch.Tensor,
        views: int,
        previous: np.ndarray | None = None,
    ) -> np.ndarray:
        """The window around the last (boundary) click redrawn by the refiner, each view on its
        own window (the mirror's is the flipped window), their probabilities averaged, and
        moved only the way the click asks (`towards_click`; ``previous`` tells which way)."""
        assert self.refiner is not None and features.pixels is not None
        refiner = self.refiner
        click = (clicks[-1].x, clicks[-1].y)
        others = [(c.x, c.y) for c in clicks[:-1] if c.kind == "boundary"]
        inputs, origin = window_inputs(features.pixels, prob, click, others)
        window = torch.from_numpy(inputs)[None].to(self.device, self.dtype)
        feats = feature_window(decoder_features, click)
        if views == 2:  # the mirror's window: both cut around the click, then flipped
            window = torch.cat([window, window.flip(-1)])
            feats = torch.cat([feats, feats.flip(-1)])
        window = window.contiguous(memory_format=self.memory_format)
        feats = feats.contiguous(memory_format=self.memory_format)
        graphed = self._graphed_refiner
        run = refiner if graphed is None else (lambda w, f: graphed(w, f)[0])
        out = self._run_views(views, lambda v: run(window[v : v + 1], feats[v : v + 1]), lambda: run(window, feats))
        logits = torch.cat(out)
        window_prob = torch.sigmoid(logits.float())[:, 0]
        if views == 2:
            window_prob = (window_prob[0] + window_prob[1].flip(-1)) / 2
        refined = window_prob.reshape(inputs.shape[1:]).cpu().numpy()
        if previous is not None:  # inputs[3]: the network's own probabilities in this window
            refined = towards_click(refined, inputs[3], click_was_inside=value_at(previous, click) > 0.5)
        return paste_window(prob, refined, origin)

    def predict(
        self, features: ImageFeatures, clicks: Sequence[CropClick], previous: np.ndarray | None = None
    ) -> np.ndarray:
        """Probabilities (S, S) float32 for the clicks (extreme points first, as kind boundary;
        the last one is the newest). A new boundary click's window is redrawn by the refiner, and
        from the `FIRST_MERGED_CLICK`-th on only the mask next to it changes."""
        corrective = len(clicks) - EXTREME_POINTS
        boundary = corrective > 0 and clicks[-1].kind == "boundary"
        refine = boundary and self.refiner is not None and features.pixels is not None
        answer = self._predict_views(features, clicks, previous, self.click_views, refine)
        if boundary and self.progressive_merge and previous is not None and corrective >= FIRST_MERGED_CLICK:
            answer = merge_near_click(previous, answer, (clicks[-1].x, clicks[-1].y))
        return answer

    def refine_edges(self, prob: np.ndarray, guide: np.ndarray) -> np.ndarray:
        """(S, S) probabilities -> (G, G) on the crop's grey guide (`prepare_crop`): the edge
        refinement of `fewclick_contract.edge_refine`, run where the network runs."""
        return refine_probabilities_on(self.device, prob, guide)

    def predict_first(self, features: ImageFeatures, extreme_points: Sequence[CropClick]) -> np.ndarray:
        """The mask from the extreme points alone: the mean of the crop's and its mirror's
        answers when `encode` kept the mirror's features."""
        return self._predict_views(features, extreme_points, None, 2)

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
        start, previous, answer = 0, None, None
        for k in range(len(clicks), -1, -1):
            hit = cache.get(extremes + clicks[:k])
            if hit is not None:
                start, previous = k + 1, hit.astype(np.float32)
                answer = previous
                break
        for k in range(start, len(clicks) + 1):
            if k == 0:
                answer = self.predict_first(features, extremes)
            else:
                answer = self.predict(features, extremes + clicks[:k], previous)
            key = extremes + clicks[:k]
            value = answer.astype(np.float16)
            if isinstance(cache, PrefixCache):
                cache.put(key, value)
            else:
                cache[key] = value
            # The next step is fed what the cache holds, so a cold replay chains the same float16
            # rounding a warm session does (one click at a time from the cache): the same answers.
            previous = value.astype(np.float32)
        assert answer is not None
        return answer


def load_crop_predictor(
    weights: str | Path | None = None,
    device: str | None = None,
    input_size: int | None = None,
    mirror: MirrorChoice = "auto",
    precision: Precision = "auto",
    boundary_refiner: bool | str | Path = True,
    progressive_merge: bool = True,
    cuda_graphs: bool = True,
    frozen_graphs: bool = True,
) -> CropPredictor:
    """The committed weights by default; an untrained network (pretrained encoder) if none exist.

    ``input_size`` overrides the side the weights were trained at (the network is
    fully convolutional; a larger crop trades latency for edge detail). The network's
    batch norms are folded into its convolutions (`folding`): inference only. ``mirror``
    picks which answers average the crop's mirror image (`CropPredictor`, `resolve_mirror`),
    ``precision`` the float type (`inference_options`: ``auto`` is bfloat16 on a CPU that
    computes it natively). ``boundary_refiner``: True (served) for the committed refiner
    where it was trained for these weights (other weights run without one), a path for
    another refiner file, False for none (the network's own answer; see the model card).
    ``progressive_merge``: from the sixth corrective boundary click on, change only the mask next
    to each one (`progressive_merge`; served). ``cuda_graphs``: on a GPU, replay each click's
    network passes as CUDA graphs (`cuda_graphs`; served). ``frozen_graphs``: on a CPU, run the
    crop's and each click's passes as frozen TorchScript graphs (`frozen_graphs`; served).
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
        meta = {}
    fold_batch_norms(model)
    refiner, version = _boundary_refiner_for(boundary_refiner, version)
    dtype = resolve_dtype(precision, torch.device(device))
    mirror_mode = resolve_mirror(mirror, torch.device(device), dtype)
    return CropPredictor(
        model,
        size,
        version,
        device,
        mirror_mode,
        dtype,
        refiner,
        progressive_merge,
        cuda_graphs,
        frozen_graphs,
        repeat_cap=int(meta.get("repeat_cap", 1)),
    )


def _boundary_refiner_for(choice: bool | str | Path, model_version: str) -> tuple[BoundaryRefiner | None, str]:
    """The refiner to serve beside ``model_version``'s network, and the version string of both.

    A refiner reads its network's decoder features, so one trained beside other weights
    would read features it has never seen: the committed one is used only with the weights
    it was trained for, and a refiner named explicitly must match them too.
    """
    if choice is False:
        return None, model_version
    path = DEFAULT_REFINER_WEIGHTS if choice is True else Path(choice)
    if not path.exists():
        if choice is not True:
            raise FileNotFoundError(f"boundary refiner file {path} does not exist")
        return None, model_version
    refiner, meta = load_refiner(path)
    trained_for = str(meta.get("network_version", ""))
    if trained_for != model_version.split("@")[0]:
        if choice is not True:
            raise ValueError(f"boundary refiner {path} was trained for {trained_for!r}, not {model_version!r}")
        logger.info("no boundary refiner: the committed one was trained for %s, not %s", trained_for, model_version)
        return None, model_version
    return refiner, f"{model_version}+{meta['version']}"


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
            prob = self.crop_predictor.refine_edges(prob, self._guide)
        h, w = self._image.shape[:2]
        if self.honor == "none":
            return paste_crop(prob, box, h, w)
        constraints = served_constraints(extreme_points, [(c.x, c.y, c.kind) for c in clicks], self.honor == "all")
        return served_probabilities(prob, box, h, w, constraints, network_size=size)
