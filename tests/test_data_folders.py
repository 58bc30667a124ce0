"""File-backed classification sets (imagefolder, imagenet, imagenet22k) on tiny trees written in
tmp_path: shapes, labels, deterministic augmentation, loader workers, bad data and skipping of
unreadable images."""
import logging

import numpy as np
import pytest
import torch
from fvcore.common.config import CfgNode as CN
from PIL import Image

from unnas.config import add_data_cfg
from unnas.data import BatchStream, DataError, build_dataset
from unnas.data.imagefolder import FileDataset, centre_box, inception_crop_box, unreadable_images
from unnas.data.imagenet import build_imagenet22k


def data_cfg(**kw):
    cfg = CN()
    add_data_cfg(cfg)
    for k, v in kw.items():
        setattr(cfg.DATA, k, v)
    return cfg.DATA


def write_image(path, seed, size=(48, 40), fmt=None):
    """A random-ish 48x40 (w x h) RGB picture; the red channel's mean encodes ``seed``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return arr


def make_tree(root, classes, per_class, ext=".jpg", offset=0):
    for ci, c in enumerate(classes):
        for j in range(per_class):
            write_image(root / c / f"{c}_{j}{ext if j % 2 == 0 else '.png'}", offset + 100 * ci + j)


@pytest.fixture
def folder_root(tmp_path):
    root = tmp_path / "pets"
    make_tree(root / "train", ["cat", "dog", "emu"], 4)
    make_tree(root / "val", ["cat", "emu"], 2, offset=1000)   # a class may be absent from val
    return root


def _err(fn, *args, **kw):
    with pytest.raises(DataError) as exc:
        fn(*args, **kw)
    return str(exc.value)


def test_imagefolder_shapes_labels_and_determinism(folder_root):
    cfg = data_cfg(DATASET="imagefolder", ROOT=str(folder_root), IM_SIZE=32, TEST_IM_SIZE=36)
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert isinstance(train, FileDataset) and not train.in_memory
    assert (len(train), len(test)) == (12, 4)
    assert train.info.num_classes == 3 and train.info.image_size == 32
    assert train.info.mean == (0.485, 0.456, 0.406) and train.info.std == (0.229, 0.224, 0.225)
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert test.labels.tolist() == [0, 0, 2, 2]      # ids follow the training classes
    x, y = train[(5, 123)]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and y == 1
    assert torch.equal(train[(5, 123)][0], x)                       # same seed, same crop
    assert any(not torch.equal(train[(5, s)][0], x) for s in range(5))  # other seeds differ
    t1, t2 = test[(1, 0)][0], test[(1, 99)][0]
    assert t1.shape == (3, 32, 32) and torch.equal(t1, t2)          # test transform is not random


def test_test_transform_is_resize_then_centre_crop(tmp_path):
    root = tmp_path / "f"
    arr = write_image(root / "train" / "a" / "x.png", 0, size=(80, 60))
    write_image(root / "val" / "a" / "x.png", 0, size=(80, 60))
    ds = build_dataset(data_cfg(DATASET="imagefolder", ROOT=str(root), IM_SIZE=24, TEST_IM_SIZE=30), "test")
    # Reference: resize 80x60 -> 40x30, then crop the central 24x24.
    big = np.array(Image.fromarray(arr).resize((40, 30), Image.BILINEAR)).astype(int)
    ref = big[3:27, 8:32].transpose(2, 0, 1)
    diff = np.abs(ds[0][0].numpy().astype(int) - ref)
    assert diff.mean() < 4
    assert centre_box(80, 60, 30, 24) == pytest.approx((16.0, 6.0, 64.0, 54.0))


def test_inception_crop_box_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = inception_crop_box(48, 40, rng)
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 40
        assert 0.08 * 48 * 40 * 0.8 <= (x1 - x0) * (y1 - y0)
    # Impossible aspect range: every try fails, so the centre square is used.
    assert inception_crop_box(100, 10, rng, area=(1.0, 1.0), aspect=(1.0, 1.0)) == (45, 0, 55, 10)


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_stream_is_deterministic_across_workers(folder_root, workers):
    ds = build_dataset(data_cfg(DATASET="imagefolder", ROOT=str(folder_root), IM_SIZE=32), "train")
    ref = list(BatchStream(ds, range(12), 4, seed=7, stream=0, num_workers=0).epoch(1))
    got = list(BatchStream(ds, range(12), 4, seed=7, stream=0, num_workers=workers).epoch(1))
    assert len(got) == 3
    for (xa, ya), (xb, yb) in zip(ref, got):
        assert xb.shape == (4, 3, 32, 32) and xb.dtype == torch.uint8 and yb.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sorted(torch.cat([y for _, y in got]).tolist()) == ds.labels.tolist()


def test_imagefolder_unlabelled_and_single_folder(tmp_path):
    flat = tmp_path / "flat"
    for i in range(3):
        write_image(flat / f"img{i}.jpg", i)
    ds = build_dataset(data_cfg(DATASET="imagefolder", ROOT=str(flat), IM_SIZE=16), "train")
    assert len(ds) == 3 and ds.info.num_classes == 0 and ds.labels.tolist() == [-1, -1, -1]
    assert ds[(0, 1)][1] == -1
    assert "single-folder" in _err(build_dataset, data_cfg(DATASET="imagefolder", ROOT=str(flat)), "test")
    split = tmp_path / "split"
    for i in range(2):
        write_image(split / "train" / f"u{i}.png", i)
    assert build_dataset(data_cfg(DATASET="imagefolder", ROOT=str(split)), "train").info.num_classes == 0


def test_imagefolder_bad_layouts(tmp_path, folder_root):
    cfg = lambda root, **kw: data_cfg(DATASET="imagefolder", ROOT=str(root), **kw)  # noqa: E731
    msg = _err(build_dataset, cfg(tmp_path / "missing"), "train")
    assert "missing" in msg and "does not exist" in msg and "<root>/train/<class>" in msg
    (folder_root / "train" / "empty").mkdir()
    msg = _err(build_dataset, cfg(folder_root), "train")
    assert str(folder_root / "train" / "empty") in msg and "holds no images" in msg
    (folder_root / "train" / "empty").rmdir()
    write_image(folder_root / "train" / "loose.jpg", 5)
    msg = _err(build_dataset, cfg(folder_root), "train")
    assert "loose.jpg" in msg and "mixes class folders" in msg
    (folder_root / "train" / "loose.jpg").unlink()
    write_image(folder_root / "val" / "zebra" / "z.jpg", 5)
    msg = _err(build_dataset, cfg(folder_root), "test")
    assert str(folder_root / "val" / "zebra") in msg and "training split" in msg
    only_train = tmp_path / "only_train"
    make_tree(only_train / "train", ["a"], 1)
    assert "no val/ or test/" in _err(build_dataset, cfg(only_train), "test")


# ---- ImageNet-1K ---------------------------------------------------------------------------

@pytest.fixture
def imagenet_root(tmp_path):
    root = tmp_path / "imagenet"
    wnids = ["n02000002", "n01000001", "n03000003"]
    for i, w in enumerate(wnids):
        for j in range(3):
            write_image(root / "train" / w / f"{w}_{j}.JPEG", 10 * i + j, fmt="JPEG")
        write_image(root / "val" / w / f"ILSVRC2012_val_{i:08d}.JPEG", 500 + i, fmt="JPEG")
    (root / "train" / "README_not_a_class").mkdir()   # non-wnid folders are ignored
    return root


def test_imagenet_layout_and_transforms(imagenet_root):
    cfg = data_cfg(DATASET="imagenet", ROOT=str(imagenet_root), IM_SIZE=32, TEST_IM_SIZE=40)
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert train.classes == ["n01000001", "n02000002", "n03000003"]
    assert train.info.num_classes == 3 and len(train) == 9 and len(test) == 3
    assert train.path(0).endswith("train/n01000001/n01000001_0.JPEG") and train.labels[0] == 0
    assert test.path(2).endswith("val/n03000003/ILSVRC2012_val_00000002.JPEG") and test.labels.tolist() == [0, 1, 2]
    x, y = train[(4, 9)]
    assert x.shape == (3, 32, 32) and y == 1
    assert build_dataset(data_cfg(DATASET="imagenet", ROOT=str(imagenet_root)), "test")[0][0].shape == (3, 224, 224)


def test_imagenet_bad_layouts(tmp_path, imagenet_root):
    cfg = lambda root: data_cfg(DATASET="imagenet", ROOT=str(root))  # noqa: E731
    flat = tmp_path / "flatval"
    make_tree(flat / "train", ["n01000001"], 1)
    for i in range(2):
        write_image(flat / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", i, fmt="JPEG")
    msg = _err(build_dataset, cfg(flat), "test")
    assert str(flat / "val") in msg and "wnid folders" in msg and "<root>/val/<wnid>" in msg
    msg = _err(build_dataset, cfg(tmp_path / "nope"), "train")
    assert "nope" in msg and "<root>/train/<wnid>" in msg
    (imagenet_root / "train" / "n09999999").mkdir()
    msg = _err(build_dataset, cfg(imagenet_root), "train")
    assert "n09999999" in msg and "holds no images" in msg
    # ImageNet-22K layout given to imagenet: say so.
    k22 = tmp_path / "k22"
    make_tree(k22, ["n01000001"], 1)
    assert "imagenet22k layout" in _err(build_dataset, cfg(k22), "train")


# ---- ImageNet-22K --------------------------------------------------------------------------

@pytest.fixture
def k22_root(tmp_path):
    root = tmp_path / "data" / "imagenet22k"
    for w in ["n00000005", "n00000001", "n00000003"]:
        for j in range(2):
            write_image(root / w / f"{w}_{j}.JPEG", int(w[1:]) * 10 + j, fmt="JPEG")
    return root


def test_imagenet22k_list_file(k22_root):
    listing = ["n00000005_1.JPEG", "n00000001_0.JPEG", "", "n00000005_0.JPEG", "n00000003/n00000003_1.JPEG"]
    (k22_root / "imagenet-22k.txt").write_text("\n".join(listing) + "\n")
    ds = build_dataset(data_cfg(DATASET="imagenet22k", ROOT=str(k22_root), IM_SIZE=24), "train")
    assert ds.classes == ["n00000001", "n00000003", "n00000005"] and ds.info.num_classes == 3
    assert len(ds) == 4 and ds.labels.tolist() == [2, 0, 2, 1]
    assert ds.path(0).endswith("imagenet22k/n00000005/n00000005_1.JPEG")
    x, y = ds[(0, 5)]
    assert x.shape == (3, 24, 24) and y == 2
    assert "only a training split" in _err(build_dataset, data_cfg(DATASET="imagenet22k", ROOT=str(k22_root)), "test")


def test_imagenet22k_list_locations_and_scan(k22_root, tmp_path, monkeypatch):
    monkeypatch.delenv("UNNAS_IMAGENET22K_LIST", raising=False)
    cfg = data_cfg(DATASET="imagenet22k", ROOT=str(k22_root), IM_SIZE=24)
    scanned = build_dataset(cfg, "train")                       # no list: scan the wnid folders
    assert len(scanned) == 6 and scanned.labels.tolist() == [0, 0, 1, 1, 2, 2]
    (k22_root.parent / "imagenet-22k.txt").write_text("n00000003_0.JPEG\n")   # the release's location
    assert len(build_dataset(cfg, "train")) == 1
    other = tmp_path / "my_list.txt"
    other.write_text("n00000001_0.JPEG\nn00000001_1.JPEG\n")
    assert len(build_imagenet22k(root=str(k22_root), list_file=str(other))) == 2
    monkeypatch.setenv("UNNAS_IMAGENET22K_LIST", str(other))
    assert len(build_dataset(cfg, "train")) == 2


def test_imagenet22k_bad_lists(k22_root, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("n00000001_0.JPEG\nthis is not an image\n")
    msg = _err(build_imagenet22k, root=str(k22_root), list_file=str(bad))
    assert f"{bad}:2" in msg and "<wnid>_<n>.JPEG" in msg
    bad.write_text("n00000001_0.JPEG\nn00000777_0.JPEG\n")
    msg = _err(build_imagenet22k, root=str(k22_root), list_file=str(bad))
    assert str(k22_root / "n00000777") in msg and str(bad) in msg
    msg = _err(build_imagenet22k, root=str(k22_root), list_file=str(tmp_path / "absent.txt"))
    assert "absent.txt" in msg
    bad.write_text("\n")
    assert "lists no images" in _err(build_imagenet22k, root=str(k22_root), list_file=str(bad))


# ---- unreadable images during training ------------------------------------------------------

def test_corrupt_image_is_skipped_and_counted(folder_root, caplog):
    bad = folder_root / "train" / "dog" / "dog_2.jpg"
    bad.write_bytes(bad.read_bytes()[:200])               # truncated JPEG
    (folder_root / "train" / "emu" / "emu_1.png").write_bytes(b"not a png at all")
    ds = build_dataset(data_cfg(DATASET="imagefolder", ROOT=str(folder_root), IM_SIZE=32), "train")
    bad_index = [ds.path(i) for i in range(len(ds))].index(str(bad))

    ds.skip_unreadable = False
    msg = _err(ds.__getitem__, (bad_index, 1))
    assert str(bad) in msg and "truncated or corrupt" in msg
    ds.skip_unreadable = True

    before = unreadable_images()
    with caplog.at_level(logging.WARNING, logger="unnas.data.imagefolder"):
        batches = list(BatchStream(ds, range(len(ds)), 4, seed=1, stream=0, num_workers=0).epoch(0))
    assert len(batches) == 3 and all(x.shape == (4, 3, 32, 32) for x, _ in batches)
    assert ds.num_skipped == 2 and unreadable_images() - before == 2
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(bad) in warned and "skipped so far" in warned
    # The replacement is a function of the seed: the same step gives the same batch again.
    again = list(BatchStream(ds, range(len(ds)), 4, seed=1, stream=0, num_workers=0).epoch(0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))

    # With worker processes the skips are counted too (shared across workers) and match.
    with_workers = list(BatchStream(ds, range(len(ds)), 4, seed=1, stream=0, num_workers=2).epoch(0))
    assert ds.num_skipped == 6
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, with_workers))


def test_all_unreadable_raises_after_retries(tmp_path):
    root = tmp_path / "broken"
    for i in range(3):
        p = root / "train" / "a" / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"junk")
    ds = build_dataset(data_cfg(DATASET="imagefolder", ROOT=str(root)), "train")
    logging.getLogger("unnas.data.imagefolder").setLevel(logging.ERROR)
    try:
        msg = _err(ds.__getitem__, (0, 0))
    finally:
        logging.getLogger("unnas.data.imagefolder").setLevel(logging.NOTSET)
    assert "unreadable images in a row" in msg and str(root) in msg


def test_test_size_smaller_than_crop_is_rejected(folder_root):
    cfg = data_cfg(DATASET="imagefolder", ROOT=str(folder_root), IM_SIZE=64, TEST_IM_SIZE=48)
    assert "TEST_IM_SIZE >= IM_SIZE" in _err(build_dataset, cfg, "test")


def test_dataset_pickles_with_a_fresh_skip_counter(folder_root):
    import pickle

    ds = build_dataset(data_cfg(DATASET="imagefolder", ROOT=str(folder_root), IM_SIZE=16), "train")
    ds._skips.value = 5
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.num_skipped == 0 and len(copy) == len(ds) and copy.path(3) == ds.path(3)
    assert torch.equal(copy[(3, 8)][0], ds[(3, 8)][0])
