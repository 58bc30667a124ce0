"""SimCLR: batched views against a per-image reference (explicit bilinear crop, torchvision's
colour, greyscale and blur functions), NT-Xent on a hand case and against the paper's sum,
the positive-retrieval metric, and the search and train code paths."""
import math

import pytest
import torch
import torchvision.transforms.functional as TF

from pretext_paths import pretrain_then_probe, tiny_search
from unnas.config import ConfigError
from unnas.data import DataInfo
from unnas.tasks import build_task
from unnas.tasks.simclr import blur_kernel_size, gaussian_blur

INFO = DataInfo(num_classes=10, image_size=8, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def bilinear_crop(img, top, left, h, w, flip):
    """grid_sample's bilinear, align_corners=False, border padding, written out per output pixel."""
    _, H, W = img.shape
    out = torch.zeros_like(img)
    for r in range(H):
        for c in range(W):
            xo, yo = (2 * c + 1) / W - 1, (2 * r + 1) / H - 1
            xi = (-w if flip else w) * xo + 2 * left + w - 1
            yi = h * yo + 2 * top + h - 1
            px = min(max(((xi + 1) * W - 1) / 2, 0.0), W - 1.0)
            py = min(max(((yi + 1) * H - 1) / 2, 0.0), H - 1.0)
            x0, y0 = int(math.floor(px)), int(math.floor(py))
            x1, y1 = min(x0 + 1, W - 1), min(y0 + 1, H - 1)
            ax, ay = px - x0, py - y0
            out[:, r, c] = ((1 - ay) * ((1 - ax) * img[:, y0, x0] + ax * img[:, y0, x1])
                            + ay * ((1 - ax) * img[:, y1, x0] + ax * img[:, y1, x1]))
    return out


def reference_view(img, d, i):
    x = bilinear_crop(img, *(float(d[k][i]) for k in ("top", "left", "h", "w")), bool(d["flip"][i]))
    if d["jitter"][i]:
        x = TF.adjust_brightness(x, float(d["brightness"][i]))
        x = TF.adjust_contrast(x, float(d["contrast"][i]))
        x = TF.adjust_saturation(x, float(d["saturation"][i]))
        x = TF.adjust_hue(x, float(d["hue"][i]))
    if d["gray"][i]:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if d["blur"][i]:
        k = blur_kernel_size(x.shape[-1])
        x = TF.gaussian_blur(x, [k, k], [float(d["sigma"][i])] * 2)
    return TF.normalize(x, INFO.mean, INFO.std)


def test_views_match_per_image_reference():
    task = build_task("simclr", INFO, simclr_blur_prob=0.5, simclr_jitter=1.0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x, y = task.make_batch(images, None, True, torch.Generator().manual_seed(5))
    d = task.draw(12, 8, torch.Generator().manual_seed(5))
    assert x.shape == (12, 3, 8, 8) and y.tolist() == [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10]
    assert d["jitter"].any() and d["gray"].any() and d["blur"].any() and d["flip"].any() and not d["flip"].all()
    for i in range(12):
        ref = reference_view(images[i // 2].float() / 255.0, d, i)
        assert torch.allclose(x[i], ref, atol=2e-5), i
    x2, _ = task.make_batch(images, None, False, torch.Generator().manual_seed(5))
    assert torch.equal(x, x2)                     # test batches: the same draws from the seeded generator


def test_blur_matches_torchvision_at_visible_sigma():
    img = torch.rand(2, 3, 16, 16)
    sig = torch.tensor([0.8, 1.7])
    ours = gaussian_blur(img, sig, 5)
    for i in range(2):
        assert torch.allclose(ours[i], TF.gaussian_blur(img[i], [5, 5], [float(sig[i])] * 2), atol=1e-6)
    assert blur_kernel_size(32) == 3 and blur_kernel_size(224) == 23 and blur_kernel_size(64) == 7


def test_nt_xent_hand_case_and_paper_sum():
    task = build_task("simclr", INFO, simclr_temperature=0.5)
    z = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0, 3.0, 0]])   # pairs aligned, pairs orthogonal
    pos = torch.tensor([1, 0, 3, 2])
    assert task.loss(z, pos).item() == pytest.approx(math.log(1 + 2 * math.exp(-2.0)), rel=1e-6)
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    pos = torch.arange(6) ^ 1
    zn = z / z.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(6):        # l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), averaged over 2N
        den = sum(math.exp(float(zn[i] @ zn[k]) / 0.5) for k in range(6) if k != i)
        total += -math.log(math.exp(float(zn[i] @ zn[int(pos[i])]) / 0.5) / den)
    assert task.loss(z, pos).item() == pytest.approx(total / 6, rel=1e-5)


def test_positive_retrieval_metric():
    task = build_task("simclr", INFO)
    z = torch.tensor([[1.0, 0], [0.8, 0.6], [0, 1.0], [0.6, 0.8]])   # unit vectors: cosines by hand
    pos = torch.tensor([1, 0, 3, 2])
    meter = task.new_meter()
    meter.update(z, pos, 2.0)
    stats = meter.compute()
    # view 0 -> 1 (0.8 > 0.6 > 0) right; view 1 -> 3 (0.96 > 0.8) wrong; view 2 -> 3 (0.8) right; view 3 -> 1 (0.96) wrong
    assert meter.primary == "top1" and stats["top1"] == pytest.approx(50.0) and stats["top5"] == pytest.approx(100.0)
    assert stats["loss"] == pytest.approx(2.0)
    big = task.new_meter()                         # 300 views: index 255 is a positive like any other
    zb = torch.eye(300).repeat_interleave(2, 0)[:300]
    big.update(zb, torch.arange(300) ^ 1)
    assert big.compute()["top1"] == pytest.approx(100.0)


def test_bad_options_are_config_errors():
    for opts in ({"simclr_temperature": 0}, {"simclr_gray_prob": 1.5}, {"simclr_crop_scale": 0}):
        with pytest.raises(ConfigError, match="task simclr"):
            build_task("simclr", INFO, **opts)


def test_search_code_path(tmp_path):
    summary = tiny_search(tmp_path, "simclr", "TASK.SIMCLR_PROJ_DIM", "16")
    assert summary["primary"] == "top1" and summary["task"] == "simclr"


def test_pretraining_then_linear_probe(tmp_path):
    pre, probe = pretrain_then_probe(tmp_path, "contrastive", "TASK.SIMCLR_PROJ_DIM", "16")
    assert pre["metric"] == "top1" and pre["task"] == "simclr"
