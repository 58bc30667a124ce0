"""Cityscapes (fine annotations, 19 training classes, 255 = ignore).

Layout (the official ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``)::

    <root>/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

``*_gtFine_labelTrainIds.png`` are written by cityscapesScripts' ``createTrainIdLabelImgs.py``.
When an image has only ``*_gtFine_labelIds.png``, its labelIds are mapped to trainIds here (the
standard table below) and a one-time warning says so. Without any ``gtFine/`` folder the images
are unlabelled (labels -1, ``num_classes`` 0): enough for the pretext tasks, refused by ``seg``.

Samples are uint8 RGB (3, S, S) images with int64 (S, S) label maps (``info.dense_labels``):

* train: random scale s = 2^(-1 + 2u), u ~ U(0, 1); the short side becomes
  max(S, int(T * s)) (image bilinear, label nearest); random S x S crop (every offset possible;
  image padded with 0 and label with 255 if ever needed); horizontal flip of both with p 1/2;
* test: short side resized to T, centre crop S x S. (Full-resolution 1024 x 2048 evaluation is
  the retraining tool's job, not the search loader's.)

Defaults for search: S = 321 (DATA.IM_SIZE), T = 512 (DATA.TEST_IM_SIZE). Split 'test' reads
``val`` (the official test labels are withheld).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import DataError, DataInfo
from .imagefolder import (_DECODE_ERRORS, IMAGENET_MEAN, IMAGENET_STD, FileDataset, check_root, listdir, open_rgb,
                          to_tensor)
from .registry import DATASETS

log = logging.getLogger(__name__)

NUM_CLASSES = 19
IGNORE = 255
DEFAULT_IM_SIZE = 321
DEFAULT_TEST_IM_SIZE = 512
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
LAYOUT = ("<root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png with "
          "<root>/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png (or *_gtFine_labelIds.png), split train or val")

# Cityscapes labelId (0..33) -> trainId (0..18, 255 = ignored in training and evaluation).
LABEL_ID_TO_TRAIN_ID = {
    0: IGNORE,   # unlabeled
    1: IGNORE,   # ego vehicle
    2: IGNORE,   # rectification border
    3: IGNORE,   # out of roi
    4: IGNORE,   # static
    5: IGNORE,   # dynamic
    6: IGNORE,   # ground
    7: 0,        # road
    8: 1,        # sidewalk
    9: IGNORE,   # parking
    10: IGNORE,  # rail track
    11: 2,       # building
    12: 3,       # wall
    13: 4,       # fence
    14: IGNORE,  # guard rail
    15: IGNORE,  # bridge
    16: IGNORE,  # tunnel
    17: 5,       # pole
    18: IGNORE,  # polegroup
    19: 6,       # traffic light
    20: 7,       # traffic sign
    21: 8,       # vegetation
    22: 9,       # terrain
    23: 10,      # sky
    24: 11,      # person
    25: 12,      # rider
    26: 13,      # car
    27: 14,      # truck
    28: 15,      # bus
    29: IGNORE,  # caravan
    30: IGNORE,  # trailer
    31: 16,      # train
    32: 17,      # motorcycle
    33: 18,      # bicycle
}
CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
               "bicycle")

# 256-entry lookup table: any value outside 0..33 (e.g. the license plate's -1 stored as 255) is ignored.
_LUT = np.full(256, IGNORE, dtype=np.uint8)
for _k, _v in LABEL_ID_TO_TRAIN_ID.items():
    _LUT[_k] = _v

_warned_label_ids = False


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a uint8 labelIds map to trainIds (uint8, 255 = ignore)."""
    return _LUT[label_ids]


def _warn_label_ids_once(example: str) -> None:
    global _warned_label_ids
    if not _warned_label_ids:
        _warned_label_ids = True
        log.warning("Cityscapes: no *_gtFine_labelTrainIds.png for some images (e.g. %s); mapping "
                    "*_gtFine_labelIds.png to the 19 trainIds on the fly (run cityscapesScripts' "
                    "createTrainIdLabelImgs.py to precompute them)", example)


