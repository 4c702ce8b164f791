"""The edge refinement (`fewclick_contract.edge_refine`) on the predictor's device.

On a GPU the network answers a click in ~4 ms, and the guided filter that snaps a large
object's edge onto its 512 px crop cost another ~5 ms on the host (OpenCV, 16 cores
behind gVisor, H200 machine): the served click of a large object went over the 10 ms GPU
budget (12.3 ms p90). Here the same steps run as a handful of pooling kernels next to
the network's output. The contract module stays the reference (and what runs on CPU,
where OpenCV is faster than torch): `tests/model/test_edge_refine_torch.py` holds the two
to the same answer, on the parameters that module owns.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fewclick_contract.edge_refine import (
    CERTAIN_MARGIN,
    REFINE_EPS,
    REFINE_RADIUS,
    check_guide,
    refine_probabilities,
)


def refine_probabilities_on(device: torch.device, prob: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """`refine_probabilities(prob, guide)`, computed on ``device``: OpenCV on a CPU, torch
    elsewhere. (S, S) float probabilities and the (G, G) uint8 guide in, (G, G) float32 out."""
    if device.type == "cpu":
        return refine_probabilities(prob, guide)
    check_guide(guide)
    prob_t = torch.from_numpy(np.ascontiguousarray(prob, dtype=np.float32)).to(device, non_blocking=True)
    guide_t = torch.from_numpy(np.ascontiguousarray(guide)).to(device, non_blocking=True)
    return refine_tensor(prob_t, guide_t).cpu().numpy()


@torch.inference_mode()
def refine_tensor(prob: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """The tensor form of `refine_probabilities`: (S, S) float and (G, G) uint8, same device."""
    side = guide.shape[0]
    up = prob.float()[None, None]
    if up.shape[-1] != side:
        # OpenCV's INTER_LINEAR samples at half-pixel centres, as align_corners=False does.
        up = F.interpolate(up, size=(side, side), mode="bilinear", align_corners=False)
    if side <= prob.shape[0]:
        return up[0, 0]
    uncertain = ((up - 0.5).abs() < CERTAIN_MARGIN).float()
    window = 2 * REFINE_RADIUS + 1
    # OpenCV's dilation pads with a value that never wins the max; zeros do the same for 0/1.
    band = F.max_pool2d(uncertain, window, stride=1, padding=REFINE_RADIUS) > 0
    filtered = guided_filter(guide.float()[None, None] / 255.0, up, REFINE_RADIUS, REFINE_EPS)
    return torch.where(band, filtered.clamp(0.0, 1.0), up)[0, 0]


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Grey-guide guided filter of (1, 1, H, W) ``src`` by ``guide``: the four box means of
    the first step in one pooling call, the two of the second in another."""
    means = box_mean(torch.cat([guide, src, guide * guide, guide * src], dim=1), radius)
    mean_i, mean_p, mean_ii, mean_ip = means.unbind(dim=1)
    a = (mean_ip - mean_i * mean_p) / (mean_ii - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = box_mean(torch.stack([a, b], dim=1), radius).unbind(dim=1)
    return (mean_a * guide[:, 0] + mean_b)[:, None]


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window of (N, C, H, W) ``x`` with OpenCV's BORDER_REFLECT
    ("cba|abc": the edge pixel repeated), which torch's "reflect" padding ("cb|abc") is not."""
    r = radius
    x = torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], dim=-1)
    x = torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2)
    return F.avg_pool2d(x, 2 * r + 1, stride=1)
