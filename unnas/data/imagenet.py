"""ImageNet-1K (``imagenet``) and ImageNet-22K (``imagenet22k``).

ImageNet-1K layout::

    <root>/train/<wnid>/*.JPEG      e.g. train/n01440764/n01440764_10026.JPEG
    <root>/val/<wnid>/*.JPEG        the 50,000 validation images sorted into their wnid folders

Classes are the sorted folder names that look like WordNet ids (``n`` + digits), 0..K-1; split
'test' reads ``val/``.

ImageNet-22K layout (training split only)::

    <root>/<wnid>/<wnid>_<n>.JPEG
    <root>/imagenet-22k.txt          optional list, one ``<wnid>_<n>.JPEG`` per line

The list file is looked up, in order, at the ``list_file`` argument, the environment variable
``UNNAS_IMAGENET22K_LIST``, ``<root>/imagenet-22k.txt`` and ``<root>/../imagenet-22k.txt`` (the
release keeps it next to the data folder); without one the wnid folders are scanned. A line's
class is its wnid prefix (the text before the first ``_``); a line may also be a relative path
``<wnid>/<file>``. Classes are the sorted distinct wnids. (The release's loader raised NameError
while reading the list; this one does not.)

Transforms are those of :mod:`unnas.data.imagefolder` (Inception random-resized crop + flip for
training; short side to 256 + centre crop 224 for testing), in honest RGB order.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .base import DataError, DataInfo
from .imagefolder import (IMAGENET_MEAN, IMAGENET_STD, FileDataset, check_root, is_image_file, listdir,
                          resolve_sizes, scan_class_tree)
from .registry import DATASETS

log = logging.getLogger(__name__)

_WNID = re.compile(r"^n[0-9]+$")
IMAGENET_LAYOUT = ("<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (wnid folders such as n01440764; "
                   "the validation images must be sorted into their wnid folders too)")
IMAGENET22K_LAYOUT = "<root>/<wnid>/<wnid>_<n>.JPEG, optionally with a list file <root>/imagenet-22k.txt"
LIST_NAME = "imagenet-22k.txt"
LIST_ENV = "UNNAS_IMAGENET22K_LIST"


def is_wnid(name: str) -> bool:
    return bool(_WNID.match(name))


@DATASETS.register("imagenet", aliases=("imagenet1k", "imagenet-1k", "ilsvrc2012"))
def build_imagenet(root: str = "", split: str = "train", im_size: int = 0, test_im_size: int = 0, **_):
    base = check_root(root, "ImageNet", IMAGENET_LAYOUT)
    size, test_size = resolve_sizes(im_size, test_im_size)
    folder = {"train": "train", "test": "val", "val": "val"}.get(split)
    if folder is None:
        raise DataError(f"imagenet has splits 'train' and 'test' (= val/), not {split!r}")
    split_dir = base / folder
    if not split_dir.is_dir():
        hint = ""
        if any(is_wnid(e.name) for e in listdir(base) if e.is_dir()):
            hint = " (the root holds wnid folders directly: that is the imagenet22k layout)"
        raise DataError(f"{split_dir} not found{hint}; expected layout: {IMAGENET_LAYOUT}")
    classes = None
    if folder != "train":
        train_dir = base / "train"
        if train_dir.is_dir():
            classes = [e.name for e in listdir(train_dir) if e.is_dir() and is_wnid(e.name)] or None
    if not any(is_wnid(e.name) for e in listdir(split_dir) if e.is_dir()):
        loose = any(is_image_file(e.name) for e in listdir(split_dir))
        if loose:
            raise DataError(f"{split_dir} holds images directly, not in wnid folders; sort them into "
                            f"{split_dir}/<wnid>/ (e.g. with the ILSVRC2012 devkit's validation ground truth); "
                            f"expected layout: {IMAGENET_LAYOUT}")
        raise DataError(f"{split_dir} has no wnid folders (n01440764, ...); expected layout: {IMAGENET_LAYOUT}")
    classes, paths, labels = scan_class_tree(split_dir, IMAGENET_LAYOUT, classes=classes, recursive=False,
                                             class_filter=is_wnid, allow_unlabelled=False)
    info = DataInfo(num_classes=len(classes), image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    ds = FileDataset(split_dir, paths, labels, info, train=split == "train", name="imagenet", test_size=test_size)
    ds.classes = classes
    return ds


def find_list_file(base: Path, list_file: str | None = None) -> Path | None:
    """The ImageNet-22K list file to use, or None to scan the folders."""
    explicit = list_file or os.environ.get(LIST_ENV, "")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            source = "list_file" if list_file else LIST_ENV
            raise DataError(f"ImageNet-22K list file {path} (from {source}) not found; point it at a file with one "
                            "<wnid>_<n>.JPEG per line, or unset it to scan the wnid folders")
        return path
    for cand in (base / LIST_NAME, base.parent / LIST_NAME):
        if cand.is_file():
            return cand
    return None


def read_list_file(path: Path) -> list[tuple[str, str]]:
    """(wnid, path relative to the root) for every line of an ImageNet-22K list file."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                name = line.strip()
                if not name or name.startswith("#"):
                    continue
                if "/" in name:
                    wnid = name.split("/", 1)[0]
                    rel = name
                else:
                    wnid = name.split("_", 1)[0]
                    rel = f"{wnid}/{name}"
                if not is_wnid(wnid) or not is_image_file(name):
                    raise DataError(f"{path}:{lineno}: {name!r} is not an image name of the form "
                                    "<wnid>_<n>.JPEG (or <wnid>/<file>); fix or remove the line")
                out.append((wnid, rel))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file ({exc}); it should list one <wnid>_<n>.JPEG per line") from None
    if not out:
        raise DataError(f"ImageNet-22K list file {path} lists no images; it should list one <wnid>_<n>.JPEG per line")
    return out


