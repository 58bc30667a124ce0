"""Counting: downsampled image and tiles against a per-image reference, Eq. 4's loss on a hand case,
the metric, the ReLU head, and the search and train code paths."""
import pytest
import torch
import torch.nn.functional as F

from pretext_paths import pretrain_then_probe, tiny_search
from unnas.config import ConfigError
from unnas.data import DataInfo
from unnas.tasks import build_task

INFO = DataInfo(num_classes=10, image_size=8, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def reference(image, kernel):
    """One image: [D x, T_1 x, ..., T_4 x] with loops and slices."""
    x = image.float() / 255.0
    _, h, w = x.shape
    t, u = h // 2, w // 2
    x = x[:, :2 * t, :2 * u]
    if kernel == "area":
        down = torch.zeros(3, t, u)
        for r in range(t):
            for c in range(u):
                down[:, r, c] = x[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2].mean((1, 2))
    elif kernel == "nearest":
        down = x[:, ::2, ::2]
    else:
        down = F.interpolate(x[None], size=(t, u), mode=kernel, antialias=True, align_corners=False)[0].clamp(0, 1)
    tiles = [x[:, :t, :u], x[:, :t, u:], x[:, t:, :u], x[:, t:, u:]]
    mean = torch.tensor(INFO.mean).view(3, 1, 1)
    std = torch.tensor(INFO.std).view(3, 1, 1)
    return [(v - mean) / std for v in [down, *tiles]]


@pytest.mark.parametrize("random_resize", [False, True])
def test_inputs_match_per_image_reference(random_resize):
    task = build_task("counting", INFO, count_random_resize=random_resize)
    images = torch.randint(0, 256, (8, 3, 9, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x, others = task.make_batch(images, None, True, torch.Generator().manual_seed(2))
    kernel, k = task.draw(8, torch.Generator().manual_seed(2))
    assert x.shape == (40, 3, 4, 6) and task.images_per_sample == 5
    assert 1 <= int(k) <= 7 and others.tolist() == [(i + int(k)) % 8 for i in range(8)]
    if random_resize:
        assert len(set(kernel.tolist())) > 1
    for b in range(8):
        ref = reference(images[b], ("area", "bilinear", "bicubic", "nearest")[int(kernel[b])])
        for j in range(5):
            assert torch.allclose(x[5 * b + j], ref[j], atol=1e-5), (b, j)


def test_eq4_loss_hand_case_and_metric():
    task = build_task("count", INFO, count_margin=10.0)
    # image 0: D = (1, 2), tiles sum to (1, 2): own 0; image 1: D = (3, 0), tiles sum to (2, 0): own 1
    phi = torch.tensor([[1.0, 2.0], [1.0, 0], [0, 1.0], [0, 1.0], [0, 0],
                        [3.0, 0], [1.0, 0], [1.0, 0], [0, 0], [0, 0]])
    others = torch.tensor([1, 0])
    # contrast: image 0 vs D of image 1: |(3, 0) - (1, 2)|^2 = 8 -> hinge 2; image 1 vs D of 0: |(1, 2) - (2, 0)|^2 = 5 -> 5
    assert task.loss(phi, others).item() == pytest.approx(((0 + 2) + (1 + 5)) / 2)
    meter = task.new_meter()
    meter.update(phi, others, 4.0)
    stats = meter.compute()
    assert meter.primary == "acc" and stats["acc"] == pytest.approx(100.0) and stats["retrieval"] == pytest.approx(100.0)
    phi[5] = torch.tensor([1.9, 2.0])      # image 1: own |(1.9, 2) - (2, 0)|^2 = 4.01 < 5 (image 0's D): still right
    m = task.new_meter()
    m.update(phi, others)
    assert m.compute()["acc"] == pytest.approx(100.0)
    phi[5] = torch.tensor([0.0, 3.0])      # |(0, 3) - (2, 0)|^2 = 13 > 5: image 1 now closer to image 0
    m = task.new_meter()
    m.update(phi, others)
    assert m.compute()["acc"] == pytest.approx(50.0) and m.compute()["retrieval"] == pytest.approx(50.0)


def test_head_is_a_relu_count_vector_and_loss_drops():
    from search_spaces import get_space
    from search_spaces.darts.supernet import ArchParameters, SearchModel
    torch.manual_seed(0)
    task = build_task("count", INFO, count_dim=32)
    trunk = get_space("darts").build_supernet(3, width=4, depth=3, stem="cifar")
    model = SearchModel(trunk, task.build_head(trunk.out_channels))
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    x, y = task.make_batch(images, None, True, torch.Generator().manual_seed(0))
    arch = ArchParameters()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(3):
        phi = model(x, arch.weights())
        assert phi.shape == (20, 32) and (phi >= 0).all()
        loss = task.loss(phi, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bad_options_are_config_errors():
    for opts in ({"count_margin": 0}, {"count_dim": 0}):
        with pytest.raises(ConfigError, match="task count"):
            build_task("count", INFO, **opts)


def test_search_code_path(tmp_path):
    summary = tiny_search(tmp_path, "count", "TASK.COUNT_DIM", "32")
    assert summary["primary"] == "acc" and summary["task"] == "count"


def test_pretraining_then_linear_probe(tmp_path):
    pre, probe = pretrain_then_probe(tmp_path, "count", "TASK.COUNT_DIM", "32", "TASK.COUNT_RANDOM_RESIZE", "True")
    assert pre["metric"] == "acc" and pre["task"] == "count"
