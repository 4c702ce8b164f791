"""`fewclick train-refiner`: teach the boundary refiner the corrections the served network leaves.

Two phases. Collect: the served pipeline (this network, both views, click consistency,
edge refinement, no refiner) segments every training instance, and the boundary robot
of `evaluate` clicks up to ``--clicks`` times; at each click the window around it is
kept, with the network's probabilities, its decoder features and the true mask there
(`collect_windows`; cached in ``--out`` under the network's version and the instances'
identity, `instances_id`, so a second run on the same data trains at once). Train: the
refiner learns the true window from them (BCE, weighted towards the click), with mirror
augmentation (the features are the mean over both views, so they mirror exactly). The
refiner goes to ``OUT/refiner.pt`` unless ``--export`` names the served file.

The refiner is bound to the network it was trained beside (its decoder features): the
exported file records that network's version, and `load_crop_predictor` uses it only there.

The 58 held-out instances are few and have been looked at often, so a change to the recipe
(``--channels``, passes, steps) is first checked on the two-fold split: ``--fold A`` trains on
one half of the training instances and ``fewclick evaluate --fold B --refiner-weights ...``
measures on the other, which that refiner never saw (the network has, so errors are smaller
there than on new images; the model card's rules say how much a change must win by).
"""

from __future__ import annotations

import argparse
import hashlib
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fewclick_contract.crop import extract_crop

from .boundary_refiner import (
    DEFAULT_CHANNELS,
    DEFAULT_REFINER_WEIGHTS,
    WINDOW,
    BoundaryRefiner,
    cut_window,
    export_refiner,
    feature_window,
    window_inputs,
)
from .checkpoints import atomic_torch_save, describe_torch_object, load_torch_file, weights_holdout_share
from .cli_types import non_negative_int, positive_float, positive_int, seed
from .data import FOLDS, Instance, default_datasets_root, fold_of, is_holdout
from .encoding import CropClick
from .predictor import CropPredictor, FewClickPredictor, load_crop_predictor
from .preflight import prepare_out_dir, prepare_out_file
from .simulator import Click, boundary_click, extreme_points, random_boundary_click
from .train import LIMIT_HELP, TRAIN_DATASETS, load_training_instances, lr_at

# Extra loss weight near the click, where the labeler said the edge is (Gaussian, crop px).
CLICK_WEIGHT = 3.0
CLICK_WEIGHT_SIGMA = 20.0
# The run's refiner, inside its --out, unless --export names another place: replacing the served
# refiner (boundary_refiner.DEFAULT_REFINER_WEIGHTS) must be asked for.
EXPORT_NAME = "refiner.pt"
# One checkpoint per run (its tag's digest): OUT is a cache that runs with other data, widths or
# seeds share (the windows are shared), and one file for all let a run restart over another's steps.
CHECKPOINT_PREFIX = "refiner-last"


def checkpoint_path(out: Path, run_tag: str) -> Path:
    """Where the run named ``run_tag`` keeps its checkpoint in ``out``."""
    return out / f"{CHECKPOINT_PREFIX}-{hashlib.sha256(run_tag.encode()).hexdigest()[:12]}.ckpt"


FIELDS = ("inputs", "features", "truth", "valid")


