"""A boundary click the labeler repeats: invisible in max-combined guidance unless the network was
trained to read it drawn stronger (`fewclick train --repeat-share`), and then served the same way."""

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fewclick_model import encoding, train
from fewclick_model.checkpoints import DEFAULT_WEIGHTS, weights_meta
from fewclick_model.encoding import REPEAT_CAP, CropClick, encode_guidance
from fewclick_model.predictor import load_crop_predictor

from .synthetic import TINY_CROP_EXTREMES, export_tiny_weights, steps_on_one_batch, train_parser

EXTREMES = list(TINY_CROP_EXTREMES)


def boundary_peak(clicks: list[CropClick], x: int, y: int, repeat_cap: int) -> float:
    return float(encode_guidance(EXTREMES + clicks, 64, repeat_cap=repeat_cap)[0, y, x])


def test_drawn_alike_a_repeat_changes_nothing_the_network_could_see() -> None:
    once = encode_guidance([*EXTREMES, CropClick(20, 40, "boundary")], 64)
    twice = encode_guidance([*EXTREMES, CropClick(20, 40, "boundary"), CropClick(20, 40, "boundary")], 64)
    np.testing.assert_array_equal(once, twice)


def test_a_repeated_boundary_click_is_drawn_n_fold_up_to_the_cap_and_only_there() -> None:
    click = CropClick(20, 40, "boundary")
    assert boundary_peak([click], 20, 40, REPEAT_CAP) == pytest.approx(1.0)
    assert boundary_peak([click, click], 20, 40, REPEAT_CAP) == pytest.approx(2.0)
    assert boundary_peak([click] * 3, 20, 40, REPEAT_CAP) == pytest.approx(3.0)
    assert boundary_peak([click] * 6, 20, 40, REPEAT_CAP) == pytest.approx(float(REPEAT_CAP))
    assert boundary_peak([click] * 6, 20, 40, 2) == pytest.approx(2.0)
    # A labeler's second click a pixel and a half away is the same spot; three pixels away is not.
    assert boundary_peak([click, CropClick(21.5, 40, "boundary")], 20, 40, REPEAT_CAP) > 1.9
    assert boundary_peak([click, CropClick(23, 40, "boundary")], 20, 40, REPEAT_CAP) == pytest.approx(1.0)
    # Everything away from the repeat is as it was, as are the other channels.
    alike = encode_guidance([*EXTREMES, click, click, CropClick(50, 50, "positive")], 64)
    strong = encode_guidance([*EXTREMES, click, click, CropClick(50, 50, "positive")], 64, repeat_cap=REPEAT_CAP)
    far = np.ones((64, 64), bool)
    far[40 - 12 : 40 + 13, 20 - 12 : 20 + 13] = False
    np.testing.assert_array_equal(strong[0][far], alike[0][far])
    np.testing.assert_array_equal(strong[1:], alike[1:])


def test_extreme_points_and_region_clicks_are_never_drawn_stronger() -> None:
    # A corrective click on an extreme point is its first click there, not a repeat.
    top = EXTREMES[0]
    on_extreme = encode_guidance([*EXTREMES, CropClick(top.x, top.y, "boundary")], 64, repeat_cap=REPEAT_CAP)
    assert on_extreme[0, int(top.y), int(top.x)] == pytest.approx(1.0)
    positives = encode_guidance([*EXTREMES, *[CropClick(30, 30, "positive")] * 3], 64, repeat_cap=REPEAT_CAP)
    assert positives[1, 30, 30] == pytest.approx(1.0)


def test_a_repeat_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="repeat_cap must be >= 1"):
        encode_guidance(EXTREMES, 64, repeat_cap=0)


GUIDANCE_SIGNATURE = inspect.signature(encode_guidance)


