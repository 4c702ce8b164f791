"""The weights in the repository: they load, respect clicks and segment real objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fewclick_model import evaluate
from fewclick_model.checkpoints import DEFAULT_WEIGHTS
from fewclick_model.predictor import FewClickPredictor, load_crop_predictor
from fewclick_model.simulator import Click, extreme_points

from .synthetic import evaluate_parser, make_instance

SHARED_GRABCUT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "grabcut"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def predictor() -> FewClickPredictor:
    assert DEFAULT_WEIGHTS.exists(), f"trained weights must be committed at {DEFAULT_WEIGHTS}"
    return FewClickPredictor(load_crop_predictor(device="cpu"))


def test_weights_are_small_and_carry_their_version() -> None:
    assert DEFAULT_WEIGHTS.stat().st_size < 10_000_000
    assert load_crop_predictor(device="cpu").model_version.startswith("lite0-256-")


def test_an_obvious_object_is_found_from_its_extreme_points(predictor: FewClickPredictor) -> None:
    scores = []
    for seed in range(4):
        image, mask = make_instance(np.random.default_rng(100 + seed), h=240, w=320)
        predictor.set_image(image)
        pred = predictor.predict(extreme_points(mask > 0)) > 0.5
        scores.append(iou(pred, mask > 0))
    assert np.mean(scores) > 0.85, scores


@pytest.mark.parametrize("honor", ["none", "all"])
def test_positive_and_negative_clicks_are_respected(honor: str) -> None:
    # "none": the network alone does it on an easy object; "all": as served.
    predictor = FewClickPredictor(load_crop_predictor(device="cpu"), honor=honor)  # type: ignore[arg-type]
    image, mask = make_instance(np.random.default_rng(7), h=240, w=320)
    truth = mask > 0
    predictor.set_image(image)
    points = extreme_points(truth)
    ys, xs = np.nonzero(truth)
    inside = Click(int(np.median(xs)), int(np.median(ys)), "positive")
    outside = Click(int(points[:, 0].min()) + 2, int(points[:, 1].min()) + 2, "negative")
    if truth[outside.y, outside.x]:
        pytest.skip("the box corner happens to be on the object")
    pred = predictor.predict(points, [inside, outside]) > 0.5
    assert pred[inside.y, inside.x] and not pred[outside.y, outside.x]


@pytest.mark.dataset("grabcut")
@pytest.mark.skipif(not SHARED_GRABCUT.is_dir(), reason="needs ../shared/datasets/grabcut")
def test_grabcut_sample_reaches_a_sane_accuracy(tmp_path: Path) -> None:
    # A regression guard on 6 instances, not the benchmark (README: `fewclick evaluate`).
    parser = evaluate_parser()
    args = parser.parse_args(
        [
            "--dataset",
            str(SHARED_GRABCUT),
            "--limit",
            "6",
            "--max-clicks",
            "3",
            "--clicks",
            "region",
            "--out",
            str(tmp_path),
        ]
    )
    assert evaluate.run(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())[0]
    assert summary["miou"][0] > 0.8
    assert summary["miou"][3] >= summary["miou"][0] - 0.01
