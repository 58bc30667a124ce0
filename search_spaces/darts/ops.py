"""DARTS candidate operations (Liu et al., ICLR 2019), shared by the supernet and fixed networks.

Every op maps (N, C, H, W) -> (N, C, H/stride, W/stride). ``affine`` is False in the supernet
(DARTS convention: the mixed-op weights, not BN scales, should express preference) and True in
fixed networks.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Canonical order: the column index of an op in the (14, 8) alpha tensors.
PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class Zero(nn.Module):
    """The `none` op: a zero tensor of the output shape (strided by subsampling, as DARTS)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BN."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv blocks with dilation 1; only the first one is strided."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Stride-2 1x1 convs on x and on x shifted by one pixel, concatenated (C_out must be even)."""

    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        even, odd = factorized_phases(x)
        return self.bn(torch.cat([F.conv2d(even, self.conv_1.weight), F.conv2d(odd, self.conv_2.weight)], dim=1))


def factorized_phases(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What FactorizedReduce's two stride-2 1x1 convs read: pixels (2i, 2j) and pixels
    (2i+1, 2j+1), the latter zero-padded at the far edges of odd sizes (DARTS pads x by one pixel
    and crops the first). Subsampling first and convolving at stride 1 is the same computation,
    4x less work, and avoids a crash in oneDNN's channels-last stride-2 1x1 convolution backward
    for odd batch sizes (torch 2.14, CPU)."""
    fmt = torch.channels_last if (not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)) \
        else torch.contiguous_format
    h, w = x.shape[-2:]
    even = x[:, :, ::2, ::2].contiguous(memory_format=fmt)
    odd = F.pad(x[:, :, 1::2, 1::2], (0, w % 2, 0, h % 2)).contiguous(memory_format=fmt)
    return even, odd


def _pool(kind: str, c: int, stride: int, affine: bool, bn_after: bool) -> nn.Module:
    pool = (nn.MaxPool2d(3, stride=stride, padding=1) if kind == "max"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False))
    if not bn_after:
        return pool
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))


def build_op(name: str, c: int, stride: int, affine: bool = True, pool_bn: bool = False) -> nn.Module:
    """Build one primitive. ``pool_bn`` adds the non-affine BN that DARTS puts after pools in mixed ops."""
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return _pool("max", c, stride, affine, pool_bn)
    if name == "avg_pool_3x3":
        return _pool("avg", c, stride, affine, pool_bn)
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1, affine)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2, affine)
    if name == "sep_conv_7x7":
        return SepConv(c, c, 7, stride, 3, affine)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2, affine)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2, affine)
    if name == "conv_7x1_1x7":
        return nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )
    raise KeyError(f"unknown operation {name!r}; known: {sorted(KNOWN_OPS)}")


# Ops accepted in genotypes: the DARTS primitives plus the extra ones used by NASNet/AmoebaNet.
KNOWN_OPS = frozenset(PRIMITIVES) | {"sep_conv_7x7", "conv_7x1_1x7"}
