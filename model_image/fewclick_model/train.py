"""`fewclick train`: iterative click training on coco_mval + davis.

Each step: augmented crops with jittered extreme points; up to three extra
forward passes without gradients, each adding one simulated corrective click
(region or boundary) where the current prediction is wrong and feeding that
prediction back as the previous mask (RITM's iterative training); then the
loss on the last pass. The image features are computed once per step and
reused by every pass, as a served session does. The loss weighs the pixels
around the corrective clicks more (click consistency: a labeler's click must
win where it was made).

On a GPU the network is no longer the bottleneck: ``--workers`` processes cut
the augmented crops and ``--sim-threads`` threads simulate clicks and paint
guidance maps (OpenCV and numpy release the GIL), while the network runs in
bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .checkpoints import (
    DEFAULT_WEIGHTS,
    atomic_torch_save,
    describe_torch_object,
    export_weights,
    load_torch_file,
    require_same_network,
    state_dict_mismatch,
    weights_meta,
)
from .cli_types import (
    fraction,
    network_side,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
)
from .data import (
    DEFAULT_HOLDOUT_SHARE,
    NO_AUGMENTATIONS,
    Augmentations,
    Instance,
    SampleGenerator,
    TrainingSample,
    default_datasets_root,
    holdout_share_of,
    is_holdout,
    list_instances,
    load_instance,
)
from .encoding import EXTREME_POINTS, REPEAT_CAP, CropClick, encode_guidance
from .losses import segmentation_loss
from .network import DEFAULT_ENCODER, ENCODER_VARIANTS, FewClickNet, with_newest_click_channel
from .preflight import check_names_a_file, prepare_out_dir, prepare_out_file
from .simulator import region_click, sample_training_click

TRAIN_DATASETS = ("coco_mval", "davis")
# More would leave too little to train on; the split is by name, so it is the same for every run.
MAX_HOLDOUT_SHARE = 0.5
# How many extra click passes a step takes: mostly few, so the first masks get most practice.
EXTRA_PASSES = (0, 1, 2, 3)
EXTRA_PASS_PROBS = (0.35, 0.25, 0.2, 0.2)
NO_EXTRA_PASS_PROB = EXTRA_PASS_PROBS[0]
# Click consistency: extra BCE weight on a disk around each corrective click.
CLICK_LOSS_WEIGHT = 4.0
CLICK_LOSS_RADIUS = 0.02  # share of the crop side: ~5 px at 256
# A run's exported weights, inside its --out, unless --export names another place: replacing the
# served model (checkpoints.DEFAULT_WEIGHTS) must be asked for.
EXPORT_NAME = "weights.pt"
# `fewclick train-refiner` shares the loader, so both commands describe --limit alike.
LIMIT_HELP = "use only the first N instances of --datasets taken together, in that order (0: all; smoke runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=default_datasets_root(), help="folder holding coco_mval/ and davis/"
    )
    parser.add_argument("--datasets", nargs="+", default=list(TRAIN_DATASETS), help="sub-folders to train on")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoints and logs")
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help=f"where the fp16 weights go (default: OUT/{EXPORT_NAME}); the served model is replaced only when "
        f"this names it (model_image/fewclick_model/weights/{DEFAULT_WEIGHTS.name})",
    )
    parser.add_argument(
        "--encoder",
        choices=ENCODER_VARIANTS,
        default=None,
        help="default: the --init weights' encoder, else efficientnet-lite0",
    )
    parser.add_argument(
        "--size", type=network_side, default=256, help="network input side in pixels (a multiple of 32)"
    )
    parser.add_argument("--decoder-channels", type=positive_int, default=64)
    parser.add_argument("--steps", type=positive_int, default=6000, help="train until this step (a resume counts on)")
    parser.add_argument(
        "--minutes",
        type=non_negative_float,
        default=0.0,
        help="fit the run into this wall time instead: --steps is re-estimated from the measured speed "
        "(at least the ~100 steps that speed is measured over)",
    )
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--lr", type=positive_float, default=4e-4)
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--checkpoint-every", type=positive_int, default=100)
    parser.add_argument("--validate-every", type=positive_int, default=500)
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUT/last.ckpt (from step 0 when there is none)"
    )
    parser.add_argument("--init", type=Path, default=None, help="start from these exported weights (fine-tuning)")
    parser.add_argument(
        "--holdout-share",
        type=fraction,
        default=None,
        help="share of instances never trained on, chosen by a hash of the name and recorded in the weights "
        f"(`evaluate --holdout-only` reads it; default {DEFAULT_HOLDOUT_SHARE}); with --init, at most the "
        "initial weights' share, and that share by default",
    )
    parser.add_argument(
        "--boundary-share", type=fraction, default=0.4, help="share of simulated corrective clicks on the boundary"
    )
    parser.add_argument(
        "--correction-weight",
        type=non_negative_float,
        default=0.0,
        help="extra BCE weight on the pixels the previous mask got wrong (0: off)",
    )
    parser.add_argument(
        "--focal-gamma",
        type=non_negative_float,
        default=0.0,
        help="RITM's normalized focal loss in place of BCE, with this gamma (0: BCE; RITM uses 2)",
    )
    parser.add_argument(
        "--paste-share",
        type=fraction,
        default=0.0,
        help="share of samples with another instance's object pasted across the target's edge (copy-paste)",
    )
    parser.add_argument(
        "--background-share",
        type=fraction,
        default=0.0,
        help="share of samples whose target is pasted onto another instance's photo (new context, same object)",
    )
    parser.add_argument(
        "--hole-share",
        type=fraction,
        default=0.0,
        help="share of samples with a hole punched through the target, showing the photo's background (0: off)",
    )
    parser.add_argument(
        "--repeat-share",
        type=fraction,
        default=0.0,
        help="share of simulated clicks that repeat the sample's last boundary click at the same spot "
        "(a labeler insisting), drawn stronger in the guidance; the weights are then served so (0: off)",
    )
    parser.add_argument(
        "--newest-click",
        action="store_true",
        help="the network also reads a map of the newest corrective click alone (--init's weights without "
        "it are widened, answering as before until trained); weights trained so are served so",
    )
    parser.add_argument(
        "--max-passes",
        type=non_negative_int,
        default=len(EXTRA_PASSES) - 1,
        help="most corrective clicks simulated before the pass a step learns from",
    )
    parser.add_argument("--limit", type=non_negative_int, default=0, help=LIMIT_HELP)
    parser.add_argument(
        "--workers", type=non_negative_int, default=0, help="processes cutting training crops (0: in-process)"
    )
    parser.add_argument(
        "--sim-threads", type=positive_int, default=1, help="threads simulating clicks and guidance maps"
    )
    parser.add_argument(
        "--export-every",
        type=non_negative_int,
        default=0,
        help="also export the weights every N steps (0: at the end only)",
    )


def export_path(args: argparse.Namespace) -> Path:
    """Where this run's weights go: --export, else inside its own --out."""
    return args.export if args.export is not None else args.out / EXPORT_NAME


