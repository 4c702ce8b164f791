"""`fewclick evaluate` with a second network on the mirror view: a two-network ensemble at the
served latency (an experiment, not a served option; the model card has its verdict).

Served answers average the crop's and its mirror image's answers from one network. Here the
mirror image goes through ``--mirror-weights`` instead, so each answer averages two networks.
Both views run eagerly as one batch of 2 (row 0 the crop, row 1 the mirror; the served CPU
path runs them side by side as frozen graphs, which gives the same answers). With
``--mirror-weights same`` the served network takes both rows: the control, which reproduces
`fewclick evaluate`'s figures to the digit where the served mirror mode is ``every`` (bfloat16
CPUs and GPUs; this script runs ``every`` everywhere).

    .venv/bin/python scripts/mirror_pair_eval.py --mirror-weights runs/other.pt \\
        --dataset ../shared/datasets/davis --holdout-only --max-clicks 5 --out runs/pair-davis

Every other option is `fewclick evaluate`'s; ``--holdout-only`` picks the instances the first
(``--weights``) network held out, so the second one must have held them out too (`data.is_holdout`
is nested: a larger share holds out every instance a smaller one does).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from fewclick_model import evaluate, predictor
from fewclick_model.checkpoints import load_weights
from fewclick_model.folding import fold_batch_norms
from fewclick_model.network import FewClickNet, ImageFeatures
from fewclick_model.predictor import CropPredictor
from torch import nn

SAME = "same"


class MirrorPair(nn.Module):
    """Row 0 of every batch through ``crop_net`` (the crop), row 1 through ``mirror_net`` (its
    mirror image): the calls `CropPredictor` makes of its network."""

    def __init__(self, crop_net: FewClickNet, mirror_net: FewClickNet) -> None:
        super().__init__()
        if crop_net.newest_click != mirror_net.newest_click:
            raise ValueError("the two networks read different guidance maps (one has the newest-click map)")
        self.nets = nn.ModuleList([crop_net, mirror_net])
        self.newest_click = crop_net.newest_click

    def _rows(self, batch: int) -> list[FewClickNet]:
        if batch not in (1, 2):
            raise ValueError(f"a batch holds the crop and at most its mirror image, got {batch} rows")
        return list(self.nets)[:batch]  # type: ignore[arg-type]

    def encode_image(self, rgb: torch.Tensor) -> ImageFeatures:
        parts = [net.encode_image(rgb[i : i + 1]) for i, net in enumerate(self._rows(rgb.shape[0]))]
        return ImageFeatures(torch.cat([p.stride2 for p in parts]), torch.cat([p.stride4 for p in parts]))

    def decode(self, features: ImageFeatures, guidance: torch.Tensor) -> torch.Tensor:
        nets = self._rows(guidance.shape[0])
        return torch.cat([net.decode(features.view(i), guidance[i : i + 1]) for i, net in enumerate(nets)])

    def decode_with_features(
        self, features: ImageFeatures, guidance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        nets = self._rows(guidance.shape[0])
        out = [net.decode_with_features(features.view(i), guidance[i : i + 1]) for i, net in enumerate(nets)]
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])


def with_mirror_network(crop: CropPredictor, mirror_weights: str | Path) -> CropPredictor:
    """``crop`` (built eager: ``frozen_graphs=False``) with ``mirror_weights``'s network on the
    mirror view, or its own network there too for `SAME`."""
    if crop.mirror != "every":
        raise ValueError(f"a second network on the mirror view needs mirror 'every', not {crop.mirror!r}")
    if str(mirror_weights) == SAME:
        mirror_net = crop.model
    else:
        mirror_net, _ = load_weights(Path(mirror_weights), str(crop.device))
        fold_batch_norms(mirror_net)
        mirror_net = mirror_net.to(crop.device, dtype=crop.dtype, memory_format=crop.memory_format).eval()
    crop.model = MirrorPair(crop.model, mirror_net).eval()  # type: ignore[assignment]
    # One batch of 2 keeps row 1 the mirror: the side-by-side pool would hand each network a batch of 1.
    if crop._view_pool is not None:
        crop._view_pool.shutdown()
        crop._view_pool = None
    crop.model_version += f"+mirror:{Path(mirror_weights).stem}"
    return crop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mirror-weights", required=True, help=f"the mirror view's network (weights file), or {SAME!r}"
    )
    evaluate.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.mirror_weights != SAME and not Path(args.mirror_weights).is_file():
        parser.error(f"--mirror-weights {args.mirror_weights} is not a file")
    if args.mirror not in ("auto", "every"):
        parser.error("--mirror must be every (or auto) for a second network on the mirror view")
    served_loader = predictor.load_crop_predictor

    def load_pair(*positional: Any, **options: Any) -> CropPredictor:
        options.update(frozen_graphs=False, mirror="every")
        return with_mirror_network(served_loader(*positional, **options), args.mirror_weights)

    predictor.load_crop_predictor = load_pair  # what `evaluate.run` builds its predictor with
    try:
        return evaluate.run(args)
    finally:
        predictor.load_crop_predictor = served_loader


if __name__ == "__main__":
    raise SystemExit(main())
