"""CIFAR-10/100 from python-pickle batches: tiny batches written in tmp_path, bad files, download
failure, and the real cifar10-mini sample (skipped when absent)."""
import pickle

import numpy as np
import pytest
import torch
from fvcore.common.config import CfgNode as CN

from unnas.config import add_data_cfg
from unnas.data import BatchStream, DataError, TensorDataset, build_dataset


def data_cfg(**kw):
    cfg = CN()
    add_data_cfg(cfg)
    for k, v in kw.items():
        setattr(cfg.DATA, k, v)
    return cfg.DATA


def write_batch(path, n, seed, label_key="labels", num_classes=10, **override):
    rng = np.random.default_rng(seed)
    batch = {"batch_label": "test", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             label_key: rng.integers(0, num_classes, n).tolist()}
    batch.update(override)
    with open(path, "wb") as f:
        pickle.dump(batch, f)
    return batch


@pytest.fixture
def cifar10_root(tmp_path):
    root = tmp_path / "cifar10"
    root.mkdir()
    batches = [write_batch(root / f"data_batch_{i}", 6, i) for i in range(1, 6)]
    test = write_batch(root / "test_batch", 4, 99)
    return root, batches, test


def test_cifar10_loads_rgb_planes_and_labels(cifar10_root):
    root, batches, test = cifar10_root
    ds = build_dataset(data_cfg(DATASET="cifar10", ROOT=str(root)), "train")
    assert isinstance(ds, TensorDataset) and len(ds) == 30
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (30, 3, 32, 32)
    # Image 7 = batch 2, row 1: 1024 red values, then green, then blue, each row-major 32x32.
    row = batches[1]["data"][1]
    assert torch.equal(ds.images[7, 0], torch.from_numpy(row[:1024].reshape(32, 32)))
    assert torch.equal(ds.images[7, 2], torch.from_numpy(row[2048:].reshape(32, 32)))
    assert ds.labels.tolist() == sum((b["labels"] for b in batches), [])
    assert ds.info.num_classes == 10 and ds.info.image_size == 32 and not ds.info.dense_labels
    assert ds.info.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
    te = build_dataset(data_cfg(DATASET="cifar10", ROOT=str(root)), "test")
    assert len(te) == 4 and te.labels.tolist() == test["labels"]


def test_cifar10_root_may_contain_the_archive_folder(cifar10_root, tmp_path):
    root, _, _ = cifar10_root
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "cifar-10-batches-py").symlink_to(root)
    assert len(build_dataset(data_cfg(DATASET="cifar10", ROOT=str(parent)), "train")) == 30


def test_cifar10_batches_through_batch_stream(cifar10_root):
    root, _, _ = cifar10_root
    ds = build_dataset(data_cfg(DATASET="cifar10", ROOT=str(root)), "train")
    stream = BatchStream(ds, range(len(ds)), 8, seed=3, stream=0, num_workers=2)
    batches = list(stream.epoch(0))
    assert len(batches) == 3
    x, y = batches[0]
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    again = stream.fetch(0, 0)
    assert torch.equal(again[0], x) and torch.equal(again[1], y)


def test_cifar100_fine_labels(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    train = write_batch(root / "train", 10, 1, label_key="fine_labels", num_classes=100, coarse_labels=[0] * 10)
    write_batch(root / "test", 3, 2, label_key="fine_labels", num_classes=100, coarse_labels=[0] * 3)
    ds = build_dataset(data_cfg(DATASET="cifar100", ROOT=str(tmp_path)), "train")
    assert ds.labels.tolist() == train["fine_labels"] and ds.info.num_classes == 100
    assert len(build_dataset(data_cfg(DATASET="cifar100", ROOT=str(root)), "test")) == 3


def _error(cfg, split="train"):
    with pytest.raises(DataError) as exc:
        build_dataset(cfg, split)
    return str(exc.value)


def test_cifar_bad_data_errors_name_the_file(cifar10_root, tmp_path):
    root, _, _ = cifar10_root
    msg = _error(data_cfg(DATASET="cifar10", ROOT=str(tmp_path / "nowhere")))
    assert "nowhere" in msg and "DATA.ROOT" in msg and "DOWNLOAD" in msg
    assert "DATA.ROOT is empty" in _error(data_cfg(DATASET="cifar10", ROOT=""))

    (root / "data_batch_3").unlink()
    msg = _error(data_cfg(DATASET="cifar10", ROOT=str(root)))
    assert "data_batch_3 not found" in msg and "data_batch_1" in msg
    # The test split only needs test_batch.
    assert len(build_dataset(data_cfg(DATASET="cifar10", ROOT=str(root)), "test")) == 4

    (root / "data_batch_3").write_bytes(b"\x80\x04garbage")
    msg = _error(data_cfg(DATASET="cifar10", ROOT=str(root)))
    assert "data_batch_3" in msg and "not a readable CIFAR-10 pickle" in msg and "re-download" in msg

    write_batch(root / "data_batch_3", 6, 3, data=np.zeros((6, 1024), dtype=np.uint8))
    msg = _error(data_cfg(DATASET="cifar10", ROOT=str(root)))
    assert "data_batch_3" in msg and "(6, 1024)" in msg and "(N, 3072)" in msg

    write_batch(root / "data_batch_3", 6, 3, labels=[0, 1, 2])
    assert "3 labels for 6 images" in _error(data_cfg(DATASET="cifar10", ROOT=str(root)))

    write_batch(root / "data_batch_3", 6, 3, labels=[0, 1, 2, 3, 4, 10])
    assert "0..9" in _error(data_cfg(DATASET="cifar10", ROOT=str(root)))

    with open(root / "data_batch_3", "wb") as f:
        pickle.dump({"data": np.zeros((6, 3072), dtype=np.uint8)}, f)
    assert "no 'labels' entry" in _error(data_cfg(DATASET="cifar10", ROOT=str(root)))

    write_batch(root / "data_batch_3", 6, 3)
    assert "DATA.IM_SIZE" in _error(data_cfg(DATASET="cifar10", ROOT=str(root), IM_SIZE=64))


def test_cifar_download_failure_is_a_data_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    def offline(root, train=True, download=False):
        calls.append((root, download))
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    msg = _error(data_cfg(DATASET="cifar10", ROOT=str(tmp_path / "dl"), DOWNLOAD=True))
    assert calls == [(str(tmp_path / "dl"), True)]
    assert "downloading CIFAR-10" in msg and "network is unreachable" in msg and "cifar-10-python.tar.gz" in msg


def test_cifar10_mini(cifar10_mini):
    ds = build_dataset(data_cfg(DATASET="cifar10", ROOT=str(cifar10_mini)), "train")
    te = build_dataset(data_cfg(DATASET="cifar10", ROOT=str(cifar10_mini)), "test")
    assert (len(ds), len(te)) == (5085, 1017)
    assert sorted(ds.labels.unique().tolist()) == list(range(10))
    # Real photos: the per-channel means are near the published CIFAR-10 statistics.
    mean = ds.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor(ds.info.mean), atol=0.03)
    x, y = BatchStream(ds, range(len(ds)), 64, seed=0, stream=0).fetch(0, 0)
    xa, _ = ds.augment_batch(x, y, torch.Generator().manual_seed(0))
    assert xa.shape == (64, 3, 32, 32) and xa.dtype == torch.uint8