def extra_pass_distribution(max_passes: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """How many click passes a step simulates before the one it learns from, and how often.

    Up to 3 keeps the recipe the committed weights were trained with; deeper runs keep the same
    share of plain extreme-point steps and spread the rest evenly, so late clicks (a robot user
    clicking the 10th time, often on the same spot) get practice too.
    """
    if max_passes < 0:
        raise ValueError(f"max_passes must be >= 0, got {max_passes}")
    if max_passes == len(EXTRA_PASSES) - 1:
        return EXTRA_PASSES, EXTRA_PASS_PROBS
    if max_passes == 0:
        return (0,), (1.0,)
    rest = (1.0 - NO_EXTRA_PASS_PROB) / max_passes
    return tuple(range(max_passes + 1)), (NO_EXTRA_PASS_PROB, *([rest] * max_passes))


def load_training_instances(root: Path, datasets: list[str], limit: int = 0) -> list[Instance]:
    pairs = [pair for name in datasets for pair in list_instances(root / name)]
    if limit:
        pairs = pairs[:limit]
    instances = []
    for img, mask in tqdm(pairs, desc="loading", unit="img", leave=False):
        instance = load_instance(img, mask)
        if not instance.mask.any():
            # No object, no extreme points: refused here, by name, as `evaluate` does, rather than as
            # "empty mask has no extreme points" from deep inside a sampler or a collecting refiner.
            raise ValueError(f"{mask} has no object pixels (0 is background, 128 unknown)")
        instances.append(instance)
    return instances


@dataclass
class TrainingBatch:
    crops: np.ndarray  # (B, S, S, 3) uint8
    masks: np.ndarray  # (B, S, S) bool
    points: np.ndarray  # (B, 4, 2) crop pixels, the extreme points

    @classmethod
    def of(cls, samples: Sequence[TrainingSample]) -> TrainingBatch:
        return cls(
            np.stack([s.crop for s in samples]),
            np.stack([s.mask for s in samples]),
            np.stack([s.points for s in samples]),
        )

    def __len__(self) -> int:
        return len(self.crops)


class BatchStream(torch.utils.data.IterableDataset):
    """Endless augmented batches; each loader worker draws from its own seed."""

    def __init__(
        self,
        instances: Sequence[Instance],
        size: int,
        batch: int,
        seed: int,
        augmentations: Augmentations = NO_AUGMENTATIONS,
    ) -> None:
        self.instances, self.size, self.batch, self.seed = instances, size, batch, seed
        self.augmentations = augmentations

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        # In-process (no worker info) this is the plain `--seed` stream.
        gen = SampleGenerator(
            self.instances,
            self.size,
            seed=self.seed + 1000 * worker,
            augmentations=self.augmentations,
        )
        while True:
            b = TrainingBatch.of([gen.sample() for _ in range(self.batch)])
            yield b.crops, b.masks, b.points


def batch_source(
    instances: Sequence[Instance],
    size: int,
    batch: int,
    seed: int,
    workers: int,
    augmentations: Augmentations = NO_AUGMENTATIONS,
) -> Callable[[], TrainingBatch]:
    """A callable returning the next batch, from worker processes when ``workers`` > 0."""
    stream = BatchStream(instances, size, batch, seed, augmentations)
    if workers <= 0:
        it = iter(stream)
        return lambda: TrainingBatch(*next(it))
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=workers, prefetch_factor=4, persistent_workers=True
    )
    it = iter(loader)

    def next_batch() -> TrainingBatch:
        crops, masks, points = next(it)
        return TrainingBatch(np.asarray(crops), np.asarray(masks), np.asarray(points))

    return next_batch


