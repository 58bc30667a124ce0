"""Colorization (Zhang et al., 2016) as in UnNAS: predict each pixel's quantised ab colour from L.

Input: the L channel only (1 channel), ``(L / 100 - mean(data.mean)) / mean(data.std)`` (the
release's normalisation, e.g. (L/100 - 0.449) / 0.226 on ImageNet). Target: for each pixel the
index in [0, 312] of the nearest (Euclidean, in ab) of the 313 quantised ab bins (hard 1-NN, as
the release; see :mod:`unnas.tasks.lab_bins`). Head: 1x1 conv (bias) to 313 channels, bilinear
upsampling (align_corners=True) to the input size. Loss: per-pixel cross-entropy; metric:
per-pixel top-1 / top-5.

Off by default (the release uses neither), from Zhang et al.:

* ``col_soft_encoding``: the target is a distribution over the 5 nearest bins with Gaussian
  weights (sigma 5 ab units) instead of the hard nearest bin; the loss is the cross-entropy with
  that distribution. Targets then are a :class:`SoftColorTargets` tuple (the metric still uses
  the nearest bin).
* ``col_rebalance``: per-pixel loss weights ``w[q] ∝ 1 / ((1 - λ) p̃[q] + λ / 313)`` with
  λ = 0.5, normalised so that ``sum_q p̃[q] w[q] = 1``, where q is the pixel's nearest bin and
  p̃ the bin prior smoothed by a Gaussian (sigma 5) in ab. The prior comes from
  ``col_prior_file`` (a (313,) .npy of counts or probabilities) when given, otherwise it is the
  running histogram of the nearest bins of every training batch this task object has built so
  far (so the weights settle as training goes; not saved in checkpoints).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from typing import NamedTuple

from unnas.utils.io import load_user_npy

from .base import Task, TopKMeter
from .lab_bins import NUM_BINS, ab_bins, lightness_and_bins, nearest_bin, nearest_bins, rgb_to_lab
from .registry import TASKS

SOFT_K = 5
SOFT_SIGMA = 5.0
REBALANCE_LAMBDA = 0.5


class SoftColorTargets(NamedTuple):
    """Targets when soft encoding or rebalancing is on; ``hard`` is what the metric scores."""
    hard: torch.Tensor                      # (B, H, W) long, nearest bin
    index: torch.Tensor | None = None       # (B, K, H, W) long, the K nearest bins
    weight: torch.Tensor | None = None      # (B, K, H, W) float, their Gaussian weights (sum 1)
    pixel_weight: torch.Tensor | None = None  # (B, H, W) float, class-rebalancing weights


class ColorMeter(TopKMeter):
    """Per-pixel top-1/top-5 against the nearest bin (unwraps :class:`SoftColorTargets`)."""

    def update(self, logits, targets, loss=None):
        if isinstance(targets, SoftColorTargets):
            targets = targets.hard
        super().update(logits, targets, loss)


class ColorizationHead(nn.Module):
    """1x1 conv (with bias) to the bins, then bilinear upsampling (align_corners) to the input."""

    def __init__(self, in_channels: int, num_bins: int = NUM_BINS):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_bins, kernel_size=1, bias=True)

    def forward(self, features, input_hw):
        out = self.conv(features)
        return F.interpolate(out, size=tuple(input_hw), mode="bilinear", align_corners=True)


def _smoothed(prior: torch.Tensor, bins: torch.Tensor, sigma: float = SOFT_SIGMA) -> torch.Tensor:
    d2 = (bins[:, None, :] - bins[None, :, :]).pow(2).sum(-1)
    k = torch.exp(-d2 / (2 * sigma ** 2))
    out = k @ prior
    return out / out.sum()


def rebalance_weights(prior, lam: float = REBALANCE_LAMBDA) -> torch.Tensor:
    """(313,) prior (counts or probabilities) -> (313,) weights, E_p̃[w] = 1 (Zhang et al., eq. 4)."""
    prior = torch.as_tensor(prior, dtype=torch.float64)
    bins = torch.as_tensor(ab_bins(), dtype=torch.float64, device=prior.device)
    p = _smoothed(prior / prior.sum().clamp_min(1e-12), bins)
    w = 1.0 / ((1 - lam) * p + lam / NUM_BINS)
    return (w / (p * w).sum()).float()


@TASKS.register("col", aliases=("colorization", "color", "colorisation"))
class ColorizationTask(Task):
    name = "col"
    in_channels = 1
    input_kind = "lightness"
    per_sample_cross_entropy = False   # per-pixel loss over the ab bins (soft encoding, rebalancing)
    per_image_logits = False

    def __init__(self, data, col_soft_encoding: bool = False, col_rebalance: bool = False,
                 col_prior_file: str = "", **options):
        super().__init__(data, col_soft_encoding=col_soft_encoding, col_rebalance=col_rebalance,
                         col_prior_file=col_prior_file, **options)
        self.soft = bool(col_soft_encoding)
        self.rebalance = bool(col_rebalance)
        self.l_mean = float(np.mean(data.mean))
        self.l_std = float(np.mean(data.std))
        self.counts = torch.zeros(NUM_BINS, dtype=torch.float64)
        self.fixed_prior = None
        if col_prior_file:
            source = f"TASK.COL_PRIOR_FILE {col_prior_file}"
            prior = load_user_npy(col_prior_file, source, "bin prior")
            if (prior.shape != (NUM_BINS,) or not np.issubdtype(prior.dtype, np.number)
                    or not np.all(np.isfinite(prior)) or (prior < 0).any() or prior.sum() <= 0):
                raise ValueError(f"{source}: expected a ({NUM_BINS},) array of non-negative bin "
                                 f"counts/probabilities, got shape {prior.shape} ({prior.dtype})")
            self.fixed_prior = torch.as_tensor(prior, dtype=torch.float64)

    @property
    def num_outputs(self) -> int:
        return NUM_BINS

    def lab_input(self, images: torch.Tensor):
        """uint8 (B, 3, H, W) -> (normalised L input (B, 1, H, W), ab (B, H, W, 2))."""
        lab = rgb_to_lab(images)
        x = (lab[:, :1] / 100.0 - self.l_mean) / self.l_std
        return x.contiguous(), lab[:, 1:].permute(0, 2, 3, 1)

    def make_input(self, images: torch.Tensor) -> torch.Tensor:
        return self.lab_input(images)[0]

    def make_batch(self, images, labels, train, generator=None):
        if not (self.soft or self.rebalance) and images.dtype == torch.uint8:
            # fast path, same values (to float rounding): L through a 3 x 256 LUT and one cube root,
            # the targets through the per-colour nearest-bin table; the normalisation folded in
            return lightness_and_bins(images, scale=1.0 / (100.0 * self.l_std), shift=-self.l_mean / self.l_std)
        x, ab = self.lab_input(images)
        if not (self.soft or self.rebalance):
            return x, nearest_bin(ab)
        if self.soft:
            d2, idx = nearest_bins(ab, SOFT_K)                       # (B, H, W, K)
            w = torch.softmax(-d2 / (2 * SOFT_SIGMA ** 2), dim=-1)   # normalised Gaussian
            hard = idx[..., 0]
            index, weight = idx.permute(0, 3, 1, 2).contiguous(), w.permute(0, 3, 1, 2).contiguous()
        else:
            hard, index, weight = nearest_bin(ab), None, None
        pixel_weight = None
        if self.rebalance:
            if self.fixed_prior is None and train:
                self.counts += torch.bincount(hard.reshape(-1), minlength=NUM_BINS).double().cpu()
            prior = self.fixed_prior if self.fixed_prior is not None else self.counts
            if prior.sum() <= 0:   # nothing seen yet (evaluation first): uniform weights
                prior = torch.ones(NUM_BINS, dtype=torch.float64)
            pixel_weight = rebalance_weights(prior).to(hard.device)[hard]
        return x, SoftColorTargets(hard, index, weight, pixel_weight)

    def build_head(self, in_channels: int) -> nn.Module:
        return ColorizationHead(in_channels, NUM_BINS)

    def loss(self, logits, targets):
        if not isinstance(targets, SoftColorTargets):
            return F.cross_entropy(logits, targets)
        if targets.index is not None:
            logp = F.log_softmax(logits, dim=1)
            per_pixel = -(logp.gather(1, targets.index) * targets.weight).sum(1)
        else:
            per_pixel = F.cross_entropy(logits, targets.hard, reduction="none")
        if targets.pixel_weight is not None:
            per_pixel = per_pixel * targets.pixel_weight
        return per_pixel.mean()

    def new_meter(self):
        return ColorMeter()