def _npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype in an ``np.savez`` file, read from the headers only."""
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
            shapes[member.removesuffix(".npy")] = (shape, dtype)
    return shapes


@dataclass
class WindowSet:
    """Windows around boundary clicks: inputs (N, 6, W, W), decoder features (N, C, F, F),
    the true mask (N, W, W) in 0..255 (area-averaged onto the crop) and where the window
    lies inside the crop (N, W, W)."""

    inputs: np.ndarray
    features: np.ndarray
    truth: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{f: getattr(self, f) for f in FIELDS})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> WindowSet:
        with np.load(path) as z:
            return cls(*(z[f] for f in FIELDS))

    @classmethod
    def load_all(cls, paths: list[Path]) -> WindowSet:
        """The windows of several files as one set, filled one file at a time.

        A labeler pass over the training instances is ~2.4 GB, so the passes are copied into
        arrays sized from the files' headers: the peak is the set plus one pass, not two sets."""
        shapes = [_npz_shapes(path) for path in paths]
        total = sum(s["inputs"][0][0] for s in shapes)
        first = shapes[0]
        out = cls(*(np.empty((total, *first[f][0][1:]), first[f][1]) for f in FIELDS))
        start = 0
        for path in paths:
            part = cls.load(path)
            for f in FIELDS:
                getattr(out, f)[start : start + len(part)] = getattr(part, f)
            start += len(part)
            del part  # freed before the next pass loads, or two passes would sit beside the set
        return out

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(self.inputs[index].astype(np.float32)),
            torch.from_numpy(self.features[index].astype(np.float32)),
            torch.from_numpy(self.truth[index].astype(np.float32) / 255.0),
            torch.from_numpy(self.valid[index].astype(np.float32)),
        )


def collect_windows(
    crop_predictor: CropPredictor,
    instances: list[Instance],
    clicks: int,
    desc: str = "collect",
    rng: np.random.Generator | None = None,
) -> WindowSet:
    """Run the served pipeline with the boundary robot on each instance; keep every click's window.

    With ``rng`` the labeler is less exact: the extreme points jitter (as in `fewclick train`)
    and each click lands near, not at, the farthest point (`simulator.random_boundary_click`)."""
    windows = collect_windows_if_any(crop_predictor, instances, clicks, desc, rng)
    if windows is None:
        raise ValueError("no boundary clicks were made: are the masks empty?")
    return windows


def collect_windows_if_any(
    crop_predictor: CropPredictor,
    instances: list[Instance],
    clicks: int,
    desc: str = "collect",
    rng: np.random.Generator | None = None,
) -> WindowSet | None:
    """`collect_windows`, or None where the robot made no click (every edge already right): an
    optional set, such as the held-out one, may be empty where the training set may not."""
    if crop_predictor.refiner is not None:
        raise ValueError("collect with a predictor without a refiner: it learns what the network leaves")
    size = crop_predictor.input_size
    crop_predictor.keep_pixels = True
    predictor = FewClickPredictor(crop_predictor)
    inputs, features, truth, valid = [], [], [], []
    for inst in tqdm(instances, desc=desc, unit="inst"):
        predictor.set_image(inst.image)
        if rng is None:
            points = extreme_points(inst.mask)
        else:
            ys, xs = np.nonzero(inst.mask)
            extent = max(xs.max() - xs.min(), ys.max() - ys.min())
            points = extreme_points(inst.mask, rng, jitter=min(0.02 * extent, 6.0))
        pred = predictor.predict(points, []) > 0.5
        made: list[Click] = []
        for _ in range(clicks):
            if rng is None:
                click = boundary_click(inst.mask, pred, inst.ignore)
            else:
                click = random_boundary_click(inst.mask, pred, rng, inst.ignore)
            if click is None:
                break
            made.append(click)
            pred = predictor.predict(points, made) > 0.5
            box, feats, cache = predictor.crop_for(points, made), predictor._features, predictor._cache
            assert feats is not None and feats.pixels is not None
            extremes = [CropClick(float(x), float(y), "boundary") for x, y in box.to_crop(points, size)]
            xy = box.to_crop(np.array([(c.x, c.y) for c in made], np.float64), size)
            crop_clicks = extremes + [CropClick(float(x), float(y), c.kind) for (x, y), c in zip(xy, made, strict=True)]
            previous = cache[tuple(crop_clicks[:-1])].astype(np.float32)
            prob, decoder_features = crop_predictor.network_answer(feats, crop_clicks, previous)
            at = (crop_clicks[-1].x, crop_clicks[-1].y)
            others = [(c.x, c.y) for c in crop_clicks[:-1] if c.kind == "boundary"]
            window, _ = window_inputs(feats.pixels, prob, at, others)
            true_crop = extract_crop(inst.mask.astype(np.float32), box, size, cv2.INTER_AREA)
            inputs.append(window.astype(np.float16))
            features.append(feature_window(decoder_features.float(), at)[0].cpu().numpy().astype(np.float16))
            truth.append(np.round(cut_window(np.clip(true_crop, 0, 1), *at, WINDOW)[0] * 255).astype(np.uint8))
            valid.append(cut_window(np.ones((size, size), np.uint8), *at, WINDOW)[0])
    if not inputs:
        return None
    return WindowSet(np.stack(inputs), np.stack(features), np.stack(truth), np.stack(valid))


