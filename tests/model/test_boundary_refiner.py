from pathlib import Path

import numpy as np
import pytest
import torch
from fewclick_model.boundary_refiner import (
    DEFAULT_REFINER_WEIGHTS,
    FEATURE_WINDOW,
    WINDOW,
    BoundaryRefiner,
    cut_window,
    export_refiner,
    feature_window,
    load_refiner,
    paste_window,
    towards_click,
    value_at,
    window_inputs,
)
from fewclick_model.encoding import CropClick
from fewclick_model.predictor import load_crop_predictor

from .synthetic import TINY_CROP_EXTREMES, export_tiny_weights

EXTREMES = list(TINY_CROP_EXTREMES)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    version = export_tiny_weights(path)
    return path, version


def _refiner_file(
    path: Path, network_version: str, trained: bool, feature_channels: int = 8, bias: float = 2.0, std: float = 0.5
) -> Path:
    torch.manual_seed(1)
    refiner = BoundaryRefiner(feature_channels=feature_channels)
    if trained:  # a head that changes the answer, as a trained one does
        torch.nn.init.normal_(refiner.head.weight, std=std)
        torch.nn.init.constant_(refiner.head.bias, bias)
    export_refiner(refiner, path, {"network_version": network_version})
    return path


def test_a_window_near_the_crop_edge_is_zero_padded_and_pastes_back_only_inside() -> None:
    crop = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    window, (x0, y0) = cut_window(crop, 3, 60, WINDOW)
    assert window.shape == (WINDOW, WINDOW) and (x0, y0) == (3 - WINDOW // 2, 60 - WINDOW // 2)
    assert window[WINDOW // 2, WINDOW // 2] == crop[60, 3]  # the click sits at the window's middle
    assert window[0, 0] == 0 and window[-1, -1] == 0  # outside the crop
    pasted = paste_window(np.zeros((64, 64), np.float32), np.ones((WINDOW, WINDOW), np.float32), (x0, y0))
    assert pasted[60, 3] == 1.0  # the middle takes the window's values ...
    assert 0 < pasted[y0, 3] < 0.1  # ... which fade out over the window's outer pixels
    assert pasted[:y0].max() == 0 and pasted[:, x0 + WINDOW :].max() == 0  # beyond it the crop is untouched


def test_the_feature_window_is_the_stride_2_patch_under_the_pixel_window() -> None:
    # Each feature cell holds its own x index, so the patch tells where it was cut.
    xs = torch.arange(128, dtype=torch.float32).expand(1, 1, 128, 128).clone()
    for x in (100.0, 101.0):
        patch = feature_window(xs, (x, 100.0))
        assert patch.shape == (1, 1, FEATURE_WINDOW, FEATURE_WINDOW)
        assert patch[0, 0, 0, FEATURE_WINDOW // 2].item() == int(x) // 2  # the click's cell in the middle
        _, (x0, _) = cut_window(np.zeros((256, 256), np.float32), x, 100.0, WINDOW)
        assert patch[0, 0, 0, 0].item() == x0 // 2 and patch[0, 0, 0, -1].item() == (x0 + WINDOW - 1) // 2


def test_window_inputs_mark_the_click_and_the_other_boundary_points() -> None:
    rgb = np.full((256, 256, 3), 127, np.uint8)
    prob = np.zeros((256, 256), np.float32)
    prob[:, :120] = 1.0
    inputs, origin = window_inputs(rgb, prob, (130.0, 80.0), [(140.0, 100.0), (5.0, 5.0)])
    assert inputs.shape == (6, WINDOW, WINDOW) and origin == (130 - WINDOW // 2, 80 - WINDOW // 2)
    middle = WINDOW // 2
    assert inputs[4, middle, middle] == pytest.approx(1.0) and inputs[4, 0, 0] < 1e-6
    assert inputs[5, middle + 20, middle + 10] == pytest.approx(1.0)  # (140, 100); (5, 5) lies outside
    assert inputs[3, middle, middle - 20] == 1.0 and inputs[3, middle, middle] == 0.0  # the edge at x = 120
    assert np.allclose(inputs[:3], 0.0, atol=1 / 128)  # grey pixels normalised to ~0


def test_an_untrained_refiner_returns_the_networks_own_answer() -> None:
    refiner = BoundaryRefiner(feature_channels=8).eval()
    window = torch.rand(2, 6, WINDOW, WINDOW)
    out = torch.sigmoid(refiner(window, torch.randn(2, 8, FEATURE_WINDOW, FEATURE_WINDOW)))[:, 0]
    inside = (window[:, 3] > 1e-3) & (window[:, 3] < 1 - 1e-3)
    assert torch.allclose(out[inside], window[:, 3][inside], atol=1e-5)


def test_the_refiner_redraws_only_after_a_new_boundary_click(weights: tuple[Path, str], tmp_path: Path) -> None:
    path, version = weights
    refined = load_crop_predictor(
        path, "cpu", mirror="none", precision="fp32", boundary_refiner=_refiner_file(tmp_path / "r.pt", version, True)
    )
    plain = load_crop_predictor(path, "cpu", mirror="none", precision="fp32", boundary_refiner=False)
    assert refined.refiner is not None and refined.model_version.startswith(version + "+edge-")
    assert "boundary refiner" in refined.describe()
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    feats, plain_feats = refined.encode(crop), plain.encode(crop)
    assert feats.pixels is not None and feats.nbytes == plain_feats.nbytes + crop.nbytes
    first = refined.predict_first(feats, EXTREMES)
    assert np.array_equal(first, plain.predict_first(plain_feats, EXTREMES))  # the extreme points: no refiner
    for kind in ("positive", "negative"):
        clicks = [*EXTREMES, CropClick(20, 30, kind)]  # type: ignore[arg-type]
        assert np.array_equal(refined.predict(feats, clicks, first), plain.predict(plain_feats, clicks, first))
    clicks = [*EXTREMES, CropClick(20, 30, "boundary")]
    outside = np.full_like(first, 0.1)  # the click lies outside the previous mask: it may grow
    answer, unrefined = refined.predict(feats, clicks, outside), plain.predict(plain_feats, clicks, outside)
    assert np.abs(answer - unrefined).max() > 0.05  # the window around (20, 30) changed
    prob, decoder_features = refined.network_answer(feats, clicks, outside)
    assert np.allclose(prob, unrefined, atol=1e-6) and decoder_features.shape == (1, 8, 32, 32)


def test_the_refiner_moves_the_edge_only_the_way_the_click_asks() -> None:
    network = np.array([[0.2, 0.7], [0.4, 0.9]], np.float32)
    refined = np.array([[0.6, 0.3], [0.4, 0.95]], np.float32)
    grown = towards_click(refined, network, click_was_inside=False)  # the object reaches the click
    shrunk = towards_click(refined, network, click_was_inside=True)  # the object ends at the click
    assert np.allclose(grown, [[0.6, 0.7], [0.4, 0.95]]) and np.allclose(shrunk, [[0.2, 0.3], [0.4, 0.9]])
    assert value_at(network, (1.4, 0.2)) == pytest.approx(0.7) and value_at(network, (-3, 9)) == pytest.approx(0.4)


@pytest.mark.parametrize("click_was_inside", [False, True])
def test_a_refined_boundary_click_only_grows_or_only_shrinks_the_mask(
    weights: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, click_was_inside: bool
) -> None:
    path, version = weights
    refiner = _refiner_file(tmp_path / "r.pt", version, trained=True, bias=0.0, std=4.0)
    p = load_crop_predictor(path, "cpu", mirror="every", precision="fp32", boundary_refiner=refiner)
    plain = load_crop_predictor(path, "cpu", mirror="every", precision="fp32", boundary_refiner=False)
    crop = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    previous = np.full((64, 64), 0.9 if click_was_inside else 0.1, np.float32)
    clicks = [*EXTREMES, CropClick(20, 30, "boundary")]
    unrefined = plain.predict(plain.encode(crop), clicks, previous)
    answer = p.predict(p.encode(crop), clicks, previous) - unrefined
    with monkeypatch.context() as m:
        m.setattr("fewclick_model.predictor.towards_click", lambda refined, network, click_was_inside: refined)
        free = p.predict(p.encode(crop), clicks, previous) - unrefined
    assert free.max() > 0.05 and free.min() < -0.05  # left free, this refiner moves the edge both ways
    wanted = free < 0 if click_was_inside else free > 0
    assert np.allclose(answer[wanted], free[wanted], atol=1e-5)  # the click's way is kept ...
    assert np.abs(answer[~wanted]).max() < 1e-5  # ... the other is the network's answer


def test_an_untrained_refiner_changes_nothing_in_the_served_path(weights: tuple[Path, str], tmp_path: Path) -> None:
    path, version = weights
    refiner = _refiner_file(tmp_path / "r.pt", version, trained=False)
    refined = load_crop_predictor(path, "cpu", mirror="every", precision="fp32", boundary_refiner=refiner)
    plain = load_crop_predictor(path, "cpu", mirror="every", precision="fp32", boundary_refiner=False)
    crop = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    clicks = [CropClick(20, 30, "boundary"), CropClick(40, 12, "positive"), CropClick(50, 50, "boundary")]
    got = refined.predict_sequence(refined.encode(crop), EXTREMES, clicks)
    expected = plain.predict_sequence(plain.encode(crop), EXTREMES, clicks)
    assert np.abs(got - expected).max() < 1e-4


def test_a_refined_answer_stays_mirror_equivariant(weights: tuple[Path, str], tmp_path: Path) -> None:
    path, version = weights
    refiner = _refiner_file(tmp_path / "r.pt", version, trained=True)
    for views_side_by_side in (True, False):
        p = load_crop_predictor(path, "cpu", mirror="every", precision="fp32", boundary_refiner=refiner)
        if not views_side_by_side:
            p._view_pool = None  # one batch of 2, as on a GPU
        crop = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        clicks = [*EXTREMES, CropClick(21, 30, "boundary")]
        mirrored = [CropClick(63 - c.x, c.y, c.kind) for c in clicks]
        first = p.predict_first(p.encode(crop), EXTREMES)
        answer = p.predict(p.encode(crop), clicks, first)
        mirror_features = p.encode(np.ascontiguousarray(crop[:, ::-1]))
        of_mirror = p.predict(mirror_features, mirrored, np.ascontiguousarray(first[:, ::-1]))
        assert np.abs(answer - of_mirror[:, ::-1]).max() < 1e-4


def test_a_refiner_serves_only_beside_the_network_it_was_trained_for(weights: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = weights
    other = _refiner_file(tmp_path / "other.pt", "lite0-256-0000000000", trained=True)
    with pytest.raises(ValueError, match="trained for 'lite0-256-0000000000'"):
        load_crop_predictor(path, "cpu", boundary_refiner=other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_crop_predictor(path, "cpu", boundary_refiner=tmp_path / "missing.pt")
    # The committed refiner is bound to the committed network: other weights load without it.
    assert load_crop_predictor(path, "cpu", boundary_refiner=True).refiner is None
    assert load_crop_predictor(path, "cpu").refiner is None
    refiner, meta = load_refiner(other)
    assert meta["network_version"] == "lite0-256-0000000000" and meta["version"].startswith("edge-")
    assert refiner.feature_channels == 8 and (tmp_path / "other.pt").stat().st_size < 1_000_000


def test_the_committed_refiner_is_served_beside_the_committed_network() -> None:
    served = load_crop_predictor(device="cpu")
    network_alone = load_crop_predictor(device="cpu", boundary_refiner=False)
    assert served.refiner is not None and network_alone.refiner is None
    assert served.model_version.startswith(network_alone.model_version + "+edge-")
    _, meta = load_refiner(Path(DEFAULT_REFINER_WEIGHTS))
    assert meta["network_version"] == network_alone.model_version
    assert DEFAULT_REFINER_WEIGHTS.stat().st_size < 1_000_000
