"""Data sets behind a registry: ``build_dataset(cfg.DATA, split)``.

Each data set lives in its own module; importing this package registers them all.
"""
from __future__ import annotations

from . import cifar, cityscapes, imagefolder, imagenet, synthetic  # noqa: F401  (importing registers them)
from .base import DataError, DataInfo, ImageDataset, TensorDataset, random_crop_flip
from .loader import BatchStream, step_generator
from .registry import DATASETS


def build_dataset(data_cfg, split: str) -> ImageDataset:
    """Build ``split`` ('train' or 'test') of the data set named by ``data_cfg.DATASET``."""
    try:
        builder = DATASETS.get(data_cfg.DATASET)
    except KeyError as exc:
        raise DataError(f"{exc.args[0]}; set DATA.DATASET (or --dataset) to one of them") from None
    return builder(
        root=data_cfg.ROOT, split=split, im_size=data_cfg.IM_SIZE, test_im_size=data_cfg.TEST_IM_SIZE,
        download=data_cfg.DOWNLOAD, num_train=data_cfg.SYNTHETIC.NUM_TRAIN,
        num_test=data_cfg.SYNTHETIC.NUM_TEST, seed=data_cfg.SYNTHETIC.SEED,
    )


__all__ = ["DataError", "DataInfo", "ImageDataset", "TensorDataset", "random_crop_flip", "BatchStream",
           "step_generator", "DATASETS", "build_dataset"]
