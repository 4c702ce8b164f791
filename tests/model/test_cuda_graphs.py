"""A click's passes replayed as CUDA graphs answer as eager launches do; without a GPU, eagerly."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from fewclick_model.cuda_graphs import GraphedCall
from fewclick_model.encoding import CropClick
from fewclick_model.predictor import load_crop_predictor

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def affine(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x * 2 + y, (x - y).sum(dim=1, keepdim=True)


def test_where_no_graph_can_be_captured_the_call_runs_eagerly_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU captures: the fallback needs a machine without one")
    call = GraphedCall(affine, "affine")
    x, y = torch.ones(2, 3), torch.arange(6.0).reshape(2, 3)
    with caplog.at_level(logging.WARNING, logger="fewclick_model.cuda_graphs"):
        out = call(x, y)
    assert not call.enabled and call.graphs == 0
    assert "running it eagerly" in caplog.text
    for got, expected in zip(out, affine(x, y), strict=True):
        assert torch.equal(got, expected)
    # A single tensor comes back as a one-tuple either way.
    assert GraphedCall(lambda t: t + 1, "plus one")(x)[0].tolist() == [[2.0] * 3] * 2


def test_a_cpu_predictor_replays_no_cuda_graphs(tiny_weights: Path) -> None:
    p = load_crop_predictor(tiny_weights, device="cpu")  # its passes are frozen graphs instead (test_frozen_graphs)
    assert not isinstance(p._graphed_decode, GraphedCall) and "CUDA graphs" not in p.describe()


@needs_gpu
def test_a_replay_answers_each_new_input_as_the_eager_call_does() -> None:
    call = GraphedCall(affine, "affine")
    for seed in range(3):
        g = torch.Generator(device="cuda").manual_seed(seed)
        x = torch.randn(2, 3, 8, 8, device="cuda", generator=g)
        y = torch.randn(2, 3, 8, 8, device="cuda", generator=g)
        for got, expected in zip(call(x, y), affine(x, y), strict=True):
            torch.testing.assert_close(got, expected)
    assert call.enabled and call.graphs == 1  # one signature, one capture
    call(torch.zeros(1, 3, 8, 8, device="cuda"), torch.zeros(1, 3, 8, 8, device="cuda"))
    assert call.graphs == 2


@needs_gpu
def test_the_served_predictor_on_a_gpu_answers_as_eager_launches_do() -> None:
    graphed = load_crop_predictor(device="cuda")
    eager = load_crop_predictor(device="cuda", cuda_graphs=False)
    assert "CUDA graphs" in graphed.describe() and "CUDA graphs" not in eager.describe()
    s = graphed.input_size
    rng = np.random.default_rng(0)
    extremes = [CropClick(s / 2, 8, "boundary"), CropClick(8, s / 2, "boundary")]
    extremes += [CropClick(s / 2, s - 8, "boundary"), CropClick(s - 8, s / 2, "boundary")]
    for _ in range(3):  # new crops, new features: the graphs must read each session's own
        crop = rng.integers(0, 255, (s, s, 3), dtype=np.uint8)
        feats_g, feats_e = graphed.encode(crop), eager.encode(crop)
        first_g, first_e = graphed.predict_first(feats_g, extremes), eager.predict_first(feats_e, extremes)
        np.testing.assert_allclose(first_g, first_e, atol=1e-4)
        for kind in ("positive", "boundary"):  # the boundary click also runs the refiner
            clicks = [*extremes, CropClick(float(rng.uniform(40, s - 40)), float(rng.uniform(40, s - 40)), kind)]
            np.testing.assert_allclose(
                graphed.predict(feats_g, clicks, first_g), eager.predict(feats_e, clicks, first_e), atol=1e-4
            )
    assert graphed._graphed_decode is not None and graphed._graphed_decode.graphs >= 1
    assert graphed._graphed_refiner is not None and graphed._graphed_refiner.graphs == 1
