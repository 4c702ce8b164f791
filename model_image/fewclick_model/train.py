"""`fewclick train`: iterative click training on coco_mval + davis.

Each step: augmented crops with jittered extreme points; up to three extra
forward passes without gradients, each adding one simulated corrective click
(region or boundary) where the current prediction is wrong and feeding that
prediction back as the previous mask (RITM's iterative training); then the
loss on the last pass. The image features are computed once per step and
reused by every pass, as a served session does.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoints import DEFAULT_WEIGHTS, atomic_torch_save, export_weights
from .data import (
    Instance,
    SampleGenerator,
    TrainingSample,
    default_datasets_root,
    is_holdout,
    list_instances,
    load_instance,
)
from .encoding import CropClick, encode_guidance
from .losses import segmentation_loss
from .network import FewClickNet
from .simulator import region_click, sample_training_click

TRAIN_DATASETS = ("coco_mval", "davis")
HOLDOUT_SHARE = 0.05
# How many extra click passes a step takes: mostly few, so the first masks get most practice.
EXTRA_PASSES = (0, 1, 2, 3)
EXTRA_PASS_PROBS = (0.35, 0.25, 0.2, 0.2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=default_datasets_root(), help="folder holding coco_mval/ and davis/"
    )
    parser.add_argument("--datasets", nargs="+", default=list(TRAIN_DATASETS), help="sub-folders to train on")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoints and logs")
    parser.add_argument("--export", type=Path, default=DEFAULT_WEIGHTS, help="where the served fp16 weights go")
    parser.add_argument("--encoder", default="efficientnet-lite0")
    parser.add_argument("--size", type=int, default=256, help="network input side in pixels")
    parser.add_argument("--decoder-channels", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="fit the run into this wall time instead: --steps is re-estimated from the measured speed",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--validate-every", type=int, default=500)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    parser.add_argument("--init", type=Path, default=None, help="start from these exported weights (fine-tuning)")
    parser.add_argument(
        "--boundary-share", type=float, default=0.4, help="share of simulated corrective clicks on the boundary"
    )
    parser.add_argument("--limit", type=int, default=0, help="use only this many instances (smoke runs)")


def load_training_instances(root: Path, datasets: list[str], limit: int = 0) -> list[Instance]:
    pairs = [pair for name in datasets for pair in list_instances(root / name)]
    if limit:
        pairs = pairs[:limit]
    return [load_instance(img, mask) for img, mask in tqdm(pairs, desc="loading", unit="img", leave=False)]


def batch_guidance(clicks: list[list[CropClick]], previous: np.ndarray | None, size: int) -> torch.Tensor:
    maps = [encode_guidance(c, size, None if previous is None else previous[i]) for i, c in enumerate(clicks)]
    return torch.from_numpy(np.stack(maps))


def to_image_tensor(crops: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def lr_at(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def train_step(
    model: FewClickNet,
    optimizer: torch.optim.Optimizer,
    samples: list[TrainingSample],
    rng: np.random.Generator,
    device: torch.device,
    boundary_share: float = 0.4,
) -> tuple[float, float, int]:
    batch_size = len(samples)
    size = samples[0].crop.shape[0]
    rgb = to_image_tensor([s.crop for s in samples]).to(device)
    truth_np = np.stack([s.mask for s in samples])
    truth = torch.from_numpy(truth_np).float().unsqueeze(1).to(device)
    clicks = [[CropClick(float(x), float(y), "boundary") for x, y in s.points] for s in samples]
    passes = int(rng.choice(EXTRA_PASSES, p=EXTRA_PASS_PROBS))

    features = model.encode_image(rgb)
    previous: np.ndarray | None = None
    if passes:
        frozen = features.detach()
        with torch.no_grad():
            for _ in range(passes):
                logits = model.decode(frozen, batch_guidance(clicks, previous, size).to(device))
                previous = torch.sigmoid(logits)[:, 0].float().cpu().numpy()
                for i, sample_clicks in enumerate(clicks):
                    click = sample_training_click(truth_np[i], previous[i] > 0.5, rng, boundary_share)
                    if click is not None:
                        sample_clicks.append(CropClick(float(click.x), float(click.y), click.kind))
    guidance = batch_guidance(clicks, previous, size).to(device)
    logits = model.decode(features, guidance)
    loss = segmentation_loss(logits, truth)
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
        rgb = to_image_tensor([s.crop]).to(device)
        feats = model.encode_image(rgb)
        cl = [CropClick(float(x), float(y), "boundary") for x, y in s.points]
        prev = None
        for k in range(clicks + 1):
            prob = torch.sigmoid(model.decode(feats, batch_guidance([cl], prev, size).to(device)))[0, 0].cpu().numpy()
            ious[k] += iou(prob > 0.5, s.mask)
            c = region_click(s.mask, prob > 0.5)
            if c is None:
                ious[k + 1 :] += iou(prob > 0.5, s.mask)
                break
            cl.append(CropClick(float(c.x), float(c.y), c.kind))
            prev = prob[None]
    model.train()
    return list(ious / max(1, len(instances)))


def run(args: argparse.Namespace) -> int:
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    instances = load_training_instances(args.data, args.datasets, args.limit)
    train_set = [i for i in instances if not is_holdout(i.name, HOLDOUT_SHARE)]
    holdout = [i for i in instances if is_holdout(i.name, HOLDOUT_SHARE)]
    print(f"training on {len(train_set)} instances, {len(holdout)} held out, device {device}")

    model = FewClickNet(encoder=args.encoder, pretrained=True, decoder_channels=args.decoder_channels)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    if args.init:
        from .checkpoints import load_weights

        model.load_state_dict(load_weights(args.init)[0].state_dict())
        print(f"initialised from {args.init}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    gen = SampleGenerator(train_set, args.size, seed=args.seed)
    start = 0
    last = args.out / "last.ckpt"
    if args.resume and last.exists():
        ckpt = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
        rng = np.random.default_rng(args.seed + start)
        gen.rng = np.random.default_rng(args.seed + 7 * start)
        print(f"resumed at step {start}")

    log_path = args.out / "log.jsonl"
    ema_loss, ema_iou = None, None
    started = time.time()
    bar = tqdm(initial=start, total=args.steps, desc="train", unit="step")
    step = start
    # A while loop, not a range: with --minutes the schedule's length changes as it goes.
    while step < args.steps:
        if args.minutes and step > start and ((step - start) in (20, 100) or (step - start) % 250 == 0):
            # Re-plan the schedule's length from the measured pace (other jobs share the cores).
            pace = (time.time() - started) / (step - start)
            args.steps = max(step + 1, start + int(args.minutes * 60 / pace))
            bar.total = args.steps
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        samples = [gen.sample() for _ in range(args.batch)]
        loss, batch_iou, passes = train_step(model, optimizer, samples, rng, device, args.boundary_share)
        ema_loss = loss if ema_loss is None else 0.98 * ema_loss + 0.02 * loss
        ema_iou = batch_iou if ema_iou is None else 0.98 * ema_iou + 0.02 * batch_iou
        bar.set_postfix(loss=f"{ema_loss:.3f}", iou=f"{ema_iou:.3f}", lr=f"{lr_at(step, args.steps, args.lr):.1e}")
        record: dict[str, float] = {"step": step + 1, "loss": loss, "iou": batch_iou, "passes": passes}
        done = step + 1
        if done % args.checkpoint_every == 0 or done == args.steps:
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done}, last)
        if holdout and (done % args.validate_every == 0 or done == args.steps):
            val = validate(model, holdout, args.size, device)
            record.update({f"val_iou_{k}": v for k, v in enumerate(val)})
            tqdm.write(f"step {done}: holdout mIoU after 0..3 clicks " + " ".join(f"{v:.3f}" for v in val))
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        step = done
        bar.update(1)
    bar.close()

    version = export_weights(
        model.float().to("cpu"),
        args.export,
        args.size,
        args.decoder_channels,
        {"trained_steps": args.steps, "datasets": args.datasets, "batch": args.batch},
    )
    minutes = (time.time() - started) / 60
    print(
        f"\nsummary: {args.steps - start} steps in {minutes:.1f} min; train IoU (EMA) {ema_iou:.3f}; "
        f"exported {args.export} as model version {version}"
    )
    return 0
