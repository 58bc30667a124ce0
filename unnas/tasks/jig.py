"""Jigsaw puzzles (Noroozi & Favaro, 2016) as in UnNAS: recover the permutation of G x G tiles.

For an image of side S (square): patch p = int(S / G), tile t = int(0.76 p) (12 px for 32-px
CIFAR with G = 2, 64 px for S = 255 with G = 3). Per image, in this order of random draws from
``generator``:

1. grey (training only, probability ``gray_prob``, default 0.3): luminance
   0.2125 R + 0.7154 G + 0.0721 B (skimage ``rgb2gray``) replicated to the 3 channels;
2. for each grid cell k = G i + j (row-major) a jitter offset (dy, dx), each uniform in
   [0, p - t] inclusive; tile k = image[i p + dy : i p + dy + t, j p + dx : j p + dx + t];
3. a permutation index, uniform over the permutation set; label = that index.

The image is normalised with the data set's mean/std, then every tile by its own scalar mean and
standard deviation (over channels and pixels; population std, floored at 1e-5 so a flat tile
stays finite). Output slot ``perm[k]`` holds tile k (``tiles[perm[k]] = tile_k``). ``make_batch``
returns inputs (B G^2, 3, t, t), image-major then slot order, and targets (B,).

Test time draws the jitter and the permutation as well (as the release), but from the seeded
``generator``, so evaluation is deterministic for a given seed (a deliberate deviation: the
release's test accuracy is stochastic). The head pools each tile's features, concatenates them
slot-major into (B, G^2 C) and applies one Linear(G^2 C -> P).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Task
from .permutations import permutation_set
from .registry import TASKS

GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)
TILE_RATIO = 0.76
STD_FLOOR = 1e-5


def auto_grid(image_size: int) -> int:
    return 2 if image_size <= 64 else 3


def tile_geometry(side: int, grid: int) -> tuple[int, int]:
    """(patch, tile) sizes for an image side and a grid."""
    patch = int(side / grid)
    return patch, int(TILE_RATIO * patch)


class JigsawHead(nn.Module):
    """Per-tile global average pool, concatenation slot-major, one linear layer."""

    def __init__(self, in_channels: int, tiles: int, num_perms: int):
        super().__init__()
        self.tiles = tiles
        self.fc = nn.Linear(tiles * in_channels, num_perms)

    def forward(self, features, input_hw=None):
        pooled = F.adaptive_avg_pool2d(features, 1).flatten(1)     # (B*T, C)
        return self.fc(pooled.reshape(-1, self.tiles * pooled.shape[1]))


@TASKS.register("jig", aliases=("jigsaw",))
class JigsawTask(Task):
    name = "jig"
    per_image_logits = False   # one permutation prediction per image from all its tiles

    def __init__(self, data, jigsaw_grid: int = 0, jigsaw_num_perms: int = 1000, jigsaw_perms_file: str = "",
                 jigsaw_seed: int = 0, gray_prob: float = 0.3, **options):
        super().__init__(data, jigsaw_grid=jigsaw_grid, jigsaw_num_perms=jigsaw_num_perms,
                         jigsaw_perms_file=jigsaw_perms_file, jigsaw_seed=jigsaw_seed, gray_prob=gray_prob,
                         **options)
        self.grid = int(jigsaw_grid) or auto_grid(data.image_size)
        if not 0.0 <= float(gray_prob) <= 1.0:
            raise ValueError(f"gray_prob must be in [0, 1], got {gray_prob}")
        self.gray_prob = float(gray_prob)
        self.perms_cpu = torch.as_tensor(permutation_set(self.grid, int(jigsaw_num_perms), int(jigsaw_seed),
                                                         jigsaw_perms_file))
        self._perms = {}
        self.images_per_sample = self.grid * self.grid

    @property
    def num_outputs(self) -> int:
        return self.perms_cpu.shape[0]

    def perms(self, device) -> torch.Tensor:
        key = str(device)
        if key not in self._perms:
            self._perms[key] = self.perms_cpu.to(device)
        return self._perms[key]

    def geometry(self, side: int) -> tuple[int, int]:
        patch, tile = tile_geometry(side, self.grid)
        if tile < 1:
            raise ValueError(f"jigsaw: images of side {side} are too small for a {self.grid}x{self.grid} grid")
        return patch, tile

    def draw(self, batch: int, side: int, train: bool, generator=None, device="cpu"):
        """The random choices of one batch: (grey mask (B,), offsets (B, G^2, 2), permutation index (B,))."""
        patch, tile = self.geometry(side)
        if train and self.gray_prob > 0:
            gray = torch.rand(batch, generator=generator, device=device) < self.gray_prob
        else:
            gray = torch.zeros(batch, dtype=torch.bool, device=device)
        offsets = torch.randint(0, patch - tile + 1, (batch, self.grid * self.grid, 2), generator=generator,
                                device=device)
        index = torch.randint(0, self.num_outputs, (batch,), generator=generator, device=device)
        return gray, offsets, index

    def build(self, images: torch.Tensor, gray: torch.Tensor, offsets: torch.Tensor, index: torch.Tensor):
        """Deterministic part of ``make_batch``: tiles for given random choices."""
        b, _, h, w = images.shape
        if h != w:
            raise ValueError(f"jigsaw needs square images, got {h}x{w}")
        patch, tile = self.geometry(h)
        g2 = self.grid * self.grid
        x = images.float()
        if gray.any():
            wts = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            lum = (x * wts).sum(1, keepdim=True).expand_as(x)
            x = torch.where(gray.view(b, 1, 1, 1), lum, x)
        x = self.normalize(x)  # same affine map as on uint8 (it divides by 255 first)
        cells = torch.arange(g2, device=x.device)
        top = (cells // self.grid) * patch                     # (G^2,)
        left = (cells % self.grid) * patch
        ar = torch.arange(tile, device=x.device)
        rows = (top[None, :] + offsets[..., 0])[..., None] + ar  # (B, G^2, t)
        cols = (left[None, :] + offsets[..., 1])[..., None] + ar
        bidx = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        tiles = x.permute(0, 2, 3, 1)[bidx, rows[..., :, None], cols[..., None, :]]  # (B, G^2, t, t, 3)
        tiles = tiles.permute(0, 1, 4, 2, 3)                                        # (B, G^2, 3, t, t)
        flat = tiles.reshape(b, g2, -1)
        mean = flat.mean(-1, keepdim=True)
        std = flat.std(-1, unbiased=False, keepdim=True).clamp_min(STD_FLOOR)
        tiles = ((flat - mean) / std).view_as(tiles)
        perm = self.perms(x.device)[index]                                          # (B, G^2)
        source = torch.argsort(perm, dim=1)          # slot s holds tile source[s] (perm[source[s]] = s)
        out = tiles.gather(1, source.view(b, g2, 1, 1, 1).expand_as(tiles))
        return out.reshape(b * g2, 3, tile, tile).contiguous(), index

    def make_batch(self, images, labels, train, generator=None):
        gray, offsets, index = self.draw(images.shape[0], images.shape[-1], train, generator, images.device)
        return self.build(images, gray, offsets, index)

    def build_head(self, in_channels: int) -> nn.Module:
        return JigsawHead(in_channels, self.grid * self.grid, self.num_outputs)

    def describe(self) -> str:
        return (f"{self.name} (grid {self.grid}, {self.num_outputs} permutations, "
                f"{self.images_per_sample} trunk passes per image)")
