"""Class-per-folder image trees (``imagefolder``), and the file-backed machinery that the
ImageNet and Cityscapes sets share.

Layout of an ``imagefolder`` root::

    <root>/train/<class>/**/<image>        training split (classes = sorted folder names)
    <root>/val/<class>/**/<image>          test split ('test/' is used when there is no 'val/')

A split folder that holds images directly (no class folders) is *unlabelled*: labels are -1 and
``info.num_classes`` is 0, which is fine for the pretext tasks (rot, col, jig); supervised tasks
refuse it. A root without train/val/test folders is itself used as the training split.

Images are decoded with Pillow inside the loader's worker processes and returned as uint8 RGB
(3, S, S) tensors (geometric augmentation done, no normalisation):

* train: Inception random-resized crop (area 8-100 %, aspect 3/4-4/3, 10 tries, fallback: centre
  square) resized to S (bilinear) + horizontal flip with probability 1/2;
* test: short side resized to the test size T (default 256) + centre crop S (default 224).

Every random choice comes from ``np.random.default_rng`` seeded with the per-sample seed the
:class:`~unnas.data.loader.BatchStream` hands in, so augmentation does not depend on the worker.
An image that cannot be read during training is skipped with a warning and replaced by another
index derived from the same seed; the skips are counted (``dataset.num_skipped`` across the
loader's workers, :func:`unreadable_images` per process).
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.context
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .base import DataError, DataInfo, ImageDataset
from .registry import DATASETS

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
# ImageNet statistics in RGB order (the release lists them in BGR order).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IM_SIZE = 224
DEFAULT_TEST_IM_SIZE = 256

# Errors Pillow raises for unreadable files (truncated data, bad headers, decompression bombs).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

_process_skips = 0


def unreadable_images() -> int:
    """Unreadable images skipped so far by this process (each loader worker counts its own)."""
    return _process_skips


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def resolve_sizes(im_size: int, test_im_size: int, default_im: int = DEFAULT_IM_SIZE,
                  default_test: int | None = DEFAULT_TEST_IM_SIZE) -> tuple[int, int]:
    """Training crop S and test resize T, filling 0 with defaults (T >= S)."""
    s = int(im_size) or default_im
    if test_im_size:
        t = int(test_im_size)
    elif default_test and s <= default_test:
        t = default_test
    else:
        t = int(round(s * 8 / 7))   # the 224 -> 256 ratio
    if s <= 0 or t <= 0:
        raise DataError(f"DATA.IM_SIZE ({im_size}) and DATA.TEST_IM_SIZE ({test_im_size}) must be >= 0")
    if t < s:
        raise DataError(f"DATA.TEST_IM_SIZE ({t}) is smaller than the crop DATA.IM_SIZE ({s}); the test "
                        "transform resizes the short side to TEST_IM_SIZE, then centre-crops IM_SIZE: use "
                        "TEST_IM_SIZE >= IM_SIZE")
    return s, t


# ---------------------------------------------------------------------------------------------
# decoding and transforms

def open_rgb(path: str) -> Image.Image:
    """Decode ``path`` fully into an RGB image, or raise :class:`DataError` naming the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {path} is missing (was it moved or deleted?); restore it or rebuild the "
                        "data set folder") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot decode image {path} ({type(exc).__name__}: {exc}); the file is truncated or "
                        "corrupt: re-extract it from the archive or delete it") from None


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> uint8 (3, H, W) tensor."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def inception_crop_box(width: int, height: int, rng: np.random.Generator, area=(0.08, 1.0),
                       aspect=(3 / 4, 4 / 3), tries: int = 10) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of an Inception-style random crop; centre square as fallback."""
    total = width * height
    for _ in range(tries):
        target = rng.uniform(*area) * total
        ratio = rng.uniform(*aspect)
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if rng.random() < 0.5:
            w, h = h, w
        if 0 < w <= width and 0 < h <= height:
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            return x, y, x + w, y + h
    s = min(width, height)
    x, y = (width - s) // 2, (height - s) // 2
    return x, y, x + s, y + s


def centre_box(width: int, height: int, short_side: int, crop: int) -> tuple[float, float, float, float]:
    """Box in source coordinates equal to: resize the short side to ``short_side``, centre crop
    ``crop`` x ``crop`` (requires ``crop <= short_side``)."""
    side = crop * min(width, height) / short_side
    cx, cy = width / 2, height / 2
    return (max(cx - side / 2, 0.0), max(cy - side / 2, 0.0),
            min(cx + side / 2, float(width)), min(cy + side / 2, float(height)))


def train_transform(img: Image.Image, rng: np.random.Generator, size: int) -> torch.Tensor:
    box = inception_crop_box(img.width, img.height, rng)
    out = img.resize((size, size), Image.BILINEAR, box=box)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(out)


def test_transform(img: Image.Image, size: int, test_size: int) -> torch.Tensor:
    box = centre_box(img.width, img.height, test_size, size)
    return to_tensor(img.resize((size, size), Image.BILINEAR, box=box))


# ---------------------------------------------------------------------------------------------
# file-backed data set

def _encode_paths(paths: Sequence[str]) -> np.ndarray:
    # One fixed-width bytes array instead of a list of str: compact for millions of files, and
    # forked workers do not touch per-object reference counts (no copy-on-read memory growth).
    return np.array([os.fsencode(p) for p in paths], dtype=bytes) if len(paths) else np.array([], dtype="S1")


class FileDataset(ImageDataset):
    """Images listed by path (relative to ``root``) with integer labels (-1 = unlabelled).

    Subclasses override :meth:`sample`. ``__getitem__((index, seed))`` never raises for an
    unreadable file while ``skip_unreadable`` is true: it warns, counts and substitutes another
    index drawn from ``seed``.
    """

    in_memory = False
    max_replacements = 10
    skip_unreadable = True

    def __init__(self, root, paths: Sequence[str], labels, info: DataInfo, train: bool, name: str,
                 test_size: int | None = None):
        if len(paths) == 0:
            raise DataError(f"{name}: no images found under {root}")
        self.root = str(root)
        self.name = name
        self._paths = _encode_paths(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.info = info
        self.train = train
        self.im_size = info.image_size
        self.test_size = test_size or info.image_size
        self._skips = multiprocessing.get_context("spawn").Value("q", 0)

    # The skip counter lives in shared memory. It is created from the 'spawn' context so that it can
    # travel to loader workers of any start method (fork inherits it; spawn/forkserver receive it
    # while the worker is being started). A plain pickle gets a fresh, local counter.
    def __getstate__(self):
        state = self.__dict__.copy()
        if multiprocessing.context.get_spawning_popen() is None:
            state["_skips"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._skips is None:
            self._skips = multiprocessing.get_context("spawn").Value("q", 0)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> str:
        return os.path.join(self.root, os.fsdecode(self._paths[index]))

    @property
    def num_skipped(self) -> int:
        """Unreadable images skipped so far by this data set, summed over loader workers."""
        return int(self._skips.value)

    def sample(self, index: int, rng: np.random.Generator):
        img = open_rgb(self.path(index))
        if self.train:
            x = train_transform(img, rng, self.im_size)
        else:
            x = test_transform(img, self.im_size, self.test_size)
        return x, int(self.labels[index])

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        index, seed = int(index), abs(int(seed))
        first = index
        for attempt in range(self.max_replacements + 1):
            try:
                return self.sample(index, np.random.default_rng([seed, attempt]))
            except DataError as exc:
                if not self.skip_unreadable:
                    raise
                # Another index (never the same one), drawn from the seed: deterministic.
                draw = int(np.random.default_rng([seed, attempt, 1]).integers(max(len(self) - 1, 1)))
                replacement = draw + 1 if draw >= index and len(self) > 1 else draw
                self._note_skip(exc, replacement)
                index = replacement
        raise DataError(f"{self.name}: {self.max_replacements + 1} unreadable images in a row starting at "
                        f"{self.path(first)}; check the data set folder ({self.root})")

    def _note_skip(self, exc: DataError, replacement: int) -> None:
        global _process_skips
        _process_skips += 1
        with self._skips.get_lock():
            self._skips.value += 1
            n = self._skips.value
        if n <= 20 or n % 100 == 0:
            log.warning("%s; skipped, using image #%d instead (%d unreadable image(s) skipped so far%s)",
                        exc, replacement, n, "; further skips are reported every 100" if n == 20 else "")


# ---------------------------------------------------------------------------------------------
# scanning class-per-folder trees

def listdir(folder: Path) -> list[os.DirEntry]:
    """Entries of ``folder`` (hidden ones left out), sorted by name."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except (NotADirectoryError, FileNotFoundError):
        raise DataError(f"{folder} is not a folder") from None
    except PermissionError:
        raise DataError(f"cannot read folder {folder} (permission denied); fix its permissions") from None