def _map(pool: ThreadPoolExecutor | None, fn: Callable[..., object], *iterables: Sequence[object]) -> list:
    return list(pool.map(fn, *iterables)) if pool is not None else [fn(*args) for args in zip(*iterables, strict=True)]


def batch_guidance(
    clicks: list[list[CropClick]],
    previous: np.ndarray | None,
    size: int,
    pool: ThreadPoolExecutor | None = None,
    repeat_cap: int = 1,
    newest_click: bool = False,
) -> torch.Tensor:
    prevs = [None if previous is None else previous[i] for i in range(len(clicks))]

    def encode(c: list[CropClick], p: np.ndarray | None) -> np.ndarray:
        return encode_guidance(c, size, p, repeat_cap, newest_click)

    return torch.from_numpy(np.stack(_map(pool, encode, clicks, prevs)))


def repeat_cap_for(repeat_share: float) -> int:
    """The guidance's repeat cap a run trains (and its weights are served) with."""
    return REPEAT_CAP if repeat_share > 0 else 1


def click_weight_map(clicks: list[list[CropClick]], size: int) -> torch.Tensor:
    """(B, 1, S, S): CLICK_LOSS_WEIGHT on a disk around every corrective click (the
    extreme points, always the first four, are left to the edge weighting)."""
    weights = np.zeros((len(clicks), 1, size, size), dtype=np.float32)
    radius = max(1, round(CLICK_LOSS_RADIUS * size))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = (xx * xx + yy * yy <= radius * radius).astype(np.float32) * CLICK_LOSS_WEIGHT
    for i, sample_clicks in enumerate(clicks):
        for c in sample_clicks[4:]:
            cx, cy = round(c.x), round(c.y)
            x0, x1 = max(cx - radius, 0), min(cx + radius + 1, size)
            y0, y1 = max(cy - radius, 0), min(cy + radius + 1, size)
            if x1 > x0 and y1 > y0:
                patch = disk[y0 - cy + radius : y1 - cy + radius, x0 - cx + radius : x1 - cx + radius]
                np.maximum(weights[i, 0, y0:y1, x0:x1], patch, out=weights[i, 0, y0:y1, x0:x1])
    return torch.from_numpy(weights)