@DATASETS.register("imagenet22k", aliases=("imagenet-22k", "imagenet21k", "imagenet-21k"))
def build_imagenet22k(root: str = "", split: str = "train", im_size: int = 0, test_im_size: int = 0,
                      list_file: str | None = None, **_):
    base = check_root(root, "ImageNet-22K", IMAGENET22K_LAYOUT)
    size, test_size = resolve_sizes(im_size, test_im_size)
    if split != "train":
        raise DataError(f"imagenet22k has only a training split (asked for {split!r}); search uses held-out "
                        "training images, evaluate on imagenet or another data set")
    listing = find_list_file(base, list_file)
    if listing is not None:
        log.info("ImageNet-22K: reading the image list %s", listing)
        entries = read_list_file(listing)
        classes = sorted({w for w, _ in entries})
        missing = next((w for w in classes if not (base / w).is_dir()), None)
        if missing is not None:
            raise DataError(f"{base / missing} not found: {listing} lists images of class {missing}; put the "
                            f"class folders under DATA.ROOT ({base}) or fix the list; expected layout: "
                            f"{IMAGENET22K_LAYOUT}")
        index = {w: i for i, w in enumerate(classes)}
        paths = [rel for _, rel in entries]
        labels = [index[w] for w, _ in entries]
    else:
        if (base / "train").is_dir() and not any(is_wnid(e.name) for e in listdir(base) if e.is_dir()):
            raise DataError(f"{base} holds train/ but no wnid folders: that is the imagenet (1K) layout; "
                            f"expected layout: {IMAGENET22K_LAYOUT}")
        classes, paths, labels = scan_class_tree(base, IMAGENET22K_LAYOUT, recursive=False, class_filter=is_wnid,
                                                 allow_unlabelled=False)
    info = DataInfo(num_classes=len(classes), image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    ds = FileDataset(base, paths, labels, info, train=True, name="imagenet22k", test_size=test_size)
    ds.classes = classes
    return ds
