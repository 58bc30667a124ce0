"""Rotation prediction (Gidaris et al., 2018) as in UnNAS: every image yields all 4 rotations.

Rotation k turns the image k*90 degrees counter-clockwise (``torch.rot90(x, k, dims=(H, W))``),
label k; the batch grows 4x, ordered image-major (image 0 at 0, 90, 180, 270 degrees, then image 1).
"""
from __future__ import annotations

import torch

from .base import Task
from .registry import TASKS


@TASKS.register("rot", aliases=("rotation",))
class RotationTask(Task):
    name = "rot"
    images_per_sample = 4

    @property
    def num_outputs(self) -> int:
        return 4

    def make_batch(self, images, labels, train, generator=None):
        x = self.normalize(images)
        b = x.shape[0]
        rotated = torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], dim=1)
        targets = torch.arange(4, device=x.device).repeat(b)
        return rotated.flatten(0, 1), targets
