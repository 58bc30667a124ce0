"""The task (objective) interface.

A task turns a batch of uint8 images (and labels, when the data has them) into network inputs and
targets *on the training device*, and supplies the head, the loss and a metric. The search loop,
the study and retraining call only this interface, so they never branch on a task's name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:  # a data set describes itself (unnas.data); tasks only read that description
    from unnas.data import DataInfo


class Meter:
    """Accumulates a task's metric over batches; ``compute()`` gives a dict of floats."""

    primary = "acc"

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: float | None = None) -> None:
        """Add a batch; ``loss`` (the batch's mean loss) is averaged per prediction when given."""
        raise NotImplementedError

    def compute(self) -> dict:
        raise NotImplementedError

    def state(self) -> dict:
        """Tensor sums, so distributed ranks can all-reduce them."""
        raise NotImplementedError

    def load_state(self, state: dict) -> None:
        raise NotImplementedError


class TopKMeter(Meter):
    """Top-1 (and top-k) accuracy in percent over all predictions (pixels for dense outputs)."""

    primary = "top1"

    def __init__(self, k: int = 5):
        self.k = k
        self.sums = {"correct1": torch.zeros((), dtype=torch.float64),
                     "correctk": torch.zeros((), dtype=torch.float64),
                     "count": torch.zeros((), dtype=torch.float64),
                     "loss": torch.zeros((), dtype=torch.float64)}

    @torch.no_grad()
    def update(self, logits, targets, loss: float | None = None):
        num_classes = logits.shape[1]
        k = min(self.k, num_classes)
        if logits.dim() > 2:  # (N, K, H, W) -> (N*H*W, K)
            logits = logits.movedim(1, -1).reshape(-1, num_classes)
            targets = targets.reshape(-1)
        valid = targets != 255
        logits, targets = logits[valid], targets[valid]
        self.add_hits(logits.topk(k, dim=1).indices == targets[:, None], loss)

    def add_hits(self, hit: torch.Tensor, loss: float | None = None) -> None:
        """Count ``hit`` ((N, k) bool: whether the target is each prediction's j-th guess); ``loss`` is
        the batch mean, weighted by N."""
        n = hit.shape[0]
        self.sums["correct1"] += hit[:, 0].sum().item()
        self.sums["correctk"] += hit.any(dim=1).sum().item()
        self.sums["count"] += n
        if loss is not None:
            self.sums["loss"] += loss * n

    def compute(self):
        n = max(self.sums["count"].item(), 1.0)
        return {"top1": 100.0 * self.sums["correct1"].item() / n,
                f"top{self.k}": 100.0 * self.sums["correctk"].item() / n,
                "loss": self.sums["loss"].item() / n}

    def state(self):
        return self.sums

    def load_state(self, state):
        self.sums = {k: v.clone() for k, v in state.items()}


class ClassifierHead(nn.Module):
    """Global average pool then a linear layer (DARTS/UnNAS classification head)."""

    def __init__(self, in_channels: int, num_outputs: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_outputs)

    def forward(self, features, input_hw=None):
        return self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1))


class Task:
    """Base class. Subclasses set ``name`` and implement ``make_batch`` and ``build_head``."""

    name = ""
    needs_labels = False       # True for supervised tasks: the data set must carry labels
    needs_dense_labels = False # True for dense supervised tasks: the labels must be per-pixel maps
    single_reduction = False   # dense prediction at output stride 16 (one reduction cell)
    in_channels = 3            # channels of the network input
    images_per_sample = 1      # trunk passes per input image (rotations, jigsaw tiles)
    # Declared capabilities (the trainer reads these, never the task's name or its classes):
    per_sample_cross_entropy = True  # the loss is cross-entropy over num_outputs per sample: label smoothing applies
    per_image_logits = True          # the head predicts one vector per trunk input: an auxiliary classifier applies
    input_kind = "rgb"               # what the network input is; a trunk trained on another kind is fed
                                     # by its own task's ``make_input`` (a colorization trunk reads L)
    input_groups = None              # a split trunk (splitbrain): groups of input channels, e.g. ((0,), (1, 2)),
                                     # one sub-network of the architecture each (shared alphas), features concatenated
    input_parts = False              # make_batch returns InputParts (search_spaces/parts.py: several tasks' inputs,
                                     # one trunk pass each: multi), so precise BN's one-batch statistics do not apply

    def __init__(self, data: DataInfo, **options):
        self.data = data
        self.options = options

    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    def make_batch(self, images: torch.Tensor, labels: torch.Tensor | None, train: bool,
                   generator: torch.Generator | None = None):
        """uint8 (B, 3, H, W) images on the device -> (inputs, targets) on the same device."""
        raise NotImplementedError

    def build_head(self, in_channels: int) -> nn.Module:
        return ClassifierHead(in_channels, self.num_outputs)

    def loss(self, logits, targets):
        return F.cross_entropy(logits, targets)

    def new_meter(self) -> Meter:
        return TopKMeter()

    def chance_level(self) -> float:
        """Top-1 accuracy (%) of a constant guess, for "above chance" checks."""
        return 100.0 / self.num_outputs

    def describe(self) -> str:
        return f"{self.name} ({self.num_outputs} outputs, {self.images_per_sample} trunk passes per image)"

    def make_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) images -> this task's kind of network input, one per image (no targets):
        how a trunk trained on this task is fed when another task (e.g. a linear probe) uses it."""
        return self.normalize(images)

    # helpers shared by subclasses
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255.0)
        mean = torch.tensor(self.data.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.data.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std
