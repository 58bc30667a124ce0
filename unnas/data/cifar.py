"""CIFAR-10 and CIFAR-100 from the standard python-pickle batches, held in memory.

Layout (what ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` extract to)::

    <root>/data_batch_1 ... data_batch_5, test_batch      (cifar10)
    <root>/train, test                                    (cifar100, fine labels)

``<root>`` may also be the folder that *contains* ``cifar-10-batches-py/`` or ``cifar-100-python/``.
Each batch is a pickled dict with ``data`` (N x 3072 uint8: 1024 red, 1024 green, 1024 blue values,
row-major 32x32) and ``labels`` (``fine_labels`` for CIFAR-100). Images stay RGB uint8; training
augmentation (zero-pad 4, random 32x32 crop with every offset 0..8 possible, horizontal flip) is
done batched on the device by :class:`TensorDataset`.

Download is opt-in (``DATA.DOWNLOAD True``) and goes through torchvision's CIFAR download; any
failure is reported as a :class:`DataError` that says how to get the files by hand.

Note: the batches are Python pickles; only load files from a source you trust.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import DataError, DataInfo, TensorDataset
from .registry import DATASETS

SIZE = 32


@dataclass(frozen=True)
class _Spec:
    name: str
    folder: str                # folder name inside the official archive
    train_files: tuple
    test_files: tuple
    label_key: str
    num_classes: int
    torchvision_class: str
    url: str
    mean: tuple
    std: tuple


CIFAR10 = _Spec(
    name="CIFAR-10", folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
    label_key="labels", num_classes=10, torchvision_class="CIFAR10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    # The release's constants (RGB order; the release comment calls them BGR but applies them to RGB).
    mean=(125.3 / 255, 123.0 / 255, 113.9 / 255), std=(63.0 / 255, 62.1 / 255, 66.7 / 255),
)
CIFAR100 = _Spec(
    name="CIFAR-100", folder="cifar-100-python", train_files=("train",), test_files=("test",),
    label_key="fine_labels", num_classes=100, torchvision_class="CIFAR100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    # Per-channel RGB mean/std of the 50,000 CIFAR-100 training images.
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
)


def _files_for(spec: _Spec, split: str) -> tuple:
    if split == "train":
        return spec.train_files
    if split in ("test", "val"):
        return spec.test_files
    raise DataError(f"{spec.name} has splits 'train' and 'test', not {split!r}")


def _layout(spec: _Spec) -> str:
    return (f"{spec.name} expects the python-pickle batches {', '.join(spec.train_files + spec.test_files)} "
            f"(the '{spec.folder}' folder of {spec.url.rsplit('/', 1)[-1]})")


def _download(spec: _Spec, root: Path) -> None:
    try:
        import torchvision.datasets as tvd

        root.mkdir(parents=True, exist_ok=True)
        getattr(tvd, spec.torchvision_class)(str(root), train=True, download=True)
    except Exception as exc:  # network, disk, checksum: all mean the same thing to the user
        raise DataError(
            f"downloading {spec.name} into {root} failed ({type(exc).__name__}: {exc}); check the network, "
            f"or fetch {spec.url} by hand, extract it and set DATA.ROOT to the extracted '{spec.folder}' "
            "folder (with DATA.DOWNLOAD False)") from exc


def resolve_root(spec: _Spec, root: str, split: str, download: bool = False) -> Path:
    """The folder that holds ``split``'s batch files, downloading first when asked to."""
    files = _files_for(spec, split)
    if not root:
        raise DataError(f"DATA.ROOT is empty; set it to the folder holding the {spec.name} batches "
                        f"({_layout(spec)}), or set DATA.DOWNLOAD True to download them")
    base = Path(root).expanduser()
    candidates = (base, base / spec.folder)
    for cand in candidates:
        if all((cand / f).is_file() for f in files):
            return cand
    if download:
        _download(spec, base)
        if all((base / spec.folder / f).is_file() for f in files):
            return base / spec.folder
        raise DataError(f"the {spec.name} download into {base} did not produce {base / spec.folder / files[0]}; "
                        f"{_layout(spec)}")
    if not base.exists():
        raise DataError(f"{spec.name} root {base} does not exist; set DATA.ROOT to the folder holding the batches "
                        f"({_layout(spec)}), or set DATA.DOWNLOAD True to download them there")
    where = base / spec.folder if (base / spec.folder).is_dir() else base
    missing = next(where / f for f in files if not (where / f).is_file())
    raise DataError(f"{missing} not found; {_layout(spec)} in DATA.ROOT ({base}); "
                    "download/extract them, or set DATA.DOWNLOAD True")


def _read_batch(path: Path, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    fix = f"re-download or re-extract it ({spec.url})"
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
    except Exception as exc:
        raise DataError(f"{path} is not a readable {spec.name} pickle ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not a {spec.name} batch dict; {fix}")
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
    for key in ("data", spec.label_key):
        if key not in batch:
            raise DataError(f"{path} has no '{key}' entry (keys: {', '.join(map(str, batch))}); it is not a "
                            f"{spec.name} batch; {fix}")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIZE * SIZE:
        raise DataError(f"{path}: 'data' is {data.dtype} of shape {data.shape}; expected uint8 (N, 3072) "
                        f"(32x32 RGB images, channel-planar); {fix}")
    labels = np.asarray(batch[spec.label_key])
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images; {fix}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer)
                        or labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{path}: labels must be integers in 0..{spec.num_classes - 1}; {fix}")
    return data, labels.astype(np.int64)


def load_cifar(spec: _Spec, root: str, split: str, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, 32, 32) RGB images and int64 labels of ``split``."""
    folder = resolve_root(spec, root, split, download)
    parts = [_read_batch(folder / f, spec) for f in _files_for(spec, split)]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images = torch.from_numpy(data.reshape(-1, 3, SIZE, SIZE).copy())
    return images, torch.from_numpy(labels)


def _build(spec: _Spec, root: str, split: str, im_size: int = 0, download: bool = False) -> TensorDataset:
    if im_size not in (0, SIZE):
        raise DataError(f"{spec.name} images are {SIZE}x{SIZE}; set DATA.IM_SIZE to 0 or {SIZE} (got {im_size})")
    images, labels = load_cifar(spec, root, split, download)
    info = DataInfo(num_classes=spec.num_classes, image_size=SIZE, mean=spec.mean, std=spec.std)
    return TensorDataset(images, labels, info, crop_pad=4, flip=True)


@DATASETS.register("cifar10", aliases=("cifar-10", "cifar_10"))
def build_cifar10(root: str = "", split: str = "train", im_size: int = 0, download: bool = False, **_):
    return _build(CIFAR10, root, split, im_size, download)


@DATASETS.register("cifar100", aliases=("cifar-100", "cifar_100"))
def build_cifar100(root: str = "", split: str = "train", im_size: int = 0, download: bool = False, **_):
    return _build(CIFAR100, root, split, im_size, download)
