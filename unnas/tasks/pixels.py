"""Pieces shared by the pixel-reconstruction tasks (``inpaint``, ``superres``): targets, a decoder
that brings trunk features back to an image size, and the PSNR meter.

Pixels are predicted in the unit range (uint8 / 255); the loss is a (masked) mean squared error in
that range, and PSNR = 10 log10(1 / MSE) per image on the scored pixels, with the prediction
clamped to [0, 1] first, averaged over images (as super-resolution benchmarks report it).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Meter, Task

PSNR_MSE_FLOOR = 1e-10   # a perfect prediction scores 100 dB, not infinity


class PixelTargets(NamedTuple):
    """Targets of a pixel task: the image in [0, 1] and where the loss and the metric look."""
    image: torch.Tensor                   # (B, 3, H, W) float, uint8 / 255
    mask: torch.Tensor | None = None      # (B, 1, H, W) bool, the pixels PSNR scores (None: all)
    weight: torch.Tensor | None = None    # (B, 1, H, W) float, per-pixel loss weight (None: mask, or all)


def masked_mse(pred: torch.Tensor, targets: PixelTargets) -> torch.Tensor:
    """sum_p w_p ||x_p - F_p||^2 / (3 sum_p w_p): the mean squared error over the weighted pixels
    (all pixels when there is neither weight nor mask)."""
    err = (pred.float() - targets.image).pow(2)
    w = targets.weight if targets.weight is not None else targets.mask
    if w is None:
        return err.mean()
    w = w.to(err.dtype)
    return (err * w).sum() / (w.sum() * err.shape[1]).clamp_min(1.0)


def per_image_psnr(pred: torch.Tensor, targets: PixelTargets) -> tuple[torch.Tensor, torch.Tensor]:
    """(PSNR (B,), MSE (B,)) per image on the mask (all pixels without one), prediction clamped to [0, 1]."""
    err = (pred.float().clamp(0.0, 1.0) - targets.image).pow(2)
    if targets.mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = targets.mask.to(err.dtype)
        mse = (err * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * err.shape[1]).clamp_min(1.0)
    psnr = 10.0 * torch.log10(1.0 / mse.clamp_min(PSNR_MSE_FLOOR))
    return psnr, mse


class PSNRMeter(Meter):
    """Mean per-image PSNR (dB, higher is better; primary), mean per-image MSE and mean loss."""

    primary = "psnr"

    def __init__(self):
        self.sums = {"psnr": torch.zeros((), dtype=torch.float64), "mse": torch.zeros((), dtype=torch.float64),
                     "count": torch.zeros((), dtype=torch.float64), "loss": torch.zeros((), dtype=torch.float64)}

    @torch.no_grad()
    def update(self, logits, targets, loss=None):
        psnr, mse = per_image_psnr(logits, targets)
        n = psnr.numel()
        self.sums["psnr"] += psnr.double().sum().item()
        self.sums["mse"] += mse.double().sum().item()
        self.sums["count"] += n
        if loss is not None:
            self.sums["loss"] += loss * n

    def compute(self):
        n = max(self.sums["count"].item(), 1.0)
        return {"psnr": self.sums["psnr"].item() / n, "mse": self.sums["mse"].item() / n,
                "loss": self.sums["loss"].item() / n}

    def state(self):
        return self.sums

    def load_state(self, state):
        self.sums = {k: v.clone() for k, v in state.items()}


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Decoder(nn.Module):
    """Trunk features -> ``out_channels`` maps at a requested size, in ``stages`` steps.

    A 1x1 conv to ``channels`` (BN, ReLU), then per stage a bilinear resize (align_corners=False)
    and a 3x3 conv -> BN -> ReLU that halves the channels (at least 8); stage i of K resizes to
    ``round(f * (s / f) ** (i / K))`` per side (f the feature side, s the requested one), so the
    same modules serve a trunk of any output stride (4 with the CIFAR stem, 8 with the ImageNet
    one) and every parameter is used each pass. A final 3x3 conv (bias) gives ``out_channels``.
    """

    def __init__(self, in_channels: int, channels: int, out_channels: int, stages: int = 3):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                    nn.ReLU(inplace=True))
        layers, c = [], channels
        for _ in range(stages):
            nxt = max(c // 2, 8)
            layers.append(_conv_bn_relu(c, nxt))
            c = nxt
        self.stages = nn.ModuleList(layers)
        self.out = nn.Conv2d(c, out_channels, 3, padding=1, bias=True)

    def forward(self, features, size):
        x = self.reduce(features)
        (fh, fw), (sh, sw) = (int(v) for v in x.shape[-2:]), (int(v) for v in size)   # ints: also when traced
        k = len(self.stages)
        for i, stage in enumerate(self.stages, 1):
            hw = (max(1, round(fh * (sh / fh) ** (i / k))), max(1, round(fw * (sw / fw) ** (i / k))))
            if hw != tuple(x.shape[-2:]):
                x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
            x = stage(x)
        if tuple(x.shape[-2:]) != (sh, sw):
            x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
        return self.out(x)


def init_output_bias(conv: nn.Conv2d, mean, repeat: int = 1) -> None:
    """Start predicting the data set's mean colour (per channel, repeated ``repeat`` times per
    channel for a pixel-shuffle output)."""
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([float(m) for m in mean for _ in range(repeat)], dtype=conv.bias.dtype))


def psnr_of_mse(mse: float) -> float:
    """PSNR (dB) of a mean squared error in the unit range (hand checks and docs)."""
    return 10.0 * math.log10(1.0 / max(mse, PSNR_MSE_FLOOR))


class PixelTask(Task):
    """A task that predicts the image's pixels (3 outputs in the unit range): masked MSE, PSNR meter."""

    per_sample_cross_entropy = False   # pixel regression
    per_image_logits = False

    @property
    def num_outputs(self) -> int:
        return 3

    def loss(self, logits, targets):
        return masked_mse(logits, targets)

    def new_meter(self):
        return PSNRMeter()

    def chance_level(self) -> float:
        """PSNR (dB) of predicting mid-grey for uniform random pixels (MSE 1/12): a floor, not a bound."""
        return 10.79
