"""Jigsaw: permutation sets, tile geometry, batched tiles vs a per-image reference, head."""
import itertools

import numpy as np
import pytest
import torch

from unnas.data import DataInfo
from unnas.tasks import build_task
from unnas.tasks.jig import JigsawTask, tile_geometry
from unnas.tasks.permutations import (PermutationFileError, hamming_stats, max_min_hamming,
                                      permutation_set)

CIFAR = DataInfo(num_classes=10, image_size=32, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
BIG = DataInfo(num_classes=0, image_size=96, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNNAS_CACHE", str(tmp_path / "cache"))


def _images(b, s, seed=0):
    return torch.randint(0, 256, (b, 3, s, s), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_geometry():
    assert tile_geometry(32, 2) == (16, 12)
    assert tile_geometry(255, 3) == (85, 64)
    assert tile_geometry(321, 3) == (107, 81)


def test_grid2_permutations_lexicographic():
    p = permutation_set(2)
    assert p.shape == (24, 4) and p.dtype == np.int64
    assert p.tolist() == [list(q) for q in itertools.permutations(range(4))]
    assert p[0].tolist() == [0, 1, 2, 3] and p[-1].tolist() == [3, 2, 1, 0]


def test_grid3_max_min_hamming(tmp_path):
    p = permutation_set(3, num_perms=60, seed=3)
    assert p.shape == (60, 9) and p.dtype == np.int64
    assert len(np.unique(p, axis=0)) == 60
    assert (np.sort(p, 1) == np.arange(9)).all()
    stats = hamming_stats(p)
    assert stats["min"] >= 6  # greedy max-min on 9 tiles; the release's 1000-set has min 2
    # greedy property: every added permutation is at least as far from its predecessors as any
    # later one is (the minimum distance to the chosen set never increases)
    d = (p[:, None] != p[None]).sum(-1)
    mins = [d[k, :k].min() for k in range(1, 60)]
    assert all(a >= b for a, b in zip(mins, mins[1:]))
    # deterministic from the seed, cached on disk, different seeds differ
    assert np.array_equal(p, max_min_hamming(9, 60, seed=3))
    assert list((tmp_path / "cache").glob("jigsaw_perms_g3_n60_seed3_*.npy"))
    assert np.array_equal(permutation_set(3, num_perms=60, seed=3), p)
    assert not np.array_equal(permutation_set(3, num_perms=60, seed=4), p)


def test_perms_file_loading_and_errors(tmp_path):
    good = max_min_hamming(9, 10, seed=0)
    np.save(tmp_path / "good.npy", good)
    task = build_task("jigsaw", BIG, jigsaw_perms_file=str(tmp_path / "good.npy"))
    assert task.grid == 3 and task.num_outputs == 10
    assert torch.equal(task.perms_cpu, torch.as_tensor(good))
    bad = {"shape": good[:, :4], "dup": np.concatenate([good, good[:1]]),
           "notperm": np.where(good == 8, 0, good)}
    for name, arr in bad.items():
        np.save(tmp_path / f"{name}.npy", arr)
        with pytest.raises(PermutationFileError) as exc:
            build_task("jig", BIG, jigsaw_perms_file=str(tmp_path / f"{name}.npy"))
        assert "\n" not in str(exc.value)
    with pytest.raises(PermutationFileError):
        build_task("jig", BIG, jigsaw_perms_file=str(tmp_path / "missing.npy"))


def _reference(task, images, gray, offsets, index):
    """Per-image, per-tile loops (the release's recipe) for the same random choices."""
    g = task.grid
    patch, tile = tile_geometry(images.shape[-1], g)
    mean = torch.tensor(task.data.mean, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(task.data.std, dtype=torch.float64).view(3, 1, 1)
    perms = task.perms_cpu.numpy()
    all_tiles, labels = [], []
    for b in range(images.shape[0]):
        im = images[b].double()
        if gray[b]:
            lum = 0.2125 * im[0] + 0.7154 * im[1] + 0.0721 * im[2]
            im = lum.expand(3, -1, -1)
        im = (im / 255.0 - mean) / std
        out = [None] * (g * g)
        perm = perms[int(index[b])]
        for k in range(g * g):
            i, j = divmod(k, g)
            dy, dx = int(offsets[b, k, 0]), int(offsets[b, k, 1])
            y0, x0 = i * patch + dy, j * patch + dx
            t = im[:, y0:y0 + tile, x0:x0 + tile]
            t = (t - t.mean()) / t.std(unbiased=False)
            out[perm[k]] = t
        all_tiles.append(torch.stack(out))
        labels.append(int(index[b]))
    return torch.stack(all_tiles).flatten(0, 1).float(), torch.tensor(labels)


@pytest.mark.parametrize("info,grid,gray_prob", [(CIFAR, 0, 0.5), (BIG, 3, 0.3), (BIG, 2, 0.0)])
def test_batched_equals_reference(info, grid, gray_prob):
    task = build_task("jig", info, jigsaw_grid=grid, jigsaw_num_perms=30, gray_prob=gray_prob)
    x = _images(6, info.image_size)
    gen = torch.Generator().manual_seed(7)
    inputs, targets = task.make_batch(x, None, True, gen)
    g2 = task.grid ** 2
    patch, tile = tile_geometry(info.image_size, task.grid)
    assert inputs.shape == (6 * g2, 3, tile, tile) and targets.shape == (6,)
    assert task.images_per_sample == g2
    # the same draws, replayed
    gray, offsets, index = task.draw(6, info.image_size, True, torch.Generator().manual_seed(7))
    assert offsets.min() >= 0 and offsets.max() <= patch - tile
    if gray_prob >= 0.5:
        assert gray.any() and not gray.all()   # both paths exercised
    ref_in, ref_t = _reference(task, x, gray, offsets, index)
    assert torch.equal(targets, ref_t)
    assert torch.allclose(inputs, ref_in, atol=1e-4)


def test_unshuffle_by_label_restores_grid():
    """Undo the permutation named by the label: the tiles come back in grid order, each the
    normalised crop of its own grid cell at the drawn offset (mosaic == reference mosaic)."""
    task = build_task("jig", CIFAR, gray_prob=0.0)
    x = _images(4, 32, seed=3)
    gray, offsets, index = task.draw(4, 32, True, torch.Generator().manual_seed(1))
    inputs, labels = task.build(x, gray, offsets, index)
    tiles = inputs.view(4, 4, 3, 12, 12)
    norm = task.normalize(x)
    for b in range(4):
        perm = task.perms_cpu[int(labels[b])]
        restored = tiles[b, perm]               # tile k sits in slot perm[k]
        mosaic = torch.cat([torch.cat([restored[2 * i + j] for j in range(2)], -1) for i in range(2)], -2)
        ref = []
        for k in range(4):
            i, j = divmod(k, 2)
            y0, x0 = 16 * i + int(offsets[b, k, 0]), 16 * j + int(offsets[b, k, 1])
            c = norm[b, :, y0:y0 + 12, x0:x0 + 12]
            ref.append((c - c.mean()) / c.std(unbiased=False))
        ref_mosaic = torch.cat([torch.cat([ref[2 * i + j] for j in range(2)], -1) for i in range(2)], -2)
        assert torch.allclose(mosaic, ref_mosaic, atol=1e-4)
    # with zero jitter the mosaic is the image's own tiles at the grid corners
    zero = torch.zeros_like(offsets)
    inputs0, _ = task.build(x, gray, zero, torch.zeros_like(index))   # identity permutation
    t0 = inputs0.view(4, 4, 3, 12, 12)[0, 3]
    c = norm[0, :, 16:28, 16:28]
    assert torch.allclose(t0, (c - c.mean()) / c.std(unbiased=False), atol=1e-4)


def test_determinism_and_test_time():
    task = build_task("jig", CIFAR)
    x = _images(5, 32)
    a = task.make_batch(x, None, False, torch.Generator().manual_seed(0))
    b = task.make_batch(x, None, False, torch.Generator().manual_seed(0))
    c = task.make_batch(x, None, False, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    gray, _, _ = task.draw(1000, 32, False, torch.Generator().manual_seed(0))
    assert not gray.any()                          # grey only at training time
    gray, _, index = task.draw(4000, 32, True, torch.Generator().manual_seed(0))
    assert 0.27 < gray.float().mean() < 0.33       # default gray_prob 0.3
    assert set(index.tolist()) == set(range(24))


def test_head_shape_and_defaults():
    task = build_task("jig", CIFAR)
    assert isinstance(task, JigsawTask) and task.grid == 2 and task.num_outputs == 24
    head = task.build_head(16)
    out = head(torch.randn(3 * 4, 16, 3, 3))
    assert out.shape == (3, 24) and head.fc.in_features == 64
    # slot-major concatenation: slot s's features occupy columns s*C:(s+1)*C
    feats = torch.zeros(4, 16, 1, 1)
    feats[2] = 1.0
    with torch.no_grad():
        head.fc.weight.zero_(); head.fc.bias.zero_(); head.fc.weight[0, 32:48] = 1.0
    assert head(feats)[0, 0].item() == pytest.approx(16.0)
    big = build_task("jig", BIG, jigsaw_num_perms=20)
    assert big.grid == 3 and big.num_outputs == 20 and big.images_per_sample == 9
