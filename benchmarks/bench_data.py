"""Loader throughput: images/s through BatchStream for the built-in data sets.

Measures one pass over each data set (``--epochs`` passes, best kept) with 0 and 2 loader worker
processes where that matters (in-memory sets gather in the main process and ignore workers):

* synthetic: the embedded set (in memory; includes the device-side crop/flip on the CPU);
* cifar10:   ../shared/data/cifar10-mini (in memory; skipped when absent);
* imagenet:  generated ImageNet-like tree of JPEGs (default 500 at ~400x350) in a temp dir,
             train transform (random-resized crop 224 + flip) and test transform (256 / 224);
* cityscapes: generated Cityscapes-like tree (2048x1024 PNG images + trainId maps) in a temp
             dir, train transform (random scale, 321 crop, flip) and test (512 / 321).

    python benchmarks/bench_data.py [--json out.json] [--images 500] [--city-images 24]

Times include starting the worker processes (BatchStream starts them once per epoch).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fvcore.common.config import CfgNode as CN  # noqa: E402

from unnas.config import add_data_cfg  # noqa: E402
from unnas.data import BatchStream, build_dataset  # noqa: E402

CIFAR_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-mini"


def data_cfg(**kw):
    cfg = CN()
    add_data_cfg(cfg)
    for k, v in kw.items():
        setattr(cfg.DATA, k, v)
    return cfg.DATA


def photo_like(rng, w, h):
    """A smooth random picture with some texture (compresses like a photo, not like noise)."""
    small = rng.integers(0, 256, (max(h // 40, 2), max(w // 40, 2), 3), dtype=np.uint8)
    img = np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)
    return img.clip(0, 255).astype(np.uint8)


def make_imagenet(root: Path, n: int, classes: int = 10, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        wnid = f"n{1000000 + i % classes:08d}"
        w, h = int(rng.integers(360, 441)), int(rng.integers(310, 391))   # ~400 x 350
        for split in ("train", "val") if i < n // 5 else ("train",):   # val: a fifth as many
            d = root / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo_like(rng, w, h)).save(d / f"{wnid}_{i}.JPEG", quality=90)


def make_cityscapes(root: Path, n: int, seed: int = 0, size=(2048, 1024)) -> None:
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", max(n // 4, 2))):
        for i in range(count):
            city = "bench"
            stem = f"{city}_{i:06d}_000019"
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            image = photo_like(rng, *size)
            Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                                        compress_level=1)
            label = ((np.arange(size[0])[None, :] // 108 + np.arange(size[1])[:, None] // 256) % 19).astype(np.uint8)
            Image.fromarray(label).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png")


def measure(ds, batch_size: int, workers: int, epochs: int, augment: bool) -> float:
    """Best images/s over ``epochs`` full passes."""
    train = augment
    stream = BatchStream(ds, range(len(ds)), batch_size, seed=0, stream=0, num_workers=workers, shuffle=train,
                         drop_last=train)
    best = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        n = 0
        for step, (x, y) in enumerate(stream.epoch(epoch)):
            if augment and ds.in_memory:
                x, y = ds.augment_batch(x, y, torch.Generator().manual_seed(step))
            n += x.shape[0]
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500, help="ImageNet-like JPEGs to generate")
    ap.add_argument("--city-images", type=int, default=24, help="Cityscapes-like 2048x1024 training images")
    ap.add_argument("--epochs", type=int, default=2, help="passes per measurement (best kept)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--json", default="", help="also write the results to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    rows = []

    def add(name, split, ds, batch, workers, note=""):
        batch = min(batch, len(ds))
        ips = measure(ds, batch, workers, args.epochs, augment=split == "train")
        rows.append({"dataset": name, "split": split, "images": len(ds), "size": ds.info.image_size,
                     "batch": batch, "workers": workers if not ds.in_memory else 0,
                     "images_per_s": round(ips, 1), "note": note})
        print(f"  {name:<11} {split:<5} workers {rows[-1]['workers']}: {ips:10.1f} images/s", flush=True)

    print("synthetic / cifar10 (in memory)")
    add("synthetic", "train", build_dataset(data_cfg(DATASET="synthetic", SYNTHETIC=CN({"NUM_TRAIN": 4000,
        "NUM_TEST": 100, "SEED": 0})), "train"), 64, 0, "in memory, crop+flip on CPU")
    if (CIFAR_MINI / "data_batch_1").exists():
        add("cifar10", "train", build_dataset(data_cfg(DATASET="cifar10", ROOT=str(CIFAR_MINI)), "train"), 64, 0,
            "cifar10-mini, in memory, crop+flip on CPU")
    else:
        print("  cifar10-mini not found; skipped")

    with tempfile.TemporaryDirectory(prefix="unnas_bench_data_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_imagenet(tmp / "imagenet", args.images)
        make_cityscapes(tmp / "cityscapes", args.city_images)
        print(f"generated trees in {time.perf_counter() - t0:.1f}s")
        inet = data_cfg(DATASET="imagenet", ROOT=str(tmp / "imagenet"))
        city = data_cfg(DATASET="cityscapes", ROOT=str(tmp / "cityscapes"), IM_SIZE=321, TEST_IM_SIZE=512)
        print("imagenet-like (JPEG ~400x350)")
        for split in ("train", "test"):
            ds = build_dataset(inet, split)
            for w in args.workers:
                add("imagenet", split, ds, 32, w, f"{len(ds)} JPEGs ~400x350 -> 224")
        print("cityscapes-like (PNG 2048x1024 + trainIds)")
        for split in ("train", "test"):
            ds = build_dataset(city, split)
            for w in args.workers:
                add("cityscapes", split, ds, 4, w, f"{len(ds)} PNGs 2048x1024 -> 321")

    env = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
           "pillow": Image.__version__, "machine": platform.machine()}
    print()
    print("| data set | split | images | crop | batch | workers | images/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['dataset']} | {r['split']} | {r['images']} | {r['size']} | {r['batch']} | {r['workers']} | "
              f"{r['images_per_s']:.1f} |")
    result = {"env": env, "results": rows}
    print()
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
