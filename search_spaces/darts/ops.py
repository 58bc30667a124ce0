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


class ReLUFirst(nn.Sequential):
    """A Sequential whose first layer is a ReLU. ``after_relu(r)`` runs the rest on ``r = relu(x)``,
    so a cell computes the ReLU of a state once for all the ops that read it (the result is the
    same: ReLU is not in place here)."""

    def after_relu(self, r):
        for i, layer in enumerate(self):
            if i:
                r = layer(r)
        return r


class ReLUConvBN(ReLUFirst):
    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(ReLUFirst):
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

    def forward(self, x):
        return self.after_relu(F.relu(x))

    def after_relu(self, r):
        # The second block's ReLU runs in place on the first block's fresh BN output (batch norm
        # keeps its input, not its output, for the backward): one tensor fewer per op.
        return self[1].after_relu(F.relu(self[0].after_relu(r), inplace=True))


class Conv7x1x1x7(ReLUFirst):
    """ReLU -> 1x7 conv -> 7x1 conv -> BN (NASNet/AmoebaNet's ``conv_7x1_1x7``)."""

    def __init__(self, c, stride, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(c, affine=affine),
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
        return self.after_relu(self.relu(x))

    def after_relu(self, r):
        r = grad_channels_last(r)   # the phases' backward would hand ReLU an NCHW gradient
        even, odd = factorized_phases(r)
        return self.bn(cat_channels([F.conv2d(even, self.conv_1.weight), F.conv2d(odd, self.conv_2.weight)]))


class _GradInFormat(torch.autograd.Function):
    """Identity whose backward hands on the incoming gradient in the memory format the forward
    input had (differentiable, so double backward works: grasp's Hessian-vector products)."""

    @staticmethod
    def forward(ctx, x, memory_format):
        ctx.memory_format = memory_format
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=ctx.memory_format), None


def grad_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x``, whose gradient will arrive channels-last-contiguous when ``x`` is a channels-last
    tensor (no-op otherwise). Why: the backward of ``torch.cat`` along channels hands each input a
    strided slice of its gradient and that of a strided subsample (``x[:, :, ::2, ::2]``) an NCHW
    tensor; oneDNN/ATen's channels-last batch norm and ReLU backward fall to a slow path for such
    gradients (torch 2.14, CPU: 24 ms instead of 1.5 ms for a 32x16x32x32 batch norm), which cost a
    DARTS network a third of its step. One copy into the right format is far cheaper."""
    if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return x
    return _GradInFormat.apply(x, torch.channels_last)


def cat_channels(tensors) -> torch.Tensor:
    """``torch.cat(tensors, 1)`` whose inputs get their gradients in their own memory format
    (:func:`grad_channels_last`)."""
    return torch.cat([grad_channels_last(t) for t in tensors], dim=1)


class _Phases(torch.autograd.Function):
    """Pixels (2i, 2j) and (2i+1, 2j+1) of ``x`` (the latter zero-padded to the former's size), in
    ``x``'s memory format. The backward writes both gradients into one zeroed tensor instead of
    autograd's two zero-filled full-size tensors, their sum and the pad's crop (three fewer passes
    over a full-resolution map); it is differentiable (double backward)."""

    @staticmethod
    def forward(ctx, x, fmt):
        ctx.shape, ctx.fmt = x.shape, fmt
        h, w = x.shape[-2:]
        even = x[:, :, ::2, ::2].contiguous(memory_format=fmt)
        odd = F.pad(x[:, :, 1::2, 1::2], (0, w % 2, 0, h % 2)).contiguous(memory_format=fmt)
        return even, odd

    @staticmethod
    def backward(ctx, g_even, g_odd):
        grad = g_even.new_zeros(ctx.shape).contiguous(memory_format=ctx.fmt)
        h, w = ctx.shape[-2:]
        if g_even is not None:
            grad[:, :, ::2, ::2] = g_even
        if g_odd is not None:
            grad[:, :, 1::2, 1::2] = g_odd[:, :, :h // 2, :w // 2]
        return grad, None


def factorized_phases(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What FactorizedReduce's two stride-2 1x1 convs read: pixels (2i, 2j) and pixels
    (2i+1, 2j+1), the latter zero-padded at the far edges of odd sizes (DARTS pads x by one pixel
    and crops the first). Subsampling first and convolving at stride 1 is the same computation,
    4x less work, and avoids a crash in oneDNN's channels-last stride-2 1x1 convolution backward
    for odd batch sizes (torch 2.14, CPU)."""
    fmt = torch.channels_last if (not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)) \
        else torch.contiguous_format
    return _Phases.apply(x, fmt)


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
        return Conv7x1x1x7(c, stride, affine)
    raise KeyError(f"unknown operation {name!r}; known: {sorted(KNOWN_OPS)}")


# Ops accepted in genotypes: the DARTS primitives plus the extra ones used by NASNet/AmoebaNet.
KNOWN_OPS = frozenset(PRIMITIVES) | {"sep_conv_7x7", "conv_7x1_1x7"}