def correction_weight_map(previous: np.ndarray | None, truth: np.ndarray, weight: float) -> torch.Tensor | None:
    """(B, 1, S, S): ``weight`` where the previous pass's mask disagrees with the truth.

    Most pixels of a corrected mask only copy the previous one; weighing the wrong
    ones trains the network to change what the click points at, not to echo its
    last answer (the failure behind a boundary click that does not move the edge).
    """
    if previous is None or weight <= 0:
        return None
    wrong = (previous > 0.5) != truth
    return torch.from_numpy(wrong[:, None].astype(np.float32) * np.float32(weight))


def to_image_tensor(crops: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float, channels-last in memory."""
    return (
        torch.from_numpy(np.ascontiguousarray(crops))
        .permute(0, 3, 1, 2)
        .float()
        .contiguous(memory_format=torch.channels_last)
    )


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def lr_at(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


# The first steps pay for start-up (loader workers, cuDNN autotuning): the pace is timed after them.
WARMUP_STEPS_UNTIMED = 20


def replan_steps(step: int, start: int, elapsed_s: float, budget_s: float, warm_pace: float | None) -> int:
    """The schedule's length that fits ``budget_s`` (``--minutes``), from the measured pace.

    Other jobs share the cores and start-up is slow, so this runs again as training
    goes: until a start-up-free pace exists, the plan only ever reaches the next
    re-plan at least, rather than ending a run on its slow first steps.
    """
    remaining = budget_s - elapsed_s
    if remaining <= 0:
        return step + 1
    if warm_pace is None:
        pace = elapsed_s / max(1, step - start)
        return max(start + 100 + 1, step + int(remaining / pace))
    return max(step + 1, step + int(remaining / warm_pace))


def train_step(
    model: FewClickNet,
    optimizer: torch.optim.Optimizer,
    batch: TrainingBatch,
    rng: np.random.Generator,
    device: torch.device,
    boundary_share: float = 0.4,
    pool: ThreadPoolExecutor | None = None,
    correction_weight: float = 0.0,
    pass_distribution: tuple[tuple[int, ...], tuple[float, ...]] = (EXTRA_PASSES, EXTRA_PASS_PROBS),
    focal_gamma: float = 0.0,
    repeat_share: float = 0.0,
) -> tuple[float, float, int]:
    batch_size = len(batch)
    size = batch.crops.shape[1]
    rgb = to_image_tensor(batch.crops).to(device, non_blocking=True)
    truth_np = batch.masks
    truth = torch.from_numpy(truth_np).float().unsqueeze(1).to(device, non_blocking=True)
    clicks = [[CropClick(float(x), float(y), "boundary") for x, y in pts] for pts in batch.points]
    pass_counts, pass_probs = pass_distribution
    passes = int(rng.choice(pass_counts, p=pass_probs))
    # One generator per sample: numpy generators must not be shared between threads.
    sample_rngs = rng.spawn(batch_size)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    repeat_cap = repeat_cap_for(repeat_share)

    def add_click(i: int, prob: np.ndarray) -> None:
        last = clicks[i][-1] if len(clicks[i]) > EXTREME_POINTS else None
        # The rng is drawn from only when repeats are on, so runs without them stay as they were.
        if repeat_share > 0 and last is not None and last.kind == "boundary" and sample_rngs[i].random() < repeat_share:
            clicks[i].append(last)  # followed or not: the network learns what insisting asks for in both
            return
        click = sample_training_click(truth_np[i], prob > 0.5, sample_rngs[i], boundary_share)
        if click is not None:
            clicks[i].append(CropClick(float(click.x), float(click.y), click.kind))

    with autocast:
        features = model.encode_image(rgb)
    previous: np.ndarray | None = None
    if passes:
        frozen = features.detach()
        with torch.no_grad():
            for _ in range(passes):
                with autocast:
                    guidance = batch_guidance(clicks, previous, size, pool, repeat_cap, model.newest_click)
                    logits = model.decode(frozen, guidance.to(device))
                previous = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
                _map(pool, add_click, range(batch_size), list(previous))
    guidance = batch_guidance(clicks, previous, size, pool, repeat_cap, model.newest_click)
    guidance = guidance.to(device, non_blocking=True)
    with autocast:
        logits = model.decode(features, guidance)
    extra = click_weight_map(clicks, size)
    corrections = correction_weight_map(previous, truth_np, correction_weight)
    if corrections is not None:
        extra = extra + corrections
    loss = segmentation_loss(logits.float(), truth, extra.to(device), focal_gamma)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    pred = (logits.detach()[:, 0] > 0).cpu().numpy()
    batch_iou = float(np.mean([iou(pred[i], truth_np[i]) for i in range(batch_size)]))
    return float(loss.detach()), batch_iou, passes


@torch.no_grad()
def validate(
    model: FewClickNet, instances: list[Instance], size: int, device: torch.device, clicks: int = 3
) -> list[float]:
    """Crop-space mIoU on held-out instances after 0..clicks region clicks (a quick overfitting watch)."""
    model.eval()
    ious = np.zeros(clicks + 1)
    instances = [i for i in instances if i.mask.sum() >= 16]
    for index, inst in enumerate(instances):
        # One fixed augmented view per instance, so successive validations compare.
        s = SampleGenerator([inst], size, seed=index).sample()
        rgb = to_image_tensor(s.crop[None]).to(device)
        feats = model.encode_image(rgb)
        cl = [CropClick(float(x), float(y), "boundary") for x, y in s.points]
        prev = None
        for k in range(clicks + 1):
            guidance = batch_guidance([cl], prev, size, newest_click=model.newest_click).to(device)
            prob = torch.sigmoid(model.decode(feats, guidance))[0, 0].cpu().numpy()
            ious[k] += iou(prob > 0.5, s.mask)
            c = region_click(s.mask, prob > 0.5)
            if c is None:
                ious[k + 1 :] += iou(prob > 0.5, s.mask)
                break
            cl.append(CropClick(float(c.x), float(c.y), c.kind))
            prev = prob[None]
    model.train()
    return list(ious / max(1, len(instances)))


def check_holdout_share(share: float | None, init: Path | None) -> float:
    """``share`` if it keeps the held-out instances unseen, else a SystemExit that says why; None
    (not given): the initial weights' share when fine-tuning, else the default.

    Fine-tuning cannot hold out more than the initial weights did: the extra instances were
    trained on already, and figures on them would flatter the run. A smaller share is fine (the
    split is nested, see `is_holdout`), it just measures on fewer instances; but only when asked
    for: a fine-tune of weights that held out 15 % used to fall back to the 5 % default unless told,
    and silently trained on the rest of their held-out instances.
    """
    if share is None:
        share = holdout_share_of(weights_meta(init)) if init is not None else DEFAULT_HOLDOUT_SHARE
    if not 0.0 <= share <= MAX_HOLDOUT_SHARE:
        raise SystemExit(f"--holdout-share must be between 0 and {MAX_HOLDOUT_SHARE}, got {share}")
    if init is not None:
        seen_from = holdout_share_of(weights_meta(init))
        if share > seen_from + 1e-9:
            raise SystemExit(
                f"{init} trained on all but {seen_from:.0%} of the instances: --holdout-share {share} would hold out "
                f"instances it has seen. Train from ImageNet (no --init) for a larger hold-out."
            )
    return share


CHECKPOINT_EXPECTED = "a training checkpoint of `fewclick train` (OUT/last.ckpt)"


def trim_log(log_path: Path, start: int) -> None:
    """Drops the log's records past ``start``: a run stopped between checkpoints logged steps its
    resume takes again, and the log would hold those steps twice (from 0: the whole log)."""
    if not log_path.exists():
        return
    kept = [
        line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= start
    ]
    tmp = log_path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    tmp.replace(log_path)


def check_out_and_export(out: Path, last: Path, export_to: Path, resume: bool) -> None:
    """Refuses, before any work, a run that would overwrite another run's checkpoint or its own."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    if last.exists() and not resume:
        # The default --out is the same for every run: without this, a forgotten --resume
        # restarted at step 0 over hours of training.
        raise ValueError(
            f"--out {out} holds a training run ({last.name}): pass --resume to continue it, or another --out"
        )
    check_names_a_file(export_to, "--export")  # cheap, so before the data loads; writability comes later
    if export_to.resolve() == last.resolve():
        raise ValueError(f"--export {export_to} is the run's own checkpoint: name another file")


def read_resume_checkpoint(
    path: Path,
    share: float,
    encoder: str,
    decoder_channels: int,
    size: int | None = None,
    repeat_cap: int = 1,
    newest_click: bool = False,
) -> dict[str, Any] | None:
    """The checkpoint ``--resume`` continues from, or None (said so) where ``path`` holds none.

    Refuses one made with another hold-out share or another network: the first would train on
    held-out instances, the second cannot load (settings recorded since they were, shapes before).
    """
    if not path.exists():
        print(f"--resume: no checkpoint at {path}, starting from step 0")
        return None
    ckpt = load_torch_file(path, CHECKPOINT_EXPECTED)
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "step"} <= ckpt.keys():
        raise ValueError(f"{path} is {describe_torch_object(ckpt)}, not {CHECKPOINT_EXPECTED}")
    was = holdout_share_of(ckpt)  # checkpoints from before it was recorded: the default
    if abs(was - share) > 1e-9:
        raise SystemExit(f"{path} trained with {was:.0%} held out, not {share:.0%}: resume with the same share")
    require_same_network(ckpt, path, encoder, decoder_channels)
    trained_at = ckpt.get("size")  # recorded since resumes at another --size were refused
    if size is not None and trained_at is not None and trained_at != size:
        raise ValueError(
            f"{path} was trained with --size {trained_at}, this run asks for {size}: pass --size {trained_at}"
        )
    # The exported weights record these and are served with them, so a resume may not switch one.
    for option, off, was, ours in (
        ("--repeat-share", 1, int(ckpt.get("repeat_cap", 1)), repeat_cap),
        ("--newest-click", False, bool(ckpt.get("newest_click", False)), newest_click),
    ):
        if was != ours:
            said = "without" if was == off else "with"
            raise ValueError(f"{path} was trained {said} {option}: resume it the same way")
    return ckpt


