"""Segmentation loss: boundary-weighted BCE plus soft Dice.

BCE alone under-weights small objects and thin parts; Dice fixes the balance
per sample. The extra weight on a thin band around the true edge is where the
remaining error of models like ours sits (MODEL_NOTES: thin structures).

Optionally the BCE term becomes RITM's normalized focal loss: each pixel's term
scaled by (1 - p_t)^gamma, renormalised per sample so the weights keep their sum
(a crop's weight in the batch is unchanged), which moves that weight from the
pixels the network already gets right to the ones it does not; the loss's value
then follows the hardest pixels left rather than the mean over all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EDGE_WEIGHT = 3.0
EDGE_BAND_PX = 3


def edge_band(truth: torch.Tensor, band: int = EDGE_BAND_PX) -> torch.Tensor:
    """Pixels within ``band`` of the true edge, for (B, 1, S, S) float masks."""
    k = 2 * band + 1
    dilated = F.max_pool2d(truth, k, stride=1, padding=band)
    eroded = -F.max_pool2d(-truth, k, stride=1, padding=band)
    return dilated - eroded


def normalized_focal_factor(
    logits: torch.Tensor, truth: torch.Tensor, weights: torch.Tensor, gamma: float
) -> torch.Tensor:
    """RITM's per-pixel factor (1 - p_t)^gamma, scaled per sample so that ``weights`` times it
    sums to what ``weights`` did. Only the scale is detached (as RITM's ``detach_delimeter``):
    the factor itself carries the focal loss's gradient."""
    prob = torch.sigmoid(logits)
    p_true = torch.where(truth > 0.5, prob, 1.0 - prob)
    factor = (1.0 - p_true).clamp_min(0.0) ** gamma
    dims = tuple(range(1, logits.dim()))
    scale = weights.sum(dim=dims, keepdim=True) / ((weights * factor).sum(dim=dims, keepdim=True) + 1e-8)
    return factor * scale.detach()


def segmentation_loss(
    logits: torch.Tensor,
    truth: torch.Tensor,
    extra_weights: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """``extra_weights`` (B, 1, S, S), added to the BCE weights, makes chosen pixels count
    more: those around the labeler's clicks (the mask must agree with a click where it
    was made) and, optionally, those the previous mask got wrong (`train.correction_weight_map`).
    ``focal_gamma`` > 0 turns the BCE term into the normalized focal loss (module docstring)."""
    weights = 1.0 + (EDGE_WEIGHT - 1.0) * edge_band(truth)
    if extra_weights is not None:
        weights = weights + extra_weights
    if focal_gamma > 0:
        # torch's ``weight=`` takes no gradient, and the focal factor carries one.
        focal = weights * normalized_focal_factor(logits, truth, weights, focal_gamma)
        bce = (F.binary_cross_entropy_with_logits(logits, truth, reduction="none") * focal).mean()
    else:
        bce = F.binary_cross_entropy_with_logits(logits, truth, weight=weights)
    prob = torch.sigmoid(logits)
    inter = (prob * truth).sum(dim=(1, 2, 3))
    dice = 1.0 - (2.0 * inter + 1.0) / (prob.sum(dim=(1, 2, 3)) + truth.sum(dim=(1, 2, 3)) + 1.0)
    return bce + dice.mean()
