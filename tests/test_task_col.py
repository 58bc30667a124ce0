"""Colorization: Lab conversion, the 313 ab bins, nearest-bin targets, head, options."""
import hashlib

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from unnas.tasks import DataInfo, build_task
from unnas.tasks import color
from unnas.tasks.col import SoftColorTargets, rebalance_weights

INFO = DataInfo(num_classes=10, image_size=32, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
# sha256 of the published pts_in_hull set (313 x 2, little-endian int64, sorted by a then b)
PTS_IN_HULL_SHA256 = "2a39983ed60d5b52b717842d56d5f766982289e6d5a609582155f437cecc1045"


def _images(b=3, h=20, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def test_bins_derived_match_published_set(tmp_path, monkeypatch):
    monkeypatch.setenv("UNNAS_CACHE", str(tmp_path))
    bins = color.derive_ab_bins()
    assert bins.shape == (313, 2) and bins.dtype == np.int64
    assert bins[:, 0].min() == -90 and bins[:, 0].max() == 100
    assert bins[:, 1].min() == -110 and bins[:, 1].max() == 100
    assert bins[0].tolist() == [-90, 50] and bins[-1].tolist() == [100, 0]
    assert (np.lexsort((bins[:, 1], bins[:, 0])) == np.arange(313)).all()  # sorted by a then b
    assert (bins % 10 == 0).all() and len(np.unique(bins, axis=0)) == 313
    assert hashlib.sha256(bins.astype("<i8").tobytes()).hexdigest() == PTS_IN_HULL_SHA256
    assert np.array_equal(color.ab_bins(), bins)


def test_bins_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("UNNAS_CACHE", str(tmp_path))
    color.ab_bins.cache_clear()
    try:
        bins = color.ab_bins()
        files = list(tmp_path.glob("ab_bins_313_*.npy"))
        assert len(files) == 1 and np.array_equal(np.load(files[0]), bins)
    finally:
        color.ab_bins.cache_clear()


def test_lab_matches_skimage():
    x = _images(4, 16, 18)
    x[0, :, 0, :4] = torch.tensor([[0, 255, 0, 255], [0, 255, 0, 0], [0, 255, 255, 0]], dtype=torch.uint8)
    ours = color.rgb_to_lab(x).numpy()
    ref = np.stack([rgb2lab(im.permute(1, 2, 0).numpy()) for im in x]).transpose(0, 3, 1, 2)
    assert np.abs(ours - ref).max() < 1e-3
    ours_f = color.rgb_to_lab(x.double() / 255, dtype=torch.float64).numpy()  # float input too
    assert np.abs(ours_f - ref).max() < 1e-6


def _brute_nearest(ab, bins):
    d = ((ab[:, None, :].astype(np.float64) - bins[None].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(1)


def test_nearest_bin_exact_against_brute_force():
    bins = color.ab_bins()
    g = torch.Generator().manual_seed(1)
    ab = torch.cat([torch.randn(20000, 2, generator=g) * 60,                      # in and out of gamut
                    torch.randn(2000, 2, generator=g) * 300,                      # far away
                    torch.tensor([[5.0, 5.0], [15.0, -25.0], [0.0, 0.0], [-95.0, 105.0]])])  # ties / edges
    ours = color.nearest_bin(ab).numpy()
    ref = _brute_nearest(ab.numpy().astype(np.float32), bins)
    d_ours = ((ab.numpy()[:, None] - bins[ours][:, None]) ** 2).sum(-1)[:, 0]
    d_ref = ((ab.numpy()[:, None] - bins[ref][:, None]) ** 2).sum(-1)[:, 0]
    assert np.allclose(d_ours, d_ref)             # always a nearest bin
    assert (ours == ref).mean() > 0.9999          # and the same one except exact ties


def test_col_targets_match_per_image_sklearn_reference():
    from sklearn.neighbors import NearestNeighbors
    task = build_task("colorization", INFO)
    x = _images(3, 20, 24)
    inputs, targets = task.make_batch(x, None, True, torch.Generator().manual_seed(0))
    assert inputs.shape == (3, 1, 20, 24) and inputs.dtype == torch.float32
    assert targets.shape == (3, 20, 24) and targets.dtype == torch.int64
    nn_ = NearestNeighbors(n_neighbors=1, algorithm="auto").fit(color.ab_bins())
    l_mean, l_std = np.mean(INFO.mean), np.mean(INFO.std)
    agree = []
    for k in range(3):
        lab = rgb2lab(x[k].permute(1, 2, 0).numpy())
        ref_in = (lab[..., 0] / 100.0 - l_mean) / l_std
        assert np.abs(inputs[k, 0].numpy() - ref_in).max() < 1e-4
        ref_t = nn_.kneighbors(lab[..., 1:].reshape(-1, 2), return_distance=False)[:, 0].reshape(20, 24)
        agree.append((targets[k].numpy() == ref_t).mean())
    assert min(agree) > 0.997  # float32 vs float64 Lab can only flip pixels on a bin boundary


def test_col_head_shape_and_loss():
    task = build_task("col", INFO)
    head = task.build_head(8)
    out = head(torch.randn(2, 8, 5, 6), (20, 24))
    assert out.shape == (2, 313, 20, 24)
    loss = task.loss(out, torch.randint(0, 313, (2, 20, 24)))
    assert torch.isfinite(loss)
    assert task.in_channels == 1 and task.num_outputs == 313


def test_col_soft_encoding_and_rebalance(tmp_path):
    task = build_task("col", INFO, col_soft_encoding=True, col_rebalance=True)
    x = _images(2, 12, 12)
    inputs, t = task.make_batch(x, None, True, None)
    assert isinstance(t, SoftColorTargets)
    assert t.index.shape == (2, 5, 12, 12) and t.weight.shape == (2, 5, 12, 12)
    assert torch.allclose(t.weight.sum(1), torch.ones(2, 12, 12))
    assert torch.equal(t.index[:, 0], t.hard)
    assert torch.equal(t.hard, build_task("col", INFO).make_batch(x, None, True, None)[1])
    assert t.pixel_weight.shape == (2, 12, 12) and (t.pixel_weight > 0).all()
    logits = torch.randn(2, 313, 12, 12, requires_grad=True)
    loss = task.loss(logits, t)
    loss.backward()
    assert torch.isfinite(loss)
    meter = task.new_meter()
    meter.update(logits.detach(), t, float(loss.detach()))
    assert 0 <= meter.compute()["top1"] <= 100
    prior = np.random.default_rng(0).random(313)
    w = rebalance_weights(prior)
    assert w.shape == (313,) and (w > 0).all()
    w_uniform = rebalance_weights(np.ones(313))
    assert torch.allclose(w_uniform, torch.ones(313), atol=0.2)  # near-flat prior -> near-flat weights
    np.save(tmp_path / "prior.npy", prior)
    t2 = build_task("col", INFO, col_rebalance=True, col_prior_file=str(tmp_path / "prior.npy"))
    assert t2.make_batch(x, None, True, None)[1].pixel_weight.shape == (2, 12, 12)
    np.save(tmp_path / "bad.npy", prior[:10])
    with pytest.raises(ValueError, match="313"):
        build_task("col", INFO, col_rebalance=True, col_prior_file=str(tmp_path / "bad.npy"))


def test_rgb_table_fast_path_equals_conversion():
    x = _images(2, 24, 24, seed=5)
    ab = color.rgb_to_lab(x)[:, 1:].permute(0, 2, 3, 1)
    assert torch.equal(color.nearest_bin_rgb(x), color.nearest_bin(ab))
    assert torch.equal(color.rgb_to_lightness(x), color.rgb_to_lab(x)[:, :1])
    task = build_task("col", INFO)
    fast_in, fast_t = task.make_batch(x, None, True, None)
    slow_in, slow_ab = task.lab_input(x)
    assert torch.equal(fast_in, slow_in) and torch.equal(fast_t, color.nearest_bin(slow_ab))
