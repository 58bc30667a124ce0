"""Super-resolution: low-resolution inputs against PIL's bicubic resize per image, the pixel MSE on
a hand case, PSNR, the pixel-shuffle head, and the search and train code paths."""
import numpy as np
import pytest
import torch

from pretext_paths import pretrain_then_probe, tiny_search
from search_spaces import get_space
from search_spaces.darts.supernet import ArchParameters, SearchModel
from unnas.config import ConfigError
from unnas.data import DataInfo
from unnas.tasks import build_task
from unnas.tasks.pixels import PixelTargets

INFO = DataInfo(num_classes=10, image_size=16, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


@pytest.mark.parametrize("factor", [2, 4])
def test_inputs_match_pil_bicubic_per_image(factor):
    from PIL import Image
    task = build_task("super_resolution", INFO, superres_factor=factor)
    images = torch.randint(0, 256, (3, 3, 17, 13), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    x, y = task.make_batch(images, None, True, None)
    h, w = 17 // factor * factor, 13 // factor * factor           # cropped to a multiple of the factor
    assert x.shape == (3, 3, h // factor, w // factor) and y.image.shape == (3, 3, h, w) and y.mask is None
    mean = torch.tensor(INFO.mean).view(3, 1, 1)
    std = torch.tensor(INFO.std).view(3, 1, 1)
    for b in range(3):
        crop = images[b, :, :h, :w]
        pil = Image.fromarray(crop.permute(1, 2, 0).numpy()).resize((w // factor, h // factor), Image.BICUBIC)
        ref = torch.tensor(np.asarray(pil)).permute(2, 0, 1).float()
        ours = (x[b] * std + mean) * 255.0
        assert (ours - ref).abs().max() <= 1.0 + 1e-3         # PIL's fixed-point arithmetic: one level at most
        assert torch.allclose(ours, ours.round(), atol=1e-3)    # 8-bit low-resolution image
        assert torch.equal(y.image[b], crop.float() / 255.0)


def test_pixel_mse_hand_case_and_psnr():
    task = build_task("superres", INFO)
    target = torch.zeros(2, 3, 4, 4)
    pred = torch.full_like(target, 0.1)
    pred[1] = 0.01
    y = PixelTargets(target)
    assert task.loss(pred, y).item() == pytest.approx((0.01 + 0.0001) / 2)
    meter = task.new_meter()
    meter.update(pred, y, 0.5)
    stats = meter.compute()
    assert meter.primary == "psnr" and stats["psnr"] == pytest.approx((20.0 + 40.0) / 2)
    assert stats["mse"] == pytest.approx((0.01 + 0.0001) / 2) and stats["loss"] == pytest.approx(0.5)
    # a constant image is reproduced exactly by the bicubic path: PSNR of upsampling it is 100 dB
    flat = torch.full((1, 3, 8, 8), 77, dtype=torch.uint8)
    x, yf = task.make_batch(flat, None, False, None)
    up = torch.nn.functional.interpolate(x * torch.tensor(INFO.std).view(1, 3, 1, 1)
                                         + torch.tensor(INFO.mean).view(1, 3, 1, 1), scale_factor=2, mode="nearest")
    m = task.new_meter()
    m.update(up, yf)
    assert m.compute()["psnr"] == pytest.approx(100.0)


@pytest.mark.parametrize("stem, size, factor", [("cifar", 16, 2), ("imagenet", 32, 4)])
def test_pixel_shuffle_head_through_supernet(stem, size, factor):
    torch.manual_seed(0)
    info = DataInfo(num_classes=10, image_size=size, mean=INFO.mean, std=INFO.std)
    task = build_task("superres", info, superres_factor=factor, decoder_channels=16)
    trunk = get_space("darts").build_supernet(3, width=4, depth=3, stem=stem)
    model = SearchModel(trunk, task.build_head(trunk.out_channels))
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    x, y = task.make_batch(images, None, True, None)
    assert x.shape[-1] == size // factor
    arch = ArchParameters()
    with torch.no_grad():    # the output starts at the mean colour (bias repeated per sub-pixel)
        model.eval()
        for p in model.head.decoder.out.parameters():
            if p.dim() > 1:
                p.zero_()
        start = model(x, arch.weights())
        assert torch.allclose(start, torch.tensor(INFO.mean).view(1, 3, 1, 1).expand_as(start), atol=1e-6)
    model.train()
    torch.manual_seed(0)
    model.head.decoder.out.reset_parameters()
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


def test_bad_factor_is_a_config_error():
    with pytest.raises(ConfigError, match="superres_factor must be 2 or 4"):
        build_task("superres", INFO, superres_factor=3)


def test_search_code_path(tmp_path):
    summary = tiny_search(tmp_path, "superres", "TASK.DECODER_CHANNELS", "8")
    assert summary["primary"] == "psnr" and summary["task"] == "superres"


def test_pretraining_then_linear_probe(tmp_path):
    pre, probe = pretrain_then_probe(tmp_path, "sr", "TASK.DECODER_CHANNELS", "8", "TASK.SUPERRES_FACTOR", "4")
    assert pre["metric"] == "psnr" and pre["task"] == "superres"
