"""`fewclick benchmark model`: model time per request type, and what each fusion point would cost.

Request types, as the server sees them: a new image (the crop and its mirror
encoded, plus the first mask from both), a warm corrective click (a decode
per view on cached features, as `--mirror` / `--precision` choose: by default
as served on this machine, `fewclick_model.inference_options`) and a warm
boundary click (the same, plus the boundary refiner's window, as served;
`--no-boundary-refiner` leaves it out); each also for a
box larger than the network side, where the crop comes at 2x and every answer is
edge-refined on it (`fewclick_contract.edge_refine`).
The fusion comparison times the per-click work of three designs on the same
network: clicks fused at the stem (the whole encoder reruns per click, for the
served views: classic early fusion), after the stride-4 stage (FewClick), or at
the decoder only (late fusion: SAM-style, encoder cached entirely; one view).
Accuracy of the alternatives needs their own training runs; see the model card.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fewclick_contract.edge_refine import REFINE_FACTOR, prepare_crop

from .cli_types import non_negative_int, positive_int
from .encoding import CropClick, encode_guidance
from .inference_options import MIRROR_CHOICES, PRECISIONS
from .predictor import load_crop_predictor


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(samples, q)) for q in (50, 90, 99)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=None, help="default: the committed weights")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--mirror", choices=MIRROR_CHOICES, default="auto", help="as served: auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="as served: auto")
    parser.add_argument(
        "--no-boundary-refiner",
        dest="boundary_refiner",
        action="store_false",
        help="without the boundary refiner (served: with it)",
    )
    parser.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_false",
        help="on a GPU, launch each click's kernels eagerly (served: replayed as CUDA graphs)",
    )
    parser.add_argument("--repeats", type=positive_int, default=60, help="timed rounds of each request type")
    parser.add_argument("--out", type=Path, default=Path("artifacts/model-latency"))


@torch.inference_mode()
def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    p = load_crop_predictor(
        args.weights,
        args.device,
        mirror=args.mirror,
        precision=args.precision,
        boundary_refiner=args.boundary_refiner,
        cuda_graphs=args.cuda_graphs,
    )
    s = p.input_size
    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize if p.device.type == "cuda" else (lambda: None)
    extremes = [
        CropClick(s / 2, 8, "boundary"),
        CropClick(8, s / 2, "boundary"),
        CropClick(s / 2, s - 8, "boundary"),
        CropClick(s - 8, s / 2, "boundary"),
    ]
    times: dict[str, list[float]] = {
        "new image": [],
        "warm click": [],
        "warm boundary click": [],
        "new image, large box": [],
        "warm click, large box": [],
        "warm boundary click, large box": [],
        "stem fusion click": [],
        "late fusion click, one view": [],
    }
    model = p.model
    for i in tqdm(range(args.repeats + 3), desc="model latency", unit="round"):
        crop = rng.integers(0, 255, (s, s, 3), dtype=np.uint8)
        t = time.perf_counter()
        feats = p.encode(crop)
        prob = p.predict_first(feats, extremes)
        sync()
        t_new = time.perf_counter() - t
        click = [*extremes, CropClick(float(rng.uniform(20, s - 20)), float(rng.uniform(20, s - 20)), "positive")]
        t = time.perf_counter()
        p.predict(feats, click, prob)
        sync()
        t_click = time.perf_counter() - t
        # A boundary click: the window around it redrawn too, where a boundary refiner is served;
        # the sixth corrective click, so the progressive merge (`progressive_merge`) runs as well.
        earlier = [CropClick(float(x), float(y), "boundary") for x, y in rng.uniform(20, s - 20, (5, 2))]
        boundary = [*extremes, *earlier, CropClick(click[-1].x, click[-1].y, "boundary")]
        t = time.perf_counter()
        p.predict(feats, boundary, prob)
        sync()
        t_boundary = time.perf_counter() - t
        # A box larger than the network side: a crop at 2x, shrunk for the network, and
        # the edge refinement on every answer (what the server does for large objects).
        fine = rng.integers(0, 255, (s * REFINE_FACTOR, s * REFINE_FACTOR, 3), dtype=np.uint8)
        t = time.perf_counter()
        fine_input, guide = prepare_crop(fine, s)
        assert guide is not None
        fine_feats = p.encode(fine_input)
        fine_prob = p.predict_first(fine_feats, extremes)
        p.refine_edges(fine_prob, guide)
        t_new_large = time.perf_counter() - t
        t = time.perf_counter()
        p.refine_edges(p.predict(fine_feats, click, fine_prob), guide)
        t_click_large = time.perf_counter() - t
        t = time.perf_counter()
        p.refine_edges(p.predict(fine_feats, boundary, fine_prob), guide)
        t_boundary_large = time.perf_counter() - t
        # Early fusion at the stem: the stride-2/4 stages would rerun for every click (both views).
        t = time.perf_counter()
        p.predict(p.encode(crop), click, prob)
        sync()
        t_stem = time.perf_counter() - t
        # Late fusion: only the decoder would run per click (the deep stages cached too); one view.
        g = torch.from_numpy(encode_guidance(click, s, prob))[None].to(p.device, p.dtype)
        g = g.contiguous(memory_format=p.memory_format)
        one_view = feats.view(0)
        pyramid = model.deep_stages(one_view, g)
        t = time.perf_counter()
        model.decode_pyramid(one_view.stride2, pyramid, g)
        sync()
        t_late = time.perf_counter() - t
        if i >= 3:  # warm-up rounds excluded
            measured = (t_new, t_click, t_boundary, t_new_large, t_click_large, t_boundary_large, t_stem, t_late)
            for key, value in zip(times, measured, strict=True):
                times[key].append(1000 * value)

    summary = {k: _percentiles(v) for k, v in times.items()}
    device = p.describe()
    print(f"\nmodel {p.model_version}, input {s}px, {device}, {args.repeats} rounds")
    print("| request | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v['p50']:.1f} | {v['p90']:.1f} | {v['p99']:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_latency.json").write_text(json.dumps({"device": device, "input_size": s, **summary}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k, v in times.items():
        ax.hist(v, bins=30, alpha=0.6, label=k)
    ax.set_xlabel("model time (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"model latency, {device}, {s}px")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "model_latency.png", dpi=120)
    print(f"histogram: {args.out / 'model_latency.png'}")
    return 0
