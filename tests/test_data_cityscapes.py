"""Cityscapes on tiny trees in tmp_path: trainIds and labelIds-only variants, image/label alignment
under random scale, crop and flip, determinism, loader workers and bad data."""
import logging

import numpy as np
import pytest
import torch
from fvcore.common.config import CfgNode as CN
from PIL import Image

import unnas.data.cityscapes as cs
from unnas.config import add_data_cfg
from unnas.data import BatchStream, DataError, build_dataset

W, H, STRIPE = 96, 48, 12
TRAIN_TO_LABEL_ID = {0: 7, 1: 8, 2: 11, 3: 12, 4: 13, 5: 17, 6: 19, 7: 20}


def data_cfg(**kw):
    cfg = CN()
    add_data_cfg(cfg)
    for k, v in kw.items():
        setattr(cfg.DATA, k, v)
    return cfg.DATA


def stripes(seed):
    """Image whose red channel encodes the class of its column (class = col // 12, 8 vertical
    stripes) and the matching trainId map; the top 4 rows are 'ignore' (255)."""
    cls = np.minimum(np.arange(W) // STRIPE, 7)
    label = np.tile(cls, (H, 1)).astype(np.uint8)
    label[:4] = 255
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[..., 0] = 30 * label.clip(0, 7) + 10
    img[..., 1] = np.arange(H)[:, None] * 5
    img[..., 2] = seed
    return img, label


def make_city(root, split="train", ids="train", n=(3, 2), size=(W, H)):
    k = 0
    for city, count in zip(["aachen", "bremen"], n):
        for j in range(count):
            stem = f"{city}_{k:06d}_000019"
            img, label = stripes(k)
            if size != (W, H):
                img = np.array(Image.fromarray(img).resize(size))
                label = np.array(Image.fromarray(label).resize(size, Image.NEAREST))
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            if ids in ("train", "both"):
                Image.fromarray(label).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png")
            if ids in ("label", "both"):
                lid = np.vectorize(lambda t: TRAIN_TO_LABEL_ID.get(int(t), 0))(label).astype(np.uint8)
                lid[:2] = 4        # 'static': also ignored
                Image.fromarray(lid).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            k += 1
    return root


def cfg_for(root, **kw):
    return data_cfg(**{"DATASET": "cityscapes", "ROOT": str(root), "IM_SIZE": 32, "TEST_IM_SIZE": 48, **kw})


def agreement(x, y):
    """Fraction of labelled pixels whose image stripe colour gives the label."""
    from_image = ((x[0].float() - 10) / 30).round().clamp(0, 7).long()
    valid = y != 255
    return (from_image[valid] == y[valid]).float().mean().item()


def test_train_samples_shapes_alignment_and_flip(tmp_path):
    ds = build_dataset(cfg_for(make_city(tmp_path / "cs")), "train")
    assert len(ds) == 5 and ds.info.dense_labels and ds.info.num_classes == 19 and ds.info.image_size == 32
    orientations = set()
    for seed in range(12):
        x, y = ds[(seed % 5, seed)]
        assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
        assert y.shape == (32, 32) and y.dtype == torch.int64
        assert set(y.unique().tolist()) <= set(range(8)) | {255}
        assert agreement(x, y) > 0.85
        cols = y[-1].tolist()          # bottom row: labelled
        if cols != sorted(cols) or cols != sorted(cols, reverse=True):
            orientations.add("left-to-right" if cols == sorted(cols) else "right-to-left")
        again = ds[(seed % 5, seed)]
        assert torch.equal(again[0], x) and torch.equal(again[1], y)
    assert orientations == {"left-to-right", "right-to-left"}     # flips happen, to both alike


def test_test_split_is_resize_and_centre_crop(tmp_path):
    root = make_city(tmp_path / "cs", split="val")
    ds = build_dataset(cfg_for(root), "test")
    x, y = ds[(0, 1)]
    assert torch.equal(ds[(0, 2)][0], x)
    # Short side 48 -> 48 (no resize), centre 32x32 crop: columns 32..63, rows 8..39.
    expected = np.minimum((32 + np.arange(32)) // STRIPE, 7)
    assert (y.numpy() == expected[None, :]).all()
    assert agreement(x, y) == 1.0
    # Larger test size: still aligned.
    x, y = build_dataset(cfg_for(root, TEST_IM_SIZE=70), "test")[(1, 0)]
    assert x.shape == (3, 32, 32) and agreement(x, y) > 0.9


def test_padding_when_test_size_is_smaller_than_crop(tmp_path):
    root = make_city(tmp_path / "cs", split="val")
    x, y = build_dataset(cfg_for(root, IM_SIZE=40, TEST_IM_SIZE=30), "test")[(0, 0)]
    assert x.shape == (3, 40, 40) and y.shape == (40, 40)
    assert (y[:5] == 255).all() and (x[:, :5] == 0).all()      # 30-row image centred in 40


def test_label_ids_are_mapped_to_train_ids(tmp_path, caplog):
    train_ids = build_dataset(cfg_for(make_city(tmp_path / "a", ids="train")), "train")
    cs._warned_label_ids = False
    with caplog.at_level(logging.WARNING, logger="unnas.data.cityscapes"):
        label_ids = build_dataset(cfg_for(make_city(tmp_path / "b", ids="label")), "train")
        build_dataset(cfg_for(tmp_path / "b"), "train")
    warnings = [r.getMessage() for r in caplog.records if "labelIds" in r.getMessage()]
    assert len(warnings) == 1 and "createTrainIdLabelImgs" in warnings[0]
    for seed in range(4):
        xa, ya = train_ids[(seed, seed)]
        xb, yb = label_ids[(seed, seed)]
        assert torch.equal(xa, xb)
        # Rows 0-1 are 'static' (labelId 4), rows 2-3 'unlabeled' (0): both map to 255 like the trainIds.
        assert torch.equal(ya, yb)
    x, y = label_ids[(0, 3)]
    assert agreement(x, y) > 0.85
    # Both present: trainIds win.
    both = build_dataset(cfg_for(make_city(tmp_path / "c", ids="both")), "train")
    assert not both._label_ids.any()


def test_label_id_table():
    table = cs.LABEL_ID_TO_TRAIN_ID
    assert sorted(table) == list(range(34))
    kept = {k: v for k, v in table.items() if v != 255}
    assert sorted(kept.values()) == list(range(19))
    some = (kept[7], kept[8], kept[11], kept[21], kept[23], kept[24], kept[26], kept[33])
    assert some == (0, 1, 2, 8, 10, 11, 13, 18)
    ids = np.arange(256, dtype=np.uint8)
    mapped = cs.label_ids_to_train_ids(ids)
    assert mapped[:34].tolist() == [table[i] for i in range(34)] and (mapped[34:] == 255).all()


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_stream(tmp_path, workers):
    ds = build_dataset(cfg_for(make_city(tmp_path / "cs")), "train")
    ref = list(BatchStream(ds, range(5), 2, seed=4, stream=1, num_workers=0).epoch(0))
    got = list(BatchStream(ds, range(5), 2, seed=4, stream=1, num_workers=workers).epoch(0))
    assert len(got) == 2
    for (xa, ya), (xb, yb) in zip(ref, got):
        assert xb.shape == (2, 3, 32, 32) and yb.shape == (2, 32, 32) and yb.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_defaults_and_unlabelled(tmp_path):
    root = make_city(tmp_path / "cs", size=(700, 350))
    ds = build_dataset(data_cfg(DATASET="cityscapes", ROOT=str(root)), "train")
    assert ds.info.image_size == 321 and ds.test_size == 512
    x, y = ds[(0, 0)]
    assert x.shape == (3, 321, 321) and y.shape == (321, 321)
    import shutil
    shutil.rmtree(root / "gtFine")
    ds = build_dataset(cfg_for(root), "train")
    assert ds.info.num_classes == 0 and not ds.info.dense_labels and ds[(0, 0)][1] == -1


def _err(cfg, split="train"):
    with pytest.raises(DataError) as exc:
        build_dataset(cfg, split)
    return str(exc.value)


def test_bad_data(tmp_path):
    root = make_city(tmp_path / "cs")
    msg = _err(cfg_for(tmp_path / "absent"))
    assert "absent" in msg and "leftImg8bit/<split>/<city>" in msg
    msg = _err(cfg_for(root), "test")
    assert str(root / "leftImg8bit" / "val") in msg and "expected layout" in msg

    label = root / "gtFine" / "train" / "bremen" / "bremen_000003_000019_gtFine_labelTrainIds.png"
    label.unlink()
    msg = _err(cfg_for(root))
    assert str(label) in msg and "createTrainIdLabelImgs" in msg

    Image.fromarray(np.zeros((H, W - 2), dtype=np.uint8)).save(label)
    msg = _err(cfg_for(root))
    assert "bremen_000003_000019_gtFine_labelTrainIds.png" in msg and "94x48" in msg and "96x48" in msg

    label.write_bytes(b"garbage")
    msg = _err(cfg_for(root))
    assert "bremen_000003_000019_gtFine_labelTrainIds.png" in msg and "corrupt" in msg
    Image.fromarray(stripes(0)[1]).save(label)

    (root / "leftImg8bit" / "train" / "cologne").mkdir()
    msg = _err(cfg_for(root))
    assert str(root / "leftImg8bit" / "train" / "cologne") in msg and "holds no" in msg
    (root / "leftImg8bit" / "train" / "cologne").rmdir()

    # A truncated label during training: skipped with a warning, counted, never a crash.
    ds = build_dataset(cfg_for(root), "train")
    label.write_bytes(label.read_bytes()[:60])
    batches = list(BatchStream(ds, range(5), 5, seed=0, stream=0, num_workers=0).epoch(0))
    assert batches[0][1].shape == (5, 32, 32) and ds.num_skipped == 1
