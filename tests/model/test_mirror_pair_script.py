"""scripts/mirror_pair_eval.py, the experiment that puts a second network on the mirror view:
the control ("same") must answer as the served predictor does, the pair must average exactly
the two networks' answers, and the CLI must run `fewclick evaluate` with it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from fewclick_model import predictor
from fewclick_model.encoding import CropClick
from fewclick_model.predictor import CropPredictor, load_crop_predictor

from .synthetic import TINY_CROP_EXTREMES, export_tiny_weights, mirrored_clicks, write_folder

REPO = Path(__file__).resolve().parents[2]
EXTREMES = list(TINY_CROP_EXTREMES)
CLICKS = [CropClick(30, 30, "positive"), CropClick(45, 20, "boundary")]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mirror_pair_eval", REPO / "scripts" / "mirror_pair_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny network whose decoder starts elsewhere: its answers differ from tiny_weights'."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("w2") / "other.pt"
    export_tiny_weights(path)
    return path


def _eager(weights: Path, mirror: str) -> CropPredictor:
    return load_crop_predictor(
        weights, device="cpu", mirror=mirror, precision="fp32", boundary_refiner=False, frozen_graphs=False
    )


def _crop() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def test_the_control_answers_as_the_served_predictor(script: ModuleType, tiny_weights: Path) -> None:
    served = _eager(tiny_weights, "every")
    control = script.with_mirror_network(_eager(tiny_weights, "every"), "same")
    crop = _crop()
    for clicks in ([], CLICKS[:1], CLICKS):
        expected = served.predict_sequence(served.encode(crop), EXTREMES, clicks)
        got = control.predict_sequence(control.encode(crop), EXTREMES, clicks)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_pair_averages_the_crop_networks_answer_and_the_mirror_networks(
    script: ModuleType, tiny_weights: Path, other_weights: Path
) -> None:
    pair = script.with_mirror_network(_eager(tiny_weights, "every"), other_weights)
    alone_a, alone_b = _eager(tiny_weights, "none"), _eager(other_weights, "none")
    crop, side = _crop(), 64
    mirror = np.ascontiguousarray(crop[:, ::-1])
    got = pair.predict_first(pair.encode(crop), EXTREMES)
    a = alone_a.predict_first(alone_a.encode(crop), EXTREMES)
    b = alone_b.predict_first(alone_b.encode(mirror), mirrored_clicks(EXTREMES, side))[:, ::-1]
    np.testing.assert_allclose(got, (a + b) / 2, atol=1e-5)
    assert np.abs(a - b).max() > 1e-2  # the two networks do disagree, so the average tells them apart
    # A corrective click: both read the same previous mask (the mirror its flipped copy).
    previous = got
    clicks = [*EXTREMES, CLICKS[0]]
    got = pair.predict(pair.encode(crop), clicks, previous)
    a = alone_a.predict(alone_a.encode(crop), clicks, previous)
    b = alone_b.predict(alone_b.encode(mirror), mirrored_clicks(clicks, side), np.ascontiguousarray(previous[:, ::-1]))
    np.testing.assert_allclose(got, (a + b[:, ::-1]) / 2, atol=1e-5)


def test_the_cli_evaluates_the_pair_and_names_it(
    script: ModuleType, tiny_weights: Path, other_weights: Path, tmp_path: Path
) -> None:
    data = write_folder(tmp_path / "bench", 2, seed=5)
    common = ["--dataset", str(data), "--weights", str(tiny_weights), "--max-clicks", "2", "--clicks", "region"]
    assert script.main(["--mirror-weights", str(other_weights), *common, "--out", str(tmp_path / "pair")]) == 0
    summary = json.loads((tmp_path / "pair" / "summary.json").read_text())
    assert "+mirror:other" in json.dumps(summary)
    assert len((tmp_path / "pair" / "per_instance.csv").read_text().splitlines()) == 1 + 2
    # The served loader is put back: later evaluations in this process are not pairs.
    assert predictor.load_crop_predictor is load_crop_predictor


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--mirror-weights", "nowhere.pt"], "--mirror-weights nowhere.pt is not a file"),
        (["--mirror-weights", "same", "--mirror", "none"], "--mirror must be every"),
    ],
)
def test_the_cli_refuses_what_cannot_be_a_pair(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        script.main([*options, "--dataset", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
