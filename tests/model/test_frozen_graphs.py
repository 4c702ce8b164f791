"""On a CPU the crop's and a click's passes run as frozen TorchScript graphs and answer exactly as
eager mode does."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from fewclick_model.cuda_graphs import GraphedCall
from fewclick_model.encoding import CropClick
from fewclick_model.frozen_graphs import FrozenCall
from fewclick_model.predictor import load_crop_predictor
from torch import nn


class ConvPair(nn.Module):
    """Two outputs and a size read from the input: what the decoder pass has."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up = nn.functional.interpolate(self.conv(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
        return torch.relu(up) + y, up.mean(dim=1, keepdim=True)


class Untraceable(nn.Module):
    """Answers eagerly but fails while traced, as an op the tracer cannot record would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            raise RuntimeError("no graph of this")
        return x * 2


def test_a_frozen_call_answers_each_new_input_as_the_module_does_one_graph_per_signature() -> None:
    module = ConvPair().eval()
    call = FrozenCall(module, "conv pair")
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():  # as the predictor calls it
        for _ in range(3):
            x, y = torch.randn(1, 3, 8, 8, generator=generator), torch.randn(1, 4, 16, 16, generator=generator)
            for got, expected in zip(call(x, y), module(x, y), strict=True):
                assert torch.equal(got, expected)
        assert call.enabled and call.graphs == 1
        # Another size (and with it the size the graph read from its input) gets its own graph.
        x, y = torch.randn(1, 3, 6, 6, generator=generator), torch.randn(1, 4, 12, 12, generator=generator)
        got, expected = call(x, y), module(x, y)
        assert got[0].shape == (1, 4, 12, 12) and torch.equal(got[0], expected[0])
        assert call.graphs == 2


def test_the_two_view_threads_calling_at_once_share_one_graph() -> None:
    module = ConvPair().eval()
    call = FrozenCall(module, "conv pair")
    x, y = torch.randn(1, 3, 8, 8), torch.randn(1, 4, 16, 16)
    expected = module(x, y)[0]
    start = threading.Barrier(4)
    answers: list[torch.Tensor] = []

    def view() -> None:
        start.wait()
        with torch.inference_mode():
            answers.append(call(x, y)[0])

    threads = [threading.Thread(target=view) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert call.graphs == 1 and len(answers) == 4
    assert all(torch.equal(a, expected) for a in answers)


def test_where_no_graph_can_be_made_the_call_runs_eagerly_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    call = FrozenCall(Untraceable(), "the untraceable")
    x = torch.ones(2, 3)
    with caplog.at_level(logging.WARNING, logger="fewclick_model.frozen_graphs"):
        out = call(x)
    assert not call.enabled and call.graphs == 0
    assert "freezing the untraceable as a TorchScript graph failed (no graph of this)" in caplog.text
    assert "running it eagerly" in caplog.text
    assert len(out) == 1 and torch.equal(out[0], x * 2)  # the module's own answer, as a one-tuple
    caplog.clear()
    assert torch.equal(call(x)[0], x * 2) and not caplog.text  # and from then on without trying again


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_the_served_cpu_predictor_answers_exactly_as_eager_mode(precision: str) -> None:
    """The committed network and boundary refiner, both views side by side as served: the crop's
    features, the first mask, a region click and a refined boundary click, bit for bit."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        frozen = load_crop_predictor(device="cpu", precision=precision, mirror="every")
        eager = load_crop_predictor(device="cpu", precision=precision, mirror="every", frozen_graphs=False)
    finally:
        torch.set_num_threads(before)
    assert frozen.refiner is not None and frozen._view_pool is not None
    assert "frozen graphs" in frozen.describe() and "frozen graphs" not in eager.describe()
    s = frozen.input_size
    extremes = [CropClick(s / 2, 8, "boundary"), CropClick(8, s / 2, "boundary")]
    extremes += [CropClick(s / 2, s - 8, "boundary"), CropClick(s - 8, s / 2, "boundary")]
    rng = np.random.default_rng(0)
    for _ in range(2):  # new crops, new features: each session's own answers
        crop = rng.integers(0, 255, (s, s, 3), dtype=np.uint8)
        feats_f, feats_e = frozen.encode(crop), eager.encode(crop)
        assert torch.equal(feats_f.stride2, feats_e.stride2) and torch.equal(feats_f.stride4, feats_e.stride4)
        first_f, first_e = frozen.predict_first(feats_f, extremes), eager.predict_first(feats_e, extremes)
        np.testing.assert_array_equal(first_f, first_e)
        for kind in ("positive", "boundary"):  # the boundary click also runs the refiner
            xy = rng.uniform(40, s - 40, 2)
            clicks = [*extremes, CropClick(float(xy[0]), float(xy[1]), kind)]
            answer_f, answer_e = frozen.predict(feats_f, clicks, first_f), eager.predict(feats_e, clicks, first_e)
            np.testing.assert_array_equal(answer_f, answer_e)
    assert isinstance(frozen._graphed_decode, FrozenCall) and frozen._graphed_decode.graphs == 1
    assert isinstance(frozen._graphed_refiner, FrozenCall) and frozen._graphed_refiner.graphs == 1
    assert frozen._graphed_encode is not None and frozen._graphed_encode.graphs == 1
    assert eager._graphed_decode is None and eager._graphed_refiner is None and eager._graphed_encode is None


def test_a_cpu_predictor_replays_no_cuda_graphs_and_a_gpu_one_freezes_nothing(tiny_weights: Path) -> None:
    cpu = load_crop_predictor(tiny_weights, device="cpu")
    assert isinstance(cpu._graphed_decode, FrozenCall) and "CUDA graphs" not in cpu.describe()
    if torch.cuda.is_available():
        gpu = load_crop_predictor(tiny_weights, device="cuda")
        assert isinstance(gpu._graphed_decode, GraphedCall) and gpu._graphed_encode is None