def click_weights(window: int = WINDOW) -> torch.Tensor:
    ys, xs = np.mgrid[0:window, 0:window] - window // 2
    weights = 1 + CLICK_WEIGHT * np.exp(-(xs**2 + ys**2) / (2 * CLICK_WEIGHT_SIGMA**2))
    return torch.from_numpy(weights.astype(np.float32))


def refiner_loss(
    refiner: BoundaryRefiner, inputs: torch.Tensor, feats: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    weight = click_weights(inputs.shape[-1])[None] * valid
    logits = refiner(inputs, feats)[:, 0]
    return (F.binary_cross_entropy_with_logits(logits, truth, reduction="none") * weight).sum() / weight.sum()


@torch.no_grad()
def window_errors(refiner: BoundaryRefiner, windows: WindowSet) -> tuple[float, float, float, float]:
    """Mean wrong pixels per window before / after the refiner, and the shares it made better / worse."""
    refiner.eval()
    before, after = [], []
    for start in range(0, len(windows), 128):
        inputs, feats, truth, valid = windows.batch(np.arange(start, min(start + 128, len(windows))))
        true = truth > 0.5
        inside = valid > 0
        refined = refiner(inputs, feats)[:, 0] > 0
        before += (((inputs[:, 3] > 0.5) != true) & inside).sum((1, 2)).tolist()
        after += ((refined != true) & inside).sum((1, 2)).tolist()
    refiner.train()
    b, a = np.array(before, float), np.array(after, float)
    return float(b.mean()), float(a.mean()), float((a < b).mean()), float((a > b).mean())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=default_datasets_root(), help="folder holding the datasets")
    parser.add_argument("--datasets", nargs="+", default=list(TRAIN_DATASETS), help="sub-folders to train on")
    parser.add_argument("--weights", type=Path, default=None, help="the network (default: the committed one)")
    parser.add_argument("--clicks", type=positive_int, default=8, help="boundary clicks the robot makes per instance")
    parser.add_argument(
        "--random-passes",
        type=non_negative_int,
        default=2,
        help="passes over the training instances with a less exact labeler, besides the robot's (the committed "
        "refiner's count: 4 passes and 3,000 steps lowered the window error but not the IoU, see the model card)",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=1500, help="train until this step (the committed refiner's count)"
    )
    parser.add_argument(
        "--channels",
        type=positive_int,
        nargs=3,
        default=list(DEFAULT_CHANNELS),
        metavar=("FULL", "HALF", "QUARTER"),
        help="the refiner's widths at full, half and quarter resolution (the committed refiner's by default)",
    )
    parser.add_argument(
        "--fold",
        choices=FOLDS,
        default=None,
        help="train on one half of the training instances only (`data.fold_of`), to measure on the other",
    )
    parser.add_argument("--batch", type=positive_int, default=48)
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--limit", type=non_negative_int, default=0, help=LIMIT_HELP)
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/refiner"),
        help=f"collected windows and checkpoints (OUT/{CHECKPOINT_PREFIX}-<run>.ckpt, one per data, network and "
        "settings); a run resumes its own",
    )
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help=f"where the fp16 refiner goes (default: OUT/{EXPORT_NAME}); the served refiner is replaced only "
        f"when this names it (model_image/fewclick_model/weights/{DEFAULT_REFINER_WEIGHTS.name})",
    )
    parser.add_argument("--checkpoint-every", type=positive_int, default=250)