def check_trainable(train_set: list[Instance], size: int, instances: int, share: float) -> None:
    """Refuses, saying why, a training set the sampler cannot draw from, before the network is built
    and before loader workers start (a worker's error would come back wrapped in the loader's)."""
    if not train_set:
        raise SystemExit(
            f"nothing to train on: all {instances} instances are held out (--holdout-share {share}); "
            "use more data (--limit, --datasets) or a smaller share"
        )
    SampleGenerator(train_set, size)  # raises a ValueError when every object is too small to sample


def run(args: argparse.Namespace) -> int:
    pass_distribution = extra_pass_distribution(args.max_passes)  # a bad value fails before the data loads
    export_to = export_path(args)
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    # Everything that can refuse the run does so before the data loads, and OUT is made only once
    # the data and the network are known good (a refused run leaves no empty folder behind).
    share = check_holdout_share(args.holdout_share, args.init)
    init_meta = weights_meta(args.init) if args.init else {}
    if args.encoder is None:
        args.encoder = str(init_meta["encoder"]) if args.init else DEFAULT_ENCODER
    if args.init:
        # --init's weights must be this run's network (the metadata read once, above).
        require_same_network(init_meta, args.init, args.encoder, args.decoder_channels)
    last = args.out / "last.ckpt"
    check_out_and_export(args.out, last, export_to, args.resume)
    repeat_cap = repeat_cap_for(args.repeat_share)
    # Weights that read the newest-click map keep it: a fine-tune cannot drop a trained input.
    init_has_newest = bool(init_meta.get("newest_click", False))
    newest_click = args.newest_click or init_has_newest
    ckpt = (
        read_resume_checkpoint(last, share, args.encoder, args.decoder_channels, args.size, repeat_cap, newest_click)
        if args.resume
        else None
    )
    # With --minutes the step count is re-planned from the measured speed: only --steps alone is a cap.
    nothing_to_train = ckpt is not None and ckpt["step"] >= args.steps and not args.minutes
    if nothing_to_train and export_to.exists():
        # Exporting again would only rewrite the same weights (or record a wrong step count).
        print(f"already trained to step {ckpt['step']} (--steps {args.steps}): nothing to do, nothing exported")
        return 0
    if nothing_to_train:
        args.steps = ckpt["step"]  # the weights are not exported yet (an earlier export failed): export them
    instances = load_training_instances(args.data, args.datasets, args.limit)
    train_set = [i for i in instances if not is_holdout(i.name, share)]
    holdout = [i for i in instances if is_holdout(i.name, share)]
    print(f"training on {len(train_set)} instances, {len(holdout)} held out ({share:.0%}), device {device}")
    check_trainable(train_set, args.size, len(instances), share)

    # Fine-tuning replaces every weight, so the ImageNet package is not needed then.
    model = FewClickNet(
        encoder=args.encoder,
        pretrained=args.init is None,
        decoder_channels=args.decoder_channels,
        newest_click=init_has_newest,
    )
    prepare_out_dir(args.out)
    prepare_out_file(export_to, "--export")  # before hours of training, not after
    model = model.to(device).to(memory_format=torch.channels_last).train()
    if args.init:
        from .checkpoints import load_weights

        model.load_state_dict(load_weights(args.init)[0].state_dict())
        print(f"initialised from {args.init}")
    if newest_click and not model.newest_click:
        model = with_newest_click_channel(model).to(memory_format=torch.channels_last)
        print("the network now reads the newest-click map too (its new weights start at zero)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    start = 0
    if ckpt is not None:
        mismatch = state_dict_mismatch(model, ckpt["model"])
        if mismatch:  # a checkpoint from before the settings were recorded
            raise ValueError(
                f"{last} does not fit this run's network (--encoder {args.encoder}, --decoder-channels "
                f"{args.decoder_channels}): {mismatch}; resume with the settings it was trained with"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
        rng = np.random.default_rng(args.seed + start)
        print(f"resumed at step {start}")
    # A resumed run draws new crops rather than replaying the first ones.
    augmentations = Augmentations(args.paste_share, args.background_share, args.hole_share)
    next_batch = batch_source(train_set, args.size, args.batch, args.seed + 7 * start, args.workers, augmentations)
    pool = ThreadPoolExecutor(args.sim_threads) if args.sim_threads > 1 else None
    # For a resume.
    network = {
        "encoder": args.encoder,
        "decoder_channels": args.decoder_channels,
        "size": args.size,
        "repeat_cap": repeat_cap,
        "newest_click": newest_click,
    }

    def export(steps: int) -> str:
        # Export a float32 CPU copy so training continues undisturbed on its device.
        snapshot = FewClickNet(
            encoder=args.encoder, pretrained=False, decoder_channels=args.decoder_channels, newest_click=newest_click
        )
        snapshot.load_state_dict({k: v.float().cpu() for k, v in model.state_dict().items()})
        info = {
            "trained_steps": steps,
            "datasets": args.datasets,
            "batch": args.batch,
            "holdout_share": share,
            "repeat_cap": repeat_cap,
        }
        return export_weights(snapshot, export_to, args.size, args.decoder_channels, info)

    log_path = args.out / "log.jsonl"
    trim_log(log_path, start)
    warm_clock: tuple[float, int] | None = None  # (time, step) once start-up is over
    ema_loss, ema_iou = None, None
    started = time.time()
    if args.minutes and args.steps <= start:
        # A resume past --steps with a time budget: an initial plan of --steps more, which the
        # re-plans below fit to the budget.
        args.steps = start + args.steps
    bar = tqdm(initial=start, total=args.steps, desc="train", unit="step")
    step = start
    # A while loop, not a range: with --minutes the schedule's length changes as it goes.
    while step < args.steps:
        if step - start == WARMUP_STEPS_UNTIMED:
            warm_clock = (time.time(), step)
        if args.minutes and step > start and ((step - start) in (20, 100) or (step - start) % 250 == 0):
            warm_pace = None
            if warm_clock is not None and step > warm_clock[1]:
                warm_pace = (time.time() - warm_clock[0]) / (step - warm_clock[1])
            args.steps = replan_steps(step, start, time.time() - started, args.minutes * 60, warm_pace)
            bar.total = args.steps
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        loss, batch_iou, passes = train_step(
            model,
            optimizer,
            next_batch(),
            rng,
            device,
            args.boundary_share,
            pool,
            args.correction_weight,
            pass_distribution,
            args.focal_gamma,
            args.repeat_share,
        )
        ema_loss = loss if ema_loss is None else 0.98 * ema_loss + 0.02 * loss
        ema_iou = batch_iou if ema_iou is None else 0.98 * ema_iou + 0.02 * batch_iou
        bar.set_postfix(loss=f"{ema_loss:.3f}", iou=f"{ema_iou:.3f}", lr=f"{lr_at(step, args.steps, args.lr):.1e}")
        record: dict[str, float] = {"step": step + 1, "loss": loss, "iou": batch_iou, "passes": passes}
        done = step + 1
        if done % args.checkpoint_every == 0 or done == args.steps:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done}
            atomic_torch_save({**state, "holdout_share": share, **network}, last)
        if args.export_every and done % args.export_every == 0 and done < args.steps:
            export(done)
        if holdout and (done % args.validate_every == 0 or done == args.steps):
            val = validate(model, holdout, args.size, device)
            record.update({f"val_iou_{k}": v for k, v in enumerate(val)})
            tqdm.write(f"step {done}: holdout mIoU after 0..3 clicks " + " ".join(f"{v:.3f}" for v in val))
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        step = done
        bar.update(1)
    bar.close()

    version = export(args.steps)
    minutes = (time.time() - started) / 60
    print(
        f"\nsummary: {args.steps - start} steps in {minutes:.1f} min; train IoU (EMA) "
        f"{'n/a' if ema_iou is None else f'{ema_iou:.3f}'}; "
        f"weights exported to {export_to} (model version {version})"
    )
    return 0
