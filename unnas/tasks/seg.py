"""Semantic segmentation (Cityscapes in UnNAS) with a DeepLab-v3 style ASPP head.

Inputs: images normalised with the data set's mean/std. Targets: the (B, H, W) label maps, 255 =
ignore. The trunk has one reduction cell (``single_reduction``: output stride 16 with the
ImageNet stem). Head: ASPP then bilinear upsampling (align_corners=True) to the input size:

* a 1x1 branch, one 3x3 branch per rate of ``seg_aspp_rates`` (dilation = padding = rate;
  1 or 3 rates), and an image-pooling branch (global average pool, 1x1 conv, upsampled back,
  bilinear align_corners=True); every branch conv -> BN -> ReLU, convs without bias;
* concatenation -> 1x1 conv to ``seg_aspp_channels`` -> BN -> ReLU -> 1x1 conv (bias) to the
  classes.

Loss: pixel cross-entropy ignoring 255. Metric (:class:`SegMeter`): a confusion matrix summed
over all batches (and ranks); IoU_c = TP / (TP + FP + FN) per class; ``miou`` = mean IoU over the
classes present in the union, i.e. classes with TP + FP + FN > 0 (in ground truth or
prediction) over everything accumulated — classes never seen nor predicted are left out rather
than counted as 0 or 1. With every class present (the full Cityscapes val set) this is the usual
mean over all 19 classes. Also ``pixel_acc`` = correct / labelled pixels (%), and the mean loss.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Meter, Task
from .registry import TASKS

IGNORE = 255


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_classes: int, rates=(6, 12, 18)):
        super().__init__()
        rates = [int(r) for r in rates]
        if len(rates) not in (1, 3):
            raise ValueError(f"ASPP takes 1 or 3 rates, got {rates}")
        self.branches = nn.ModuleList([_conv_bn_relu(in_channels, channels, 1)] +
                                      [_conv_bn_relu(in_channels, channels, 3, r) for r in rates])
        self.pool = _conv_bn_relu(in_channels, channels, 1)
        self.project = _conv_bn_relu(channels * (len(rates) + 2), channels, 1)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=True)

    def forward(self, x):
        outs = [branch(x) for branch in self.branches]
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=True))
        return self.classifier(self.project(torch.cat(outs, dim=1)))


class SegmentationHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_classes: int, rates):
        super().__init__()
        self.aspp = ASPP(in_channels, channels, num_classes, rates)

    def forward(self, features, input_hw):
        return F.interpolate(self.aspp(features), size=tuple(input_hw), mode="bilinear", align_corners=True)


class SegMeter(Meter):
    """Accumulated confusion matrix -> mIoU (primary), pixel accuracy and mean loss (see module doc)."""

    primary = "miou"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.sums = {"confusion": torch.zeros(num_classes, num_classes, dtype=torch.float64),
                     "count": torch.zeros((), dtype=torch.float64),
                     "loss": torch.zeros((), dtype=torch.float64)}

    @torch.no_grad()
    def update(self, logits, targets, loss=None):
        k = self.num_classes
        pred = logits.argmax(1).reshape(-1)
        tgt = targets.reshape(-1).long()
        valid = (tgt != IGNORE) & (tgt >= 0) & (tgt < k)
        idx = tgt[valid] * k + pred[valid]
        conf = torch.bincount(idx, minlength=k * k).view(k, k).to(torch.float64).cpu()
        n = int(valid.sum())
        self.sums["confusion"] += conf      # rows: ground truth, columns: prediction
        self.sums["count"] += n
        if loss is not None:
            self.sums["loss"] += loss * n

    def compute(self):
        conf = self.sums["confusion"]
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp
        present = union > 0
        iou = tp[present] / union[present]
        total = conf.sum().item()
        n = max(self.sums["count"].item(), 1.0)
        return {"miou": 100.0 * iou.mean().item() if present.any() else 0.0,
                "pixel_acc": 100.0 * tp.sum().item() / total if total else 0.0,
                "loss": self.sums["loss"].item() / n}

    def state(self):
        return self.sums

    def load_state(self, state):
        self.sums = {k: v.clone() for k, v in state.items()}


@TASKS.register("seg", aliases=("segmentation",))
class SegmentationTask(Task):
    name = "seg"
    needs_labels = True
    single_reduction = True
    needs_dense_labels = True
    per_sample_cross_entropy = False   # per-pixel loss that ignores label 255
    per_image_logits = False

    def __init__(self, data, seg_aspp_channels: int = 256, seg_aspp_rates=(6, 12, 18), **options):
        super().__init__(data, seg_aspp_channels=seg_aspp_channels, seg_aspp_rates=seg_aspp_rates, **options)
        self.aspp_channels = int(seg_aspp_channels)
        self.aspp_rates = tuple(int(r) for r in seg_aspp_rates)
        if len(self.aspp_rates) not in (1, 3):
            raise ValueError(f"seg_aspp_rates must have 1 or 3 entries, got {list(self.aspp_rates)}")

    @property
    def num_outputs(self) -> int:
        return self.data.num_classes

    def make_batch(self, images, labels, train, generator=None):
        if labels is None or labels.dim() != 3:
            raise ValueError("segmentation needs (B, H, W) label maps (255 = ignore)")
        return self.normalize(images), labels.long()

    def build_head(self, in_channels: int) -> nn.Module:
        return SegmentationHead(in_channels, self.aspp_channels, self.num_outputs, self.aspp_rates)

    def loss(self, logits, targets):
        return F.cross_entropy(logits, targets, ignore_index=IGNORE)

    def new_meter(self) -> Meter:
        return SegMeter(self.num_outputs)

    def chance_level(self) -> float:
        """mIoU (%) bound of a constant guess: it scores IoU <= 1 on one class and 0 elsewhere."""
        return 100.0 / self.num_outputs
