"""The edge refinement on the predictor's device gives the contract's (OpenCV) answer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from fewclick_model.edge_refine_torch import box_mean, refine_probabilities_on, refine_tensor
from fewclick_model.edge_refine_torch import guided_filter as torch_guided_filter

from fewclick_contract.edge_refine import REFINE_RADIUS, guided_filter, refine_probabilities


def soft_disc(side: int, centre: tuple[float, float], radius: float, softness: float) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    distance = np.hypot(xx - centre[0], yy - centre[1])
    # tanh form of the logistic: exp() of the far corners' distances overflows float64.
    return (0.5 + 0.5 * np.tanh((radius - distance) / (2 * softness))).astype(np.float32)


def textured_guide(side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    guide = cv2.GaussianBlur(rng.integers(0, 255, (side, side), dtype=np.uint8), (5, 5), 0)
    guide[:, side // 2 :] //= 3  # an intensity edge for the filter to snap onto
    return guide


@pytest.mark.parametrize("seed", range(4))
def test_the_torch_refinement_matches_opencv_on_a_finer_guide(seed: int) -> None:
    rng = np.random.default_rng(seed)
    prob = soft_disc(256, (128 + rng.uniform(-30, 30), 128 + rng.uniform(-30, 30)), 70, rng.uniform(1, 6))
    guide = textured_guide(512, seed)
    expected = refine_probabilities(prob, guide)
    got = refine_tensor(torch.from_numpy(prob), torch.from_numpy(guide)).numpy()
    assert got.shape == expected.shape == (512, 512)
    # The filter really moved something (else the comparison says little) ...
    plain = cv2.resize(prob, (512, 512), interpolation=cv2.INTER_LINEAR)
    assert np.abs(expected - plain).max() > 0.02
    # ... and both sides moved it the same way, to float32 rounding; the served masks agree.
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert np.array_equal(got > 0.5, expected > 0.5)


def test_certain_answers_and_guides_no_finer_than_the_network_are_plain_resampling() -> None:
    certain = (soft_disc(256, (128, 128), 60, 0.05) > 0.5).astype(np.float32)
    guide = textured_guide(512, 0)
    np.testing.assert_allclose(
        refine_tensor(torch.from_numpy(certain), torch.from_numpy(guide)).numpy(),
        refine_probabilities(certain, guide),
        atol=2e-5,
    )
    prob = soft_disc(64, (30, 30), 20, 3)
    same_side = textured_guide(64, 1)
    assert np.array_equal(refine_tensor(torch.from_numpy(prob), torch.from_numpy(same_side)).numpy(), prob)


def test_box_mean_uses_opencvs_border_and_the_guided_filter_agrees() -> None:
    rng = np.random.default_rng(7)
    x = rng.random((40, 50), dtype=np.float32)
    window = 2 * REFINE_RADIUS + 1
    expected = cv2.boxFilter(x, -1, (window, window), borderType=cv2.BORDER_REFLECT)
    got = box_mean(torch.from_numpy(x)[None, None], REFINE_RADIUS)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    guide, src = rng.random((40, 50), dtype=np.float32), rng.random((40, 50), dtype=np.float32)
    got = torch_guided_filter(torch.from_numpy(guide)[None, None], torch.from_numpy(src)[None, None], 3, 1e-3)
    np.testing.assert_allclose(got[0, 0].numpy(), guided_filter(guide, src, 3, 1e-3), atol=1e-4)


def test_on_a_cpu_the_contracts_opencv_code_answers() -> None:
    prob = soft_disc(256, (120, 130), 70, 3)
    guide = textured_guide(512, 3)
    assert np.array_equal(refine_probabilities_on(torch.device("cpu"), prob, guide), refine_probabilities(prob, guide))
    with pytest.raises(ValueError, match="guide"):
        refine_probabilities_on(torch.device("cpu"), prob, guide.astype(np.float32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_the_refinement_runs_there_and_agrees() -> None:
    prob = soft_disc(256, (120, 130), 70, 3)
    guide = textured_guide(512, 3)
    got = refine_probabilities_on(torch.device("cuda"), prob, guide)
    np.testing.assert_allclose(got, refine_probabilities(prob, guide), atol=2e-5)
    with pytest.raises(ValueError, match="guide"):
        refine_probabilities_on(torch.device("cuda"), prob, guide[:, :100])
