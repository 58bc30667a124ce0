"""The trunk's features for ELo's unsupervised fitness (``FITNESS.ENABLED``, :mod:`unnas.elo.fitness`):
its last feature map, global average pooled, on held-out images, fed as the trunk was trained
(the training task's ``make_input``: RGB, or L for a colorization trunk)."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F


@torch.no_grad()
def pooled_features(trunk: torch.nn.Module, batches: Iterable, make_input: Callable, device, limit: int = 0,
                    autocast: Callable | None = None, channels_last: bool = False) -> torch.Tensor:
    """(N, C) float32 on the CPU: the first ``limit`` images (0 = all) of ``batches`` ((uint8
    images, labels) pairs; the labels are not read). The caller puts the trunk in eval mode."""
    feats, n = [], 0
    for images, _ in batches:
        if limit and n >= limit:
            break
        if limit:
            images = images[:limit - n]
        if images.shape[0] == 0:
            continue
        x = make_input(images.to(device))
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():   # only the forward: make_input's caches never hold inference tensors
            if autocast is not None:
                with autocast():
                    f = trunk(x)
            else:
                f = trunk(x)
        feats.append(F.adaptive_avg_pool2d(f.float(), 1).flatten(1).cpu())
        n += images.shape[0]
    return torch.cat(feats) if feats else torch.zeros(0, 0)
