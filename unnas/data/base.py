"""Data set interface.

A data set yields uint8 RGB images (C, H, W) of one fixed training size and a label (an int, a
per-pixel uint8/int64 map for segmentation, or -1 when it has none). Pretext inputs and targets are
built later, batched on the training device, by the task.

Two kinds:
* in-memory (:class:`TensorDataset`): the whole split is a uint8 tensor; batches are gathered
  by index in the main process and augmented on the device (no worker processes needed);
* file-backed: ``__getitem__((index, seed))`` decodes and augments one image with an RNG
  seeded by ``seed``, so augmentation is reproducible whichever worker runs it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DataInfo:
    """What a task needs to know about the data set it reads."""
    num_classes: int          # labelled classes (0 for unlabelled data)
    image_size: int           # side of the (square) training crop
    mean: tuple               # per-channel RGB mean in [0, 1]
    std: tuple                # per-channel RGB std in [0, 1]
    dense_labels: bool = False  # labels are per-pixel maps (segmentation)


class DataError(RuntimeError):
    """Missing, malformed or unreadable data; the message names the path and the fix."""


class ImageDataset(torch.utils.data.Dataset):
    info: DataInfo
    in_memory = False

    def augment_batch(self, images: torch.Tensor, labels, generator: torch.Generator | None):
        """Device-side augmentation of a batch of uint8 images (training only)."""
        return images, labels


def random_crop_flip(images: torch.Tensor, pad: int, generator: torch.Generator | None,
                     flip: bool = True) -> torch.Tensor:
    """Batched zero-pad + random crop (every offset 0..2*pad possible) + horizontal flip, uint8 in/out."""
    b, c, h, w = images.shape
    dev = images.device
    if pad > 0:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        images = padded[bi, ci, rows, cols]
    if flip:
        do = torch.rand(b, generator=generator, device=dev) < 0.5
        images = torch.where(do[:, None, None, None], images.flip(-1), images)
    return images


class TensorDataset(ImageDataset):
    """A split held in memory as uint8 (N, 3, H, W) with int64 labels."""

    in_memory = True

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DataInfo,
                 crop_pad: int = 4, flip: bool = True):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.labels = labels.long()
        self.info = info
        self.crop_pad = crop_pad
        self.flip = flip

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        return self.images[i], self.labels[i]

    def gather(self, index: torch.Tensor):
        return self.images[index], self.labels[index]

    def augment_batch(self, images, labels, generator):
        return random_crop_flip(images, self.crop_pad, generator, self.flip), labels