def guidance_spy(
    seen: list[tuple[list[CropClick], int]],
) -> Callable[..., np.ndarray]:
    """`encode_guidance` that also records each call's (clicks, repeat_cap) in ``seen``."""

    def spy(*args: Any, **kwargs: Any) -> np.ndarray:
        # Bound against the real signature, so the spy needs no copy of it to keep in step.
        call = GUIDANCE_SIGNATURE.bind(*args, **kwargs)
        call.apply_defaults()
        seen.append((list(call.arguments["clicks"]), call.arguments["repeat_cap"]))
        return encode_guidance(*args, **kwargs)

    return spy


BATCH = 4  # `steps_on_one_batch`'s crops


def spy_on_training_guidance(tiny_root: Path, monkeypatch: pytest.MonkeyPatch, repeat_share: float) -> list:
    """The (clicks, repeat_cap) of every guidance map one `train.train_step` builds, with 3 simulated
    boundary clicks before the pass it learns from."""
    seen: list[tuple[list[CropClick], int]] = []
    monkeypatch.setattr(train, "encode_guidance", guidance_spy(seen))
    steps_on_one_batch(tiny_root, 1, boundary_share=1.0, pass_distribution=((3,), (1.0,)), repeat_share=repeat_share)
    return seen


def test_training_with_repeats_clicks_the_last_boundary_click_again_and_draws_it_stronger(
    tiny_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_training_guidance(tiny_root, monkeypatch, repeat_share=1.0)
    learned = seen[-BATCH:]  # the last pass's maps, one per sample
    assert {cap for _, cap in seen} == {REPEAT_CAP}
    for clicks, _ in learned:
        corrective = clicks[encoding.EXTREME_POINTS :]
        # The first simulated click is sampled; with every later one a repeat, all three are the same.
        assert len(corrective) == 3 and corrective[0].kind == "boundary"
        assert corrective[1] == corrective[0] and corrective[2] == corrective[0]


def test_training_without_repeats_samples_each_click_and_draws_every_click_alike(
    tiny_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_training_guidance(tiny_root, monkeypatch, repeat_share=0.0)
    assert {cap for _, cap in seen} == {1}
    for clicks, _ in seen[-BATCH:]:
        corrective = clicks[encoding.EXTREME_POINTS :]
        assert len(corrective) == 3 and len(set(corrective)) > 1


def test_weights_record_the_cap_they_were_trained_with_and_are_served_with_it(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = train_parser()
    common = ["--data", str(tiny_root), "--size", "64", "--decoder-channels", "16", "--steps", "1", "--batch", "2"]
    for share, cap in (("0.5", REPEAT_CAP), ("0", 1)):
        out = tmp_path / f"share{share}"
        args = parser.parse_args([*common, "--out", str(out), "--export", str(out / "w.pt"), "--repeat-share", share])
        assert train.run(args) == 0
        assert weights_meta(out / "w.pt")["repeat_cap"] == cap
        predictor = load_crop_predictor(out / "w.pt", boundary_refiner=False)
        assert predictor.repeat_cap == cap
        # ... and the predictor draws the guidance with it.
        seen: list[tuple[list[CropClick], int]] = []
        monkeypatch.setattr("fewclick_model.predictor.encode_guidance", guidance_spy(seen))
        features = predictor.encode(np.zeros((64, 64, 3), np.uint8))
        predictor.predict(features, EXTREMES)
        assert [c for _, c in seen] == [cap]


def test_weights_from_before_repeats_and_the_committed_ones_draw_every_click_alike(tmp_path: Path) -> None:
    export_tiny_weights(tmp_path / "old.pt")  # no repeat_cap recorded
    assert load_crop_predictor(tmp_path / "old.pt", boundary_refiner=False).repeat_cap == 1
    if DEFAULT_WEIGHTS.exists():
        assert load_crop_predictor(boundary_refiner=False).repeat_cap == 1


def test_a_repeat_share_outside_0_to_1_is_refused_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    parser = train_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--repeat-share", "1.5"])
    assert "argument --repeat-share" in capsys.readouterr().err