def _open_label(path: str) -> Image.Image:
    """A label PNG as an 8-bit single-channel image, or DataError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "P"):
                return im.copy() if im.mode == "L" else Image.fromarray(np.array(im, dtype=np.uint8))
            arr = np.array(im)
    except FileNotFoundError:
        raise DataError(f"label map {path} is missing; restore it (or regenerate it with cityscapesScripts)") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot decode label map {path} ({type(exc).__name__}: {exc}); the file is truncated or "
                        "corrupt: re-extract gtFine or regenerate it") from None
    if arr.ndim != 2 or arr.min() < 0 or arr.max() > 255:
        raise DataError(f"label map {path} is not a single-channel map of ids 0..255 (mode {im.mode}, shape "
                        f"{arr.shape}); use the gtFine *_labelTrainIds.png or *_labelIds.png files")
    return Image.fromarray(arr.astype(np.uint8))


def resized_dims(width: int, height: int, short: int) -> tuple[int, int]:
    """Size after scaling the short side to ``short`` (aspect ratio kept)."""
    if width <= height:
        return short, max(1, int(round(height * short / width)))
    return max(1, int(round(width * short / height))), short


def _resize_crop(img: Image.Image, label: Image.Image | None, short: int, crop: int,
                 offset: tuple[int, int] | None):
    """Resize so the short side is ``short``, then crop ``crop`` x ``crop`` at ``offset`` (in resized
    coordinates; None = centre). Returns (image, label) PIL images of size crop x crop."""
    w, h = img.size
    nw, nh = resized_dims(w, h, short)
    if offset is None:
        offset = (max(nw - crop, 0) // 2, max(nh - crop, 0) // 2)
    ox, oy = offset
    if nw >= crop and nh >= crop:
        # Fast path: resample only the crop window (resizing everything, then cropping, gives the
        # same pixels up to sub-pixel rounding, at several times the cost).
        sx, sy = w / nw, h / nh
        box = (ox * sx, oy * sy, min((ox + crop) * sx, w), min((oy + crop) * sy, h))
        out = img.resize((crop, crop), Image.BILINEAR, box=box)
        out_label = None if label is None else label.resize((crop, crop), Image.NEAREST, box=box)
        return out, out_label
    # Resized image smaller than the crop in some dimension: centre it on a padded canvas
    # (image 0, label 255), cropping at ``offset`` along any dimension that is large enough.
    src = (ox if nw >= crop else 0, oy if nh >= crop else 0)
    region = (src[0], src[1], src[0] + min(crop, nw), src[1] + min(crop, nh))
    dst = (max(crop - nw, 0) // 2, max(crop - nh, 0) // 2)
    canvas = Image.new("RGB", (crop, crop), (0, 0, 0))
    canvas.paste(img.resize((nw, nh), Image.BILINEAR).crop(region), dst)
    out_label = None
    if label is not None:
        out_label = Image.new("L", (crop, crop), IGNORE)
        out_label.paste(label.resize((nw, nh), Image.NEAREST).crop(region), dst)
    return canvas, out_label


class CityscapesDataset(FileDataset):
    """Cityscapes images with per-pixel trainId maps (or -1 when unlabelled)."""

    def __init__(self, root, images, label_root, label_paths, label_ids_flags, info, train, test_size):
        super().__init__(root, images, [-1] * len(images), info, train=train, name="cityscapes", test_size=test_size)
        self.label_root = str(label_root)
        self.labelled = label_paths is not None
        if self.labelled:
            self._label_paths = np.array([os.fsencode(p) for p in label_paths], dtype=bytes)
            self._label_ids = np.asarray(label_ids_flags, dtype=bool)

    def label_path(self, index: int) -> str:
        return os.path.join(self.label_root, os.fsdecode(self._label_paths[index]))

    def sample(self, index, rng):
        path = self.path(index)
        img = open_rgb(path)
        label = None
        if self.labelled:
            lpath = self.label_path(index)
            label = _open_label(lpath)
            if label.size != img.size:
                raise DataError(f"label map {lpath} is {label.size[0]}x{label.size[1]} but its image {path} is "
                                f"{img.size[0]}x{img.size[1]}; the gtFine and leftImg8bit files do not match")
        size, test_size = self.im_size, self.test_size
        if self.train:
            s = 2.0 ** (-1.0 + 2.0 * rng.random())
            short = max(size, int(test_size * s))
            nw, nh = resized_dims(img.width, img.height, short)
            offset = (int(rng.integers(0, max(nw - size, 0) + 1)), int(rng.integers(0, max(nh - size, 0) + 1)))
            img, label = _resize_crop(img, label, short, size, offset)
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
                label = None if label is None else label.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            img, label = _resize_crop(img, label, test_size, size, None)
        x = to_tensor(img)
        if label is None:
            return x, -1
        lab = np.array(label, dtype=np.uint8)
        if self._label_ids[index]:
            lab = label_ids_to_train_ids(lab)
        return x, torch.from_numpy(lab.astype(np.int64))


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {exc}); the file is truncated or corrupt: "
                        "re-extract it from the Cityscapes archive") from None


@DATASETS.register("cityscapes")
def build_cityscapes(root: str = "", split: str = "train", im_size: int = 0, test_im_size: int = 0,
                     check_sizes: bool = True, **_):
    base = check_root(root, "Cityscapes", LAYOUT)
    size = int(im_size) or DEFAULT_IM_SIZE
    test_size = int(test_im_size) or max(DEFAULT_TEST_IM_SIZE, size)
    folder = {"train": "train", "test": "val", "val": "val"}.get(split)
    if folder is None:
        raise DataError(f"cityscapes has splits 'train' and 'test' (= val), not {split!r}")
    img_dir = base / "leftImg8bit" / folder
    if not img_dir.is_dir():
        raise DataError(f"{img_dir} not found; expected layout: {LAYOUT}")
    cities = [e.name for e in listdir(img_dir) if e.is_dir()]
    if not cities:
        raise DataError(f"{img_dir} has no city folders; expected layout: {LAYOUT}")
    images = []
    for city in cities:
        files = [e.name for e in listdir(img_dir / city) if e.name.endswith(IMAGE_SUFFIX) and e.is_file()]
        if not files:
            raise DataError(f"city folder {img_dir / city} holds no *{IMAGE_SUFFIX} images; add them or remove the "
                            f"folder; expected layout: {LAYOUT}")
        images.extend(f"{city}/{f}" for f in files)

    gt_dir = base / "gtFine" / folder
    labels, flags = None, None
    if not (base / "gtFine").is_dir():
        log.warning("Cityscapes: %s not found; the images are unlabelled (enough for rot/col/jig, not for seg)",
                    base / "gtFine")
    else:
        if not gt_dir.is_dir():
            raise DataError(f"{gt_dir} not found but {base / 'gtFine'} exists; expected layout: {LAYOUT}")
        labels, flags = [], []
        for rel in images:
            stem = rel[: -len(IMAGE_SUFFIX)]
            train_ids, label_ids = gt_dir / (stem + TRAIN_IDS_SUFFIX), gt_dir / (stem + LABEL_IDS_SUFFIX)
            if train_ids.is_file():
                labels.append(stem + TRAIN_IDS_SUFFIX)
                flags.append(False)
            elif label_ids.is_file():
                labels.append(stem + LABEL_IDS_SUFFIX)
                flags.append(True)
                _warn_label_ids_once(str(label_ids))
            else:
                raise DataError(f"label map {train_ids} not found for image {img_dir / rel}; extract gtFine and run "
                                "cityscapesScripts' createTrainIdLabelImgs.py (or provide *_gtFine_labelIds.png)")
            if check_sizes:
                isize, lsize = _image_size(img_dir / rel), _image_size(gt_dir / labels[-1])
                if isize != lsize:
                    raise DataError(f"label map {gt_dir / labels[-1]} is {lsize[0]}x{lsize[1]} but its image "
                                    f"{img_dir / rel} is {isize[0]}x{isize[1]}; the gtFine and leftImg8bit files "
                                    "do not match")
    info = DataInfo(num_classes=NUM_CLASSES if labels is not None else 0, image_size=size, mean=IMAGENET_MEAN,
                    std=IMAGENET_STD, dense_labels=labels is not None)
    return CityscapesDataset(img_dir, images, gt_dir, labels, flags, info, train=split == "train", test_size=test_size)
