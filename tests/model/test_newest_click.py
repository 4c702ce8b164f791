"""The optional fifth guidance map, the newest corrective click alone (`fewclick train --newest-click`):
drawn where the click is, read by a widened network that answers as before until trained, and
recorded in the weights so they are served the way they were trained."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fewclick_model import train
from fewclick_model.checkpoints import export_weights, load_weights, weights_meta
from fewclick_model.encoding import (
    BOUNDARY_SIGMA,
    GUIDANCE_CHANNELS,
    NEWEST_CLICK_CHANNEL,
    REGION_SIGMA,
    CropClick,
    encode_guidance,
)
from fewclick_model.network import FewClickNet, with_newest_click_channel
from fewclick_model.predictor import load_crop_predictor

from .synthetic import TINY_CROP_EXTREMES, export_tiny_weights, train_parser

SIZE = 64
EXTREMES = list(TINY_CROP_EXTREMES)


def test_without_corrective_clicks_the_newest_click_map_is_empty_and_the_others_are_unchanged() -> None:
    previous = np.full((SIZE, SIZE), 0.5, np.float32)
    plain = encode_guidance(EXTREMES, SIZE, previous)
    wide = encode_guidance(EXTREMES, SIZE, previous, newest_click=True)
    assert plain.shape == (GUIDANCE_CHANNELS, SIZE, SIZE) and wide.shape == (GUIDANCE_CHANNELS + 1, SIZE, SIZE)
    np.testing.assert_array_equal(wide[:GUIDANCE_CHANNELS], plain)
    assert not wide[NEWEST_CLICK_CHANNEL].any()


@pytest.mark.parametrize(("kind", "sigma"), [("positive", REGION_SIGMA), ("boundary", BOUNDARY_SIGMA)])
def test_the_newest_click_map_holds_the_last_click_alone_at_its_kinds_width(kind: str, sigma: float) -> None:
    clicks = [*EXTREMES, CropClick(20, 20, "negative"), CropClick(40, 44, kind)]  # type: ignore[arg-type]
    maps = encode_guidance(clicks, SIZE, newest_click=True)
    newest = maps[NEWEST_CLICK_CHANNEL]
    assert np.unravel_index(newest.argmax(), newest.shape) == (44, 40) and newest[44, 40] == pytest.approx(1.0)
    assert newest[20, 20] == 0.0  # the earlier click is in its own kind's map only
    # Its kind's width: one sigma away the bump is exp(-1/2) of its peak.
    one_sigma = round(sigma * SIZE)
    expected = np.exp(-(one_sigma**2) / (2 * (sigma * SIZE) ** 2))
    assert newest[44, 40 + one_sigma] == pytest.approx(expected, rel=1e-5)
    # The same click's own channel holds the same bump where no other click is near.
    channel = {"boundary": 0, "positive": 1}[kind]
    assert maps[channel][44, 40 + one_sigma] == pytest.approx(newest[44, 40 + one_sigma])


def test_a_widened_network_answers_exactly_as_the_network_it_was_widened_from() -> None:
    torch.manual_seed(0)
    narrow = FewClickNet(pretrained=False, decoder_channels=16).eval()
    for module in narrow.modules():  # batch-norm statistics away from the identity, as in trained weights
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state_before = torch.random.get_rng_state()
    wide = with_newest_click_channel(narrow).eval()
    # The new weights were drawn without moving the run's random state (same crops, same drop-connect).
    assert torch.equal(torch.random.get_rng_state(), state_before)
    assert wide.newest_click and not narrow.newest_click
    rgb = torch.rand(2, 3, SIZE, SIZE) * 255
    guidance = torch.rand(2, GUIDANCE_CHANNELS + 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(wide(rgb, guidance), narrow(rgb, guidance[:, :GUIDANCE_CHANNELS]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="already reads the newest-click map"):
        with_newest_click_channel(wide)


def test_training_reaches_the_zeroed_inputs_of_a_widened_network() -> None:
    torch.manual_seed(0)
    narrow = FewClickNet(pretrained=False, decoder_channels=16)
    # As in trained weights: a fresh network's guidance fuse starts at zero and passes no gradient back.
    torch.nn.init.normal_(narrow.guidance_fuse.weight, std=0.1)
    wide = with_newest_click_channel(narrow).train()
    guidance = torch.rand(2, GUIDANCE_CHANNELS + 1, SIZE, SIZE)
    wide(torch.rand(2, 3, SIZE, SIZE) * 255, guidance).mean().backward()
    new_input = GUIDANCE_CHANNELS  # the last input of each guidance-reading convolution
    assert wide.guidance_encoder[0].weight.grad[:, new_input].abs().sum() > 0
    for level in (wide.smooth16, wide.smooth8, wide.smooth4):
        pointwise = level[3].weight.grad
        assert pointwise[:, -1].abs().sum() > 0  # the zero column learns from the start


def test_weights_record_the_map_and_are_served_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    wide = with_newest_click_channel(FewClickNet(pretrained=False, decoder_channels=16)).eval()
    export_weights(wide, tmp_path / "wide.pt", SIZE, 16, {})
    assert weights_meta(tmp_path / "wide.pt")["newest_click"] is True
    assert load_weights(tmp_path / "wide.pt")[0].newest_click
    predictor = load_crop_predictor(tmp_path / "wide.pt", boundary_refiner=False)
    seen: list[tuple[int, ...]] = []

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        maps = encode_guidance(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(maps.shape)
        return maps

    monkeypatch.setattr("fewclick_model.predictor.encode_guidance", spy)
    features = predictor.encode(np.zeros((SIZE, SIZE, 3), np.uint8))
    first = predictor.predict(features, EXTREMES)
    predictor.predict(features, [*EXTREMES, CropClick(30, 30, "positive")], first)
    assert seen and {shape[0] for shape in seen} == {GUIDANCE_CHANNELS + 1}


def test_weights_from_before_the_option_read_four_maps(tmp_path: Path) -> None:
    export_tiny_weights(tmp_path / "old.pt")
    assert not load_weights(tmp_path / "old.pt")[0].newest_click


def test_train_newest_click_widens_init_weights_and_a_fine_tune_keeps_the_map(tiny_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_tiny_weights(tmp_path / "narrow.pt")
    common = ["--data", str(tiny_root), "--size", "64", "--decoder-channels", "16", "--steps", "1", "--batch", "2"]
    parser, widened = train_parser(), tmp_path / "widened"
    argv = [*common, "--init", str(tmp_path / "narrow.pt"), "--newest-click", "--out", str(widened)]
    assert train.run(parser.parse_args(argv)) == 0
    exported = widened / train.EXPORT_NAME
    assert weights_meta(exported)["newest_click"] is True
    # A fine-tune of such weights reads the map without being told again.
    again = tmp_path / "again"
    assert train.run(parser.parse_args([*common, "--init", str(exported), "--out", str(again)])) == 0
    assert weights_meta(again / train.EXPORT_NAME)["newest_click"] is True
    # A resume must keep the setting its checkpoint was trained with.
    with pytest.raises(ValueError, match="trained with --newest-click: resume it the same way"):
        train.run(parser.parse_args([*common, "--out", str(widened), "--resume", "--steps", "2"]))
