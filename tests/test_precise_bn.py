"""Precise BN (TRAIN.PRECISE_BN_IMAGES, the release's BN.USE_PRECISE_STATS) and DATA.TRAIN_OFFSET."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from unnas.config import ConfigError, load_cfg
from unnas.search import Searcher
from unnas.search.config import search_defaults, validate_search_cfg
from unnas.train import Trainer, evaluate_checkpoint, train, train_defaults, validate_train_cfg
from unnas.train.precise_bn import precise_bn_stats

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py

TINY = ["DATA.SYNTHETIC.NUM_TRAIN", "32", "DATA.SYNTHETIC.NUM_TEST", "16", "DATA.MAX_TRAIN", "32",
        "DATA.MAX_TEST", "16", "MODEL.WIDTH", "4", "MODEL.DEPTH", "2", "TRAIN.BATCH_SIZE", "8",
        "TRAIN.EPOCHS", "2", "DEVICE", "cpu"]


def tiny_cfg(*extra):
    return load_cfg(train_defaults(), None, TINY + list(extra), validate_train_cfg)


# ---- the function ------------------------------------------------------------------------------
def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 5, 3), nn.BatchNorm2d(5, momentum=None, affine=False),   # cumulative average
                         nn.Conv2d(5, 2, 1), nn.BatchNorm2d(2))                                # left in eval mode


def _reference(model, batches):
    """pycls compute_precise_bn_stats written out: per-batch mean and (unbiased, as BN's running_var)
    variance of each BN layer's input in training mode; mean of the means, mean E[x^2] - mean^2."""
    conv1, bn1, _, conv2 = model[:4]
    out = {1: [], 4: []}
    for x in batches:
        h1 = conv1(x)
        h2 = conv2(F.relu(F.batch_norm(h1, None, None, bn1.weight, bn1.bias, training=True)))
        for k, h in ((1, h1), (4, h2)):
            out[k].append((h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=True)))
    ref = {}
    for k, stats in out.items():
        mean = torch.stack([m for m, _ in stats]).mean(0)
        sq = torch.stack([v + m * m for m, v in stats]).mean(0)
        ref[k] = (mean, sq - mean * mean)
    return ref


def test_precise_bn_stats_against_a_plain_reference():
    model = _model()
    model.train()
    model[6].eval()
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(6, 3, 8, 8, generator=g) * (1 + k) + k for k in range(4)]
    params = {k: v.clone() for k, v in model.named_parameters()}
    frozen = (model[6].running_mean.clone(), model[6].running_var.clone())
    tracked = [model[i].num_batches_tracked.clone() for i in (1, 4)]
    with torch.no_grad():
        ref = _reference(model, batches[:3])

    used = precise_bn_stats(model, iter(batches), 3)      # the 4th batch is not read
    assert used == 3
    for k in (1, 4):
        assert torch.allclose(model[k].running_mean, ref[k][0], atol=1e-5), k
        assert torch.allclose(model[k].running_var, ref[k][1], atol=1e-5), k
    assert model[1].momentum == 0.1 and model[4].momentum is None              # momenta back
    assert [model[i].num_batches_tracked for i in (1, 4)] == tracked
    assert torch.equal(model[6].running_mean, frozen[0]) and torch.equal(model[6].running_var, frozen[1])
    assert all(torch.equal(v, params[k]) for k, v in model.named_parameters())  # no parameter update

    # a failing forward leaves the statistics as they were
    before = model[1].running_mean.clone()

    def failing():
        yield batches[0]
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        precise_bn_stats(model, failing(), 3)
    assert torch.equal(model[1].running_mean, before) and model[1].momentum == 0.1
    assert precise_bn_stats(model, iter([]), 3) == 0 and torch.equal(model[1].running_mean, before)


# ---- in the trainer ----------------------------------------------------------------------------
def _calls(monkeypatch):
    calls = []
    orig = Trainer.recompute_bn_stats

    def counted(self, epoch):
        calls.append((epoch, orig(self, epoch)))
        return calls[-1][1]
    monkeypatch.setattr(Trainer, "recompute_bn_stats", counted)
    return calls