def _images_in(folder: Path, recursive: bool) -> list[str]:
    """Image paths under ``folder`` relative to it, sorted."""
    out = []
    if not recursive:
        return [e.name for e in listdir(folder) if is_image_file(e.name) and e.is_file()]
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        for f in sorted(filenames):
            if is_image_file(f) and not f.startswith("."):
                out.append(f if rel == "." else os.path.join(rel, f))
    return out


def scan_class_tree(split_dir: Path, layout: str, classes: Sequence[str] | None = None, recursive: bool = True,
                    class_filter: Callable[[str], bool] | None = None, allow_unlabelled: bool = True):
    """(classes, paths relative to ``split_dir``, labels) of ``split_dir/<class>/<images>``.

    ``classes`` (from the training split) fixes the label ids; a split folder with images but no
    class folders gives labels -1 when ``allow_unlabelled``. ``layout`` is the expected layout,
    quoted in errors.
    """
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} not found; expected layout: {layout}")
    entries = listdir(split_dir)
    dirs = [e.name for e in entries if e.is_dir() and (class_filter is None or class_filter(e.name))]
    loose = [e.name for e in entries if is_image_file(e.name) and e.is_file()]
    if not dirs:
        if loose and allow_unlabelled:
            files = _images_in(split_dir, recursive=False)
            return [], files, [-1] * len(files)
        what = "images but no class folders" if loose else "no class folders"
        raise DataError(f"{split_dir} has {what}; expected layout: {layout}")
    if loose:
        raise DataError(f"{split_dir} mixes class folders with loose images (e.g. {loose[0]}); move every image "
                        f"into a class folder; expected layout: {layout}")
    if classes is None:
        classes = dirs
    else:
        unknown = sorted(set(dirs) - set(classes))
        if unknown:
            raise DataError(f"{split_dir / unknown[0]} is a class folder that the training split does not have; "
                            "every test class must also be a training class")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for c in dirs:
        files = _images_in(split_dir / c, recursive)
        if not files:
            raise DataError(f"class folder {split_dir / c} holds no images (extensions "
                            f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
        paths.extend(os.path.join(c, f) for f in files)
        labels.extend([index[c]] * len(files))
    return list(classes), paths, labels


def check_root(root: str, name: str, layout: str) -> Path:
    if not root:
        raise DataError(f"DATA.ROOT is empty; set it to the {name} folder (expected layout: {layout})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{name} root {path} does not exist or is not a folder; set DATA.ROOT to the {name} "
                        f"folder (or a symlink to it); expected layout: {layout}")
    return path


FOLDER_LAYOUT = "<root>/train/<class>/<images> and <root>/val/<class>/<images> (or test/)"


@DATASETS.register("imagefolder", aliases=("image_folder", "folder"))
def build_imagefolder(root: str = "", split: str = "train", im_size: int = 0, test_im_size: int = 0, **_):
    base = check_root(root, "image folder", FOLDER_LAYOUT)
    size, test_size = resolve_sizes(im_size, test_im_size)
    split_names = {"train": ("train",), "test": ("val", "test"), "val": ("val", "test")}
    if split not in split_names:
        raise DataError(f"imagefolder has splits 'train' and 'test', not {split!r}")
    has_splits = any((base / s).is_dir() for s in ("train", "val", "test"))
    if not has_splits:
        if split != "train":
            raise DataError(f"{base} has no val/ or test/ folder; a single-folder tree is a training split "
                            f"only; expected layout: {FOLDER_LAYOUT}")
        classes, paths, labels = scan_class_tree(base, FOLDER_LAYOUT)
        split_dir = base
    else:
        train_classes = None
        if (base / "train").is_dir():
            train_classes = [e.name for e in listdir(base / "train") if e.is_dir()] or None
        split_dir = next((base / s for s in split_names[split] if (base / s).is_dir()), None)
        if split_dir is None:
            raise DataError(f"{base} has no {' or '.join(s + '/' for s in split_names[split])} folder; "
                            f"expected layout: {FOLDER_LAYOUT}")
        classes, paths, labels = scan_class_tree(split_dir, FOLDER_LAYOUT, classes=train_classes)
    info = DataInfo(num_classes=len(classes), image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return FileDataset(split_dir, paths, labels, info, train=split == "train", name="imagefolder",
                       test_size=test_size)
