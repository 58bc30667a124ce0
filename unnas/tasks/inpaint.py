"""Inpainting: a context encoder (Pathak et al., CVPR 2016), reconstruction loss only.

Per image of side S (square or not: the fractions apply per axis), the hole is

* a central square (``inpaint_center``, default on) of side ``h = round(inpaint_size * S)``
  (0.5: Pathak's 64 of 128) at ``top = (S - h) // 2``; and/or
* ``inpaint_blocks`` random squares (default 0) of side ``round(inpaint_block_size * S)``, their
  top-left corners uniform over the image (rows then columns, one draw per block from
  ``generator``; drawn at test time too, from the seeded generator).

The network sees the normalised image (data set mean/std) with the hole set to 0, i.e. filled
with the data set's mean colour (Pathak fill with the mean pixel). ``inpaint_overlap`` o > 0
(Pathak: 4 px at 128) hides only the central square shrunk by o px per side and weights the
visible o-px ring around it ``inpaint_overlap_weight`` (Pathak: 10) in the loss.

Head: :class:`~unnas.tasks.pixels.Decoder` (upsampling to the input size, 3 outputs, the output
bias starting at the data set's mean colour). Targets: :class:`~unnas.tasks.pixels.PixelTargets`
with the image in [0, 1], the hidden pixels as ``mask`` and the loss weights. Loss: Pathak's
masked L2, ``||M ⊙ (x - F((1 - M) ⊙ x))||²`` as a mean over the weighted pixels of the batch
(``masked_mse``). Metric: PSNR (dB) of the hidden pixels, per image, averaged (``PSNRMeter``).
"""
from __future__ import annotations

import torch

from .pixels import Decoder, PixelTargets, PixelTask, init_output_bias
from .registry import TASKS


class InpaintHead(Decoder):
    def __init__(self, in_channels: int, channels: int, mean):
        super().__init__(in_channels, channels, 3)
        init_output_bias(self.out, mean)


@TASKS.register("inpaint", aliases=("inpainting", "context_encoder"))
class InpaintTask(PixelTask):
    name = "inpaint"

    def __init__(self, data, inpaint_size: float = 0.5, inpaint_center: bool = True, inpaint_blocks: int = 0,
                 inpaint_block_size: float = 0.25, inpaint_overlap: int = 0, inpaint_overlap_weight: float = 10.0,
                 decoder_channels: int = 64, **options):
        super().__init__(data, inpaint_size=inpaint_size, inpaint_center=inpaint_center,
                         inpaint_blocks=inpaint_blocks, inpaint_block_size=inpaint_block_size,
                         inpaint_overlap=inpaint_overlap, inpaint_overlap_weight=inpaint_overlap_weight,
                         decoder_channels=decoder_channels, **options)
        self.size = float(inpaint_size)
        self.center = bool(inpaint_center)
        self.blocks = int(inpaint_blocks)
        self.block_size = float(inpaint_block_size)
        self.overlap = int(inpaint_overlap)
        self.overlap_weight = float(inpaint_overlap_weight)
        self.decoder_channels = int(decoder_channels)
        if not 0.0 < self.size < 1.0:
            raise ValueError(f"inpaint_size must be in (0, 1), got {inpaint_size}")
        if not 0.0 < self.block_size < 1.0:
            raise ValueError(f"inpaint_block_size must be in (0, 1), got {inpaint_block_size}")
        if self.blocks < 0 or self.overlap < 0 or self.overlap_weight < 0:
            raise ValueError("inpaint_blocks, inpaint_overlap and inpaint_overlap_weight must be >= 0")
        if not self.center and self.blocks == 0:
            raise ValueError("inpaint hides nothing: set inpaint_center True or inpaint_blocks > 0")
        if self.decoder_channels < 1:
            raise ValueError(f"decoder_channels must be >= 1, got {decoder_channels}")

    def center_box(self, side: int) -> tuple[int, int]:
        """(top, side) of the central square along an axis of length ``side``."""
        h = max(1, round(self.size * side))
        if self.center and h - 2 * self.overlap < 1:
            raise ValueError(f"inpaint_overlap {self.overlap} leaves no hole in a {h}-px centre square")
        return (side - h) // 2, h

    def draw(self, batch: int, hw, generator=None, device="cpu") -> torch.Tensor:
        """Top-left corners (B, N, 2) of the random blocks (N = ``inpaint_blocks``; rows, columns)."""
        h, w = hw
        bh, bw = max(1, round(self.block_size * h)), max(1, round(self.block_size * w))
        if self.blocks == 0:
            return torch.zeros(batch, 0, 2, dtype=torch.long, device=device)
        rows = torch.randint(0, h - bh + 1, (batch, self.blocks, 1), generator=generator, device=device)
        cols = torch.randint(0, w - bw + 1, (batch, self.blocks, 1), generator=generator, device=device)
        return torch.cat([rows, cols], dim=2)

    def masks(self, batch: int, hw, corners: torch.Tensor, device):
        """(hidden (B, 1, H, W) bool, loss weight (B, 1, H, W) float) for given block corners."""
        h, w = hw
        ys = torch.arange(h, device=device).view(1, 1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, 1, w)
        hidden = torch.zeros(batch, 1, h, w, dtype=torch.bool, device=device)
        weight = torch.zeros(batch, 1, h, w, device=device)
        if self.center:
            (ty, sy), (tx, sx) = self.center_box(h), self.center_box(w)
            o = self.overlap
            outer = (ys >= ty) & (ys < ty + sy) & (xs >= tx) & (xs < tx + sx)
            inner = (ys >= ty + o) & (ys < ty + sy - o) & (xs >= tx + o) & (xs < tx + sx - o)
            hidden |= inner
            weight = torch.where(outer & ~inner, torch.full_like(weight, self.overlap_weight), weight)
        if corners.shape[1]:
            bh, bw = max(1, round(self.block_size * h)), max(1, round(self.block_size * w))
            r0 = corners[..., 0].view(batch, -1, 1, 1)
            c0 = corners[..., 1].view(batch, -1, 1, 1)
            inside = (ys >= r0) & (ys < r0 + bh) & (xs >= c0) & (xs < c0 + bw)   # (B, N, H, W)
            hidden |= inside.any(1, keepdim=True)
        weight = torch.where(hidden, torch.ones_like(weight), weight)   # a hidden pixel weighs 1
        return hidden, weight

    def build(self, images: torch.Tensor, corners: torch.Tensor):
        """The deterministic part of ``make_batch``: (masked normalised input, PixelTargets)."""
        b, _, h, w = images.shape
        hidden, weight = self.masks(b, (h, w), corners, images.device)
        x = self.normalize(images).masked_fill_(hidden, 0.0)
        target = images.float() / 255.0
        return x, PixelTargets(target, hidden, weight if self.overlap > 0 and self.center else None)

    def make_batch(self, images, labels, train, generator=None):
        corners = self.draw(images.shape[0], images.shape[-2:], generator, images.device)
        return self.build(images, corners)

    def build_head(self, in_channels: int):
        return InpaintHead(in_channels, self.decoder_channels, self.data.mean)

    def describe(self) -> str:
        what = []
        if self.center:
            what.append(f"centre {self.size:g} of the side" + (f", overlap {self.overlap} px" if self.overlap else ""))
        if self.blocks:
            what.append(f"{self.blocks} random blocks of {self.block_size:g}")
        return f"{self.name} ({' + '.join(what)}; masked L2, PSNR of the hole)"
