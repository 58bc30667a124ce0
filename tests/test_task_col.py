"""Colorization: Lab conversion, the 313 ab bins, nearest-bin targets, head, options."""
import hashlib

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from unnas.data import DataInfo
from unnas.tasks import build_task, lab_bins
from unnas.tasks.col import SoftColorTargets, rebalance_weights

INFO = DataInfo(num_classes=10, image_size=32, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
# sha256 of the published pts_in_hull set (313 x 2, little-endian int64, sorted by a then b)
PTS_IN_HULL_SHA256 = "2a39983ed60d5b52b717842d56d5f766982289e6d5a609582155f437cecc1045"


def _images(b=3, h=20, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def test_bins_derived_match_published_set(tmp_path, monkeypatch):
    monkeypatch.setenv("UNNAS_CACHE", str(tmp_path))
    bins = lab_bins.derive_ab_bins()
    assert bins.shape == (313, 2) and bins.dtype == np.int64
    assert bins[:, 0].min() == -90 and bins[:, 0].max() == 100
    assert bins[:, 1].min() == -110 and bins[:, 1].max() == 100
    assert bins[0].tolist() == [-90, 50] and bins[-1].tolist() == [100, 0]
    assert (np.lexsort((bins[:, 1], bins[:, 0])) == np.arange(313)).all()  # sorted by a then b
    assert (bins % 10 == 0).all() and len(np.unique(bins, axis=0)) == 313
    assert hashlib.sha256(bins.astype("<i8").tobytes()).hexdigest() == PTS_IN_HULL_SHA256
    assert np.array_equal(lab_bins.ab_bins(), bins)


def test_bins_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("UNNAS_CACHE", str(tmp_path))
    lab_bins.ab_bins.cache_clear()
    try:
        bins = lab_bins.ab_bins()
        files = list(tmp_path.glob("ab_bins_313_*.npy"))
        assert len(files) == 1 and np.array_equal(np.load(files[0]), bins)
    finally:
        lab_bins.ab_bins.cache_clear()


def test_lab_matches_skimage():
    x = _images(4, 16, 18)
    x[0, :, 0, :4] = torch.tensor([[0, 255, 0, 255], [0, 255, 0, 0], [0, 255, 255, 0]], dtype=torch.uint8)
    ours = lab_bins.rgb_to_lab(x).numpy()
    ref = np.stack([rgb2lab(im.permute(1, 2, 0).numpy()) for im in x]).transpose(0, 3, 1, 2)
    assert np.abs(ours - ref).max() < 1e-3
    ours_f = lab_bins.rgb_to_lab(x.double() / 255, dtype=torch.float64).numpy()  # float input too
    assert np.abs(ours_f - ref).max() < 1e-6


def _brute_nearest(ab, bins):
    d = ((ab[:, None, :].astype(np.float64) - bins[None].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(1)


def test_nearest_bin_exact_against_brute_force():
    bins = lab_bins.ab_bins()
    g = torch.Generator().manual_seed(1)
    ab = torch.cat([torch.randn(20000, 2, generator=g) * 60,                      # in and out of gamut
                    torch.randn(2000, 2, generator=g) * 300,                      # far away
                    torch.tensor([[5.0, 5.0], [15.0, -25.0], [0.0, 0.0], [-95.0, 105.0]])])  # ties / edges
    ours = lab_bins.nearest_bin(ab).numpy()
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
    nn_ = NearestNeighbors(n_neighbors=1, algorithm="auto").fit(lab_bins.ab_bins())
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
    ab = lab_bins.rgb_to_lab(x)[:, 1:].permute(0, 2, 3, 1)
    assert torch.equal(lab_bins.nearest_bin_rgb(x), lab_bins.nearest_bin(ab))
    # L of uint8 input comes from a 3 x 256 LUT + one cube root: the same values to float rounding
    assert torch.allclose(lab_bins.rgb_to_lightness(x), lab_bins.rgb_to_lab(x)[:, :1], rtol=0, atol=3e-5)
    task = build_task("col", INFO)
    fast_in, fast_t = task.make_batch(x, None, True, None)
    slow_in, slow_ab = task.lab_input(x)
    assert fast_in.shape == slow_in.shape == (2, 1, 24, 24) and fast_in.dtype == torch.float32
    assert torch.allclose(fast_in, slow_in, rtol=0, atol=2e-6) and torch.equal(fast_t, lab_bins.nearest_bin(slow_ab))


def _sample_colours(n=20000, seed=7):
    """uint8 (m, 3, 1, 1): the 8 cube corners, every grey, the 12 cube edges every 15 levels, n random."""
    lv = list(range(0, 256, 15)) + [255]
    pts = [(r, g, b) for r in (0, 255) for g in (0, 255) for b in (0, 255)]
    pts += [(v, v, v) for v in range(256)]
    for axis in range(3):
        for u in (0, 255):
            for w in (0, 255):
                for v in lv:
                    p = [u, w]
                    p.insert(axis, v)
                    pts.append(tuple(p))
    rand = torch.randint(0, 256, (n, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return torch.cat([torch.tensor(pts, dtype=torch.uint8), rand])[:, :, None, None]


def test_rgb_table_is_exact_nearest_bin_on_sample():
    """The per-colour table gives exactly the converted colour's nearest bin (same float32 Lab),
    and the float64 nearest bin except where two bins are equally near (float ties)."""
    rgb = _sample_colours()
    table = lab_bins.rgb_bin_table("cpu")
    assert table.shape == (1 << 24,) and table.dtype == torch.int16
    codes = (rgb[:, 0, 0, 0].long() << 16) | (rgb[:, 1, 0, 0].long() << 8) | rgb[:, 2, 0, 0].long()
    looked_up = table[codes].long()
    assert torch.equal(lab_bins.nearest_bin_rgb(rgb)[:, 0, 0], looked_up)
    assert torch.equal(looked_up, lab_bins.nearest_bin(lab_bins.rgb_to_lab(rgb)[:, 1:, 0, 0]))
    ab64 = lab_bins.rgb_to_lab(rgb.double() / 255, dtype=torch.float64)[:, 1:, 0, 0].numpy()
    bins = lab_bins.ab_bins().astype(np.float64)
    d = ((ab64[:, None, :] - bins[None]) ** 2).sum(-1)
    ref = d.argmin(1)
    ours = looked_up.numpy()
    rows = np.arange(len(ours))
    assert np.allclose(d[rows, ours], d[rows, ref], rtol=0, atol=1e-3)  # always a nearest bin
    assert (ours == ref).mean() > 0.999


def test_uint8_lightness_lut_matches_float64():
    rgb = _sample_colours()
    ref = lab_bins.rgb_to_lab(rgb.double() / 255, dtype=torch.float64)[:, :1]
    ours = lab_bins.rgb_to_lightness(rgb)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    assert (ours.double() - ref).abs().max() < 2e-5          # float32 rounding of L in [0, 100]
    ours64 = lab_bins.rgb_to_lightness(rgb, dtype=torch.float64)
    assert (ours64 - ref).abs().max() < 1e-9
    # both branches of f: below and above Y = 0.008856 (L ~ 8), and the normalisation folded in
    x, t = lab_bins.lightness_and_bins(rgb, scale=0.5, shift=-3.0)
    assert torch.allclose(x.double(), ref * 0.5 - 3.0, rtol=0, atol=2e-5)
    assert (ref < 7).any() and (ref > 9).any()
    assert torch.equal(t, lab_bins.nearest_bin_rgb(rgb))


def test_lightness_and_bins_layouts():
    x = _images(3, 10, 14, seed=3)
    l_ref, t_ref = lab_bins.lightness_and_bins(x)
    # (L equal to float rounding only: a vectorised pow may round a loop's tail differently)
    l_cl, t_cl = lab_bins.lightness_and_bins(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(l_cl, l_ref, rtol=0, atol=1e-5) and torch.equal(t_cl, t_ref)
    l1, t1 = lab_bins.lightness_and_bins(x[1])                      # unbatched (3, H, W)
    assert torch.allclose(l1, l_ref[1], rtol=0, atol=1e-5) and torch.equal(t1, t_ref[1])
    l5, t5 = lab_bins.lightness_and_bins(x.view(1, 3, 3, 10, 14))   # extra leading dims
    assert torch.allclose(l5[0], l_ref, rtol=0, atol=1e-5) and torch.equal(t5[0], t_ref)
    l0, t0 = lab_bins.lightness_and_bins(x[:0])                     # empty batch
    assert l0.shape == (0, 1, 10, 14) and t0.shape == (0, 10, 14)
    with pytest.raises(ValueError):
        lab_bins.lightness_and_bins(x.float())


def test_lightness_and_bins_cpu_tiles(monkeypatch):
    """Tiles of whole images (a CPU memory bound) give the same result as the batch at once."""
    x = _images(7, 12, 10, seed=4)
    monkeypatch.setattr(lab_bins, "_CPU_TILE_PIXELS", 1 << 30)
    l_all, t_all = lab_bins.lightness_and_bins(x, scale=0.02, shift=-1.5)
    for tile in (1, 250, 3 * 120):          # 1 image per tile, 2 images, 3 images (uneven tail)
        monkeypatch.setattr(lab_bins, "_CPU_TILE_PIXELS", tile)
        l_t, t_t = lab_bins.lightness_and_bins(x, scale=0.02, shift=-1.5)
        assert torch.allclose(l_t, l_all, rtol=0, atol=1e-6) and torch.equal(t_t, t_all)
        assert torch.equal(lab_bins.nearest_bin_rgb(x), t_all)
        assert torch.allclose(lab_bins.rgb_to_lightness(x), (l_all + 1.5) / 0.02, rtol=0, atol=1e-4)


def test_rgb_table_cache_rebuilt_when_corrupt(tmp_path, monkeypatch):
    real = lab_bins.rgb_bin_table("cpu").clone()     # from the usual cache (built there once)
    monkeypatch.setenv("UNNAS_CACHE", str(tmp_path))
    builds = []

    def fake_build(device):
        builds.append(device)
        return real.clone()

    monkeypatch.setattr(lab_bins, "_build_rgb_bin_table", fake_build)
    path = tmp_path / f"rgb_bin_table_v{lab_bins._BINS_VERSION}.npy"
    assert torch.equal(lab_bins._cached_rgb_bin_table(), real) and len(builds) == 1   # missing: built, saved
    assert path.is_file() and not list(tmp_path.glob(".*.tmp"))
    assert torch.equal(lab_bins._cached_rgb_bin_table(), real) and len(builds) == 1   # valid: loaded
    path.write_bytes(path.read_bytes()[:1000])                                      # truncated
    assert torch.equal(lab_bins._cached_rgb_bin_table(), real) and len(builds) == 2
    np.save(path, ((real.long() + 1) % 313).to(torch.int16).numpy())                # plausible but wrong
    assert torch.equal(lab_bins._cached_rgb_bin_table(), real) and len(builds) == 3
    np.save(path, real.numpy().astype(np.int32))                                    # wrong dtype
    assert torch.equal(lab_bins._cached_rgb_bin_table(), real) and len(builds) == 4
    assert torch.equal(torch.from_numpy(np.load(path)), real)
