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

It ends with one met/missed line per speed target (`SPEED_TARGETS`, the README's) for the
device it ran on, and writes every timing (``model_latency.json``, so the percentiles can be
recomputed) and a log-scale histogram per request type (``model_latency.png``) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fewclick_contract.edge_refine import REFINE_FACTOR, prepare_crop

from . import plots
from .cli_types import device_name, non_negative_int, positive_int
from .encoding import CropClick, encode_guidance
from .inference_options import MIRROR_CHOICES, PRECISIONS
from .predictor import load_crop_predictor
from .preflight import check_device, prepare_out_dir

WARMUP_ROUNDS = 3  # untimed: the first calls pay for lazy init (allocator growth, cuDNN autotune)
NEW_IMAGES = ("new image", "new image, large box")
WARM_CLICKS = ("warm click", "warm boundary click", "warm click, large box", "warm boundary click, large box")
FUSION_CLICKS = ("stem fusion click", "late fusion click, one view")
REQUESTS = (
    "new image",
    "warm click",
    "warm boundary click",
    "new image, large box",
    "warm click, large box",
    "warm boundary click, large box",
    *FUSION_CLICKS,
)


@dataclass(frozen=True)
class SpeedTarget:
    """A model-time budget: the p90 of every request in ``requests`` at most ``p90_ms`` on ``device_type``."""

    label: str
    device_type: str  # torch's device type: "cpu" or "cuda"
    requests: tuple[str, ...]
    p90_ms: float


# The project's targets (README, "Targets"; measured on 2 CPU cores). The fusion rows are designs
# FewClick does not serve, so no budget applies to them.
SPEED_TARGETS: tuple[SpeedTarget, ...] = (
    SpeedTarget("warm click <= 40 ms p90 on a CPU", "cpu", WARM_CLICKS, 40.0),
    SpeedTarget("new image <= 300 ms p90 on a CPU", "cpu", NEW_IMAGES, 300.0),
    SpeedTarget("click <= 10 ms p90 on a GPU", "cuda", WARM_CLICKS, 10.0),
)


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(samples, q)) for q in (50, 90, 99)}


def check_targets(summary: dict[str, dict[str, float]], device_type: str) -> list[dict[str, Any]]:
    """One verdict per target of ``device_type``, judged on its slowest request (by p90)."""
    verdicts = []
    for target in SPEED_TARGETS:
        if target.device_type != device_type:
            continue
        worst = max(target.requests, key=lambda request: summary[request]["p90"])
        p90 = summary[worst]["p90"]
        verdicts.append(
            {
                "target": target.label,
                "limit_ms": target.p90_ms,
                "met": p90 <= target.p90_ms,
                "slowest_request": worst,
                "slowest_p90_ms": round(p90, 2),
            }
        )
    return verdicts


def format_verdict(verdict: dict[str, Any]) -> str:
    outcome = "met" if verdict["met"] else "MISSED"
    return (
        f"target {verdict['target']}: {outcome} (slowest: {verdict['slowest_request']}, "
        f"{verdict['slowest_p90_ms']:.1f} ms p90)"
    )


def plot(times: dict[str, list[float]], path: Path, title: str) -> None:
    """Three panels on one log axis and one set of bins: the served requests for a crop up to the
    network side and for a larger box, and a click's cost by fusion point."""
    panels: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
        ("crop up to the network side", tuple((r, r) for r in REQUESTS[:3])),
        ("box over the network side (2x crop, edge refinement)", tuple((r, r) for r in REQUESTS[3:6])),
        (
            "a click, by where clicks are fused",
            (("warm click (FewClick: after stride 4)", "warm click"), *((r, r) for r in FUSION_CLICKS)),
        ),
    )
    fig, axes = plots.subplots(len(panels), figsize=(15, 4.4), sharex=True, sharey=True)
    bins = plots.log_bins(v for values in times.values() for v in values)
    for ax, (heading, series) in zip(axes, panels, strict=True):
        plots.log_histograms(ax, ((label, times[request]) for label, request in series), bins, legend="below")
        ax.set_title(heading)
        ax.set_xlabel("model ms (log scale)")
    axes[0].set_ylabel("requests")
    plots.save(fig, path, title=title, dpi=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=None, help="default: the committed weights")
    parser.add_argument(
        "--device", type=device_name, default=None, help="cpu, cuda or cuda:N (default: cuda when present)"
    )
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
    parser.add_argument(
        "--no-frozen-graphs",
        dest="frozen_graphs",
        action="store_false",
        help="on a CPU, run the passes op by op from Python (served: frozen TorchScript graphs)",
    )
    parser.add_argument("--repeats", type=positive_int, default=60, help="timed rounds of each request type")
    parser.add_argument("--out", type=Path, default=Path("artifacts/model-latency"), help="where the JSON and PNG go")


@torch.inference_mode()
def run(args: argparse.Namespace) -> int:
    # Both before the model loads: a wrong device or an unwritable --out fails in seconds, not after the run.
    device = check_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    prepare_out_dir(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    p = load_crop_predictor(
        args.weights,
        device,
        mirror=args.mirror,
        precision=args.precision,
        boundary_refiner=args.boundary_refiner,
        cuda_graphs=args.cuda_graphs,
        frozen_graphs=args.frozen_graphs,
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
    times: dict[str, list[float]] = {request: [] for request in REQUESTS}
    model = p.model
    for i in tqdm(range(args.repeats + WARMUP_ROUNDS), desc="model latency", unit="round"):
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
        g = torch.from_numpy(encode_guidance(click, s, prob, newest_click=model.newest_click))[None]
        g = g.to(p.device, p.dtype)
        g = g.contiguous(memory_format=p.memory_format)
        one_view = feats.view(0)
        pyramid = model.deep_stages(one_view, g)
        t = time.perf_counter()
        model.decode_pyramid(one_view.stride2, pyramid, g)
        sync()
        t_late = time.perf_counter() - t
        if i >= WARMUP_ROUNDS:
            measured = (t_new, t_click, t_boundary, t_new_large, t_click_large, t_boundary_large, t_stem, t_late)
            for key, value in zip(times, measured, strict=True):
                times[key].append(1000 * value)

    summary = {k: _percentiles(v) for k, v in times.items()}
    described = p.describe()
    verdicts = check_targets(summary, p.device.type)
    print(f"\nmodel {p.model_version}, input {s}px, {described}, {args.repeats} rounds")
    print("| request | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v['p50']:.1f} | {v['p90']:.1f} | {v['p99']:.1f} |")
    report = {
        "device": described,
        "input_size": s,
        "model_version": p.model_version,
        "repeats": args.repeats,
        "warmup_rounds": WARMUP_ROUNDS,
        "torch_threads": torch.get_num_threads(),
        **summary,
        "targets": verdicts,
        # Every timed round, in ms and in order: percentiles (or anything else) can be recomputed.
        "samples_ms": {k: [round(v, 4) for v in values] for k, values in times.items()},
    }
    json_path, png_path = args.out / "model_latency.json", args.out / "model_latency.png"
    json_path.write_text(json.dumps(report, indent=2))
    title = f"FewClick model time: {described}, {s} px input, model {p.model_version}, {args.repeats} rounds"
    plot(times, png_path, title)
    for verdict in verdicts:
        print(format_verdict(verdict))
    print(f"wrote {json_path} and {png_path}")
    return 0
