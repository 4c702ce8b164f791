"""`fewclick evaluate`: the standard robot-user protocol on any images/ + masks/ folder.

Click 0 is the 4 extreme points of the true mask; each corrective click goes
where `simulator` says (``region``: distance-transform maximum of the largest
error region; ``boundary``: the true-boundary point farthest from the
predicted boundary; ``guided``: boundary clicks, and a region click after one
the mask did not follow, as the labeling UI advises). IoU ignores unknown
pixels (GrabCut's 128 band). NoC@k is the number of corrective clicks until
IoU >= k%, capped at 20.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from fewclick_contract.click_respect import click_respected as contract_click_respected

from .cli_types import network_side, non_negative_int, seed
from .data import (
    FOLDS,
    Instance,
    fold_of,
    is_holdout,
    list_instances,
    load_instance,
)
from .inference_options import MIRROR_CHOICES, PRECISIONS
from .preflight import prepare_out_dir
from .simulator import Click, extreme_points, next_click

MAX_CLICKS = 20
GUIDED = "guided"
CLICK_KINDS = ("region", "boundary", GUIDED)
REPORT_CLICKS = 5
THRESHOLD = 0.5


class Predictor(Protocol):
    def set_image(self, image: np.ndarray) -> None: ...
    def predict(self, extreme_points: np.ndarray, clicks: list[Click]) -> np.ndarray: ...


def masked_iou(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None) -> float:
    if ignore is not None:
        pred, truth = pred & ~ignore, truth & ~ignore
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def click_respected(click: Click, mask: np.ndarray) -> bool:
    """Positive inside, negative outside, boundary within 3 px of the mask's edge (the test the
    proxy reports to labelers as `missedClicks`: one implementation)."""
    return contract_click_respected(click.x, click.y, click.kind, mask)


def robot_click_kind(kind: str, clicks: list[Click], respected: list[bool]) -> str:
    """The simulator's kind for the next click. ``guided`` is the labeler who follows the labeling UI's
    advice: boundary clicks, but after a boundary click the mask did not follow (the ringed click of
    the API's ``missedClicks``), one region click by the standard protocol (at the largest error,
    usually the part the boundary click pointed at)."""
    if kind != GUIDED:
        return kind
    return "region" if clicks and clicks[-1].kind == "boundary" and not respected[-1] else "boundary"


@dataclass
class InstanceResult:
    name: str
    ious: list[float]
    respected: list[bool] = field(default_factory=list)
    first_ms: float = 0.0
    click_ms: list[float] = field(default_factory=list)

    def noc(self, target: float) -> int:
        """Clicks until IoU >= target; the number of clicks run (the cap) if never."""
        for k, v in enumerate(self.ious):
            if v >= target:
                return k
        return len(self.ious) - 1


def evaluate_instance(predictor: Predictor, inst: Instance, kind: str, max_clicks: int) -> InstanceResult:
    predictor.set_image(inst.image)
    points = extreme_points(inst.mask)
    t = time.perf_counter()
    pred = predictor.predict(points, []) > THRESHOLD
    result = InstanceResult(
        inst.name, [masked_iou(pred, inst.mask, inst.ignore)], first_ms=1000 * (time.perf_counter() - t)
    )
    clicks: list[Click] = []
    for _ in range(max_clicks):
        click = next_click(robot_click_kind(kind, clicks, result.respected), inst.mask, pred, inst.ignore)
        if click is None:  # nothing left to correct
            result.ious.append(result.ious[-1])
            continue
        clicks.append(click)
        t = time.perf_counter()
        pred = predictor.predict(points, clicks) > THRESHOLD
        result.click_ms.append(1000 * (time.perf_counter() - t))
        result.ious.append(masked_iou(pred, inst.mask, inst.ignore))
        result.respected.append(click_respected(click, pred))
    return result


@dataclass
class Summary:
    method: str
    kind: str
    miou: list[float]
    noc85: float
    noc90: float
    respected: float
    never_drops: bool
    first_ms_p50: float
    click_ms_p50: float
    click_ms_p90: float

    def row(self) -> str:
        shown = [f"{100 * v:.2f}" for v in self.miou[: REPORT_CLICKS + 1]]
        cells = " | ".join(shown + ["—"] * (REPORT_CLICKS + 1 - len(shown)))
        return (
            f"| {self.method} | {self.kind} | {cells} | {self.noc85:.2f} | {self.noc90:.2f} | "
            f"{100 * self.respected:.1f} | {self.click_ms_p90:.0f} |"
        )


def summarise(method: str, kind: str, results: list[InstanceResult]) -> Summary:
    ious = np.array([r.ious for r in results])
    miou = ious.mean(axis=0)
    respected = [x for r in results for x in r.respected]
    click_ms = [x for r in results for x in r.click_ms] or [0.0]
    return Summary(
        method=method,
        kind=kind,
        miou=[float(v) for v in miou],
        noc85=float(np.mean([r.noc(0.85) for r in results])),
        noc90=float(np.mean([r.noc(0.90) for r in results])),
        respected=float(np.mean(respected)) if respected else 1.0,
        never_drops=bool(np.all(np.diff(miou) >= -1e-9)),
        first_ms_p50=float(np.median([r.first_ms for r in results])),
        click_ms_p50=float(np.percentile(click_ms, 50)),
        click_ms_p90=float(np.percentile(click_ms, 90)),
    )


TABLE_HEADER = (
    "| method | clicks | "
    + " | ".join(f"mIoU@{k}" for k in range(REPORT_CLICKS + 1))
    + " | NoC@85 | NoC@90 | clicks respected % | click ms p90 |\n"
    + "|---" * (REPORT_CLICKS + 7)
    + "|"
)


def plot(summaries: list[Summary], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in summaries:
        ax.plot(range(len(s.miou)), [100 * v for v in s.miou], marker="o", ms=3, label=f"{s.method} / {s.kind}")
    ax.set_xlabel("corrective clicks after the 4 extreme points")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=Path, required=True, help="folder with images/ and masks/")
    parser.add_argument(
        "--clicks",
        nargs="+",
        choices=CLICK_KINDS,
        default=["region", "boundary"],
        help="the robot's click kinds: region (positive/negative), boundary, or guided (boundary clicks, and a "
        "region click after one the mask did not follow, as the labeling UI advises)",
    )
    parser.add_argument("--weights", type=Path, default=None, help="model weights (default: the committed ones)")
    parser.add_argument(
        "--input-size", type=network_side, default=None, help="network side, a multiple of 32 (default: the weights')"
    )
    parser.add_argument("--baseline", choices=["grabcut"], default=None, help="also run a classical baseline")
    parser.add_argument(
        "--baseline-clicks", type=non_negative_int, default=REPORT_CLICKS, help="clicks for the slow baseline"
    )
    parser.add_argument(
        "--max-clicks", type=non_negative_int, default=MAX_CLICKS, help="corrective clicks per instance"
    )
    parser.add_argument(
        "--holdout-only",
        action="store_true",
        help="only the instances `fewclick train` held out of this folder (the share the weights record)",
    )
    parser.add_argument(
        "--fold",
        choices=FOLDS,
        default=None,
        help="only this half of the instances `fewclick train` trained on (`data.fold_of`): a refiner trained "
        "with `train-refiner --fold A` is measured on fold B",
    )
    parser.add_argument(
        "--honor",
        choices=["none", "clicks", "all"],
        default="all",
        help="make masks agree with the extreme points and clicks (as served), the corrective clicks only, or neither",
    )
    parser.add_argument(
        "--no-refine-edges",
        dest="refine_edges",
        action="store_false",
        help="leave large objects' edges at the network's resolution (served: refined at 2x)",
    )
    parser.add_argument(
        "--mirror",
        choices=MIRROR_CHOICES,
        default="auto",
        help="which answers average the crop's mirror image's: every one, the first mask only, none "
        "(auto, as served: every, but the first only for float32 on a CPU)",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="auto (as served): bf16 on a CPU that has it natively"
    )
    parser.add_argument(
        "--no-boundary-refiner",
        dest="boundary_refiner",
        action="store_false",
        help="leave boundary clicks to the network alone (served: the committed boundary refiner redraws "
        "the window around each one)",
    )
    parser.add_argument(
        "--refiner-weights", type=Path, default=None, help="another boundary refiner file than the committed one"
    )
    parser.add_argument(
        "--no-progressive-merge",
        dest="progressive_merge",
        action="store_false",
        help="let every boundary click change the whole mask (served: from the sixth on, only the mask next to it)",
    )
    parser.add_argument("--limit", type=non_negative_int, default=0, help="only the first N instances (0: all)")
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--seed", type=seed, default=0, help="fixes every tie-break; the protocol itself is deterministic"
    )
    parser.add_argument("--out", type=Path, default=Path("artifacts/eval"))


def run(args: argparse.Namespace) -> int:
    import torch

    from .grabcut_baseline import GrabCutPredictor
    from .predictor import FewClickPredictor, load_crop_predictor

    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    cv2.setRNGSeed(args.seed)
    pairs = list_instances(args.dataset)
    if args.holdout_only and args.fold:
        raise SystemExit("--fold and --holdout-only pick disjoint instances: give one")
    if args.holdout_only or args.fold:
        from .checkpoints import weights_holdout_share

        share = weights_holdout_share(args.weights)
        held = {m.stem for _, m in pairs if is_holdout(m.stem, share)}
        if args.holdout_only:
            pairs = [(i, m) for i, m in pairs if m.stem in held]
        else:
            pairs = [(i, m) for i, m in pairs if m.stem not in held and fold_of(m.stem) == args.fold]
    if args.limit:
        pairs = pairs[: args.limit]
    if not pairs:
        # Before loading the model or touching --out, which may hold an earlier run's results.
        raise SystemExit(f"no instances of {args.dataset} are left to evaluate after --fold / --holdout-only / --limit")
    instances = [load_instance(i, m) for i, m in pairs]
    for (_, mask_path), inst in zip(pairs, instances, strict=True):
        if not inst.mask.any():
            # No object: no extreme points to start from, nothing to score (training and `pack` skip
            # such instances; an evaluation that silently did would report on another set).
            raise ValueError(f"{mask_path} has no object pixels (0 is background, 128 unknown)")
    if args.refiner_weights and not args.boundary_refiner:
        raise SystemExit("--refiner-weights and --no-boundary-refiner contradict each other: give one")
    refiner: bool | Path = args.refiner_weights or args.boundary_refiner
    crop_predictor = load_crop_predictor(
        args.weights,
        input_size=args.input_size,
        mirror=args.mirror,
        precision=args.precision,
        boundary_refiner=refiner,
        progressive_merge=args.progressive_merge,
    )
    name = f"fewclick {crop_predictor.model_version}"
    name += "" if args.refine_edges else " unrefined edges"
    name += "" if args.progressive_merge else " no progressive merge"
    print(f"model: {crop_predictor.describe()}")
    methods: list[tuple[str, Predictor, int]] = [
        (name, FewClickPredictor(crop_predictor, args.honor, args.refine_edges), args.max_clicks)
    ]
    if args.baseline == "grabcut":
        methods.append(("opencv grabcut", GrabCutPredictor(), args.baseline_clicks))

    prepare_out_dir(args.out)
    # The three results are written under temporary names and renamed together at the end: an
    # interrupted run used to leave a half CSV beside the previous run's summary and plot.
    results = {name: args.out / name for name in ("per_instance.csv", "summary.json", "miou_per_click.png")}
    partial = {name: args.out / f".partial-{name}" for name in results}
    csv_path = results["per_instance.csv"]
    summaries: list[Summary] = []
    try:
        _evaluate_into(partial["per_instance.csv"], methods, instances, args, summaries)
        name = args.dataset.resolve().name
        caps = ", ".join(f"{method}: {clicks}" for method, _, clicks in methods)
        print(
            f"\n{name}: {len(instances)} instances; click 0 = the 4 extreme points; "
            f"NoC capped at the clicks run ({caps})"
        )
        print(TABLE_HEADER)
        for s in summaries:
            print(s.row())
        for s in summaries:
            print(
                f"{s.method} / {s.kind}: mean IoU never drops after a click: {s.never_drops}; "
                f"first request {s.first_ms_p50:.0f} ms p50; "
                f"click {s.click_ms_p50:.0f} ms p50, {s.click_ms_p90:.0f} ms p90"
            )
        plot(summaries, partial["miou_per_click.png"], f"{name}: mIoU per click")
        partial["summary.json"].write_text(json.dumps([s.__dict__ for s in summaries], indent=2))
        for key, path in partial.items():
            path.replace(results[key])
    finally:
        for path in partial.values():  # renamed away when all went well; left over otherwise
            path.unlink(missing_ok=True)
    print(f"per-instance CSV: {csv_path}\nplot: {results['miou_per_click.png']}")
    return 0


def _evaluate_into(
    csv_path: Path,
    methods: list[tuple[str, Predictor, int]],
    instances: list[Instance],
    args: argparse.Namespace,
    summaries: list[Summary],
) -> None:
    """Every method on every instance and click kind: a row per instance into ``csv_path``, a
    summary per method and kind appended to ``summaries``."""
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        # One column per click of the method that runs the most (the baseline may run more or fewer).
        most_clicks = max(clicks for _, _, clicks in methods)
        writer.writerow(
            ["method", "clicks", "instance", "noc85", "noc90", *[f"iou_{k}" for k in range(most_clicks + 1)]]
        )
        for method, predictor, max_clicks in methods:
            for kind in args.clicks:
                results = []
                for inst in tqdm(instances, desc=f"{method} / {kind}", unit="inst"):
                    r = evaluate_instance(predictor, inst, kind, max_clicks)
                    results.append(r)
                    writer.writerow([method, kind, r.name, r.noc(0.85), r.noc(0.90), *[f"{v:.4f}" for v in r.ious]])
                summaries.append(summarise(method, kind, results))
