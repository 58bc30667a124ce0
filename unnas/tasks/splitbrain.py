"""Split-brain autoencoder (Zhang, Isola & Efros, CVPR 2017): cross-channel prediction in Lab.

The trunk is split (``input_groups = ((0,), (1, 2))``): two sub-networks of the same genotype,
each of half the width; in a search both are supernets called with the same architecture weights
(shared alphas, one derived genotype), and a fixed network builds the genotype twice (see
:mod:`search_spaces.split`). Sub-network 1 reads L and predicts the quantised ab of every pixel;
sub-network 2 reads ab and predicts the quantised L. Their feature maps are concatenated: the
representation a probe or fine-tune uses on the full Lab input (``make_input``).

Input (3 channels, ``input_kind`` "lab"): ``(L / 100 - mean(data.mean)) / mean(data.std)`` (the
colorization task's L normalisation) and ``a / 110``, ``b / 110``. Targets
(:class:`SplitBrainTargets`): the nearest of the 313 ab bins (the colorization task's bins and
lookup, hard 1-NN) and the L bin ``min(floor(L / 100 * K), K - 1)`` of K = ``splitbrain_l_bins``
uniform bins over [0, 100].

Head: a 1x1 conv (bias) on each sub-network's half of the features, 313 ab logits from the
first, K L logits from the second, both upsampled bilinearly (align_corners=True, as
colorization) to the input size and concatenated: (B, 313 + K, H, W). Loss: the sum of the two
per-pixel cross-entropies (the paper's L = L1 + L2 with classification losses). Metric: per-pixel
top-1 of each direction (``ab_top1``, ``l_top1``) and their mean ``top1`` (primary).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Meter, Task
from .lab_bins import NUM_BINS, nearest_bin, nearest_bin_rgb, rgb_to_lab
from .registry import TASKS

AB_SCALE = 110.0
INPUT_GROUPS = ((0,), (1, 2))


class SplitBrainTargets(NamedTuple):
    ab: torch.Tensor    # (B, H, W) long, nearest of the 313 ab bins (what the L sub-network predicts)
    l: torch.Tensor     # (B, H, W) long, L bin (what the ab sub-network predicts)  # noqa: E741


class SplitBrainHead(nn.Module):
    """1x1 conv per half of the features (first half -> ab bins, second -> L bins), upsampled."""

    def __init__(self, in_channels: int, l_bins: int):
        super().__init__()
        if in_channels % 2:
            raise ValueError(f"splitbrain: the trunk's {in_channels} channels do not split in two halves")
        self.half = in_channels // 2
        self.ab = nn.Conv2d(self.half, NUM_BINS, 1, bias=True)
        self.l = nn.Conv2d(self.half, l_bins, 1, bias=True)  # noqa: E741

    def forward(self, features, input_hw):
        out = torch.cat([self.ab(features[:, :self.half]), self.l(features[:, self.half:])], dim=1)
        return F.interpolate(out, size=tuple(input_hw), mode="bilinear", align_corners=True)


class SplitBrainMeter(Meter):
    """Per-pixel top-1 (%) of both directions and their mean (``top1``, primary); mean loss per pixel."""

    primary = "top1"

    def __init__(self):
        self.sums = {k: torch.zeros((), dtype=torch.float64) for k in ("ab_correct", "l_correct", "count", "loss")}

    @torch.no_grad()
    def update(self, logits, targets, loss=None):
        ab_pred = logits[:, :NUM_BINS].argmax(1)
        l_pred = logits[:, NUM_BINS:].argmax(1)
        n = targets.ab.numel()
        self.sums["ab_correct"] += (ab_pred == targets.ab).sum().item()
        self.sums["l_correct"] += (l_pred == targets.l).sum().item()
        self.sums["count"] += n
        if loss is not None:
            self.sums["loss"] += loss * n

    def compute(self):
        n = max(self.sums["count"].item(), 1.0)
        ab = 100.0 * self.sums["ab_correct"].item() / n
        lt = 100.0 * self.sums["l_correct"].item() / n
        return {"top1": (ab + lt) / 2, "ab_top1": ab, "l_top1": lt, "loss": self.sums["loss"].item() / n}

    def state(self):
        return self.sums

    def load_state(self, state):
        self.sums = {k: v.clone() for k, v in state.items()}


@TASKS.register("splitbrain", aliases=("split_brain", "cross_channel"))
class SplitBrainTask(Task):
    name = "splitbrain"
    in_channels = 3
    input_kind = "lab"
    input_groups = INPUT_GROUPS
    per_sample_cross_entropy = False   # two per-pixel losses
    per_image_logits = False

    def __init__(self, data, splitbrain_l_bins: int = 50, **options):
        super().__init__(data, splitbrain_l_bins=splitbrain_l_bins, **options)
        self.l_bins = int(splitbrain_l_bins)
        if self.l_bins < 2:
            raise ValueError(f"splitbrain_l_bins must be >= 2, got {splitbrain_l_bins}")
        self.l_mean = float(np.mean(data.mean))
        self.l_std = float(np.mean(data.std))

    @property
    def num_outputs(self) -> int:
        return NUM_BINS + self.l_bins

    def lab_input(self, images: torch.Tensor):
        """uint8 (B, 3, H, W) -> (normalised Lab input (B, 3, H, W), Lab (B, 3, H, W))."""
        lab = rgb_to_lab(images)
        x = torch.cat([(lab[:, :1] / 100.0 - self.l_mean) / self.l_std, lab[:, 1:] / AB_SCALE], dim=1)
        return x, lab

    def make_input(self, images: torch.Tensor) -> torch.Tensor:
        return self.lab_input(images)[0]

    def make_batch(self, images, labels, train, generator=None):
        x, lab = self.lab_input(images)
        if images.dtype == torch.uint8:
            ab = nearest_bin_rgb(images)
        else:
            ab = nearest_bin(lab[:, 1:].permute(0, 2, 3, 1))
        lbin = (lab[:, 0] / 100.0 * self.l_bins).floor().long().clamp_(0, self.l_bins - 1)
        return x, SplitBrainTargets(ab, lbin)

    def build_head(self, in_channels: int) -> nn.Module:
        return SplitBrainHead(in_channels, self.l_bins)

    def loss(self, logits, targets):
        logits = logits.float()
        return F.cross_entropy(logits[:, :NUM_BINS], targets.ab) + F.cross_entropy(logits[:, NUM_BINS:], targets.l)

    def new_meter(self):
        return SplitBrainMeter()

    def chance_level(self) -> float:
        """Mean of the two directions' uniform-guess top-1 (%)."""
        return (100.0 / NUM_BINS + 100.0 / self.l_bins) / 2

    def describe(self) -> str:
        return (f"{self.name} (L -> 313 ab bins and ab -> {self.l_bins} L bins, two half-width sub-networks "
                "of the genotype)")
