"""The segmentation loss's normalized focal option (`fewclick train --focal-gamma`), on masks whose
right and wrong pixels are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fewclick_model import train
from fewclick_model.checkpoints import weights_meta
from fewclick_model.losses import edge_band, normalized_focal_factor, segmentation_loss

from .synthetic import steps_on_one_batch, train_parser


def square_with_a_wrong_patch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A confident, mostly right prediction of a square whose 4x4 patch inside is confidently wrong."""
    truth = torch.zeros(1, 1, 32, 32)
    truth[..., 8:24, 8:24] = 1.0
    logits = (truth * 2 - 1) * 4
    wrong = torch.zeros_like(truth, dtype=torch.bool)
    wrong[..., 14:18, 14:18] = True
    logits[wrong] = -4.0
    return logits, truth, wrong


def test_gamma_zero_is_the_weighted_bce_loss() -> None:
    logits, truth, _ = square_with_a_wrong_patch()
    extra = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(segmentation_loss(logits, truth, extra, 0.0), segmentation_loss(logits, truth, extra))
    # The focal path itself reduces to the same loss as gamma goes to 0 (a factor of 1 everywhere).
    nearly_bce = segmentation_loss(logits, truth, extra, 1e-9)
    assert nearly_bce.item() == pytest.approx(segmentation_loss(logits, truth, extra).item(), rel=1e-6)


def test_the_focal_factor_keeps_each_samples_weight_sum() -> None:
    # Two samples of different difficulty: the renormalisation is per sample, so an easy crop's
    # weight is not handed to a hard one in the same batch.
    logits, truth, _ = square_with_a_wrong_patch()
    logits = torch.cat([logits, torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))])
    truth = torch.cat([truth, truth])
    weights = 1.0 + 2.0 * edge_band(truth)
    focal = weights * normalized_focal_factor(logits, truth, weights, 2.0)
    assert torch.allclose(focal.sum(dim=(1, 2, 3)), weights.sum(dim=(1, 2, 3)), rtol=1e-5)


def test_the_focal_factor_moves_weight_to_the_wrong_pixels() -> None:
    logits, truth, wrong = square_with_a_wrong_patch()
    weights = torch.ones_like(truth)
    share_bce = (weights[wrong].sum() / weights.sum()).item()
    focal = weights * normalized_focal_factor(logits, truth, weights, 2.0)
    share_focal = (focal[wrong].sum() / focal.sum()).item()
    # 16 of 1,024 pixels are wrong: 1.6 % of the weight with BCE, nearly all of it with gamma 2
    # (each wrong pixel's factor is (1 - sigmoid(-4))^2 / sigmoid(-4)^2 ~ 3,000 times a right one's).
    assert share_bce == pytest.approx(16 / 1024)
    assert share_focal > 0.95
    # So the loss grows when the same error sits among more right pixels, where BCE's mean shrinks.
    assert segmentation_loss(logits, truth, focal_gamma=2.0) > 5 * segmentation_loss(logits, truth)


def test_the_focal_loss_has_its_own_gradient_and_learns(tiny_root: Path) -> None:
    # torch's BCE ``weight=`` takes no gradient; the focal factor must pass one (RITM's loss does).
    logits, truth, _ = square_with_a_wrong_patch()
    logits.requires_grad_(True)
    segmentation_loss(logits, truth, focal_gamma=2.0).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    ious = [batch_iou for _, batch_iou, _ in steps_on_one_batch(tiny_root, 12, focal_gamma=2.0)]
    # The focal loss's value follows the hardest pixels left, so learning shows in the batch IoU.
    assert np.mean(ious[-3:]) > np.mean(ious[:3]) + 0.05, ious


def test_the_cli_takes_a_focal_gamma_and_refuses_a_negative_one(tiny_root: Path, tmp_path: Path) -> None:
    parser = train_parser()
    common = ["--data", str(tiny_root), "--out", str(tmp_path), "--export", str(tmp_path / "w.pt")]
    tiny = ["--size", "64", "--decoder-channels", "16", "--steps", "1", "--batch", "2", "--validate-every", "5"]
    args = parser.parse_args([*common, *tiny, "--focal-gamma", "2"])
    assert args.focal_gamma == 2.0
    assert train.run(args) == 0
    assert weights_meta(tmp_path / "w.pt")["trained_steps"] == 1
    assert parser.parse_args(common).focal_gamma == 0.0, "off by default"
    with pytest.raises(SystemExit):
        parser.parse_args([*common, "--focal-gamma", "-1"])
