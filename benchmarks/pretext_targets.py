"""The data section of ``tools/bench.py``: images/s of pretext-target construction (the tasks'
``make_batch`` on uint8 images in memory), timed in this process.

* colorization: ours on a batch vs the release's recipe one image at a time (scikit-image
  ``rgb2lab`` + scikit-learn ``NearestNeighbors`` ball tree on our 313 ab bins), both on one
  thread, with the fraction of pixels on which both pick the same bin;
* rot and jig (G 2) at 32 px, and jig G 3 at ``jig_size`` px; inpaint, superres, simclr, count and
  splitbrain at 32 px (default options).

Loading/decoding is ``benchmarks/bench_data.py``'s job (docs/benchmarks.md), not repeated here.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from unnas.tasks import build_task

from .harness import time_calls, torch_threads
from .inputs import data_info, photo_like
from .report import data_row, threads_label


def colorization_rows(n: int, size: int, ref_images: int, seed: int, warmup: int, reps: int) -> list[dict]:
    """col make_batch on a batch of ``n`` vs the release's recipe on ``ref_images`` images one by
    one, both on one thread."""
    images = photo_like(n, size, seed)
    task = build_task("col", data_info(size))
    gen = torch.Generator().manual_seed(seed)
    with torch_threads(1):
        # the first call builds or loads the per-colour table: a one-off cost, reported apart
        t0 = time.perf_counter()
        _, ours_targets = task.make_batch(images, None, True, gen)
        first = time.perf_counter() - t0
        warm, secs = time_calls(lambda: task.make_batch(images, None, True, gen), max(warmup - 1, 0), reps)
        ours = data_row("col ours", f"{size}x{size}, batch {n}, 1 thread", [first, *warm], secs, n,
                        f"make_batch; first call {first:.1f} s (table build/load)")
        try:
            from skimage.color import rgb2lab
            from sklearn.neighbors import NearestNeighbors
        except ImportError as exc:
            print(f"bench: colorization reference skipped ({exc}); pip install scikit-image scikit-learn",
                  file=sys.stderr)
            return [ours]
        from unnas.tasks.lab_bins import ab_bins

        knn = NearestNeighbors(n_neighbors=1, algorithm="ball_tree").fit(ab_bins().astype(float))
        ref = images[:min(ref_images, n)].permute(0, 2, 3, 1).numpy()

        def reference():
            """The release's recipe, one image at a time: L input and nearest-bin targets."""
            out = []
            for img in ref:
                lab = rgb2lab(img)
                l_input = (lab[..., 0] / 100.0 - task.l_mean) / task.l_std
                out.append((l_input, knn.kneighbors(lab[..., 1:].reshape(-1, 2), return_distance=False)
                            .reshape(img.shape[:2])))
            return out

        warm, secs = time_calls(reference, warmup, reps)
    ref_targets = torch.as_tensor(np.stack([t for _, t in reference()]))
    agree = float((ref_targets == ours_targets[:len(ref)]).double().mean())
    ref_row = data_row("col reference", f"{size}x{size}, {len(ref)} images one by one, 1 thread", warm, secs,
                       len(ref), "skimage rgb2lab + sklearn NearestNeighbors (ball tree)", target_agreement=agree)
    ours["ratio"] = ours["images_per_s"]["median"] / ref_row["images_per_s"]["median"]
    ours["notes"] += f"; same targets on {100 * agree:.3f}% of pixels; goal >= 20x"
    return [ours, ref_row]


def pretext_rows(n: int, jig_size: int, seed: int, warmup: int, reps: int, threads: int) -> list[dict]:
    """rot, jig and the tasks of issue 15 (inpaint, superres, simclr, count, splitbrain) make_batch
    at 32 px (and jig G 3 at ``jig_size``; 0 skips it) on ``threads`` threads (the caller's setting)."""
    cases = [("rot", 32, {}), ("jig", 32, {}),
             # the label-free objectives of issue 15 (docs/tasks.md), default options
             ("inpaint", 32, {}), ("superres", 32, {}), ("simclr", 32, {}), ("count", 32, {}), ("splitbrain", 32, {})]
    if jig_size:
        cases.append(("jig", jig_size, {"jigsaw_grid": 3}))
    rows = []
    for name, size, opts in cases:
        task = build_task(name, data_info(size), **opts)
        images = photo_like(n, size, seed)
        labels = torch.zeros(n, dtype=torch.long)
        gen = torch.Generator().manual_seed(seed)
        # at least one warm-up: the first jig call may build and cache the permutation set
        warm, secs = time_calls(lambda: task.make_batch(images, labels, True, gen), max(warmup, 1), reps)
        grid = f", G {task.grid}, {task.num_outputs} perms" if name == "jig" else ""
        rows.append(data_row(name, f"{size}x{size}{grid}, batch {n}, {threads_label(threads)}", warm, secs, n,
                             "make_batch"))
    return rows
