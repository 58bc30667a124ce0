"""Segmentation: ASPP head, ignore label, mIoU on a hand-computed case."""
import pytest
import torch
import torch.nn as nn

from unnas.data import DataInfo
from unnas.tasks import build_task
from unnas.tasks.seg import SegMeter

INFO = DataInfo(num_classes=4, image_size=32, mean=(0.3, 0.4, 0.5), std=(0.2, 0.2, 0.2), dense_labels=True)


def _logits_for(pred, k):
    """One-hot logits whose argmax is ``pred`` (B, H, W)."""
    return torch.nn.functional.one_hot(pred, k).permute(0, 3, 1, 2).float()


def test_miou_hand_computed():
    # ground truth / prediction over 8 pixels (one ignored), classes 0..3 (3 never appears)
    gt = torch.tensor([[[0, 0, 0, 1], [1, 2, 2, 255]]])
    pr = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 3]]])
    m = SegMeter(4)
    m.update(_logits_for(pr, 4), gt, loss=0.5)
    r = m.compute()
    # class 0: TP 2, FP 0, FN 1 -> 2/3; class 1: TP 1, FP 1, FN 1 -> 1/3; class 2: TP 2, FP 1 -> 2/3
    # class 3: only predicted on an ignored pixel -> absent from the union -> left out
    assert r["miou"] == pytest.approx(100 * (2 / 3 + 1 / 3 + 2 / 3) / 3)
    assert r["pixel_acc"] == pytest.approx(100 * 5 / 7)
    assert r["loss"] == pytest.approx(0.5)
    # accumulation across batches = one big batch; state round-trip
    m2 = SegMeter(4)
    m2.update(_logits_for(pr[:, :1], 4), gt[:, :1])
    m2.update(_logits_for(pr[:, 1:], 4), gt[:, 1:])
    assert m2.compute()["miou"] == pytest.approx(r["miou"])
    m3 = SegMeter(4)
    m3.load_state(m.state())
    assert m3.compute() == r
    assert SegMeter.primary == "miou"


def test_seg_task_head_and_loss():
    task = build_task("segmentation", INFO, seg_aspp_channels=8, seg_aspp_rates=[2])
    assert task.needs_labels and task.single_reduction and task.num_outputs == 4
    assert task.chance_level() == pytest.approx(25.0)
    head = task.build_head(6)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 1 + 1 + 1 + 1   # 1x1, one dilated, pool, projection, classifier
    assert all(c.bias is None for c in convs[:-1]) and convs[-1].bias is not None
    assert [c.dilation for c in convs if c.kernel_size == (3, 3)] == [(2, 2)]
    head3 = build_task("seg", INFO, seg_aspp_channels=8, seg_aspp_rates=[1, 2, 3]).build_head(6)
    assert head3.aspp.project[0].in_channels == 8 * 5
    head.eval()
    out = head(torch.randn(2, 6, 3, 4), (32, 40))
    assert out.shape == (2, 4, 32, 40)
    with pytest.raises(ValueError):
        build_task("seg", INFO, seg_aspp_rates=[6, 12])
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 4, (2, 8, 8))
    labels[0, 0] = 255
    x, y = task.make_batch(images, labels, True, None)
    mean = torch.tensor(INFO.mean).view(1, 3, 1, 1)
    std = torch.tensor(INFO.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (images.float() / 255 - mean) / std, atol=1e-6)
    assert torch.equal(y, labels)
    logits = torch.randn(2, 4, 8, 8)
    logits_changed = logits.clone()
    logits_changed[0, :, 0] = 100.0     # only on ignored pixels
    assert task.loss(logits, y).item() == pytest.approx(task.loss(logits_changed, y).item())