def export_path(args: argparse.Namespace) -> Path:
    """Where this run's refiner goes: --export, else inside its own --out."""
    return args.export if args.export is not None else args.out / EXPORT_NAME


def instances_id(instances: Sequence[Instance]) -> str:
    """A short digest of which instances these are, pixels included, in any order.

    Part of the cache's file names: windows and checkpoints are reused only for the same
    instances (--data, --datasets, --limit and --fold all change them). Names alone would not
    do: two folders may both hold an ``obj00``. Hashing ~1 GB of pixels takes a second or two,
    against minutes of collecting."""
    digests = []
    for inst in instances:
        h = hashlib.blake2b(inst.name.encode(), digest_size=16)
        for array in (inst.image, inst.mask, inst.ignore):
            if array is not None:
                h.update(repr(array.shape).encode())
                h.update(np.ascontiguousarray(array).tobytes())
        digests.append(h.hexdigest())
    return hashlib.blake2b("".join(sorted(digests)).encode(), digest_size=5).hexdigest()


def _windows(path: Path, make: Callable[[], WindowSet | None]) -> Path | None:
    """``path``, collected by ``make`` first unless an earlier run left it there; None where
    ``make`` found no windows (nothing is cached then: there is nothing to save)."""
    if path.exists():
        try:
            count = _npz_shapes(path)["inputs"][0][0]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            # Saves are atomic, so this is damage from outside (a full disk, a copy cut short):
            # the windows can be collected again, which is what the user would do by hand.
            print(f"{path} is unreadable ({type(exc).__name__}: {exc}): collecting its windows again")
        else:
            print(f"reusing {count} windows from {path}")
            return path
    windows = make()
    if windows is None:
        return None
    windows.save(path)
    return path