def test_trainer_precise_bn_changes_evaluation_not_training(tmp_path, monkeypatch):
    calls = _calls(monkeypatch)
    common = ["MODEL.DROP_PATH", "0.3", "TRAIN.CUTOUT", "4", "TRAIN.EVAL_PERIOD", "2"]
    off = train(tiny_cfg(*common), out_dir=tmp_path / "off", progress=False, tensorboard=False)
    assert calls == []
    on = train(tiny_cfg(*common, "TRAIN.PRECISE_BN_IMAGES", "16"), out_dir=tmp_path / "on", progress=False,
               tensorboard=False)
    assert calls == [(1, 2)]           # before the only evaluation; 16 images // batch 8 = 2 batches
    for a, b in zip(off["curve"], on["curve"]):
        assert {k: v for k, v in a.items() if k.startswith("train_")} == \
               {k: v for k, v in b.items() if k.startswith("train_")}       # training draws nothing more
    assert "test_loss" not in on["curve"][0]
    assert off["final_test"]["loss"] != on["final_test"]["loss"]
    # the checkpoint holds the precise statistics: evaluating it gives the run's last evaluation
    ev = evaluate_checkpoint(tmp_path / "on" / "checkpoint_last.pt")
    assert ev["loss"] == pytest.approx(on["final_test"]["loss"], rel=1e-5)
    # fewer images than one batch is one line
    with pytest.raises(ConfigError, match="TRAIN.PRECISE_BN_IMAGES 4 is less than one batch") as e:
        tiny_cfg("TRAIN.PRECISE_BN_IMAGES", "4")
    assert "\n" not in str(e.value)


def test_exact_resume_with_precise_bn(tmp_path):
    cfg = tiny_cfg("MODEL.AUX", "True", "MODEL.DROP_PATH", "0.3", "TRAIN.CUTOUT", "4", "TRAIN.PRECISE_BN_IMAGES", "1024")
    straight = train(cfg, out_dir=tmp_path / "a", progress=False, tensorboard=False)
    part = train(cfg, out_dir=tmp_path / "b", progress=False, tensorboard=False, stop_after=1)
    assert part["epochs"] == 1
    resumed = train(cfg, out_dir=tmp_path / "b", progress=False, tensorboard=False, resume=True)
    strip = [{k: v for k, v in rec.items() if k != "epoch_seconds"} for rec in straight["curve"]]
    assert strip == [{k: v for k, v in rec.items() if k != "epoch_seconds"} for rec in resumed["curve"]]
    a = torch.load(tmp_path / "a" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


# ---- DATA.TRAIN_OFFSET -------------------------------------------------------------------------
def test_train_offset_selects_a_disjoint_subset(tmp_path):
    def trainer_indices(offset):
        t = Trainer(tiny_cfg("DATA.MAX_TRAIN", "8", "DATA.TRAIN_OFFSET", str(offset)), None, tensorboard=False)
        assert t.n_train == 8 and t.bn_stream.indices.tolist() == t.train_stream.indices.tolist()
        return set(t.train_stream.indices.tolist())

    assert trainer_indices(0) == set(range(8)) and trainer_indices(8) == set(range(8, 16))
    with pytest.raises(ConfigError) as e:
        Trainer(tiny_cfg("DATA.TRAIN_OFFSET", "32"), None, tensorboard=False)
    assert "DATA.TRAIN_OFFSET 32" in str(e.value) and "has 32" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="DATA.TRAIN_OFFSET must be >= 0"):
        tiny_cfg("DATA.TRAIN_OFFSET", "-1")

    # the search: positions [offset, offset + MAX_TRAIN) of its DATA.SPLIT_SEED shuffle
    def searcher_indices(offset):
        cfg = load_cfg(search_defaults(), None, [
            "MODEL.WIDTH", "4", "MODEL.DEPTH", "2", "SEARCH.BATCH_SIZE", "4", "SEARCH.EPOCHS", "1", "TASK.NAME", "cls",
            "DATA.SYNTHETIC.NUM_TRAIN", "32", "DATA.SYNTHETIC.NUM_TEST", "8", "DATA.MAX_TRAIN", "8",
            "DATA.TRAIN_OFFSET", str(offset), "DEVICE", "cpu"], validate_search_cfg)
        s = Searcher(cfg, tmp_path / f"s{offset}")
        return s.weight_idx + s.arch_idx

    s0, s8 = searcher_indices(0), searcher_indices(8)
    assert len(s0) == len(s8) == 8 and not set(s0) & set(s8)
