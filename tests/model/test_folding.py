from pathlib import Path

import pytest
import torch
from fewclick_model.encoding import GUIDANCE_CHANNELS
from fewclick_model.folding import fold_batch_norms
from fewclick_model.network import FewClickNet
from torch import nn

from .synthetic import TINY_CROP_EXTREMES


def randomise_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    # Fresh batch norms are the identity; folding those would prove nothing.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)


def test_folded_network_answers_like_the_original_and_has_no_batch_norm_left() -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    original = FewClickNet(pretrained=False, decoder_channels=16).eval()
    randomise_batch_norms(original, generator)
    folded = FewClickNet(pretrained=False, decoder_channels=16).eval()
    folded.load_state_dict(original.state_dict())
    count = fold_batch_norms(folded)
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in original.modules()) > 40
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    rgb = torch.rand(1, 3, 64, 64, generator=generator) * 255
    guidance = torch.rand(1, GUIDANCE_CHANNELS, 64, 64, generator=generator)
    with torch.inference_mode():
        expected = original.decode(original.encode_image(rgb), guidance)
        got = folded.decode(folded.encode_image(rgb), guidance)
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-4)
    assert not torch.equal(got, expected)  # the weights really were rewritten


def test_a_training_model_is_not_folded() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batch_norms(model)


def test_a_batch_norm_with_no_convolution_before_it_is_refused() -> None:
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4)).eval()
    with pytest.raises(ValueError, match="no convolution"):
        fold_batch_norms(model)


def test_the_served_predictor_folds_and_goes_channels_last_without_changing_answers(tmp_path: Path) -> None:
    from fewclick_model.checkpoints import export_weights, load_weights
    from fewclick_model.encoding import CropClick, encode_guidance
    from fewclick_model.predictor import load_crop_predictor

    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    net = FewClickNet(pretrained=False, decoder_channels=16).eval()
    randomise_batch_norms(net, generator)
    path = tmp_path / "w.pt"
    export_weights(net, path, 64, 16, {})
    reference, _ = load_weights(path)  # the same fp16-rounded weights, unfolded, NCHW
    served = load_crop_predictor(path, device="cpu", mirror="none", precision="fp32")
    assert served.memory_format == torch.channels_last
    assert not any(isinstance(m, nn.BatchNorm2d) for m in served.model.modules())
    crop = (torch.rand(64, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
    clicks = [*TINY_CROP_EXTREMES, CropClick(30, 30, "positive")]
    got = served.predict(served.encode(crop), clicks)
    rgb = torch.from_numpy(crop).permute(2, 0, 1)[None].float()
    guidance = torch.from_numpy(encode_guidance(clicks, 64, None))[None]
    with torch.inference_mode():
        expected = torch.sigmoid(reference.decode(reference.encode_image(rgb), guidance))[0, 0].numpy()
    assert got.shape == (64, 64)
    assert abs(got - expected).max() < 1e-4