def _resumable(path: Path, run_tag: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when this run made it (same tag), else None (said so if one is there)."""
    if not path.exists():
        return None
    ckpt = load_torch_file(path, f"a checkpoint of `fewclick train-refiner` ({path.name})")
    if not isinstance(ckpt, dict) or "tag" not in ckpt:
        raise ValueError(f"{path} is {describe_torch_object(ckpt)}, not a checkpoint of `fewclick train-refiner`")
    if ckpt["tag"] != run_tag:
        print(f"{path} is another run's (other data, network or settings): starting from step 0")
        return None
    return ckpt


def run(args: argparse.Namespace) -> int:
    export_to = export_path(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    threads = torch.get_num_threads()  # the predictor splits them between its views; training wants them all
    # The committed refiner learnt from states before progressive merge was served: collect those.
    crop_predictor = load_crop_predictor(args.weights, device="cpu", boundary_refiner=False, progressive_merge=False)
    network_version = crop_predictor.model_version
    print(f"network {network_version}: {crop_predictor.describe()}")
    instances = load_training_instances(args.data, args.datasets, args.limit)
    share = weights_holdout_share(args.weights)
    train_set = [i for i in instances if not is_holdout(i.name, share)]
    holdout = [i for i in instances if is_holdout(i.name, share)]
    if args.fold:
        train_set = [i for i in train_set if fold_of(i.name) == args.fold]
        print(f"fold {args.fold}: {len(train_set)} training instances")
    if not train_set:
        raise SystemExit(
            f"nothing to train on: of {len(instances)} instances {len(holdout)} are held out"
            + (f" and none of the rest is in fold {args.fold}" if args.fold else "")
            + "; use more data (--limit, --datasets) or another --fold"
        )
    # Before the windows are collected and the refiner trained (tens of minutes), not after.
    prepare_out_dir(args.out)
    prepare_out_file(export_to, "--export")
    # The instances' identity keeps another dataset's windows and checkpoints from being reused.
    tag = f"{network_version}-{args.clicks}clicks-{len(train_set)}-{instances_id(train_set)}"
    channels = (args.channels[0], args.channels[1], args.channels[2])
    # Windows are shared between widths; a checkpoint only resumes the same windows and width.
    run_tag = f"{tag}-{args.random_passes}random-seed{args.seed}-{'x'.join(map(str, channels))}"
    last = checkpoint_path(args.out, run_tag)
    ckpt = _resumable(last, run_tag)
    if ckpt is not None and int(ckpt["step"]) >= args.steps:
        # Nothing to train; exporting again would rewrite the same refiner (or record a wrong step count).
        print(f"already trained to step {int(ckpt['step'])} (--steps {args.steps}): nothing to do, nothing exported")
        return 0
    passes = [
        _windows(args.out / f"windows-train-{tag}.npz", lambda: collect_windows(crop_predictor, train_set, args.clicks))
    ]
    for k in range(args.random_passes):
        passes.append(
            _windows(
                args.out / f"windows-train-{tag}-random{k}-seed{args.seed}.npz",
                lambda k=k: collect_windows(  # type: ignore[misc]
                    crop_predictor,
                    train_set,
                    args.clicks,
                    f"collect (labeler {k + 1})",
                    np.random.default_rng([args.seed, k]),
                ),
            )
        )
    train = WindowSet.load_all([path for path in passes if path is not None])  # collect_windows never gives None
    held = None
    if holdout:
        held_tag = f"{network_version}-{args.clicks}clicks-{len(holdout)}-{instances_id(holdout)}"
        held_path = _windows(
            args.out / f"windows-holdout-{held_tag}.npz",
            lambda: collect_windows_if_any(crop_predictor, holdout, args.clicks, "collect (held out)"),
        )
        if held_path is None:
            print(f"the {len(holdout)} held-out instances gave no boundary clicks: held-out scoring skipped")
        else:
            held = WindowSet.load(held_path)
    torch.set_num_threads(threads)
    print(f"{len(train)} training windows, {0 if held is None else len(held)} held out")

    refiner = BoundaryRefiner(feature_channels=train.features.shape[1], channels=channels).train()
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=args.lr, weight_decay=1e-4)
    start = 0
    if ckpt is not None:
        refiner.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = int(ckpt["step"])
        rng = np.random.default_rng(args.seed + start)
        print(f"resumed at step {start}")
    started, ema = time.time(), None
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train refiner", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, warmup=min(100, args.steps // 10))
        inputs, feats, truth, valid = train.batch(rng.integers(0, len(train), args.batch))
        if rng.random() < 0.5:  # the mirror image's window (the features mirror exactly: see the module doc)
            inputs, feats, truth, valid = inputs.flip(-1), feats.flip(-1), truth.flip(-1), valid.flip(-1)
        loss = refiner_loss(refiner, inputs, feats, truth, valid)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(loss=f"{ema:.4f}")
        done = step + 1
        if done % args.checkpoint_every == 0 or done == args.steps:
            state = {"model": refiner.state_dict(), "optimizer": optimizer.state_dict(), "step": done, "tag": run_tag}
            atomic_torch_save(state, last)
    bar.close()

    version = export_refiner(
        refiner,
        export_to,
        {
            "network_version": network_version,
            "trained_steps": args.steps,
            "windows": len(train),
            "clicks": args.clicks,
            "fold": args.fold or "all",
        },
    )
    held_out = "no held-out windows (scoring skipped)" if holdout else "no held-out instances"
    if held is not None:
        before, after, better, worse = window_errors(refiner, held)
        held_out = (
            f"held-out windows ({len(held)}): {before:.0f} -> {after:.0f} wrong pixels per window, "
            f"better in {100 * better:.0f} %, worse in {100 * worse:.0f} %"
        )
    print(
        f"\nsummary: {args.steps - start} steps in {(time.time() - started) / 60:.1f} min; loss (EMA) "
        f"{ema if ema is not None else float('nan'):.4f}; {held_out}; refiner exported to {export_to} ({version})"
    )
    return 0
