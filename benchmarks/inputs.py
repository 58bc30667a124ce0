"""Synthetic inputs of ``tools/bench.py``: photo-like uint8 images, the data set description a
task is built from, and the two fixed batches of a search or training step."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from unnas.config import task_options
from unnas.data import DataInfo
from unnas.tasks import build_task

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NUM_CLASSES = 10


def data_info(size: int) -> DataInfo:
    mean, std = (CIFAR_MEAN, CIFAR_STD) if size <= 64 else (IMAGENET_MEAN, IMAGENET_STD)
    return DataInfo(num_classes=NUM_CLASSES, image_size=size, mean=mean, std=std)


def photo_like(n: int, size: int, seed: int) -> torch.Tensor:
    """uint8 (n, 3, size, size): smooth random colours plus some texture, like a photo (noise
    images would put every pixel on a saturated colour, which no data set looks like)."""
    g = torch.Generator().manual_seed(seed)
    low = max(size // 16, 2)
    img = F.interpolate(torch.rand(n, 3, low, low, generator=g) * 255, size=(size, size), mode="bicubic",
                        align_corners=False)
    img += torch.randint(-12, 13, img.shape, generator=g)
    return img.clamp(0, 255).to(torch.uint8)


def task_batches(cfg, spec: dict, device: torch.device):
    """The config's task (built as the loops build it: ``TASK.NAME`` and the ``TASK.*`` options)
    and two fixed (inputs, targets) batches made by its ``make_batch``: architecture half, weight
    half."""
    task = build_task(cfg.TASK.NAME, data_info(spec["size"]), **task_options(cfg))
    g = torch.Generator().manual_seed(spec["seed"])
    batches = []
    for half in range(2):
        images = photo_like(spec["batch"], spec["size"], spec["seed"] + half).to(device)
        labels = torch.randint(0, NUM_CLASSES, (spec["batch"],), generator=g).to(device)
        gen = torch.Generator(device=device).manual_seed(spec["seed"] + half)
        batches.append(task.make_batch(images, labels, True, gen))
    return task, batches
