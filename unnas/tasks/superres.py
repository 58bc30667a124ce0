"""Super-resolution (the pixel-MSE objective of Ledig et al., CVPR 2017, SRResNet): predict the
full-resolution image from a bicubically downsampled one.

Per batch of side S (per axis), factor f = ``superres_factor`` (2 or 4): the image is cropped to
a multiple of f (top-left kept), and the low-resolution image is its bicubic downsampling by f
with antialiasing (``F.interpolate(..., mode="bicubic", antialias=True)``, the PIL/MATLAB-style
``imresize`` kernel, a = -0.5), clamped to [0, 1] and rounded to 8 bits (a low-resolution image as a
file would hold it). The network sees that image normalised with the data set's mean/std (side S/f).

Head: :class:`~unnas.tasks.pixels.Decoder` back to the low-resolution input size with 3 f²
channels, then a pixel shuffle by f (sub-pixel convolution, Shi et al. 2016, as SRResNet's
upsampling blocks) -> (B, 3, S, S), pixels in [0, 1]; the output bias starts at the data set's
mean colour. Loss: pixel MSE against the original in [0, 1]. Metric: PSNR (dB) per image on all
pixels of the RGB image, averaged (``PSNRMeter``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .pixels import Decoder, PixelTargets, PixelTask, init_output_bias
from .registry import TASKS


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """uint8 (B, 3, H, W), H and W multiples of ``factor`` -> the 8-bit bicubic low-resolution image
    in [0, 1], (B, 3, H / factor, W / factor)."""
    x = images.float() / 255.0
    h, w = x.shape[-2] // factor, x.shape[-1] // factor
    low = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return (low.clamp(0.0, 1.0) * 255.0).round() / 255.0


class SuperResHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, factor: int, mean):
        super().__init__()
        self.decoder = Decoder(in_channels, channels, 3 * factor * factor)
        init_output_bias(self.decoder.out, mean, repeat=factor * factor)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, features, input_hw):
        return self.shuffle(self.decoder(features, input_hw))


@TASKS.register("superres", aliases=("super_resolution", "sr"))
class SuperResTask(PixelTask):
    name = "superres"

    def __init__(self, data, superres_factor: int = 2, decoder_channels: int = 64, **options):
        super().__init__(data, superres_factor=superres_factor, decoder_channels=decoder_channels, **options)
        self.factor = int(superres_factor)
        self.decoder_channels = int(decoder_channels)
        if self.factor not in (2, 4):
            raise ValueError(f"superres_factor must be 2 or 4, got {superres_factor}")
        if self.decoder_channels < 1:
            raise ValueError(f"decoder_channels must be >= 1, got {decoder_channels}")

    def make_batch(self, images, labels, train, generator=None):
        f = self.factor
        h, w = images.shape[-2] // f * f, images.shape[-1] // f * f
        if h == 0 or w == 0:
            raise ValueError(f"superres: images of {images.shape[-2]}x{images.shape[-1]} are smaller than factor {f}")
        images = images[..., :h, :w]
        low = downsample(images, f)
        mean = torch.tensor(self.data.mean, device=low.device, dtype=low.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.data.std, device=low.device, dtype=low.dtype).view(1, -1, 1, 1)
        return (low - mean) / std, PixelTargets(images.float() / 255.0)

    def build_head(self, in_channels: int):
        return SuperResHead(in_channels, self.decoder_channels, self.factor, self.data.mean)

    def describe(self) -> str:
        return f"{self.name} (x{self.factor} from a bicubic downsampling; pixel MSE, PSNR)"
