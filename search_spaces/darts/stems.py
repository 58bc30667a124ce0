"""Network stems shared by the supernet and fixed-genotype networks.

``cifar``: one 3x3 conv to ``stem_multiplier * C`` channels, stride 1; both cell inputs are its output.
``imagenet``: stride 4 then stride 8 (three stride-2 3x3 convs); the two cell inputs differ in
resolution, so the first cell treats its k-2 input as coming from a reduction.
"""
from __future__ import annotations

import torch.nn as nn

STEMS = ("cifar", "imagenet")


def choose_stem(stem: str, image_size: int) -> str:
    """``auto`` picks the CIFAR stem for small images (<= 64 px), else the stride-8 ImageNet stem."""
    if stem == "auto":
        return "cifar" if image_size <= 64 else "imagenet"
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; use auto, cifar or imagenet")
    return stem


class CifarStem(nn.Module):
    def __init__(self, in_channels: int, width: int, stem_multiplier: int = 3):
        super().__init__()
        self.out_channels = stem_multiplier * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, self.out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(self.out_channels),
        )
        # (C_pp, C_p, reduction_prev) seen by the first cell.
        self.cell_inputs = (self.out_channels, self.out_channels, False)

    def forward(self, x):
        s = self.stem(x)
        return s, s


class ImageNetStem(nn.Module):
    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, width // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.out_channels = width
        self.cell_inputs = (width, width, True)

    def forward(self, x):
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def build_stem(kind: str, in_channels: int, width: int, stem_multiplier: int = 3) -> nn.Module:
    if kind == "cifar":
        return CifarStem(in_channels, width, stem_multiplier)
    if kind == "imagenet":
        return ImageNetStem(in_channels, width)
    raise ValueError(f"unknown stem {kind!r}; use cifar or imagenet")


def reduction_layers(depth: int, single_reduction: bool = False) -> tuple[int, ...]:
    """Cells at depth//3 and 2*depth//3 halve the resolution; dense tasks keep only the first."""
    if single_reduction:
        return (depth // 3,)
    return tuple(sorted({depth // 3, 2 * depth // 3}))
