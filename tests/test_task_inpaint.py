"""Inpainting (context encoder): holes and inputs against a per-image reference, the masked L2 on
a hand case, PSNR, the decoder head at both strides, and the search and train code paths."""
import math

import pytest
import torch

from pretext_paths import pretrain_then_probe, tiny_search
from search_spaces import get_space
from search_spaces.darts.supernet import ArchParameters, SearchModel
from unnas.config import ConfigError
from unnas.data import DataInfo
from unnas.tasks import build_task
from unnas.tasks.pixels import PixelTargets, PSNRMeter, psnr_of_mse

INFO = DataInfo(num_classes=10, image_size=16, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def reference(image, size, blocks, block_size):
    """One image: (input, hidden mask) written with slices, Pathak's recipe (hole = mean colour)."""
    _, h, w = image.shape
    hidden = torch.zeros(h, w, dtype=torch.bool)
    sy, sx = round(size * h), round(size * w)
    hidden[(h - sy) // 2:(h - sy) // 2 + sy, (w - sx) // 2:(w - sx) // 2 + sx] = True
    bh, bw = round(block_size * h), round(block_size * w)
    for r, c in blocks:
        hidden[r:r + bh, c:c + bw] = True
    mean = torch.tensor(INFO.mean).view(3, 1, 1)
    std = torch.tensor(INFO.std).view(3, 1, 1)
    x = (image.float() / 255.0 - mean) / std
    x[:, hidden] = 0.0
    return x, hidden


@pytest.mark.parametrize("blocks", [0, 3])
def test_inputs_and_targets_match_per_image_reference(blocks):
    task = build_task("inpainting", INFO, inpaint_blocks=blocks, inpaint_size=0.5, inpaint_block_size=0.25)
    images = torch.randint(0, 256, (4, 3, 16, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    corners = task.draw(4, (16, 12), torch.Generator().manual_seed(3))
    assert corners.shape == (4, blocks, 2)
    x, y = task.build(images, corners)
    x2, y2 = task.make_batch(images, None, True, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2) and torch.equal(y.mask, y2.mask)
    for b in range(4):
        ref_x, ref_hidden = reference(images[b], 0.5, corners[b].tolist(), 0.25)
        assert torch.equal(y.mask[b, 0], ref_hidden)
        assert torch.allclose(x[b], ref_x, atol=1e-6)
        assert torch.equal(y.image[b], images[b].float() / 255.0)
    assert y.mask[:, 0, 4:12, 3:9].all() and y.weight is None    # 8 x 6 centre of a 16 x 12 image
    if blocks:
        assert (corners[..., 0] <= 16 - 4).all() and (corners[..., 1] <= 12 - 3).all()
        assert y.mask.sum() > 4 * 48


def test_overlap_ring_is_visible_and_weighted():
    task = build_task("inpaint", INFO, inpaint_overlap=1, inpaint_overlap_weight=10.0)
    images = torch.full((1, 3, 16, 16), 200, dtype=torch.uint8)
    x, y = task.make_batch(images, None, False, None)
    assert y.mask[0, 0].sum() == 36 and y.mask[0, 0, 5:11, 5:11].all()        # 8x8 centre less a 1-px ring
    ring = (y.weight[0, 0] == 10.0)
    assert ring.sum() == 64 - 36 and ring[4, 4] and not ring[5, 5]
    assert (y.weight[0, 0][~ring & ~y.mask[0, 0]] == 0).all()
    assert (x[0, :, 4, 4] != 0).all() and (x[0, :, 5, 5] == 0).all()


def test_masked_l2_hand_case_and_psnr():
    task = build_task("inpaint", INFO)
    target = torch.full((2, 3, 4, 4), 0.5)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, 1:3, 1:3] = True
    pred = target + 5.0                         # wrong everywhere outside the hole: not in the loss
    pred[:, :, 1:3, 1:3] = 0.5 + 0.1            # 0.1 off inside: MSE 0.01
    pred[1, :, 1:3, 1:3] = 0.5 + 0.2            # image 1: 0.2 off, MSE 0.04
    y = PixelTargets(target, mask)
    assert task.loss(pred, y).item() == pytest.approx((0.01 + 0.04) / 2)
    weight = mask.float()
    weight[:, :, 0, 0] = 10.0                   # a ring pixel with error 5 and weight 10
    yw = PixelTargets(target, mask, weight)
    expect = (4 * 3 * (0.01 + 0.04) + 2 * 3 * 10 * 25.0) / (3 * (2 * 4 + 2 * 10))
    assert task.loss(pred, yw).item() == pytest.approx(expect)
    meter = task.new_meter()
    meter.update(pred, y, 1.0)
    stats = meter.compute()
    assert meter.primary == "psnr" and stats["psnr"] == pytest.approx((20.0 + 10 * math.log10(25.0)) / 2)
    assert stats["psnr"] == pytest.approx((psnr_of_mse(0.01) + psnr_of_mse(0.04)) / 2)
    perfect = PSNRMeter()
    perfect.update(target, y)
    assert perfect.compute()["psnr"] == pytest.approx(100.0)
    clamped = PSNRMeter()                      # predictions beyond [0, 1] are clamped before scoring
    clamped.update(torch.full_like(target, 3.0), PixelTargets(torch.ones_like(target)))
    assert clamped.compute()["psnr"] == pytest.approx(100.0)


@pytest.mark.parametrize("stem, size", [("cifar", 16), ("imagenet", 32)])
def test_decoder_head_through_supernet(stem, size):
    torch.manual_seed(0)
    info = DataInfo(num_classes=10, image_size=size, mean=INFO.mean, std=INFO.std)
    task = build_task("inpaint", info, decoder_channels=16)
    trunk = get_space("darts").build_supernet(3, width=4, depth=3, stem=stem)
    model = SearchModel(trunk, task.build_head(trunk.out_channels))
    assert torch.allclose(model.head.out.bias, torch.tensor(INFO.mean))
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    x, y = task.make_batch(images, None, True, torch.Generator().manual_seed(0))
    arch = ArchParameters()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(3):
        out = model(x, arch.weights())
        assert out.shape == (2, 3, size, size)
        loss = task.loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.head.parameters())     # every decoder stage is used


def test_bad_options_are_config_errors():
    for opts in ({"inpaint_size": 1.0}, {"inpaint_center": False}, {"inpaint_blocks": -1}):
        with pytest.raises(ConfigError, match="task inpaint"):
            build_task("inpaint", INFO, **opts)


def test_search_code_path(tmp_path):
    summary = tiny_search(tmp_path, "inpaint", "TASK.DECODER_CHANNELS", "8", "TASK.INPAINT_BLOCKS", "1")
    assert summary["primary"] == "psnr" and summary["task"] == "inpaint"


def test_pretraining_then_linear_probe(tmp_path):
    pre, probe = pretrain_then_probe(tmp_path, "inpaint", "TASK.DECODER_CHANNELS", "8")
    assert pre["metric"] == "psnr" and pre["task"] == "inpaint" and probe["metric"] == "top1"
