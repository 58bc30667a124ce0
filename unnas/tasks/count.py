"""Counting visual primitives (Noroozi, Pirsiavash & Favaro, ICCV 2017), with the contrastive loss
of their Eq. 4.

For an image x of side S (per axis; cropped to even sides, top-left kept), t = S / 2:

* D∘x: x downsampled by 2 to t x t, by 2 x 2 area averaging (``count_random_resize``: one kernel
  per image drawn from ``generator`` among area, bilinear, bicubic (both antialiased) and
  nearest, so a feature cannot count the kernel's artefacts);
* T_j∘x, j = 1..4: the four t x t quadrants, row-major.

``make_batch`` returns the 5 trunk inputs per image, image-major ``[D∘x, T_1∘x, ..., T_4∘x]``
(B 5, 3, t, t), normalised with the data set's mean/std, and as targets the index of each image's
contrasting image y in the batch: ``(i + k) mod B`` with one offset k drawn uniformly from
[1, B - 1] per batch (so y != x for B > 1).

Head: global average pool, Linear(C -> ``count_dim``), ReLU: a non-negative count vector φ per
input (the paper's 1000 counts). Loss (Eq. 4), averaged over the batch:

    |φ(D∘x) - Σ_j φ(T_j∘x)|² + max(0, M - |φ(D∘y) - Σ_j φ(T_j∘x)|²),   M = ``count_margin`` (10)

Metric ``acc`` (%): the fraction of images whose tile sum is closer (squared Euclidean) to their own
downsampled image's counts than to those of their contrasting image y; also ``retrieval`` (%):
the tile sum's nearest downsampled image among the whole batch is its own.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Meter, Task
from .registry import TASKS

KERNELS = ("area", "bilinear", "bicubic", "nearest")


def downsample2(x: torch.Tensor, kernel: str) -> torch.Tensor:
    """Float (N, C, 2t, 2t') -> (N, C, t, t') with one of ``KERNELS``."""
    if kernel == "area":
        return F.avg_pool2d(x, 2)
    size = (x.shape[-2] // 2, x.shape[-1] // 2)
    if kernel == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=kernel, antialias=True, align_corners=False).clamp(0.0, 1.0)


class CountHead(nn.Module):
    """Global average pool, Linear, ReLU: one non-negative count vector per trunk input."""

    def __init__(self, in_channels: int, count_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, count_dim)

    def forward(self, features, input_hw=None):
        return F.relu(self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1)))


def count_distances(phi: torch.Tensor, others: torch.Tensor):
    """(B 5, D) counts -> (own squared distance (B,), squared distance to the contrasting image (B,),
    downsampled images' counts (B, D), tile sums (B, D))."""
    phi = phi.float().view(-1, 5, phi.shape[-1])
    down, tiles = phi[:, 0], phi[:, 1:].sum(1)
    own = (down - tiles).pow(2).sum(1)
    other = (down[others] - tiles).pow(2).sum(1)
    return own, other, down, tiles


class CountMeter(Meter):
    """``acc``: % of images with own distance < distance to their contrasting image (primary);
    ``retrieval``: % whose tile sum is nearest its own downsampled image in the batch; mean loss."""

    primary = "acc"

    def __init__(self):
        self.sums = {"correct": torch.zeros((), dtype=torch.float64), "retrieved": torch.zeros((), dtype=torch.float64),
                     "count": torch.zeros((), dtype=torch.float64), "loss": torch.zeros((), dtype=torch.float64)}

    @torch.no_grad()
    def update(self, logits, targets, loss=None):
        own, other, down, tiles = count_distances(logits, targets)
        all_d = (tiles[:, None, :] - down[None, :, :]).pow(2).sum(-1)     # (B, B): tile sum i vs image j
        n = own.numel()
        self.sums["correct"] += (own < other).sum().item()
        self.sums["retrieved"] += (all_d.argmin(1) == torch.arange(n, device=all_d.device)).sum().item()
        self.sums["count"] += n
        if loss is not None:
            self.sums["loss"] += loss * n

    def compute(self):
        n = max(self.sums["count"].item(), 1.0)
        return {"acc": 100.0 * self.sums["correct"].item() / n, "retrieval": 100.0 * self.sums["retrieved"].item() / n,
                "loss": self.sums["loss"].item() / n}

    def state(self):
        return self.sums

    def load_state(self, state):
        self.sums = {k: v.clone() for k, v in state.items()}


@TASKS.register("count", aliases=("counting",))
class CountTask(Task):
    name = "count"
    images_per_sample = 5
    per_sample_cross_entropy = False
    per_image_logits = False

    def __init__(self, data, count_dim: int = 1000, count_margin: float = 10.0, count_random_resize: bool = False,
                 **options):
        super().__init__(data, count_dim=count_dim, count_margin=count_margin,
                         count_random_resize=count_random_resize, **options)
        self.dim = int(count_dim)
        self.margin = float(count_margin)
        self.random_resize = bool(count_random_resize)
        if self.dim < 1:
            raise ValueError(f"count_dim must be >= 1, got {count_dim}")
        if self.margin <= 0:
            raise ValueError(f"count_margin must be > 0, got {count_margin}")

    @property
    def num_outputs(self) -> int:
        return self.dim

    def draw(self, batch: int, generator=None, device="cpu"):
        """(kernel index per image (B,) into ``KERNELS``, offset k of the contrasting image)."""
        if self.random_resize:
            kernel = torch.randint(0, len(KERNELS), (batch,), generator=generator, device=device)
        else:
            kernel = torch.zeros(batch, dtype=torch.long, device=device)
        k = torch.randint(1, batch, (1,), generator=generator, device=device) if batch > 1 else \
            torch.zeros(1, dtype=torch.long, device=device)
        return kernel, k

    def build(self, images: torch.Tensor, kernel: torch.Tensor, k: torch.Tensor):
        """The deterministic part of ``make_batch``."""
        b, _, h, w = images.shape
        t, u = h // 2, w // 2
        if t < 1 or u < 1:
            raise ValueError(f"count: images of {h}x{w} are too small for 2x2 tiles")
        x = images[..., :2 * t, :2 * u].float() / 255.0
        down = downsample2(x, KERNELS[0])
        for i, name in enumerate(KERNELS[1:], 1):
            pick = kernel == i
            if pick.any():
                down = torch.where(pick.view(b, 1, 1, 1), downsample2(x, name), down)
        tiles = [x[..., r * t:(r + 1) * t, c * u:(c + 1) * u] for r in range(2) for c in range(2)]
        out = torch.stack([down, *tiles], dim=1).flatten(0, 1)                  # (B 5, 3, t, u)
        mean = torch.tensor(self.data.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.data.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        others = (torch.arange(b, device=images.device) + k) % b
        return (out - mean) / std, others

    def make_batch(self, images, labels, train, generator=None):
        return self.build(images, *self.draw(images.shape[0], generator, images.device))

    def build_head(self, in_channels: int):
        return CountHead(in_channels, self.dim)

    def loss(self, logits, targets):
        own, other, _, _ = count_distances(logits, targets)
        return (own + F.relu(self.margin - other)).mean()

    def new_meter(self):
        return CountMeter()

    def chance_level(self) -> float:
        return 50.0

    def describe(self) -> str:
        return f"{self.name} ({self.dim} counts, margin {self.margin:g}; 5 trunk passes per image at half size)"
