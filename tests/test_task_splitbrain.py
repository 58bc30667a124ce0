"""Split-brain: Lab inputs and both directions' targets against a per-image brute-force reference,
the summed cross-entropy on a hand case, the metric, the split trunk (each sub-network reads only
its channels; shared alphas), and the search and train code paths (a probe keeps the split)."""
import math

import numpy as np
import pytest
import torch

from pretext_paths import pretrain_then_probe, tiny_search
from search_spaces import get_space
from search_spaces.darts.supernet import ArchParameters, SearchModel
from search_spaces.split import SplitTrunk, check_groups, split_width
from unnas.data import DataInfo
from unnas.tasks import build_task
from unnas.tasks.lab_bins import ab_bins, rgb_to_lab
from unnas.tasks.splitbrain import SplitBrainTargets

INFO = DataInfo(num_classes=10, image_size=8, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def test_inputs_and_targets_match_per_image_reference():
    task = build_task("split_brain", INFO, splitbrain_l_bins=50)
    images = torch.randint(0, 256, (3, 3, 6, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x, y = task.make_batch(images, None, True, None)
    assert x.shape == (3, 3, 6, 5) and y.ab.shape == (3, 6, 5) and y.l.shape == (3, 6, 5)
    bins = torch.as_tensor(ab_bins(), dtype=torch.float64)
    l_mean, l_std = float(np.mean(INFO.mean)), float(np.mean(INFO.std))
    for b in range(3):
        lab = rgb_to_lab(images[b], torch.float64)                 # the conversion the col task tests vs skimage
        for i in range(6):
            for j in range(5):
                L, a, bb = (float(v) for v in lab[:, i, j])
                assert x[b, 0, i, j].item() == pytest.approx((L / 100 - l_mean) / l_std, abs=1e-4)
                assert x[b, 1, i, j].item() == pytest.approx(a / 110, abs=1e-5)
                assert x[b, 2, i, j].item() == pytest.approx(bb / 110, abs=1e-5)
                d = ((bins - torch.tensor([a, bb], dtype=torch.float64)) ** 2).sum(1)
                assert d[y.ab[b, i, j]] <= d.min() + 1e-6         # nearest bin (ties: either)
                assert y.l[b, i, j].item() == min(math.floor(L / 100 * 50), 49)
    assert torch.equal(task.make_input(images), x)
    white = task.make_batch(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8), None, False, None)[1]
    assert (white.l == 49).all()                                    # L = 100 falls in the last bin


def test_summed_cross_entropy_hand_case_and_metric():
    task = build_task("splitbrain", INFO, splitbrain_l_bins=10)
    assert task.num_outputs == 323
    logits = torch.zeros(1, 323, 2, 2)
    y = SplitBrainTargets(torch.tensor([[[0, 1], [2, 3]]]), torch.tensor([[[0, 1], [2, 3]]]))
    assert task.loss(logits, y).item() == pytest.approx(math.log(313) + math.log(10), rel=1e-6)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = 5.0                  # ab right on 2 of 4 pixels
    logits[0, 313 + 0, 0, 0] = logits[0, 313 + 1, 0, 1] = logits[0, 313 + 2, 1, 0] = 5.0   # L right on 3 of 4
    meter = task.new_meter()
    meter.update(logits, y, 1.5)
    stats = meter.compute()
    assert meter.primary == "top1" and stats["ab_top1"] == pytest.approx(50.0) and stats["l_top1"] == pytest.approx(75.0)
    assert stats["top1"] == pytest.approx(62.5) and stats["loss"] == pytest.approx(1.5)


def test_split_trunk_reads_only_its_channels_with_shared_alphas():
    torch.manual_seed(0)
    task = build_task("splitbrain", INFO)
    space = get_space("darts")
    groups = task.input_groups
    assert check_groups(groups, 3) == ((0,), (1, 2)) and split_width(4, groups) == 2
    with pytest.raises(ValueError):
        split_width(5, groups)
    trunk = SplitTrunk([space.build_supernet(len(g), 2, 3, "cifar") for g in groups], groups)
    model = SearchModel(trunk, task.build_head(trunk.out_channels)).eval()
    half = trunk.out_channels // 2
    arch = ArchParameters()
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    x, y = task.make_batch(images, None, True, None)
    with torch.no_grad():
        f = trunk(x, arch.weights())
        x2 = x.clone()
        x2[:, 1:] += 0.5                                           # change ab only
        f2 = trunk(x2, arch.weights())
    assert torch.equal(f[:, :half], f2[:, :half]) and not torch.equal(f[:, half:], f2[:, half:])
    assert model(x, arch.weights()).shape == (2, 313 + 50, 8, 8)
    drop = trunk.skip_dropout                                       # P-DARTS reaches both sub-networks
    drop.p = 0.3
    assert all(t.skip_dropout.p == 0.3 for t in trunk.trunks) and drop.p == 0.3
    drop.p = 0.0
    w = arch.weights()                                              # one set of alphas drives both sub-networks
    f = trunk(x, w)
    g1 = torch.autograd.grad(f[:, :half].sum(), [arch.alpha_normal], retain_graph=True)[0]
    g2 = torch.autograd.grad(f[:, half:].sum(), [arch.alpha_normal])[0]
    assert g1.abs().sum() > 0 and g2.abs().sum() > 0 and not torch.allclose(g1, g2)


def test_search_code_path(tmp_path):
    summary = tiny_search(tmp_path, "splitbrain", "TASK.SPLITBRAIN_L_BINS", "10", "SEARCH.BATCH_SIZE", "4")
    assert summary["primary"] == "top1" and summary["task"] == "splitbrain"


def test_pretraining_then_linear_probe_keeps_the_split(tmp_path):
    from unnas.config import load_cfg
    from unnas.train import Trainer, train_defaults, validate_train_cfg
    from pretext_paths import TRAIN_TINY
    pre, probe = pretrain_then_probe(tmp_path, "splitbrain", "TASK.SPLITBRAIN_L_BINS", "10")
    assert pre["metric"] == "top1" and pre["task"] == "splitbrain"
    cfg = load_cfg(train_defaults(), None, TRAIN_TINY + ["TASK.NAME", "cls", "TRAIN.INIT_FROM",
                                                         str(tmp_path / "pre" / "checkpoint_last.pt"),
                                                         "TRAIN.LINEAR_PROBE", "True"], validate_train_cfg)
    t = Trainer(cfg, tmp_path / "again", tensorboard=False)
    assert isinstance(t.model.trunk, SplitTrunk) and t.input_task is not None
    x, _ = t.prepare(next(iter(t.train_stream.epoch(0))), True, 0, 0)
    assert x.shape[1] == 3 and t.model.trunk.in_channels == 3          # full Lab in, L and ab routed apart
